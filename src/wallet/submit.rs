//! The submission protocol: from "make this wallet make these calls" to an outcome on chain,
//! every step of it in the journal of what the operation is for.
//!
//! ```text
//! check the controller may act ─▶ reserve (wallet, key) nonce ─▶ build ─▶ estimate gas
//!   ─▶ sponsor? ─▶ sign ─▶ journal UserOpSubmitted ─▶ send ─▶ journal UserOpSent | UserOpRejected
//!   ─▶ wait for the receipt ─▶ journal UserOpLanded | UserOpPending
//! ```
//!
//! - A refusal that a fresh operation can cure (AA25: the nonce moved; AA10: the wallet got
//!   deployed meanwhile; a bundle mined without it; its nonce used by another) resyncs the nonce
//!   from the chain and rebuilds and re-signs (a sponsorship covers the nonce, so it is made
//!   again), up to `MAX_ATTEMPTS`. The original never retried (ava-sdk-js #263).
//! - No answer from the sender is not a refusal: the operation may have been taken, so it is
//!   never rebuilt; its receipt is waited for.
//! - A wallet without code gets `initCode` and holds the wallet's deploy lock until its first
//!   operation's outcome: concurrent first operations would all carry `initCode` and all but one
//!   fail with AA10.
//! - After a crash, [`Wallets::recover`] finds the operation journaled last: on chain, its
//!   outcome is journaled; not on chain with its nonce still free, the identical signed operation
//!   is sent again (the nonce makes that at-most-once); otherwise it is journaled as refused and
//!   nothing new is built for that purpose.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256, aliases::U192};
use alloy::providers::Provider;

use super::contracts::{
    IControlledAccount, IControlledAccountFactory, IEntryPointV06, UserOperation,
};
use super::keys::ChainKey;
use super::nonce::{self, NonceBook};
use super::paymaster::Paymaster;
use super::sender::{SendError, UserOpSender};
use super::user_op::{self, Call};
use super::{FactoryKind, WalletFactory, gas};
use crate::chain::Chain;
use events::Event;
use events::event::{UserOpLanded, UserOpPending, UserOpRejected, UserOpSent, UserOpSubmitted};
use events::user_op::{OpPurpose, OpReceipt};

/// Operations built for one purpose at most (the first and its rebuilds).
pub const MAX_ATTEMPTS: u32 = 4;
/// Between two looks for a receipt, at first; the wait doubles up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);

/// Where a submission's events go: the stream of what the operation is for. An event must be
/// durable when `record` returns (the operation is sent only after `UserOpSubmitted` is).
pub trait Journal: Send {
    fn record(
        &mut self,
        event: Event,
    ) -> impl std::future::Future<Output = Result<(), JournalError>> + Send;
}

/// The journal could not make an event durable: the submission stops there.
#[derive(Debug, Clone, thiserror::Error)]
#[error("recording the user operation failed: {0}")]
pub struct JournalError(pub String);

/// A journal that keeps the events in memory (simulations, tests).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub events: Vec<Event>,
}

impl Journal for MemoryJournal {
    async fn record(&mut self, event: Event) -> Result<(), JournalError> {
        self.events.push(event);
        Ok(())
    }
}

/// What a wallet should do, and for what.
#[derive(Debug, Clone)]
pub struct OpRequest {
    pub purpose: OpPurpose,
    pub owner: Address,
    pub salt: U256,
    /// The factory the wallet was derived under (as registered).
    pub factory: WalletFactory,
    pub wallet: Address,
    pub calls: Vec<Call>,
    pub nonce_key: U192,
}

/// Why nothing of an operation is on chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotSent {
    /// The ERC-4337 code (`AA24`, ...) when there is one.
    pub code: Option<String>,
    pub reason: String,
    pub why: NotSentKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentKind {
    /// The controller may not sign for this wallet.
    NotControlled,
    /// The call would revert (found by the gas estimate).
    Reverted,
    /// The EntryPoint or the bundler refused it.
    Refused,
    /// The chain could not be read.
    Chain,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// On chain (`receipt.success` says whether its call ran or reverted).
    Landed {
        user_op_hash: B256,
        receipt: OpReceipt,
    },
    /// Taken, and not on chain within the wait: it may still land.
    Pending { user_op_hash: B256 },
    /// Nothing on chain.
    NotSent(NotSent),
}

