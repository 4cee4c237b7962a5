//! What the write nodes share (`eth_transfer`, `contract_write`, and loops whose runner is one
//! of them): the task's smart wallet, the journal of its user operations (the execution's own
//! stream), and what earlier attempts of the step left there.
//!
//! A step sends its operations one after the other, numbered 0, 1, ... (`OpPurpose::Step`'s
//! `iteration`), all on the step's nonce key (`wallet::nonce::step_key(execution, node)`), so
//! they land in nonce order. After a crash the step runs again, and each numbered operation
//! is settled from what the journal holds: landed → its receipt, without touching the chain;
//! submitted without an outcome → `Wallets::recover` (the identical operation or nothing);
//! refused → the step fails with that refusal (nothing new is built for it); never submitted →
//! sent now.
//!
//! `WriteRun` is what a write node produces besides its output: the step's metadata and gas.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use serde_json::{Value, json};

use events::Event;
use events::event::UserOpSubmitted;
use events::user_op::{OpPurpose, OpReceipt};

use super::{NodeError, NodeRun};
use crate::pb::ErrorCode;
use crate::wallet::WalletFactory;
use crate::wallet::nonce;
use crate::wallet::submit::{Journal, NotSent, NotSentKind, OpRequest, Outcome, Wallets};
use crate::wallet::user_op::Call;

/// The wallet a task writes from.
#[derive(Debug, Clone)]
pub struct WriteTarget {
    pub owner: Address,
    pub wallet: Address,
    pub salt: U256,
    /// The factory it was derived under (as registered).
    pub factory: WalletFactory,
}

/// How a run treats its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A task's run: writes go on chain unless a node says `is_simulated`.
    Run,
    /// `RunNodeWithInputs`: simulated unless the node says `is_simulated: false` (as the
    /// original's default).
    Preview,
    /// `SimulateTask`: everything simulated.
    Simulation,
}

impl WriteMode {
    pub fn simulates(self, node_says: Option<bool>) -> bool {
        match self {
            Self::Run => node_says.unwrap_or(false),
            Self::Preview => node_says.unwrap_or(true),
            Self::Simulation => true,
        }
    }
}

/// What the engine holds for writes: the wallets' side and the configured default factory.
#[derive(Clone)]
pub struct Writes {
    pub wallets: Arc<Wallets>,
    pub default_factory: WalletFactory,
}

impl Writes {
    /// The factory a wallet was registered under: the configured one, the canonical stock
    /// one, or else a `ControlledAccountFactory` (whose controller the wallets' check asks the
    /// chain for, so a stock factory elsewhere is refused with the right words).
    pub fn factory(&self, address: Address) -> WalletFactory {
        if address == self.default_factory.factory {
            return self.default_factory.clone();
        }
        let entry_point = self.default_factory.entry_point;
        if address == crate::wallet::CANONICAL_FACTORY_V06 {
            return WalletFactory::canonical_v06();
        }
        WalletFactory::controlled(address, entry_point)
            .unwrap_or_else(|_| WalletFactory::v06_at(address, entry_point))
    }
}

/// What the write nodes of a run need.
#[derive(Clone)]
pub struct WriteEnv {
    pub wallets: Arc<Wallets>,
    pub target: WriteTarget,
    pub mode: WriteMode,
}

/// The outcome of one numbered operation in an earlier attempt of the step.
#[derive(Debug, Clone)]
enum Prior {
    /// Submitted; `None`: no outcome journaled.
    Submitted {
        submitted: Box<UserOpSubmitted>,
        sent_tx: Option<B256>,
        pending: bool,
    },
    Landed(OpReceipt, B256),
    /// Refused, with nothing submitted after: the previous process concluded it was not sent.
    Refused {
        code: String,
        reason: String,
    },
}

/// What earlier attempts of one step journaled, by operation number.
#[derive(Debug, Clone, Default)]
pub struct PriorOps {
    ops: BTreeMap<u32, Prior>,
}

