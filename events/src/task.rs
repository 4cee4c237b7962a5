//! A task's definition as the client submitted it: the trigger, the graph of nodes and edges, the
//! input variables and the run limits.
//!
//! These types mirror the wire contract's `TaskTrigger`, `TaskNode` and `TaskEdge` field for field,
//! because `TaskCreated` must keep the submitted definition losslessly: the official client parses
//! `GetTask` strictly and expects every oneof set as it was sent. Enum fields of the contract
//! (`TriggerType`, `NodeType`, `Lang`, `ExecutionMode`) are kept as their raw `i32` so that a value
//! this code does not name still round-trips. `google.protobuf.Value` is a `serde_json::Value`.
//!
//! Nothing here validates: validation is a domain rule of the aggregator, applied before the
//! event is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything a `CreateTask` request defines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TaskDefinition {
    pub name: String,
    pub trigger: Trigger,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// `input_variables`: a proto map, so its order carries no meaning; sorted for determinism.
    pub input_variables: BTreeMap<String, Value>,
    /// Milliseconds since the epoch; 0 = no lower bound.
    pub start_at: i64,
    /// Milliseconds since the epoch; 0 = never expires.
    pub expired_at: i64,
    /// 0 = unlimited, as the official client sends it.
    pub max_execution: i64,
}

/// `TaskTrigger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Trigger {
    pub id: String,
    pub name: String,
    /// `TriggerType` as sent (field `type`).
    pub trigger_type: i32,
    /// The `trigger_type` oneof; `None` when the client set none of its members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<TriggerConfig>,
}

/// The members of the `TaskTrigger.trigger_type` oneof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerConfig {
    Manual(ManualTriggerConfig),
    FixedTime(FixedTimeTriggerConfig),
    Cron(CronTriggerConfig),
    Block(BlockTriggerConfig),
    Event(EventTriggerConfig),
}

impl TriggerConfig {
    /// The oneof member's name in the contract.
    pub fn kind(&self) -> TriggerKind {
        match self {
            Self::Manual(_) => TriggerKind::Manual,
            Self::FixedTime(_) => TriggerKind::FixedTime,
            Self::Cron(_) => TriggerKind::Cron,
            Self::Block(_) => TriggerKind::Block,
            Self::Event(_) => TriggerKind::Event,
        }
    }
}

/// The five trigger kinds, named as the contract's `TriggerType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Manual,
    FixedTime,
    Cron,
    Block,
    Event,
}

impl TriggerKind {
    /// The contract's `TriggerType` number.
    pub fn wire_number(self) -> i32 {
        match self {
            Self::Manual => 1,
            Self::FixedTime => 2,
            Self::Cron => 3,
            Self::Block => 4,
            Self::Event => 5,
        }
    }

    /// The contract's `TriggerType` value name, the form the official client maps in a step's `type`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Manual => "TRIGGER_TYPE_MANUAL",
            Self::FixedTime => "TRIGGER_TYPE_FIXED_TIME",
            Self::Cron => "TRIGGER_TYPE_CRON",
            Self::Block => "TRIGGER_TYPE_BLOCK",
            Self::Event => "TRIGGER_TYPE_EVENT",
        }
    }

    pub fn from_wire_number(n: i32) -> Option<Self> {
        Some(match n {
            1 => Self::Manual,
            2 => Self::FixedTime,
            3 => Self::Cron,
            4 => Self::Block,
            5 => Self::Event,
            _ => return None,
        })
    }
}

/// `ManualTrigger.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ManualTriggerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    pub headers: BTreeMap<String, String>,
    pub path_params: BTreeMap<String, String>,
    /// `Lang` as sent.
    pub lang: i32,
}

/// `FixedTimeTrigger.Config`: epochs in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FixedTimeTriggerConfig {
    pub epochs: Vec<i64>,
}

/// `CronTrigger.Config`: 5-field cron expressions in UTC, or `@every <duration>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CronTriggerConfig {
    pub schedules: Vec<String>,
}

/// `BlockTrigger.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlockTriggerConfig {
    pub interval: i64,
}

/// `EventTrigger.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EventTriggerConfig {
    pub queries: Vec<EventQuery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<u32>,
}

/// `EventTrigger.Query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EventQuery {
    pub addresses: Vec<String>,
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_events_per_block: Option<u32>,
    pub contract_abi: Vec<Value>,
    pub conditions: Vec<EventCondition>,
    pub method_calls: Vec<MethodCall>,
}

/// `EventCondition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EventCondition {
    pub field_name: String,
    pub operator: String,
    pub value: String,
    pub field_type: String,
}

/// A method call of an event query, a contract read or a contract write (the contract has three
/// messages of this shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MethodCall {
    pub method_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_data: Option<String>,
    pub apply_to_fields: Vec<String>,
    pub method_params: Vec<String>,
}

/// `TaskEdge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
}

/// `TaskNode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Node {
    pub id: String,
    pub name: String,
    /// `NodeType` as sent (field `type`).
    pub node_type: i32,
    /// The `task_type` oneof; `None` when the client set none of its members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<NodeConfig>,
}