impl NotSent {
    fn new(why: NotSentKind, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            code: super::receipt::aa_code(&reason).map(str::to_owned),
            reason,
            why,
        }
    }
}

/// The aggregator's side of the users' wallets: sender, controller, paymaster, nonces.
pub struct Wallets {
    pub chain: Chain,
    pub entry_point: Address,
    sender: Arc<dyn UserOpSender>,
    controller: ChainKey,
    paymaster: Option<Paymaster>,
    nonces: NonceBook,
    deploy_locks: std::sync::Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
    /// Wallets and factories known to accept the controller.
    controlled: std::sync::Mutex<HashSet<Address>>,
    /// How long to wait for a receipt before answering "pending".
    pub receipt_timeout: Duration,
}

impl std::fmt::Debug for Wallets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallets")
            .field("entry_point", &self.entry_point)
            .field("controller", &self.controller.address())
            .field("paymaster", &self.paymaster)
            .finish_non_exhaustive()
    }
}

/// What the controller may sign for, and what an operation looks like before its gas.
struct Built {
    op: UserOperation,
    sequence: u64,
}

impl Wallets {
    pub fn new(
        chain: Chain,
        entry_point: Address,
        sender: Arc<dyn UserOpSender>,
        controller: ChainKey,
        paymaster: Option<Paymaster>,
        receipt_timeout: Duration,
    ) -> Self {
        Self {
            chain,
            entry_point,
            sender,
            controller,
            paymaster,
            nonces: NonceBook::default(),
            deploy_locks: std::sync::Mutex::new(HashMap::new()),
            controlled: std::sync::Mutex::new(HashSet::new()),
            receipt_timeout,
        }
    }

    pub fn controller(&self) -> Address {
        self.controller.address()
    }

    /// The nonce reservations (tests use it to put the book ahead of the chain).
    pub fn nonce_book(&self) -> &NonceBook {
        &self.nonces
    }

    pub fn sender_kind(&self) -> events::user_op::SenderKind {
        self.sender.kind()
    }

    fn deploy_lock(&self, wallet: Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.deploy_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(wallet).or_default().clone()
    }

    fn chain_error(e: impl std::fmt::Display) -> NotSent {
        NotSent::new(NotSentKind::Chain, format!("reading the chain failed: {e}"))
    }

    /// Whether the wallet has code.
    pub async fn deployed(&self, wallet: Address) -> Result<bool, NotSent> {
        let code = self
            .chain
            .provider
            .get_code_at(wallet)
            .await
            .map_err(Self::chain_error)?;
        Ok(!code.is_empty())
    }

    /// The chain's next sequence of `(wallet, key)`.
    pub async fn chain_sequence(&self, wallet: Address, key: U192) -> Result<u64, NotSent> {
        let nonce = IEntryPointV06::new(self.entry_point, &self.chain.provider)
            .getNonce(wallet, key)
            .call()
            .await
            .map_err(Self::chain_error)?;
        Ok(nonce::split(nonce).1)
    }

    /// Refuses, with a message that says why, a wallet whose signatures the controller cannot
    /// make: one of a stock SimpleAccountFactory (only its owner signs), or of a factory with
    /// another controller (a rotated key).
    pub async fn check_controller(&self, request: &OpRequest) -> Result<(), NotSent> {
        let not_controlled = |reason: String| NotSent::new(NotSentKind::NotControlled, reason);
        if request.factory.kind == FactoryKind::SimpleAccount {
            return Err(not_controlled(format!(
                "the smart wallet {} was derived under the factory {}, a stock SimpleAccountFactory: \
                 its accounts accept only their owner's signature, so the aggregator's controller \
                 cannot act for it; create a wallet under the configured ControlledAccountFactory",
                request.wallet, request.factory.factory
            )));
        }
        let known = |a: &Address| {
            self.controlled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(a)
        };
        if known(&request.wallet) || known(&request.factory.factory) {
            return Ok(());
        }
        let (checked, controller) = if self.deployed(request.wallet).await? {
            let answer = IControlledAccount::new(request.wallet, &self.chain.provider)
                .getController()
                .call()
                .await;
            (request.wallet, answer)
        } else {
            let answer =
                IControlledAccountFactory::new(request.factory.factory, &self.chain.provider)
                    .controller()
                    .call()
                    .await;
            (request.factory.factory, answer)
        };
        match controller {
            Ok(controller) if controller == self.controller.address() => {
                self.controlled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(checked);
                Ok(())
            }
            Ok(controller) => Err(not_controlled(format!(
                "the smart wallet {} accepts the controller {controller}, not this aggregator's {} \
                 (the controller key was rotated: wallets of the old factory keep the old controller)",
                request.wallet,
                self.controller.address()
            ))),
            Err(_) => Err(not_controlled(format!(
                "{checked} does not answer getController(): the smart wallet {} is not a \
                 ControlledAccount, so the aggregator's controller cannot act for it",
                request.wallet
            ))),
        }
    }

