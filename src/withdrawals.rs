//! `WithdrawFunds`: ETH or an ERC-20 out of a user's smart wallet, as one user operation.
//!
//! The flow: the request is checked (`wallet::withdraw`: the original's words), `"max"` is
//! resolved against the wallet's balance (less the gas reserve when the wallet pays its gas) and
//! an amount the balance does not cover is refused, all before anything is recorded; then
//! `WithdrawalRequested` opens the stream `withdrawal:<id>`, and the operation is submitted with
//! its events on that stream (`wallet::submit`). The answer is `confirmed` (on chain),
//! `pending` (no receipt within `wallet.receipt_timeout`) or `failed`, with the userOpHash.
//!
//! After a crash, [`resume`] settles every withdrawal whose operation was journaled without an
//! outcome, as the engine does for its writes (never a second operation for one withdrawal).
//!
//! A withdrawal is named by its id before anything runs, so that a call repeated with the same
//! id (a replica handing the call to the writer again after the writer changed or did not
//! answer: `rpc::client::on_writer`) finds what the first attempt did instead of withdrawing
//! twice: the answer it recorded, the operation it journaled (settled as after a crash), or only
//! the request (then its operation is built now, against the stream's version, so that of two
//! attempts racing only one journals an operation). In one process, one attempt per withdrawal
//! runs at a time (`one_at_a_time`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use alloy::primitives::{Address, B256, U256};
use events::event::{UserOpSubmitted, WithdrawalRequested};
use events::user_op::OpPurpose;
use events::{Command, Event, Expected};

use crate::engine::nodes::write::WriteTarget;
use crate::engine::run::{Recorder, RecorderJournal};
use crate::store::Store;
use crate::wallet::submit::{NotSent, OpRequest, Outcome, Wallets};
use crate::wallet::withdraw::{self, Asset, WithdrawError, Withdrawal};
use crate::wallet::{nonce, user_op::Call};

/// How a withdrawal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    /// `confirmed`, `pending` or `failed`.
    pub status: &'static str,
    pub message: String,
    pub user_op_hash: String,
    pub transaction_hash: String,
    /// The amount sent (base units), `"max"` resolved.
    pub amount: U256,
    pub withdrawal_id: String,
}

/// Why a withdrawal was not attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WithdrawFailure {
    /// The request or the balance (nothing recorded).
    #[error(transparent)]
    Refused(#[from] WithdrawError),
    #[error("reading the chain failed: {0}")]
    Chain(String),
    #[error(transparent)]
    Store(#[from] events::Error),
}

/// What the wallet holds of the asset.
async fn held(wallets: &Wallets, wallet: Address, asset: Asset) -> Result<U256, WithdrawFailure> {
    let chain = &wallets.chain;
    match asset {
        Asset::Eth => chain.balance(wallet).await,
        Asset::Token(token) => chain.token_balance(token, wallet).await,
    }
    .map_err(|e| WithdrawFailure::Chain(e.to_string()))
}

/// The withdrawals this process is working on, each behind its own lock.
static IN_HAND: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

/// Waits until no other attempt at withdrawal `id` runs in this process, and holds it.
async fn one_at_a_time(id: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut in_hand = IN_HAND.lock().unwrap_or_else(|p| p.into_inner());
        in_hand.retain(|_, lock| lock.strong_count() > 0);
        match in_hand.get(id).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                in_hand.insert(id.to_owned(), Arc::downgrade(&lock));
                lock
            }
        }
    };
    lock.lock_owned().await
}

/// The operation of withdrawal `id`.
fn op_request(id: &str, target: &WriteTarget, call: Call) -> OpRequest {
    OpRequest {
        purpose: OpPurpose::Withdrawal {
            withdrawal_id: id.to_owned(),
        },
        owner: target.owner,
        salt: target.salt,
        factory: target.factory.clone(),
        wallet: target.wallet,
        calls: vec![call],
        nonce_key: nonce::withdrawal_key(id),
    }
}

/// How often an attempt reads the withdrawal's stream again after another attempt journaled
/// before it (each round settles what that one journaled; it never builds a second operation).
const ROUNDS: usize = 3;

