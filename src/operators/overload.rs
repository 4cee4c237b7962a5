//! `ReportEventOverload`: an event trigger that matched more events in a block than its cap is
//! disabled (status `i`, the reply's `task_cancelled` true) when a quorum of its assigned
//! operators reports the overload for that block, or, with a chain connection, when the
//! aggregator's own count of that block's matching logs confirms it. One operator alone cannot
//! disable a user's task. The reports are events (`TriggerOverloadReported`); the operators learn
//! of the disable through their streams.

use std::collections::BTreeSet;

use alloy::primitives::Address;
use alloy::providers::Provider;
use events::event::{TaskDisabled, TriggerOverloadReported};
use events::task::TriggerConfig;
use events::{Command, Event, Expected};
use tonic::Status;

use super::pool::Pool;
use crate::app::App;
use crate::operator::watch;
use crate::pb;
use crate::rpc::error;

/// The cap of an event query that sets none (the operator's default too).
pub const DEFAULT_EVENTS_PER_BLOCK: u32 = 100;

/// Whether the aggregator's own reading of `block` confirms the overload: some query of the task
/// matches (filters and conditions, as the operators apply them) more logs than its cap. `None`
/// without a chain connection.
async fn confirmed_on_chain(app: &App, task_id: &str, block: u64) -> anyhow::Result<Option<bool>> {
    let Some(chain) = &app.chain else {
        return Ok(None);
    };
    let Some(definition) = app.store.views.task_definition(task_id)? else {
        return Ok(None);
    };
    let Some(TriggerConfig::Event(config)) = definition.trigger.config else {
        return Ok(None);
    };
    for query in &config.queries {
        let filter = watch::filter_of(query).from_block(block).to_block(block);
        let abi = watch::abi_event(query);
        let hits = chain
            .provider
            .get_logs(&filter)
            .await?
            .iter()
            .filter(|log| watch::conditions_hold(query, abi.as_ref(), log))
            .count();
        let cap = query
            .max_events_per_block
            .unwrap_or(DEFAULT_EVENTS_PER_BLOCK);
        if hits > cap as usize {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}

pub async fn report(
    app: &App,
    pool: &Pool,
    operator: Address,
    alert: &pb::EventOverloadAlert,
) -> Result<pb::EventOverloadResponse, Status> {
    let task_id = alert.task_id.trim();
    let now = u64::try_from(crate::clock::now_ms_i64()).unwrap_or(0);
    let Some(row) = app.store.views.task(task_id).map_err(error::storage)? else {
        return Err(Status::not_found("task not found"));
    };
    let (assigned, total) = pool
        .assignment(task_id)
        .map_err(|e| Status::internal(e.to_string()))?;
    if !assigned.contains_key(&operator) {
        return Err(Status::permission_denied(format!(
            "operator {operator:#x} is not assigned to task {task_id}"
        )));
    }
    let stream = events::stream::overload(task_id);
    let report = TriggerOverloadReported {
        task_id: task_id.to_owned(),
        operator: format!("{operator:#x}"),
        block_number: alert.block_number,
        events_detected: alert.events_detected,
        safety_limit: alert.safety_limit,
        query_index: alert.query_index.clone(),
    };
    let command = Command::new(format!("{operator:#x}"), events::now_ms()).append(
        stream.clone(),
        Expected::Any,
        [report.into()],
    );
    app.append(command).await.map_err(error::storage)?;

    // Who reported this block, by weight.
    let mut reporters = BTreeSet::new();
    for envelope in app.store.log.read_stream(&stream).map_err(error::storage)? {
        if let Event::TriggerOverloadReported(r) = &envelope.event
            && r.block_number == alert.block_number
            && let Ok(address) = r.operator.parse::<Address>()
        {
            reporters.insert(address);
        }
    }
    let weight: u64 = reporters.iter().filter_map(|a| assigned.get(a)).sum();
    let (numerator, denominator) = pool.quorum();
    let quorum = total > 0
        && u128::from(weight) * u128::from(denominator)
            >= u128::from(total) * u128::from(numerator);
    let confirmed_on_chain = match confirmed_on_chain(app, task_id, alert.block_number).await {
        Ok(Some(confirmed)) => confirmed,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(task = task_id, error = %e, "could not count the block's logs");
            false
        }
    };
    let mut disabled = row.status == projections::tasks::Status::Disabled
        && row.disabled_reason.starts_with("overload");
    if (quorum || confirmed_on_chain) && row.status == projections::tasks::Status::Active {
        let reason = format!(
            "overload: {} events in block {}, more than the cap of {}",
            alert.events_detected, alert.block_number, alert.safety_limit
        );
        let command = Command::new("system", events::now_ms()).append(
            events::stream::task(task_id),
            Expected::Exactly(row.version),
            [TaskDisabled {
                task_id: task_id.to_owned(),
                reason,
            }
            .into()],
        );
        disabled = app
            .try_append(command)
            .await
            .map_err(error::storage)?
            .is_some()
            || disabled;
        pool.nudge();
    }
    Ok(pb::EventOverloadResponse {
        task_cancelled: disabled,
        message: if disabled {
            "the task is disabled: its trigger matched more events per block than its cap".into()
        } else {
            "recorded; a quorum of the assigned operators (or the aggregator's own count) must confirm it".into()
        },
        timestamp: now,
    })
}