    fn sign_op(&self, mut op: UserOperation) -> Result<UserOperation, SendError> {
        let digest = user_op::hash(&op, self.entry_point, self.chain.chain_id);
        op.signature = user_op::sign(digest, self.controller.signer())
            .map_err(|e| SendError::refused(format!("signing: {e}")))?;
        Ok(op)
    }

    /// Builds, estimates, sponsors and signs the next operation of `request` (not sent).
    async fn build(&self, request: &OpRequest, deployed: bool) -> Result<Built, NotSent> {
        let on_chain = self
            .chain_sequence(request.wallet, request.nonce_key)
            .await?;
        let sequence = self
            .nonces
            .reserve(request.wallet, request.nonce_key, on_chain);
        let mut op = self.draft(
            request,
            deployed,
            nonce::compose(request.nonce_key, sequence),
        );
        let result = self.finish(&mut op).await;
        if result.is_err() {
            self.nonces
                .resync(request.wallet, request.nonce_key, on_chain);
        }
        result.map(|()| Built { op, sequence })
    }

    /// `request`'s operation before gas and signature: initCode only while the wallet has no
    /// code, the paymaster's placeholder, a dummy signature for the estimates.
    fn draft(&self, request: &OpRequest, deployed: bool, nonce: U256) -> UserOperation {
        UserOperation {
            sender: request.wallet,
            nonce,
            initCode: if deployed {
                Bytes::new()
            } else {
                request.factory.init_code(request.owner, request.salt)
            },
            callData: user_op::call_data(&request.calls),
            paymasterAndData: self
                .paymaster
                .as_ref()
                .map(Paymaster::placeholder)
                .unwrap_or_default(),
            signature: user_op::dummy_signature(),
            ..UserOperation::default()
        }
    }

    /// The chain's current fees and the sender's gas limits, set on `op`.
    async fn price(&self, op: &mut UserOperation) -> Result<(), NotSent> {
        let fees = gas::fees(&self.chain).await.map_err(Self::chain_error)?;
        op.maxFeePerGas = fees.max_fee_per_gas;
        op.maxPriorityFeePerGas = fees.max_priority_fee_per_gas;
        let sign = |op: UserOperation| self.sign_op(op);
        let limits = self.sender.estimate(op, &sign).await.map_err(not_sent)?;
        op.callGasLimit = limits.call_gas_limit;
        op.verificationGasLimit = limits.verification_gas_limit;
        op.preVerificationGas = limits.pre_verification_gas;
        Ok(())
    }

    async fn finish(&self, op: &mut UserOperation) -> Result<(), NotSent> {
        self.price(op).await?;
        if let Some(paymaster) = &self.paymaster {
            op.paymasterAndData = paymaster.sponsor(op).await.map_err(not_sent)?;
        }
        *op = self.sign_op(op.clone()).map_err(not_sent)?;
        Ok(())
    }

    /// Gas limits and fees for `request` as the chain stands, nothing signed or sent (fee
    /// estimates, simulations).
    pub async fn estimate(&self, request: &OpRequest) -> Result<UserOperation, NotSent> {
        let deployed = self.deployed(request.wallet).await?;
        let nonce = nonce::compose(
            request.nonce_key,
            self.chain_sequence(request.wallet, request.nonce_key)
                .await?,
        );
        let mut op = self.draft(request, deployed, nonce);
        self.price(&mut op).await?;
        Ok(op)
    }

