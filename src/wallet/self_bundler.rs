//! The aggregator's own bundler (the default sender): each operation goes in a `handleOps`
//! transaction from the aggregator's funded account (`bundler.key`), which the EntryPoint pays
//! back from the wallet's (or the paymaster's) deposit as the beneficiary.
//!
//! Before the transaction, an `eth_call` of the same `handleOps` surfaces the EntryPoint's
//! refusals (`FailedOp`: AA10 sender already constructed, AA21 didn't pay prefund, AA24 signature
//! error, AA25 invalid account nonce, ...) without spending gas. The account's transaction nonces
//! are handed out under one lock and read again from the chain after any failed send, so that
//! concurrent operations never collide on them.

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::contracts::{IEntryPointV06, UserOperation};
use super::gas::{self, Estimate, GasError, GasLimits};
use super::keys::ChainKey;
use super::receipt::{self, failed_op, revert_data, revert_text};
use super::sender::{Accepted, SendError, UserOpSender};
use crate::chain::Chain;
use events::user_op::{OpReceipt, SenderKind};

/// Gas of `handleOps` around the operations' own limits.
const BUNDLE_OVERHEAD_GAS: u64 = 100_000;

pub struct SelfBundler {
    chain: Chain,
    entry_point: Address,
    key: ChainKey,
    wallet: EthereumWallet,
    /// The account's next transaction nonce, `None` until read (or after a failed send).
    next_nonce: tokio::sync::Mutex<Option<u64>>,
}

impl std::fmt::Debug for SelfBundler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfBundler")
            .field("entry_point", &self.entry_point)
            .field("account", &self.key.address())
            .finish()
    }
}

impl SelfBundler {
    pub fn new(chain: Chain, entry_point: Address, key: ChainKey) -> Self {
        let wallet = EthereumWallet::from(key.signer().clone());
        Self {
            chain,
            entry_point,
            key,
            wallet,
            next_nonce: tokio::sync::Mutex::new(None),
        }
    }

    /// The account that sends the bundles (and must hold ETH for their gas).
    pub fn account(&self) -> Address {
        self.key.address()
    }

    fn handle_ops(&self, op: &UserOperation) -> Bytes {
        IEntryPointV06::handleOpsCall {
            ops: vec![op.clone()],
            beneficiary: self.key.address(),
        }
        .abi_encode()
        .into()
    }

    /// `eth_call` of `handleOps`: the EntryPoint's verdict, at no cost.
    async fn simulate(&self, data: &Bytes) -> Result<(), SendError> {
        let tx = TransactionRequest::default()
            .with_from(self.key.address())
            .with_to(self.entry_point)
            .with_input(data.clone());
        match self.chain.provider.call(tx).await {
            Ok(_) => Ok(()),
            Err(e) => match revert_data(&e) {
                Some(data) => {
                    Err(SendError::refused(failed_op(&data).unwrap_or_else(|| {
                        format!("handleOps reverted: {}", revert_text(&data))
                    })))
                }
                None if e.is_error_resp() => Err(SendError::refused(format!(
                    "the node refused the simulation: {}",
                    e.as_error_resp()
                        .map_or_else(String::new, |p| p.message.to_string())
                ))),
                None => Err(SendError::Unknown(e.to_string())),
            },
        }
    }

    async fn send_bundle(&self, op: &UserOperation, data: Bytes) -> Result<B256, SendError> {
        let multiplier: u64 = if op.paymasterAndData.is_empty() { 1 } else { 3 };
        let limits = op
            .preVerificationGas
            .saturating_add(
                op.verificationGasLimit
                    .saturating_mul(U256::from(multiplier + 1)),
            )
            .saturating_add(op.callGasLimit.saturating_mul(U256::from(2)))
            .saturating_add(U256::from(BUNDLE_OVERHEAD_GAS));
        let gas_limit = limits.saturating_to::<u64>();
        let mut next = self.next_nonce.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let nonce = match *next {
                Some(n) => n,
                None => self
                    .chain
                    .provider
                    .get_transaction_count(self.key.address())
                    .pending()
                    .await
                    .map_err(|e| SendError::Unknown(e.to_string()))?,
            };
            let tx = TransactionRequest::default()
                .with_from(self.key.address())
                .with_to(self.entry_point)
                .with_input(data.clone())
                .with_nonce(nonce)
                .with_chain_id(self.chain.chain_id)
                .with_gas_limit(gas_limit)
                .with_max_fee_per_gas(op.maxFeePerGas.saturating_to::<u128>())
                .with_max_priority_fee_per_gas(op.maxPriorityFeePerGas.saturating_to::<u128>());
            let envelope: TxEnvelope = tx
                .build(&self.wallet)
                .await
                .map_err(|e| SendError::refused(format!("signing the bundle: {e}")))?;
            let tx_hash = *envelope.tx_hash();
            let error = match self
                .chain
                .provider
                .send_raw_transaction(&envelope.encoded_2718())
                .await
            {
                Ok(_) => {
                    *next = Some(nonce + 1);
                    return Ok(tx_hash);
                }
                Err(e) => e,
            };
            // Whatever happened, read the account's nonce again next time.
            *next = None;
            let Some(payload) = error.as_error_resp() else {
                return Err(SendError::Unknown(error.to_string()));
            };
            let message = payload.message.to_string();
            if message.contains("already known") {
                return Ok(tx_hash);
            }
            // Another sender used the account's nonce (a previous process, a manual
            // transaction): read it again and send again.
            let stale = message.contains("nonce too low")
                || message.contains("replacement transaction underpriced");
            if !stale || attempts >= 3 {
                return Err(SendError::refused(format!(
                    "the node refused the bundle from {}: {message}",
                    self.key.address()
                )));
            }
        }
    }
}

