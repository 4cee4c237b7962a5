//! Executions: a run's row as `GetExecution` / `ListExecutions` answer it, its steps and their
//! outputs.

use events::execution::{OutputKind, Step, StepOutput};
use projections::executions::{ExecutionRow, RunStatus};

use crate::pb;
use protocol::convert::value_from_json;

pub fn execution_status(status: RunStatus) -> pb::ExecutionStatus {
    match status {
        RunStatus::Pending | RunStatus::Running => pb::ExecutionStatus::Pending,
        RunStatus::Success => pb::ExecutionStatus::Success,
        RunStatus::Failed => pb::ExecutionStatus::Failed,
        RunStatus::PartialSuccess => pb::ExecutionStatus::PartialSuccess,
    }
}

pub fn execution_to_pb(row: &ExecutionRow) -> pb::Execution {
    pb::Execution {
        id: row.id.clone(),
        start_at: if row.start_at == 0 {
            row.queued_at
        } else {
            row.start_at
        },
        end_at: row.end_at,
        status: execution_status(row.status) as i32,
        error: row.error.clone(),
        index: row.index,
        execution_fee: None,
        cogs: cogs(&row.steps),
        value_fee: None,
        steps: ran_steps_to_pb(&row.steps),
        skipped: skipped_to_pb(&row.steps),
    }
}

/// What the run's on-chain steps cost, one entry per step that paid gas (the original's
/// `buildCOGSFromSteps`): wei, with the gas units.
pub fn cogs(steps: &[Step]) -> Vec<pb::NodeCogs> {
    steps
        .iter()
        .filter(|s| !s.total_gas_cost.is_empty() && s.total_gas_cost != "0")
        .map(|s| pb::NodeCogs {
            node_id: s.id.clone(),
            cost_type: "gas".into(),
            fee: Some(pb::Fee {
                amount: s.total_gas_cost.clone(),
                unit: "WEI".into(),
            }),
            gas_units: s.gas_used.clone(),
        })
        .collect()
}

/// The steps of the nodes that ran, as the original lists them (a skipped node is no step).
pub fn ran_steps_to_pb(steps: &[Step]) -> Vec<pb::execution::Step> {
    steps
        .iter()
        .filter(|s| !s.skipped)
        .map(step_to_pb)
        .collect()
}

/// The nodes that did not run, and why (our addition to `Execution`).
pub fn skipped_to_pb(steps: &[Step]) -> Vec<pb::execution::SkippedNode> {
    steps
        .iter()
        .filter(|s| s.skipped)
        .map(|s| pb::execution::SkippedNode {
            node_id: s.id.clone(),
            name: s.name.clone(),
            reason: s.log.clone(),
        })
        .collect()
}

pub fn output_to_pb(output: &StepOutput) -> pb::execution::step::OutputData {
    use pb::execution::step::OutputData as O;
    let data = output.data.as_ref().map(value_from_json);
    match output.kind {
        OutputKind::BlockTrigger => O::BlockTrigger(pb::block_trigger::Output { data }),
        OutputKind::FixedTimeTrigger => {
            O::FixedTimeTrigger(pb::fixed_time_trigger::Output { data })
        }
        OutputKind::CronTrigger => O::CronTrigger(pb::cron_trigger::Output { data }),
        OutputKind::EventTrigger => O::EventTrigger(pb::event_trigger::Output { data }),
        OutputKind::ManualTrigger => O::ManualTrigger(pb::manual_trigger::Output { data }),
        OutputKind::EthTransfer => O::EthTransfer(pb::eth_transfer_node::Output { data }),
        OutputKind::Graphql => O::Graphql(pb::graph_ql_query_node::Output { data }),
        OutputKind::ContractRead => O::ContractRead(pb::contract_read_node::Output { data }),
        OutputKind::ContractWrite => O::ContractWrite(pb::contract_write_node::Output { data }),
        OutputKind::CustomCode => O::CustomCode(pb::custom_code_node::Output { data }),
        OutputKind::RestApi => O::RestApi(pb::rest_api_node::Output { data }),
        OutputKind::Branch => O::Branch(pb::branch_node::Output { data }),
        OutputKind::Filter => O::Filter(pb::filter_node::Output { data }),
        OutputKind::Loop => O::Loop(pb::loop_node::Output { data }),
        OutputKind::Balance => O::Balance(pb::balance_node::Output { data }),
    }
}

pub fn step_to_pb(s: &Step) -> pb::execution::Step {
    pb::execution::Step {
        id: s.id.clone(),
        r#type: s.step_type.clone(),
        name: s.name.clone(),
        success: s.success,
        error: s.error.clone(),
        error_code: s.error_code,
        log: s.log.clone(),
        inputs: s.inputs.clone(),
        config: s.config.as_ref().map(value_from_json),
        metadata: s.metadata.as_ref().map(value_from_json),
        execution_context: s.execution_context.as_ref().map(value_from_json),
        gas_used: s.gas_used.clone(),
        gas_price: s.gas_price.clone(),
        total_gas_cost: s.total_gas_cost.clone(),
        start_at: s.start_at,
        end_at: s.end_at,
        output_data: s.output.as_ref().map(output_to_pb),
    }
}
