//! What an execution records: the firing that started it and each step it ran or skipped.
//!
//! A step mirrors the contract's `Execution.Step`; its output is the member of the `output_data`
//! oneof (`kind`) with the `data` value every output message of the contract carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::task::TriggerKind;

/// Who fired a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum FiringSource {
    /// A client's `TriggerTask`.
    Client,
    /// A quorum of operators; `attestation` is the ULID of the `TriggerAttested` event.
    Operators { attestation: String },
}

/// One firing of a task's trigger: what the trigger step of the execution shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The durable dedup key: `<task>:<ms>` (time), `<task>:<block>` (block),
    /// `<task>:<tx hash>:<log index>` (event); client firings live in a namespace of their own.
    pub dedup_key: String,
    pub source: FiringSource,
    pub kind: TriggerKind,
    /// The trigger output's `data`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::null_kept::option"
    )]
    pub output: Option<Value>,
    /// `TriggerTaskReq.trigger_input`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub input: BTreeMap<String, Value>,
}

/// How an execution ended, as the contract's `ExecutionStatus` names it, with the original's
/// rule: `Success` when every step succeeded, `PartialSuccess` when some failed (the trigger
/// step always succeeds) or a branch left nodes untaken, `Failed` when the execution itself could
/// not run its graph. The newer original's `ERROR` (5) is never produced: the official client
/// does not know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionOutcome {
    Success,
    Failed,
    PartialSuccess,
}

/// The member of the step's `output_data` oneof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    BlockTrigger,
    FixedTimeTrigger,
    CronTrigger,
    EventTrigger,
    ManualTrigger,
    EthTransfer,
    Graphql,
    ContractRead,
    ContractWrite,
    CustomCode,
    RestApi,
    Branch,
    Filter,
    Loop,
    Balance,
}

impl OutputKind {
    pub fn for_trigger(kind: TriggerKind) -> Self {
        match kind {
            TriggerKind::Manual => Self::ManualTrigger,
            TriggerKind::FixedTime => Self::FixedTimeTrigger,
            TriggerKind::Cron => Self::CronTrigger,
            TriggerKind::Block => Self::BlockTrigger,
            TriggerKind::Event => Self::EventTrigger,
        }
    }
}

/// A step's output: which oneof member, and its `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    pub kind: OutputKind,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::null_kept::option"
    )]
    pub data: Option<Value>,
}

/// `Execution.Step`, plus `skipped` (our addition): a node a branch did not take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Step {
    /// The node id, or the trigger id for step 0.
    pub id: String,
    /// The contract's enum value name: `TRIGGER_TYPE_MANUAL`, `NODE_TYPE_REST_API`, ...
    pub step_type: String,
    pub name: String,
    pub success: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The contract's `ErrorCode`, 0 when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub error_code: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_context: Option<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gas_used: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gas_price: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub total_gas_cost: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<StepOutput>,
    pub start_at: i64,
    pub end_at: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub skipped: bool,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}
