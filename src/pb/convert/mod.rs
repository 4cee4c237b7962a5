//! Conversions between the wire types (prost) and the domain's, beside the generated types, one
//! file per concept with both directions side by side:
//!
//! - `value`: `google.protobuf.Value` ⇄ JSON;
//! - `method_call`: the three prost `MethodCall`s ⇄ `MethodCall`, one mapping;
//! - `trigger`: triggers, and the trigger outputs of reports and `TriggerTask`;
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
mod method_call;
mod node;
mod task;
mod trigger;
mod value;

pub use execution::{
    execution_status, execution_to_pb, output_to_pb, ran_steps_to_pb, skipped_to_pb, step_to_pb,
};
pub use method_call::{WireMethodCall, method_calls_from_pb, method_calls_to_pb};
pub use node::{edge_from_pb, edge_to_pb, node_from_pb, node_to_pb};
pub use task::{definition_from_create, task_status, task_to_pb};
pub use trigger::{
    report_output, reported_output, requested_firing, trigger_from_pb, trigger_to_pb,
};
pub use value::{json_from_value, json_map_from_values, value_from_json, values_from_json_map};

#[cfg(test)]
mod tests;