/// The members of the `TaskNode.task_type` oneof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeConfig {
    EthTransfer(EthTransferConfig),
    ContractWrite(ContractWriteConfig),
    ContractRead(ContractReadConfig),
    GraphqlQuery(GraphqlQueryConfig),
    RestApi(RestApiConfig),
    Branch(BranchConfig),
    Filter(FilterConfig),
    Loop(LoopConfig),
    CustomCode(CustomCodeConfig),
    Balance(BalanceConfig),
}

impl NodeConfig {
    pub fn kind(&self) -> NodeKind {
        match self {
            Self::EthTransfer(_) => NodeKind::EthTransfer,
            Self::ContractWrite(_) => NodeKind::ContractWrite,
            Self::ContractRead(_) => NodeKind::ContractRead,
            Self::GraphqlQuery(_) => NodeKind::GraphqlQuery,
            Self::RestApi(_) => NodeKind::RestApi,
            Self::Branch(_) => NodeKind::Branch,
            Self::Filter(_) => NodeKind::Filter,
            Self::Loop(_) => NodeKind::Loop,
            Self::CustomCode(_) => NodeKind::CustomCode,
            Self::Balance(_) => NodeKind::Balance,
        }
    }
}

/// The ten node kinds, named as the contract's `NodeType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    EthTransfer,
    ContractWrite,
    ContractRead,
    GraphqlQuery,
    RestApi,
    CustomCode,
    Branch,
    Filter,
    Loop,
    Balance,
}

impl NodeKind {
    /// The contract's `NodeType` number.
    pub fn wire_number(self) -> i32 {
        match self {
            Self::EthTransfer => 1,
            Self::ContractWrite => 2,
            Self::ContractRead => 3,
            Self::GraphqlQuery => 4,
            Self::RestApi => 5,
            Self::CustomCode => 6,
            Self::Branch => 7,
            Self::Filter => 8,
            Self::Loop => 9,
            Self::Balance => 10,
        }
    }

    /// The contract's `NodeType` value name, the form the official client maps in a step's `type`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::EthTransfer => "NODE_TYPE_ETH_TRANSFER",
            Self::ContractWrite => "NODE_TYPE_CONTRACT_WRITE",
            Self::ContractRead => "NODE_TYPE_CONTRACT_READ",
            Self::GraphqlQuery => "NODE_TYPE_GRAPHQL_QUERY",
            Self::RestApi => "NODE_TYPE_REST_API",
            Self::CustomCode => "NODE_TYPE_CUSTOM_CODE",
            Self::Branch => "NODE_TYPE_BRANCH",
            Self::Filter => "NODE_TYPE_FILTER",
            Self::Loop => "NODE_TYPE_LOOP",
            Self::Balance => "NODE_TYPE_BALANCE",
        }
    }

    pub fn from_wire_number(n: i32) -> Option<Self> {
        Some(match n {
            1 => Self::EthTransfer,
            2 => Self::ContractWrite,
            3 => Self::ContractRead,
            4 => Self::GraphqlQuery,
            5 => Self::RestApi,
            6 => Self::CustomCode,
            7 => Self::Branch,
            8 => Self::Filter,
            9 => Self::Loop,
            10 => Self::Balance,
            _ => return None,
        })
    }
}

/// `ETHTransferNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EthTransferConfig {
    pub destination: String,
    pub amount: String,
}

/// `ContractWriteNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContractWriteConfig {
    pub contract_address: String,
    pub call_data: String,
    pub contract_abi: Vec<Value>,
    pub method_calls: Vec<MethodCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_simulated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gas_limit: Option<String>,
}

/// `ContractReadNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContractReadConfig {
    pub contract_address: String,
    pub contract_abi: Vec<Value>,
    pub method_calls: Vec<MethodCall>,
}

/// `GraphQLQueryNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GraphqlQueryConfig {
    pub url: String,
    pub query: String,
    pub variables: BTreeMap<String, String>,
}

/// `RestAPINode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RestApiConfig {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

/// `CustomCodeNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CustomCodeConfig {
    /// `Lang` as sent.
    pub lang: i32,
    pub source: String,
}

/// `BalanceNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BalanceConfig {
    pub address: String,
    pub chain: String,
    pub include_spam: bool,
    pub include_zero_balances: bool,
    pub min_usd_value_cents: i64,
    pub token_addresses: Vec<String>,
}

/// `BranchNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BranchConfig {
    pub conditions: Vec<BranchCondition>,
}

/// `BranchNode.Condition`: `type` is `if` or `else`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BranchCondition {
    pub id: String,
    pub condition_type: String,
    pub expression: String,
}

/// `FilterNode.Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FilterConfig {
    pub expression: String,
    pub input_variable: String,
}

/// `LoopNode`: its config and the node it runs per element (the `runner` oneof).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LoopConfig {
    pub input_variable: String,
    pub iter_val: String,
    pub iter_key: String,
    /// `ExecutionMode` as sent: 0 sequential, 1 parallel.
    pub execution_mode: i32,
    /// Per-iteration timeout in milliseconds as sent; 0 = the engine's default.
    pub iteration_timeout: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<LoopRunner>,
}

/// The members of the `LoopNode.runner` oneof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopRunner {
    EthTransfer(EthTransferConfig),
    ContractWrite(ContractWriteConfig),
    ContractRead(ContractReadConfig),
    GraphqlDataQuery(GraphqlQueryConfig),
    RestApi(RestApiConfig),
    CustomCode(CustomCodeConfig),
}
