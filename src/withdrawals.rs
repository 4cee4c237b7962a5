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

use alloy::primitives::{Address, U256};
use events::event::WithdrawalRequested;
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

/// Checks, records and submits a withdrawal from `target`.
pub async fn withdraw(
    store: &Store,
    wallets: &Wallets,
    target: &WriteTarget,
    withdrawal: Withdrawal,
    now_ms: u64,
) -> Result<Withdrawn, WithdrawFailure> {
    let id = crate::clock::new_id();
    let request = |amount: U256| OpRequest {
        purpose: OpPurpose::Withdrawal {
            withdrawal_id: id.clone(),
        },
        owner: target.owner,
        salt: target.salt,
        factory: target.factory.clone(),
        wallet: target.wallet,
        calls: vec![withdraw::call(&withdrawal, amount)],
        nonce_key: nonce::withdrawal_key(&id),
    };
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
    let stream = events::stream::withdrawal(&id);
    let requested = WithdrawalRequested {
        withdrawal_id: id.clone(),
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
    store
        .log
        .append(Command::new(actor.clone(), now_ms).append(
            stream.clone(),
            Expected::NoStream,
            [Event::from(requested)],
        ))
        .await?;
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
    let outcome = wallets
        .submit(&request(amount), &mut journal)
        .await
        .map_err(|e| WithdrawFailure::Store(events::Error::Corrupt(e.to_string())))?;
    Ok(answer(outcome, amount, id))
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

/// Settles the withdrawals a previous process left with an operation and no outcome.
pub async fn resume(store: &Store, wallets: &Wallets) -> events::Result<usize> {
    let mut settled = 0;
    for stream in withdrawal_streams(store)? {
        let recorded = store.log.read_stream(&stream)?;
        let mut open: Option<(
            events::event::UserOpSubmitted,
            Option<alloy::primitives::B256>,
        )> = None;
        for envelope in &recorded {
            match &envelope.event {
                Event::UserOpSubmitted(s) => open = Some((s.clone(), None)),
                Event::UserOpSent(s) => {
                    if let Some((_, tx)) = &mut open {
                        *tx = s.tx_hash.parse().ok();
                    }
                }
                Event::UserOpLanded(_) | Event::UserOpRejected(_) => open = None,
                _ => {}
            }
        }
        let Some((submitted, sent_tx)) = open else {
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
