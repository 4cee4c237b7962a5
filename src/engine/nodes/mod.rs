//! The node types, one module each. A node receives its config with templates rendered and the
//! run's variables, and returns its output and log, or an error.
//!
//! Side effects: a node that may change the world (a POST, a transfer) gets a durable
//! `StepStarted` before it runs, and is never run twice after a crash; reads are re-run.
//!
//! The write nodes (`eth_transfer`, `contract_write`, loops whose runner is one of them) go
//! through `run_write` instead: they act from the task's smart wallet with user operations
//! journaled in the run's stream (`write`), and after a crash they settle what they sent
//! instead of failing as interrupted.

mod balance;
mod branch;
mod contract_read;
mod contract_write;
mod custom_code;
mod eth_transfer;
mod filter;
mod graphql;
mod loop_node;
mod rest_api;
pub mod write;

use serde_json::{Map, Value};

use events::execution::OutputKind;
use events::task::{LoopRunner, NodeConfig, NodeKind};

use super::Tools;
use crate::pb::ErrorCode;

/// What a node produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRun {
    pub output: Value,
    pub log: Vec<String>,
    /// What the step's `metadata` shows (a contract read's per-call results).
    pub metadata: Option<Value>,
    /// The condition a branch took.
    pub taken: Option<String>,
}

/// Why a node failed; `output` keeps what it produced before failing (an HTTP error's body).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub message: String,
    pub code: ErrorCode,
    pub output: Option<Value>,
    pub metadata: Option<Value>,
    pub log: Vec<String>,
}

impl NodeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: ErrorCode::ExecutionEngineError,
            output: None,
            metadata: None,
            log: Vec::new(),
        }
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }
}

impl From<super::sandbox::SandboxError> for NodeError {
    fn from(e: super::sandbox::SandboxError) -> Self {
        Self::new(e.to_string())
    }
}

pub type NodeResult = Result<NodeRun, NodeError>;

/// Runs one node.
pub async fn run(tools: &Tools, config: &NodeConfig, vars: &Map<String, Value>) -> NodeResult {
    match config {
        NodeConfig::CustomCode(c) => custom_code::run(tools, c, vars).await,
        NodeConfig::Branch(c) => branch::run(tools, c, vars).await,
        NodeConfig::Filter(c) => filter::run(tools, c, vars).await,
        NodeConfig::Loop(c) => loop_node::run(tools, c, vars).await,
        NodeConfig::RestApi(c) => rest_api::run(tools, c).await,
        NodeConfig::GraphqlQuery(c) => graphql::run(tools, c).await,
        NodeConfig::ContractRead(c) => contract_read::run(tools, c).await,
        NodeConfig::Balance(c) => balance::run(tools, c).await,
        NodeConfig::EthTransfer(_) | NodeConfig::ContractWrite(_) => Err(unsupported()),
    }
}

/// Runs a loop's runner for one element.
pub async fn run_runner(
    tools: &Tools,
    runner: &LoopRunner,
    vars: &Map<String, Value>,
) -> NodeResult {
    match runner {
        LoopRunner::CustomCode(c) => custom_code::run(tools, c, vars).await,
        LoopRunner::RestApi(c) => rest_api::run(tools, c).await,
        LoopRunner::GraphqlDataQuery(c) => graphql::run(tools, c).await,
        LoopRunner::ContractRead(c) => contract_read::run(tools, c).await,
        LoopRunner::EthTransfer(_) | LoopRunner::ContractWrite(_) => Err(unsupported()),
    }
}

fn unsupported() -> NodeError {
    NodeError::new(
        "ETH transfers and contract writes are user operations from the task's smart wallet: the aggregator needs ethereum.rpc_url for them",
    )
    .with_code(ErrorCode::SmartWalletRpcError)
}

/// The destination and amount of an ETH transfer, checked.
pub fn eth_transfer_parts(
    config: &events::task::EthTransferConfig,
) -> Result<(alloy::primitives::Address, alloy::primitives::U256), NodeError> {
    eth_transfer::parse(config)
}

/// The calls a contract write makes (the first method that cannot be planned is the error).
pub fn contract_write_calls(
    config: &events::task::ContractWriteConfig,
) -> Result<Vec<crate::wallet::user_op::Call>, NodeError> {
    contract_write::calls(config)
}

/// Whether the node acts on chain from the task's wallet (and goes through [`run_write`]).
pub fn is_write(config: &NodeConfig) -> bool {
    match config {
        NodeConfig::EthTransfer(_) | NodeConfig::ContractWrite(_) => true,
        NodeConfig::Loop(c) => matches!(
            c.runner,
            Some(LoopRunner::EthTransfer(_) | LoopRunner::ContractWrite(_))
        ),
        _ => false,
    }
}

/// Whether a write node only simulates in this run.
pub fn simulated(config: &NodeConfig, env: &write::WriteEnv) -> bool {
    let own = match config {
        NodeConfig::ContractWrite(c) => c.is_simulated,
        NodeConfig::Loop(c) => match &c.runner {
            Some(LoopRunner::ContractWrite(w)) => w.is_simulated,
            _ => None,
        },
        _ => None,
    };
    env.mode.simulates(own)
}

