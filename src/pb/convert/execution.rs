//! Executions: a run's row as `GetExecution` / `ListExecutions` answer it, its steps and their
//! outputs, and its fees in the original's structure (execution fee, COGS, value fee).

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

/// `rates`: the configured `fees:`, which a finished run's execution and value fees are priced
/// with (as the original sets them when the run ends; nothing is charged).
pub fn execution_to_pb(row: &ExecutionRow, rates: &crate::config::FeesConfig) -> pb::Execution {
    let finished = !matches!(row.status, RunStatus::Pending | RunStatus::Running);
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
        execution_fee: finished.then(|| pb::Fee {
            amount: format!("{:.6}", rates.execution_fee_usd),
            unit: "USD".into(),
        }),
        cogs: cogs(&row.steps),
        value_fee: finished.then(|| {
            value_fee_to_pb(&crate::domain::fees::value_fee(
                rates,
                row.steps.iter().any(on_chain_step),
            ))
        }),
        steps: ran_steps_to_pb(&row.steps),
        skipped: skipped_to_pb(&row.steps),
    }
}

/// A step of a node that may act on chain (the original's `buildValueFee` over the steps).
fn on_chain_step(step: &Step) -> bool {
    !step.skipped
        && matches!(
            step.step_type.as_str(),
            "NODE_TYPE_CONTRACT_WRITE" | "NODE_TYPE_ETH_TRANSFER" | "NODE_TYPE_LOOP"
        )
}

/// The value fee as `EstimateFees` and executions carry it.
pub fn value_fee_to_pb(value: &crate::domain::fees::ValueFee) -> pb::ValueFee {
    pb::ValueFee {
        fee: Some(pb::Fee {
            amount: value.percentage.clone(),
            unit: "PERCENTAGE".into(),
        }),
        tier: match value.tier {
            crate::domain::fees::Tier::Unspecified => pb::ExecutionTier::Unspecified,
            crate::domain::fees::Tier::One => pb::ExecutionTier::ExecutionTier1,
        } as i32,
        value_base: value.value_base.into(),
        classification_method: "rule_based".into(),
        confidence: 1.0,
        reason: value.reason.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: RunStatus, steps: Vec<Step>) -> ExecutionRow {
        ExecutionRow {
            id: "e".into(),
            task_id: "t".into(),
            owner: "o".into(),
            index: 0,
            status,
            queued_at: 1,
            start_at: 1,
            end_at: 2,
            error: String::new(),
            steps,
        }
    }

    fn step(step_type: &str, skipped: bool) -> Step {
        Step {
            id: step_type.to_lowercase(),
            step_type: step_type.into(),
            skipped,
            ..Step::default()
        }
    }

    #[test]
    fn given_a_finished_run_then_it_carries_the_execution_and_value_fees() {
        let rates = crate::config::FeesConfig::default();
        let writes = row(
            RunStatus::Success,
            vec![
                step("NODE_TYPE_CUSTOM_CODE", false),
                step("NODE_TYPE_ETH_TRANSFER", false),
            ],
        );
        let pb = execution_to_pb(&writes, &rates);
        assert_eq!(pb.execution_fee.map(|f| f.amount), Some("0.020000".into()));
        let value = pb.value_fee.unwrap();
        assert_eq!(value.tier, pb::ExecutionTier::ExecutionTier1 as i32);
        assert_eq!(value.fee.map(|f| f.amount), Some("0.03".into()));
    }

    #[test]
    fn given_no_step_on_chain_or_a_run_not_finished_then_no_value_fee_or_none_at_all() {
        let rates = crate::config::FeesConfig::default();
        // A write a branch skipped does not count.
        let off_chain = row(
            RunStatus::Failed,
            vec![
                step("NODE_TYPE_REST_API", false),
                step("NODE_TYPE_CONTRACT_WRITE", true),
            ],
        );
        let value = execution_to_pb(&off_chain, &rates).value_fee.unwrap();
        assert_eq!(value.tier, pb::ExecutionTier::Unspecified as i32);
        assert_eq!(value.fee.map(|f| f.amount), Some("0".into()));
        let running = execution_to_pb(&row(RunStatus::Running, Vec::new()), &rates);
        assert!(running.execution_fee.is_none() && running.value_fee.is_none());
    }
}