    /// One call as the wallet makes it (`eth_call` from the wallet, on the chain as it is): the
    /// return data, or the revert as text and data. What `is_simulated` writes answer, and how a
    /// write's return value is read.
    pub async fn simulate_call(
        &self,
        wallet: Address,
        call: &Call,
    ) -> Result<Result<Bytes, (String, Bytes)>, NotSent> {
        use alloy::network::TransactionBuilder;
        let tx = alloy::rpc::types::TransactionRequest::default()
            .with_from(wallet)
            .with_to(call.to)
            .with_value(call.value)
            .with_input(call.data.clone());
        match self.chain.provider.call(tx).await {
            Ok(data) => Ok(Ok(data)),
            Err(e) => match super::receipt::revert_data(&e) {
                Some(data) => Ok(Err((super::receipt::revert_text(&data), data))),
                None if e.is_error_resp() => Ok(Err((
                    e.as_error_resp()
                        .map_or_else(String::new, |p| p.message.to_string()),
                    Bytes::new(),
                ))),
                None => Err(Self::chain_error(e)),
            },
        }
    }

    /// Whether a paymaster pays the operations' gas.
    pub fn sponsored(&self) -> bool {
        self.paymaster.is_some()
    }

    /// The most `request`'s gas may take from the wallet's ETH: the EntryPoint's prefund
    /// (`(callGas + verificationGas + preVerificationGas) × maxFeePerGas`) with a fifth more, as
    /// fees may rise before it is sent; zero when a paymaster pays.
    pub async fn gas_reserve(&self, request: &OpRequest) -> Result<U256, NotSent> {
        if self.sponsored() {
            return Ok(U256::ZERO);
        }
        let op = self.estimate(request).await?;
        let gas = op.callGasLimit + op.verificationGasLimit + op.preVerificationGas;
        let prefund = gas.saturating_mul(op.maxFeePerGas);
        Ok(prefund.saturating_add(prefund / U256::from(5)))
    }

    /// Runs `request` to an outcome, journaling each step. `Err` only when the journal failed.
    pub async fn submit<J: Journal>(
        &self,
        request: &OpRequest,
        journal: &mut J,
    ) -> Result<Outcome, JournalError> {
        if let Err(refused) = self.check_controller(request).await {
            return Ok(Outcome::NotSent(refused));
        }
        let mut attempt = 1;
        loop {
            let deployed = match self.deployed(request.wallet).await {
                Ok(deployed) => deployed,
                Err(e) => return Ok(Outcome::NotSent(e)),
            };
            // Held until the outcome: see the module doc.
            let deploy_lock = self.deploy_lock(request.wallet);
            let _deploying = if deployed {
                None
            } else {
                let guard = deploy_lock.lock_owned().await;
                Some(guard)
            };
            let deployed = deployed || matches!(self.deployed(request.wallet).await, Ok(true));
            let sponsor_lock = self
                .paymaster
                .as_ref()
                .map(|p| p.wallet_lock(request.wallet));
            let _sponsoring = match &sponsor_lock {
                Some(lock) => Some(lock.clone().lock_owned().await),
                None => None,
            };
            let built = match self.build(request, deployed).await {
                Ok(built) => built,
                // Refused by the estimate's simulation: nothing journaled, nothing sent.
                Err(not_sent) if curable(&not_sent) && attempt < MAX_ATTEMPTS => {
                    self.resync(request).await;
                    attempt += 1;
                    continue;
                }
                Err(not_sent) => return Ok(Outcome::NotSent(not_sent)),
            };
            let user_op_hash = user_op::hash(&built.op, self.entry_point, self.chain.chain_id);
            let from_block = self.chain.provider.get_block_number().await.unwrap_or(0);
            journal
                .record(
                    UserOpSubmitted {
                        purpose: request.purpose.clone(),
                        wallet: format!("{:#x}", request.wallet),
                        chain_id: self.chain.chain_id,
                        entry_point: format!("{:#x}", self.entry_point),
                        sender: self.sender.kind(),
                        user_op: user_op::to_record(&built.op),
                        user_op_hash: format!("{user_op_hash:#x}"),
                        nonce_key: format!("{:#x}", request.nonce_key),
                        nonce_sequence: built.sequence,
                        from_block,
                        attempt,
                    }
                    .into(),
                )
                .await?;
            tracing::info!(wallet = %request.wallet, %user_op_hash, attempt, "sending a user operation");
            let rebuild = match self
                .send_and_wait(&built.op, user_op_hash, from_block, journal)
                .await?
            {
                Step::Done(outcome) => return Ok(outcome),
                Step::Rebuild(not_sent) => not_sent,
            };
            self.resync(request).await;
            if attempt >= MAX_ATTEMPTS {
                return Ok(Outcome::NotSent(rebuild));
            }
            attempt += 1;
            tracing::info!(wallet = %request.wallet, reason = %rebuild.reason, "rebuilding a refused user operation");
        }
    }