/// Runs a write node: simulated (`ctx` `None`) or as user operations journaled through `ctx`.
/// Loops of writes run sequentially, in nonce order, whatever their execution mode says (as the
/// original).
pub async fn run_write<J: crate::wallet::submit::Journal>(
    tools: &Tools,
    env: &write::WriteEnv,
    config: &NodeConfig,
    vars: &Map<String, Value>,
    mut ctx: Option<&mut write::WriteCtx<'_, J>>,
) -> Result<write::WriteRun, NodeError> {
    let wallet = env.target.wallet;
    match config {
        NodeConfig::EthTransfer(c) => match ctx {
            Some(ctx) => eth_transfer::send(ctx, c).await,
            None => eth_transfer::simulate(wallet, c),
        },
        NodeConfig::ContractWrite(c) => contract_write::run(env, ctx, c).await,
        NodeConfig::Loop(c) => {
            let Some(runner) = &c.runner else {
                return Err(NodeError::new("the loop has no runner node"));
            };
            let items = loop_node::input_array(tools, &c.input_variable, vars).await?;
            let limit = tools.config.max_loop_iterations;
            if items.len() > limit {
                return Err(NodeError::new(format!(
                    "the loop's input has {} elements, more than the limit of {limit}",
                    items.len()
                )));
            }
            let mut outputs = Vec::with_capacity(items.len());
            let mut log = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let mut vars = vars.clone();
                vars.insert(c.iter_val.clone(), item);
                if !c.iter_key.is_empty() {
                    vars.insert(c.iter_key.clone(), Value::from(index));
                }
                let templates = super::template::Templates {
                    vars: &vars,
                    sandbox: &tools.sandbox,
                };
                let rendered = templates
                    .runner(runner)
                    .await
                    .map_err(|e| NodeError::new(format!("iteration {index}: {e}")))?;
                let result = match (&rendered, ctx.as_deref_mut()) {
                    (LoopRunner::EthTransfer(t), Some(ctx)) => eth_transfer::send(ctx, t).await,
                    (LoopRunner::EthTransfer(t), None) => eth_transfer::simulate(wallet, t),
                    (LoopRunner::ContractWrite(w), ctx) => contract_write::run(env, ctx, w).await,
                    _ => Err(NodeError::new("the loop's runner is not a write")),
                };
                match result {
                    Ok(run) => {
                        log.extend(run.run.log);
                        outputs.push(run.run.output);
                    }
                    Err(mut e) => {
                        e.message = format!("iteration {index}: {}", e.message);
                        if let Some(output) = e.output.take() {
                            outputs.push(output);
                        }
                        e.output = Some(Value::Array(outputs));
                        return Err(e);
                    }
                }
            }
            log.push(format!(
                "{} iterations, in sequence (writes go in nonce order)",
                outputs.len()
            ));
            Ok(write::WriteRun {
                run: NodeRun {
                    metadata: None,
                    output: Value::Array(outputs),
                    log,
                    taken: None,
                },
                metadata: None,
                gas: ctx.and_then(|c| write::gas_fields(c.gas)),
            })
        }
        _ => Err(NodeError::new("not a write node")),
    }
}

/// Whether running the node twice can do no harm: such a node needs no `StepStarted` and is
/// re-run after a crash.
pub fn side_effect_free(config: &NodeConfig) -> bool {
    match config {
        NodeConfig::CustomCode(_)
        | NodeConfig::Branch(_)
        | NodeConfig::Filter(_)
        | NodeConfig::ContractRead(_)
        | NodeConfig::Balance(_) => true,
        NodeConfig::RestApi(c) => rest_api::is_read(&c.method),
        NodeConfig::GraphqlQuery(c) => graphql::is_read(&c.query),
        NodeConfig::Loop(c) => match &c.runner {
            Some(LoopRunner::CustomCode(_) | LoopRunner::ContractRead(_)) | None => true,
            Some(LoopRunner::RestApi(r)) => rest_api::is_read(&r.method),
            Some(LoopRunner::GraphqlDataQuery(r)) => graphql::is_read(&r.query),
            Some(LoopRunner::EthTransfer(_) | LoopRunner::ContractWrite(_)) => false,
        },
        NodeConfig::EthTransfer(_) | NodeConfig::ContractWrite(_) => false,
    }
}

/// The member of a step's `output_data` oneof for a node kind.
pub fn output_kind(kind: NodeKind) -> OutputKind {
    match kind {
        NodeKind::EthTransfer => OutputKind::EthTransfer,
        NodeKind::ContractWrite => OutputKind::ContractWrite,
        NodeKind::ContractRead => OutputKind::ContractRead,
        NodeKind::GraphqlQuery => OutputKind::Graphql,
        NodeKind::RestApi => OutputKind::RestApi,
        NodeKind::CustomCode => OutputKind::CustomCode,
        NodeKind::Branch => OutputKind::Branch,
        NodeKind::Filter => OutputKind::Filter,
        NodeKind::Loop => OutputKind::Loop,
        NodeKind::Balance => OutputKind::Balance,
    }
}

/// The chain, or the error a chain node reports without one.
fn chain(tools: &Tools) -> Result<&crate::chain::Chain, NodeError> {
    tools.chain.as_ref().ok_or_else(|| {
        NodeError::new(
            "this node reads the chain: the aggregator has no ethereum.rpc_url configured",
        )
        .with_code(ErrorCode::RpcNodeError)
    })
}

pub use crate::domain::trigger_output::format_units;