/// Folds a run's user-operation events into each step's [`PriorOps`].
#[derive(Debug, Default)]
pub struct PriorFold {
    steps: HashMap<String, PriorOps>,
    of_hash: HashMap<String, (String, u32)>,
}

impl PriorFold {
    pub fn apply(&mut self, event: &Event) {
        let hash_of = |h: &str| self.of_hash.get(h).cloned();
        match event {
            Event::UserOpSubmitted(s) => {
                let OpPurpose::Step { step_id, iteration } = &s.purpose else {
                    return;
                };
                let index = iteration.unwrap_or(0);
                self.of_hash
                    .insert(s.user_op_hash.clone(), (step_id.clone(), index));
                self.steps.entry(step_id.clone()).or_default().ops.insert(
                    index,
                    Prior::Submitted {
                        submitted: Box::new(s.clone()),
                        sent_tx: None,
                        pending: false,
                    },
                );
            }
            Event::UserOpSent(sent) => {
                if let Some((step, index)) = hash_of(&sent.user_op_hash)
                    && let Some(Prior::Submitted { sent_tx, .. }) = self.slot(&step, index)
                {
                    *sent_tx = sent.tx_hash.parse().ok();
                }
            }
            Event::UserOpPending(p) => {
                if let Some((step, index)) = hash_of(&p.user_op_hash)
                    && let Some(Prior::Submitted { pending, .. }) = self.slot(&step, index)
                {
                    *pending = true;
                }
            }
            Event::UserOpRejected(r) => {
                if let Some((step, index)) = hash_of(&r.user_op_hash)
                    && let Some(slot) = self.slot(&step, index)
                {
                    *slot = Prior::Refused {
                        code: r.code.clone(),
                        reason: r.reason.clone(),
                    };
                }
            }
            Event::UserOpLanded(l) => {
                if let Some((step, index)) = hash_of(&l.user_op_hash)
                    && let Some(slot) = self.slot(&step, index)
                {
                    let hash = l.user_op_hash.parse().unwrap_or_default();
                    *slot = Prior::Landed(l.receipt.clone(), hash);
                }
            }
            _ => {}
        }
    }

    fn slot(&mut self, step: &str, index: u32) -> Option<&mut Prior> {
        self.steps.get_mut(step)?.ops.get_mut(&index)
    }

    pub fn into_steps(self) -> HashMap<String, PriorOps> {
        self.steps
    }
}

/// One step's writes: sends numbered operations through the journal.
pub struct WriteCtx<'a, J> {
    pub env: &'a WriteEnv,
    pub execution_id: &'a str,
    pub step_id: &'a str,
    pub journal: &'a mut J,
    pub prior: PriorOps,
    next: u32,
    /// Gas of the operations that landed.
    pub gas: Gas,
}

/// Gas of a step's operations: `used` and `cost` summed, `price` the last one's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gas {
    pub used: U256,
    pub price: U256,
    pub cost: U256,
}

/// A write node's result besides the output.
#[derive(Debug, Clone, Default)]
pub struct WriteRun {
    pub run: NodeRun,
    pub metadata: Option<Value>,
    pub gas: Option<Gas>,
}

/// How one operation of a step ended, for the node's output.
#[derive(Debug, Clone)]
pub enum Sent {
    Landed {
        receipt: OpReceipt,
        user_op_hash: B256,
    },
    Pending {
        user_op_hash: B256,
    },
    NotSent(NotSent),
}

impl<'a, J: Journal> WriteCtx<'a, J> {
    pub fn new(
        env: &'a WriteEnv,
        execution_id: &'a str,
        step_id: &'a str,
        journal: &'a mut J,
        prior: PriorOps,
    ) -> Self {
        Self {
            env,
            execution_id,
            step_id,
            journal,
            prior,
            next: 0,
            gas: Gas::default(),
        }
    }

    pub fn wallet(&self) -> Address {
        self.env.target.wallet
    }