    /// A fresh operation may cure a refusal: the chain is the truth for the nonce.
    async fn resync(&self, request: &OpRequest) {
        if let Ok(on_chain) = self.chain_sequence(request.wallet, request.nonce_key).await {
            self.nonces
                .resync(request.wallet, request.nonce_key, on_chain);
        }
    }

    /// Sends a signed operation and waits for its outcome.
    async fn send_and_wait<J: Journal>(
        &self,
        op: &UserOperation,
        user_op_hash: B256,
        from_block: u64,
        journal: &mut J,
    ) -> Result<Step, JournalError> {
        let hash_text = format!("{user_op_hash:#x}");
        let tx_hash = match self.sender.send(op).await {
            Ok(accepted) => {
                journal
                    .record(
                        UserOpSent {
                            user_op_hash: hash_text.clone(),
                            tx_hash: accepted
                                .tx_hash
                                .map(|h| format!("{h:#x}"))
                                .unwrap_or_default(),
                        }
                        .into(),
                    )
                    .await?;
                accepted.tx_hash
            }
            Err(SendError::Unknown(e)) => {
                // It may have been taken: wait for it, never rebuild it.
                tracing::warn!(%user_op_hash, error = %e, "no clear answer from the sender");
                None
            }
            Err(refused) => {
                let not_sent = not_sent(refused);
                journal
                    .record(
                        UserOpRejected {
                            user_op_hash: hash_text,
                            code: not_sent.code.clone().unwrap_or_default(),
                            reason: not_sent.reason.clone(),
                        }
                        .into(),
                    )
                    .await?;
                return Ok(if curable(&not_sent) {
                    Step::Rebuild(not_sent)
                } else {
                    Step::Done(Outcome::NotSent(not_sent))
                });
            }
        };
        self.wait(op, user_op_hash, tx_hash, from_block, journal)
            .await
    }

