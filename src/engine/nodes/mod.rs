//! The node types, one module each. A node receives its config with templates rendered and the
//! run's variables, and returns its output and log, or an error.
//!
//! Side effects: a node that may change the world (a POST, a transfer) gets a durable
//! `StepStarted` before it runs, and is never run twice after a crash; reads are re-run.

mod balance;
mod branch;
mod contract_read;
mod custom_code;
mod filter;
mod graphql;
mod loop_node;
mod rest_api;

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
        "not supported yet: ETH transfers and contract writes go through ERC-4337 user operations, which this aggregator does not send yet",
    )
    .with_code(ErrorCode::SmartWalletRpcError)
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