/// Checks, records and submits withdrawal `id` from `target`; when `id` is in the log already
/// (a repeat of the call), answers what became of it (see the module doc).
pub async fn withdraw(
    store: &Store,
    wallets: &Wallets,
    target: &WriteTarget,
    withdrawal: Withdrawal,
    now_ms: u64,
    id: &str,
) -> Result<Withdrawn, WithdrawFailure> {
    let _one = one_at_a_time(id).await;
    let stream = events::stream::withdrawal(id);
    if !store.log.read_stream(&stream)?.is_empty() {
        return settle(store, wallets, target, id).await;
    }
    let request = |amount: U256| op_request(id, target, withdraw::call(&withdrawal, amount));
    let held = held(wallets, target.wallet, withdrawal.asset).await?;
    let reserve = if withdrawal.asset == Asset::Eth && !held.is_zero() {
        // The reserve of a transfer of the smallest amount: its gas does not depend on it.
        wallets
            .gas_reserve(&request(U256::from(1)))
            .await
            .map_err(|e: NotSent| WithdrawFailure::Chain(e.reason))?
    } else {
        U256::ZERO
    };
    let amount = withdraw::resolve(withdrawal.amount, held, reserve)?;
    let requested = WithdrawalRequested {
        withdrawal_id: id.to_owned(),
        owner: format!("{:#x}", target.owner),
        wallet: format!("{:#x}", target.wallet),
        recipient: format!("{:#x}", withdrawal.recipient),
        token: match withdrawal.asset {
            Asset::Eth => String::new(),
            Asset::Token(token) => format!("{token:#x}"),
        },
        amount: amount.to_string(),
    };
    let actor = format!("{:#x}", target.owner);
    let recorded = store
        .log
        .append(Command::new(actor.clone(), now_ms).append(
            stream.clone(),
            Expected::NoStream,
            [Event::from(requested)],
        ))
        .await;
    match recorded {
        Ok(_) => {}
        // Another attempt (on a writer deposed meanwhile) recorded it first.
        Err(events::Error::Conflict { .. }) => return settle(store, wallets, target, id).await,
        Err(e) => return Err(e.into()),
    }
    let mut recorder = Recorder::Log {
        store,
        stream,
        actor,
        version: 1,
        buffer: Vec::new(),
    };
    let mut journal = RecorderJournal {
        recorder: &mut recorder,
    };
    match wallets.submit(&request(amount), &mut journal).await {
        Ok(outcome) => Ok(answer(outcome, amount, id.to_owned())),
        Err(e) => {
            // Journaling failed (another attempt journaled first, or the log refused): what was
            // sent, if anything, is journaled; settle that.
            tracing::warn!(withdrawal = id, error = %e, "the withdrawal's journal moved under it");
            settle(store, wallets, target, id).await
        }
    }
}