    /// Polls for the receipt until the timeout; notices an operation that can no longer land.
    async fn wait<J: Journal>(
        &self,
        op: &UserOperation,
        user_op_hash: B256,
        tx_hash: Option<B256>,
        from_block: u64,
        journal: &mut J,
    ) -> Result<Step, JournalError> {
        let hash_text = format!("{user_op_hash:#x}");
        let (key, sequence) = nonce::split(op.nonce);
        let started = Instant::now();
        let mut pause = FIRST_POLL;
        loop {
            let dropped = match self.sender.receipt(user_op_hash, tx_hash, from_block).await {
                Ok(Some(receipt)) => {
                    journal
                        .record(
                            UserOpLanded {
                                user_op_hash: hash_text,
                                receipt: receipt.clone(),
                            }
                            .into(),
                        )
                        .await?;
                    return Ok(Step::Done(Outcome::Landed {
                        user_op_hash,
                        receipt,
                    }));
                }
                Ok(None) => match self.chain_sequence(op.sender, key).await {
                    // Its nonce is used and it is not on chain: another operation took it.
                    Ok(next) if next > sequence => {
                        match self.sender.receipt(user_op_hash, tx_hash, from_block).await {
                            Ok(Some(_)) => continue, // landed just now: read it again
                            _ => Some(format!(
                                "its nonce {sequence} was used by another operation"
                            )),
                        }
                    }
                    _ => None,
                },
                Err(SendError::Unknown(e)) => {
                    tracing::debug!(%user_op_hash, error = %e, "receipt lookup failed; retrying");
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = dropped {
                let reason =
                    format!("the user operation {user_op_hash:#x} will not land: {reason}");
                journal
                    .record(
                        UserOpRejected {
                            user_op_hash: hash_text,
                            code: String::new(),
                            reason: reason.clone(),
                        }
                        .into(),
                    )
                    .await?;
                return Ok(Step::Rebuild(NotSent::new(NotSentKind::Refused, reason)));
            }
            let waited = started.elapsed();
            if waited >= self.receipt_timeout {
                journal
                    .record(
                        UserOpPending {
                            user_op_hash: hash_text,
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        }
                        .into(),
                    )
                    .await?;
                return Ok(Step::Done(Outcome::Pending { user_op_hash }));
            }
            tokio::time::sleep(pause.min(self.receipt_timeout.saturating_sub(waited))).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Settles an operation journaled before a restart without an outcome (`sent_tx`: the
    /// transaction its sender reported, if journaled): see the module doc. Never builds a new one.
    pub async fn recover<J: Journal>(
        &self,
        submitted: &UserOpSubmitted,
        sent_tx: Option<B256>,
        journal: &mut J,
    ) -> Result<Outcome, JournalError> {
        let fail = |reason: String| NotSent::new(NotSentKind::Refused, reason);
        let op = match user_op::from_record(&submitted.user_op) {
            Ok(op) => op,
            Err(e) => return Ok(Outcome::NotSent(fail(e.to_string()))),
        };
        let user_op_hash = user_op::hash(&op, self.entry_point, self.chain.chain_id);
        if format!("{user_op_hash:#x}") != submitted.user_op_hash {
            return Ok(Outcome::NotSent(fail(format!(
                "the recorded user operation hashes to {user_op_hash:#x}, not {}: \
                 recorded for another chain or EntryPoint",
                submitted.user_op_hash
            ))));
        }
        let hash_text = submitted.user_op_hash.clone();
        let landed = |receipt: OpReceipt| UserOpLanded {
            user_op_hash: hash_text.clone(),
            receipt,
        };
        if let Ok(Some(receipt)) = self
            .sender
            .receipt(user_op_hash, sent_tx, submitted.from_block)
            .await
        {
            journal.record(landed(receipt.clone()).into()).await?;
            return Ok(Outcome::Landed {
                user_op_hash,
                receipt,
            });
        }
        let (key, sequence) = nonce::split(op.nonce);
        let next = match self.chain_sequence(op.sender, key).await {
            Ok(next) => next,
            Err(e) => return Ok(Outcome::NotSent(e)),
        };
        if next > sequence {
            // Its nonce is used: it can never land. Look once more (it may have just landed).
            if let Ok(Some(receipt)) = self
                .sender
                .receipt(user_op_hash, sent_tx, submitted.from_block)
                .await
            {
                journal.record(landed(receipt.clone()).into()).await?;
                return Ok(Outcome::Landed {
                    user_op_hash,
                    receipt,
                });
            }
            let reason = format!(
                "the user operation {hash_text} sent before the restart is not on chain and its \
                 nonce was used by another: not sent again"
            );
            journal
                .record(
                    UserOpRejected {
                        user_op_hash: hash_text,
                        code: String::new(),
                        reason: reason.clone(),
                    }
                    .into(),
                )
                .await?;
            return Ok(Outcome::NotSent(fail(reason)));
        }
        tracing::info!(%user_op_hash, "sending a user operation again, identical, after a restart");
        match self
            .send_and_wait(&op, user_op_hash, submitted.from_block, journal)
            .await?
        {
            Step::Done(outcome) => Ok(outcome),
            Step::Rebuild(mut not_sent) => {
                not_sent.reason = format!(
                    "{}; the operation sent before the restart is not rebuilt",
                    not_sent.reason
                );
                Ok(Outcome::NotSent(not_sent))
            }
        }
    }
}

/// What one send-and-wait left to do.
enum Step {
    Done(Outcome),
    Rebuild(NotSent),
}

fn not_sent(error: SendError) -> NotSent {
    match error {
        SendError::Reverted { reason } => NotSent::new(
            NotSentKind::Reverted,
            format!("the call would revert: {reason}"),
        ),
        SendError::Refused { code, reason } => NotSent {
            code,
            reason,
            why: NotSentKind::Refused,
        },
        SendError::Unknown(e) => NotSent::new(NotSentKind::Chain, e),
    }
}

/// Refusals a fresh operation may cure: the nonce moved (AA25), the wallet got deployed
/// meanwhile (AA10), the sponsorship's paymaster nonce moved (AA34).
fn curable(not_sent: &NotSent) -> bool {
    matches!(not_sent.code.as_deref(), Some("AA25" | "AA10" | "AA34"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nonce_and_deployment_refusals_are_rebuilt() {
        let refused = |reason: &str| not_sent(SendError::refused(reason));
        assert!(curable(&refused("AA25 invalid account nonce")));
        assert!(curable(&refused("AA10 sender already constructed")));
        assert!(!curable(&refused("AA24 signature error")));
        assert!(!curable(&refused("AA21 didn't pay prefund")));
        let reverted = not_sent(SendError::Reverted {
            reason: "nope".into(),
        });
        assert_eq!(reverted.why, NotSentKind::Reverted);
        assert!(!curable(&reverted));
    }
}