    /// Sends (or settles, after a crash) the step's next operation.
    pub async fn send(&mut self, calls: Vec<Call>) -> Result<Sent, NodeError> {
        let index = self.next;
        self.next += 1;
        let storage = |e: crate::wallet::submit::JournalError| {
            NodeError::new(e.to_string()).with_code(ErrorCode::StorageWriteError)
        };
        let outcome = match self.prior.ops.remove(&index) {
            Some(Prior::Landed(receipt, user_op_hash)) => Outcome::Landed {
                user_op_hash,
                receipt,
            },
            Some(Prior::Submitted {
                submitted, sent_tx, ..
            }) => self
                .env
                .wallets
                .recover(&submitted, sent_tx, self.journal)
                .await
                .map_err(storage)?,
            // Not rebuilt after a restart: the step fails with what the refusal said.
            Some(Prior::Refused { code, reason }) => Outcome::NotSent(NotSent {
                code: (!code.is_empty()).then_some(code),
                reason: format!("{reason} (refused before the aggregator restarted)"),
                why: NotSentKind::Refused,
            }),
            None => {
                let target = &self.env.target;
                let request = OpRequest {
                    purpose: OpPurpose::Step {
                        step_id: self.step_id.to_owned(),
                        iteration: Some(index),
                    },
                    owner: target.owner,
                    salt: target.salt,
                    factory: target.factory.clone(),
                    wallet: target.wallet,
                    calls,
                    nonce_key: nonce::step_key(self.execution_id, self.step_id),
                };
                self.env
                    .wallets
                    .submit(&request, self.journal)
                    .await
                    .map_err(storage)?
            }
        };
        Ok(match outcome {
            Outcome::Landed {
                user_op_hash,
                receipt,
            } => {
                let used: U256 = receipt.actual_gas_used.parse().unwrap_or_default();
                let cost: U256 = receipt.actual_gas_cost.parse().unwrap_or_default();
                self.gas.used += used;
                self.gas.cost += cost;
                self.gas.price = receipt.gas_price.parse().unwrap_or_default();
                Sent::Landed {
                    receipt,
                    user_op_hash,
                }
            }
            Outcome::Pending { user_op_hash } => Sent::Pending { user_op_hash },
            Outcome::NotSent(not_sent) => Sent::NotSent(not_sent),
        })
    }
}

/// An Ethereum-style receipt of a landed operation, as the original's write outputs carry it.
pub fn receipt_json(receipt: &OpReceipt, user_op_hash: B256, from: Address, to: Address) -> Value {
    let hex = |decimal: &str| {
        decimal
            .parse::<U256>()
            .map(|n| format!("{n:#x}"))
            .unwrap_or_default()
    };
    json!({
        "transactionHash": receipt.tx_hash,
        "blockNumber": format!("{:#x}", receipt.block_number),
        "from": from.to_checksum(None),
        "to": to.to_checksum(None),
        "gasUsed": hex(&receipt.actual_gas_used),
        "effectiveGasPrice": hex(&receipt.gas_price),
        "status": if receipt.success { "0x1" } else { "0x0" },
        "userOpHash": format!("{user_op_hash:#x}"),
        "type": "0x2",
        "logs": [],
    })
}

/// The error code of an operation that did not go out.
pub fn not_sent_code(not_sent: &NotSent) -> ErrorCode {
    match not_sent.why {
        NotSentKind::NotControlled => ErrorCode::SmartWalletRpcError,
        NotSentKind::Reverted => ErrorCode::SimulationError,
        NotSentKind::Chain => ErrorCode::RpcNodeError,
        NotSentKind::Refused => match not_sent.code.as_deref() {
            Some("AA21") => ErrorCode::InsufficientBalance,
            Some("AA10" | "AA13" | "AA14" | "AA15") => ErrorCode::SmartWalletDeploymentError,
            _ => ErrorCode::SmartWalletRpcError,
        },
    }
}

/// The step's gas fields and metadata from the operations' gas.
pub fn gas_fields(gas: Gas) -> Option<Gas> {
    (!gas.used.is_zero()).then_some(gas)
}

/// The wallet's nonce key of a step, shown in its metadata.
pub fn nonce_key(execution_id: &str, step_id: &str) -> String {
    format!("{:#x}", nonce::step_key(execution_id, step_id))
}