impl UserOpSender for SelfBundler {
    fn kind(&self) -> SenderKind {
        SenderKind::SelfBundler
    }

    fn estimate<'a>(
        &'a self,
        op: &'a UserOperation,
        sign: &'a (dyn Fn(UserOperation) -> Result<UserOperation, SendError> + Send + Sync),
    ) -> BoxFuture<'a, Result<GasLimits, SendError>> {
        async move {
            let deployed = op.initCode.is_empty();
            // An undeployed wallet runs as its factory's implementation (`CREATE(factory, 1)`
            // for SimpleAccountFactory and ControlledAccountFactory alike).
            let implementation = match op.initCode.get(..20) {
                Some(factory) => Address::from_slice(factory).create(1),
                None => Address::ZERO,
            };
            let estimate = Estimate {
                chain: &self.chain,
                entry_point: self.entry_point,
                implementation,
                deployed,
            };
            let call_gas_limit = estimate.call_gas(op).await.map_err(from_gas)?;
            let simulated = sign(gas::for_simulation(op, call_gas_limit))?;
            let verification_gas_limit = estimate
                .verification_gas(&simulated)
                .await
                .map_err(from_gas)?;
            Ok(GasLimits {
                call_gas_limit,
                verification_gas_limit,
                pre_verification_gas: gas::pre_verification_gas(op),
            })
        }
        .boxed()
    }

    fn send<'a>(&'a self, op: &'a UserOperation) -> BoxFuture<'a, Result<Accepted, SendError>> {
        async move {
            let data = self.handle_ops(op);
            self.simulate(&data).await?;
            let tx_hash = self.send_bundle(op, data).await?;
            Ok(Accepted {
                tx_hash: Some(tx_hash),
            })
        }
        .boxed()
    }

    fn receipt<'a>(
        &'a self,
        user_op_hash: B256,
        tx_hash: Option<B256>,
        from_block: u64,
    ) -> BoxFuture<'a, Result<Option<OpReceipt>, SendError>> {
        async move {
            let unknown = |e: crate::chain::ChainError| SendError::Unknown(e.to_string());
            let rpc = |e: alloy::transports::TransportError| SendError::Unknown(e.to_string());
            let mined = match tx_hash {
                Some(tx_hash) => self
                    .chain
                    .provider
                    .get_transaction_receipt(tx_hash)
                    .await
                    .map_err(rpc)?,
                None => None,
            };
            if let Some(mined) = &mined
                && let Some(found) =
                    receipt::from_logs(mined.inner.logs(), self.entry_point, user_op_hash)
            {
                return Ok(Some(found));
            }
            // Not in its bundle (or no bundle known): it may have landed in another one (an
            // identical operation sent again after a restart).
            let found = receipt::search(&self.chain, self.entry_point, user_op_hash, from_block)
                .await
                .map_err(unknown)?;
            match (found, mined) {
                (Some(found), _) => Ok(Some(found)),
                (None, Some(mined)) => Err(SendError::refused(format!(
                    "the bundle {:#x} was mined (status {}) without the operation",
                    mined.transaction_hash,
                    if mined.status() {
                        "success"
                    } else {
                        "reverted"
                    }
                ))),
                (None, None) => Ok(None),
            }
        }
        .boxed()
    }
}

fn from_gas(error: GasError) -> SendError {
    match error {
        GasError::Reverted { reason, .. } => SendError::Reverted { reason },
        GasError::Refused(reason) => SendError::refused(reason),
        GasError::Chain(e) => SendError::Unknown(e),
    }
}
