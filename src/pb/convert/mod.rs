//! Conversions between the wire types (prost) and the domain's, beside the generated types, one
//! file per concept with both directions side by side:
//!
//! - values, `MethodCall`s, triggers and trigger outputs: `protocol::convert` (the operator
//!   process needs them too), re-exported here with their refusals as `DomainError`s;
//! - `node`: nodes (every config, the loop's runners) and edges;
//! - `task`: the definition a `CreateTaskReq` submits, a task as the API answers it;
//! - `execution`: executions, steps and their outputs.
//!
//! Requests become domain values (`*_from_pb`, refusing what cannot be represented, such as a
//! NaN number); domain values and projections become responses (`*_to_pb`). A task definition
//! round-trips exactly: every trigger and node config, optional fields, maps and `Value`s,
//! because the official client parses `GetTask` strictly. The one normalisation: a trigger or
//! node whose oneof member carries no `config` message comes back with an empty one.

mod execution;
mod node;
mod task;

use std::collections::BTreeMap;

use events::task::{Trigger, TriggerKind};
use serde_json::Value as Json;

pub use execution::{
    execution_status, execution_to_pb, output_to_pb, ran_steps_to_pb, skipped_to_pb, step_to_pb,
    value_fee_to_pb,
};
pub use node::{edge_from_pb, edge_to_pb, node_from_pb, node_to_pb};
pub use protocol::convert::{
    WireMethodCall, method_calls_from_pb, method_calls_to_pb, report_output, trigger_to_pb,
    value_from_json, values_from_json_map,
};
pub use task::{definition_from_create, task_status, task_to_pb};

use crate::domain::DomainError;
use crate::pb;

/// `protocol::convert::json_from_value`, refusing with a `DomainError`.
pub fn json_from_value(value: &prost_types::Value) -> Result<Json, DomainError> {
    Ok(protocol::convert::json_from_value(value)?)
}

/// `protocol::convert::json_map_from_values`, refusing with a `DomainError`.
pub fn json_map_from_values(
    values: &BTreeMap<String, prost_types::Value>,
) -> Result<BTreeMap<String, Json>, DomainError> {
    Ok(protocol::convert::json_map_from_values(values)?)
}

/// `protocol::convert::trigger_from_pb`, refusing with a `DomainError`.
/// A manual trigger fails to convert only on its data: that is the original's
/// INVALID_TRIGGER_CONFIG (3001).
pub fn trigger_from_pb(trigger: &pb::TaskTrigger) -> Result<Trigger, DomainError> {
    protocol::convert::trigger_from_pb(trigger).map_err(|e| match trigger.trigger_type {
        Some(pb::task_trigger::TriggerType::Manual(_)) => {
            DomainError::Invalid(e.0, crate::domain::Code::InvalidTriggerConfig)
        }
        _ => e.into(),
    })
}

/// `protocol::convert::reported_output`, refusing with a `DomainError`.
pub fn reported_output(
    req: &pb::NotifyTriggersReq,
) -> Result<(TriggerKind, Option<Json>), DomainError> {
    Ok(protocol::convert::reported_output(req)?)
}

/// `protocol::convert::requested_firing`, refusing with a `DomainError`.
pub fn requested_firing(
    req: &pb::TriggerTaskReq,
    task_kind: Option<TriggerKind>,
) -> Result<(TriggerKind, Option<Json>), DomainError> {
    Ok(protocol::convert::requested_firing(req, task_kind)?)
}

#[cfg(test)]
mod tests;