/// What the log says became of withdrawal `id`, settled when it is open: its recorded answer;
/// its journaled operation settled (`Wallets::recover`: never a new one); or, when only the
/// request is recorded, its operation built and submitted now.
async fn settle(
    store: &Store,
    wallets: &Wallets,
    target: &WriteTarget,
    id: &str,
) -> Result<Withdrawn, WithdrawFailure> {
    let stream = events::stream::withdrawal(id);
    let mut last_error = None;
    for _ in 0..ROUNDS {
        let recorded = store.log.read_stream(&stream)?;
        let Some(Event::WithdrawalRequested(requested)) = recorded.first().map(|e| &e.event) else {
            return Err(
                events::Error::Corrupt(format!("{stream} does not open with its request")).into(),
            );
        };
        if requested.owner != format!("{:#x}", target.owner)
            || requested.wallet != format!("{:#x}", target.wallet)
        {
            return Err(
                events::Error::Corrupt(format!("withdrawal {id} is another wallet's")).into(),
            );
        }
        let amount: U256 = requested.amount.parse().map_err(|_| {
            events::Error::Corrupt(format!("{stream}: amount {:?}", requested.amount))
        })?;
        let state = state_of(&recorded);
        let mut recorder = Recorder::Log {
            store,
            stream: stream.clone(),
            actor: recorded[0].actor.clone(),
            version: recorded.len() as u64,
            buffer: Vec::new(),
        };
        let mut journal = RecorderJournal {
            recorder: &mut recorder,
        };
        let outcome = match state {
            State::Answered(withdrawn) => return Ok(withdrawn(amount, id.to_owned())),
            State::Open(submitted, sent_tx) => {
                wallets.recover(&submitted, sent_tx, &mut journal).await
            }
            State::Requested => {
                let call = requested_call(requested)?;
                wallets
                    .submit(&op_request(id, target, call), &mut journal)
                    .await
            }
        };
        match outcome {
            Ok(outcome) => return Ok(answer(outcome, amount, id.to_owned())),
            Err(e) => last_error = Some(e),
        }
    }
    Err(events::Error::Corrupt(format!(
        "withdrawal {id}: its journal kept moving: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
    .into())
}

/// The call a recorded request makes.
fn requested_call(requested: &WithdrawalRequested) -> Result<Call, WithdrawFailure> {
    let bad = |what: &str| {
        events::Error::Corrupt(format!("withdrawal {}: {what}", requested.withdrawal_id))
    };
    let recipient: Address = requested.recipient.parse().map_err(|_| bad("recipient"))?;
    let amount: U256 = requested.amount.parse().map_err(|_| bad("amount"))?;
    let asset = if requested.token.is_empty() {
        Asset::Eth
    } else {
        Asset::Token(requested.token.parse().map_err(|_| bad("token"))?)
    };
    let withdrawal = Withdrawal {
        recipient,
        amount: withdraw::Amount::Exactly(amount),
        asset,
    };
    Ok(withdraw::call(&withdrawal, amount))
}

/// Where a withdrawal's stream stands.
enum State {
    /// Its outcome is recorded: the answer, given the amount and id.
    Answered(Box<dyn FnOnce(U256, String) -> Withdrawn + Send>),
    /// Its operation is journaled without an outcome (and the transaction its sender reported).
    Open(Box<UserOpSubmitted>, Option<B256>),
    /// Only the request.
    Requested,
}

fn state_of(recorded: &[events::Envelope]) -> State {
    let mut state = State::Requested;
    for envelope in recorded {
        state = match &envelope.event {
            Event::UserOpSubmitted(s) => State::Open(Box::new(s.clone()), None),
            Event::UserOpSent(s) => match state {
                State::Open(submitted, _) => State::Open(submitted, s.tx_hash.parse().ok()),
                other => other,
            },
            Event::UserOpLanded(landed) => {
                let landed = landed.clone();
                State::Answered(Box::new(move |amount, id| {
                    let hash = landed.user_op_hash.parse().unwrap_or_default();
                    answer(
                        Outcome::Landed {
                            user_op_hash: hash,
                            receipt: landed.receipt,
                        },
                        amount,
                        id,
                    )
                }))
            }
            Event::UserOpPending(pending) => {
                let hash = pending.user_op_hash.parse().unwrap_or_default();
                State::Answered(Box::new(move |amount, id| {
                    answer(Outcome::Pending { user_op_hash: hash }, amount, id)
                }))
            }
            Event::UserOpRejected(rejected) => {
                let reason = rejected.reason.clone();
                State::Answered(Box::new(move |amount, withdrawal_id| Withdrawn {
                    status: "failed",
                    message: format!("failed to send withdrawal transaction: {reason}"),
                    user_op_hash: String::new(),
                    transaction_hash: String::new(),
                    amount,
                    withdrawal_id,
                }))
            }
            _ => state,
        };
    }
    state
}

fn answer(outcome: Outcome, amount: U256, withdrawal_id: String) -> Withdrawn {
    match outcome {
        Outcome::Landed {
            user_op_hash,
            receipt,
        } if receipt.success => Withdrawn {
            status: "confirmed",
            message: "withdrawal transaction confirmed".into(),
            user_op_hash: format!("{user_op_hash:#x}"),
            transaction_hash: receipt.tx_hash,
            amount,
            withdrawal_id,
        },
        Outcome::Landed {
            user_op_hash,
            receipt,
        } => Withdrawn {
            status: "failed",
            message: format!("the withdrawal reverted: {}", receipt.revert_reason),
            user_op_hash: format!("{user_op_hash:#x}"),
            transaction_hash: receipt.tx_hash,
            amount,
            withdrawal_id,
        },
        Outcome::Pending { user_op_hash } => Withdrawn {
            status: "pending",
            message: "withdrawal transaction submitted, waiting for confirmation".into(),
            user_op_hash: format!("{user_op_hash:#x}"),
            transaction_hash: String::new(),
            amount,
            withdrawal_id,
        },
        Outcome::NotSent(not_sent) => Withdrawn {
            status: "failed",
            message: format!("failed to send withdrawal transaction: {}", not_sent.reason),
            user_op_hash: String::new(),
            transaction_hash: String::new(),
            amount,
            withdrawal_id,
        },
    }
}

/// The withdrawal streams in the log.
fn withdrawal_streams(store: &Store) -> events::Result<Vec<String>> {
    let mut streams = Vec::new();
    for item in store.log.keyspaces().streams.prefix(b"withdrawal:") {
        let key = item
            .key()
            .map_err(|e| events::Error::Corrupt(e.to_string()))?;
        let name_end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
        let name = String::from_utf8_lossy(&key[..name_end]).into_owned();
        if streams.last() != Some(&name) {
            streams.push(name);
        }
    }
    Ok(streams)
}

/// Settles the withdrawals a previous process (or a deposed writer) left with an operation and
/// no outcome.
pub async fn resume(store: &Store, wallets: &Wallets) -> events::Result<usize> {
    let mut settled = 0;
    for stream in withdrawal_streams(store)? {
        if !matches!(state_of(&store.log.read_stream(&stream)?), State::Open(..)) {
            continue;
        }
        let id = stream.trim_start_matches("withdrawal:").to_owned();
        let _one = one_at_a_time(&id).await;
        // A repeated call's attempt may have settled it meanwhile: read it again.
        let recorded = store.log.read_stream(&stream)?;
        let State::Open(submitted, sent_tx) = state_of(&recorded) else {
            continue;
        };
        let actor = recorded
            .first()
            .map(|e| e.actor.clone())
            .unwrap_or_else(|| "system".into());
        let mut recorder = Recorder::Log {
            store,
            stream: stream.clone(),
            actor,
            version: recorded.len() as u64,
            buffer: Vec::new(),
        };
        let mut journal = RecorderJournal {
            recorder: &mut recorder,
        };
        match wallets.recover(&submitted, sent_tx, &mut journal).await {
            Ok(outcome) => {
                tracing::info!(%stream, ?outcome, "a withdrawal left open by a restart was settled");
                settled += 1;
            }
            Err(e) => tracing::warn!(%stream, error = %e, "a withdrawal could not be settled"),
        }
    }
    Ok(settled)
}

/// The calls of a withdrawal (for fee estimates and tests).
pub fn calls(withdrawal: &Withdrawal, amount: U256) -> Vec<Call> {
    vec![withdraw::call(withdrawal, amount)]
}
