//! The wire ⇄ domain conversions both sides need, one file per concept with both directions side
//! by side:
//!
//! - `value`: `google.protobuf.Value` ⇄ JSON, and the map helpers the others share;
//! - `method_call`: the three prost `MethodCall`s ⇄ `MethodCall`, one mapping;
//! - `trigger`: triggers, and the trigger outputs of operators' reports and of `TriggerTask`.
//!
//! The aggregator's own conversions (nodes, tasks, executions) sit beside its re-export of the
//! wire types (`aggregator::pb::convert`).

mod method_call;
mod trigger;
mod value;

pub use method_call::{WireMethodCall, method_calls_from_pb, method_calls_to_pb};
pub use trigger::{
    report_output, reported_output, requested_firing, trigger_from_pb, trigger_to_pb,
};
pub use value::{
    json_from_value, json_list, json_map_from_values, opt_json, sorted, unsorted, value_from_json,
    values_from_json_map,
};

/// A wire value the domain cannot hold (a NaN number, a report without an output); the message
/// says what, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);
