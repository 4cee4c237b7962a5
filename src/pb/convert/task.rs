//! Tasks: the definition a `CreateTaskReq` submits, and a task as `GetTask` / `ListTasks`
//! answer it.

use events::task::TaskDefinition;
use projections::tasks::{Status, TaskRow};

use super::node::{edge_from_pb, edge_to_pb, node_from_pb, node_to_pb};
use super::{json_map_from_values, values_from_json_map};
use super::{trigger_from_pb, trigger_to_pb};
use crate::address::checksum;
use crate::domain::{Code, DomainError};
use crate::pb;

/// The definition a `CreateTaskReq` submits (the name is resolved by the domain).
pub fn definition_from_create(req: &pb::CreateTaskReq) -> Result<TaskDefinition, DomainError> {
    let trigger = req.trigger.as_ref().ok_or_else(|| {
        DomainError::Invalid("the task has no trigger".into(), Code::MissingRequiredField)
    })?;
    Ok(TaskDefinition {
        name: req.name.clone(),
        trigger: trigger_from_pb(trigger)?,
        nodes: req
            .nodes
            .iter()
            .map(node_from_pb)
            .collect::<Result<_, _>>()?,
        edges: req.edges.iter().map(edge_from_pb).collect(),
        input_variables: json_map_from_values(&req.input_variables)?,
        start_at: req.start_at,
        expired_at: req.expired_at,
        max_execution: req.max_execution,
    })
}

/// The wire status: a cancelled task is `Disabled` (5) with `cancelled_at` set (the official
/// client rejects any value outside 0, 1, 2, 4, 5); a running one is `Running` (4).
pub fn task_status(row: &TaskRow) -> pb::TaskStatus {
    if row.running > 0 {
        return pb::TaskStatus::Running;
    }
    match row.status {
        Status::Active => pb::TaskStatus::Enabled,
        Status::Disabled | Status::Cancelled => pb::TaskStatus::Disabled,
        Status::Completed => pb::TaskStatus::Completed,
        Status::Failed => pb::TaskStatus::Failed,
    }
}

/// A task from its row and definition; nodes and edges only when asked for (`ListTasks`).
pub fn task_to_pb(
    row: &TaskRow,
    definition: &TaskDefinition,
    nodes: bool,
    edges: bool,
) -> pb::Task {
    pb::Task {
        id: row.id.clone(),
        owner: checksum(&row.owner),
        smart_wallet_address: checksum(&row.wallet),
        start_at: row.start_at,
        expired_at: row.expired_at,
        name: row.name.clone(),
        completed_at: row.completed_at,
        max_execution: row.max_execution,
        execution_count: row.execution_count,
        last_ran_at: row.last_ran_at,
        status: task_status(row) as i32,
        trigger: Some(trigger_to_pb(&definition.trigger)),
        nodes: if nodes {
            definition.nodes.iter().map(node_to_pb).collect()
        } else {
            Vec::new()
        },
        edges: if edges {
            definition.edges.iter().map(edge_to_pb).collect()
        } else {
            Vec::new()
        },
        input_variables: values_from_json_map(&definition.input_variables),
        cancelled_at: row.cancelled_at,
    }
}
