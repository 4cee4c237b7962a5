//! `ReportEventOverload`: an event trigger that matched more events in a block than its cap is
//! disabled (status `i`, the reply's `task_cancelled` true) when a quorum of its assigned
//! operators reports the overload for that block, or, with a chain connection, when the
//! aggregator's own count of that block's matching logs confirms it. One operator alone cannot
//! disable a user's task. The reports are events (`TriggerOverloadReported`); the operators learn
//! of the disable through their streams.

use alloy::primitives::Address;
use events::event::TriggerOverloadReported;
use events::task::TriggerConfig;
use events::{Command, Expected};

use super::pool::Pool;
use super::{OperatorError, OperatorResult};
use crate::app::App;
use crate::domain::attestation::Quorum;
use crate::domain::overload::Overload;
use crate::domain::triggers::{self, DEFAULT_EVENTS_PER_BLOCK};
use crate::domain::{self, DomainError};

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
        let filter = triggers::filter_of(query).from_block(block).to_block(block);
        let abi = triggers::abi_event(query);
        let hits = chain
            .logs(&filter)
            .await?
            .iter()
            .filter(|log| triggers::conditions_hold(query, abi.as_ref(), log))
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

/// `ReportEventOverload` from an authenticated operator: recorded, then the task disabled when
/// a quorum or the chain confirms it. Returns whether the task is disabled for an overload.
pub async fn report(
    app: &App,
    pool: &Pool,
    operator: Address,
    task_id: &str,
    overload: Overload,
) -> OperatorResult<bool> {
    let task_id = task_id.trim();
    let Some(row) = app.store.views.task(task_id)? else {
        return Err(DomainError::task_not_found().into());
    };
    let (assigned, total) = pool
        .assignment(task_id)
        .map_err(|e| OperatorError::Internal(e.to_string()))?;
    if !assigned.contains_key(&operator) {
        return Err(OperatorError::NotAssigned {
            operator,
            task_id: task_id.to_owned(),
        });
    }
    let stream = events::stream::overload(task_id);
    let report = TriggerOverloadReported {
        task_id: task_id.to_owned(),
        operator: format!("{operator:#x}"),
        block_number: overload.block_number,
        events_detected: overload.events_detected,
        safety_limit: overload.safety_limit,
        query_index: overload.query_index.clone(),
    };
    let command = Command::new(format!("{operator:#x}"), events::now_ms()).append(
        stream.clone(),
        Expected::Any,
        [report.into()],
    );
    app.append(command).await?;

    let history = app.store.log.read_stream(&stream)?;
    let weight = domain::overload::reported_weight(&history, overload.block_number, &assigned);
    let (numerator, denominator) = pool.quorum();
    let quorum = Quorum {
        numerator,
        denominator,
    }
    .reached(weight, total);
    let confirmed_on_chain = match confirmed_on_chain(app, task_id, overload.block_number).await {
        Ok(Some(confirmed)) => confirmed,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(task = task_id, error = %e, "could not count the block's logs");
            false
        }
    };
    let mut disabled = domain::overload::disabled_by_overload(&row);
    if let Some(event) = domain::overload::disable(&row, &overload, quorum || confirmed_on_chain) {
        let command = Command::new("system", events::now_ms()).append(
            events::stream::task(task_id),
            Expected::Exactly(row.version),
            [event],
        );
        disabled = app.try_append(command).await?.is_some() || disabled;
        pool.nudge();
    }
    Ok(disabled)
}
