//! Executions: list, read, status, counts and stats of the caller's tasks' runs. Lists are newest
//! first (execution ids are ULIDs); see `rpc::paging` for the cursors.

use events::execution::{Firing, FiringSource};
use projections::executions::{self as views_exec, DAY_MS, DayStats, ExecutionRow};
use tonic::{Request, Status};

use crate::engine::FireRequest;

use crate::app::{App, SharedApp};
use crate::clock::now_ms;
use crate::domain::{Code, DomainError};
use crate::pb;
use crate::pb::convert;
use crate::rpc::paging::{self, Order};
use crate::rpc::{calls, error, repeats};

/// The caller's task ids among `requested` (all the caller's tasks when empty); another owner's
/// task is "not found", as for every other method.
fn tasks_of(app: &App, owner: &str, requested: &[String]) -> Result<Vec<String>, Status> {
    if requested.is_empty() {
        return app
            .store
            .views
            .owner_task_ids(owner)
            .map_err(error::storage);
    }
    requested
        .iter()
        .map(|id| Ok(app.owned_task(owner, id.trim())?.id))
        .collect()
}

fn execution_not_found() -> Status {
    DomainError::NotFound("execution not found".into(), Code::ExecutionNotFound).into()
}

pub async fn list_executions(
    app: &App,
    request: Request<pb::ListExecutionsReq>,
) -> Result<pb::ListExecutionsResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let page = paging::request(&req.before, &req.after, req.limit, true)?;
    let tasks = tasks_of(app, &caller.owner, &req.task_ids)?;
    // (execution id, task id), newest first.
    let mut runs = Vec::new();
    for task_id in &tasks {
        for id in app
            .store
            .views
            .execution_ids(task_id)
            .map_err(error::storage)?
        {
            runs.push((id, task_id.clone()));
        }
    }
    runs.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    let (range, mut page_info) = paging::select(&ids, Order::Descending, &page);
    let mut items = Vec::with_capacity(range.len());
    // Each execution fits one message; a page of them is cut short where it would not, and
    // says there is more.
    let budget = app.config.grpc.max_message_bytes.saturating_sub(64 * 1024);
    let mut size = 0usize;
    for (id, task_id) in runs.get(range).unwrap_or_default() {
        if let Some(row) = app
            .store
            .views
            .execution(task_id, id)
            .map_err(error::storage)?
        {
            let item = convert::execution_to_pb(&row, &app.config.fees);
            let item_size = prost::Message::encoded_len(&item) + 8;
            if !items.is_empty() && size + item_size > budget {
                page_info.has_next_page = true;
                break;
            }
            size += item_size;
            page_info.end_cursor.clone_from(id);
            items.push(item);
        }
    }
    Ok(pb::ListExecutionsResp {
        items,
        page_info: Some(page_info),
    })
}

fn execution(
    app: &App,
    owner: &str,
    req: &pb::ExecutionReq,
) -> Result<views_exec::ExecutionRow, Status> {
    let task = app.owned_task(owner, req.task_id.trim())?;
    app.store
        .views
        .execution(&task.id, req.execution_id.trim())
        .map_err(error::storage)?
        .ok_or_else(execution_not_found)
}

pub async fn get_execution(
    app: &App,
    request: Request<pb::ExecutionReq>,
) -> Result<pb::Execution, Status> {
    let caller = calls::caller(app, &request)?;
    let row = execution(app, &caller.owner, request.get_ref())?;
    Ok(convert::execution_to_pb(&row, &app.config.fees))
}

pub async fn get_execution_status(
    app: &App,
    request: Request<pb::ExecutionReq>,
) -> Result<pb::ExecutionStatusResp, Status> {
    let caller = calls::caller(app, &request)?;
    let row = execution(app, &caller.owner, request.get_ref())?;
    Ok(pb::ExecutionStatusResp {
        status: convert::execution_status(row.status) as i32,
    })
}

/// Runs queued so far of the given tasks (all the caller's when none is given).
pub async fn get_execution_count(
    app: &App,
    request: Request<pb::GetExecutionCountReq>,
) -> Result<pb::GetExecutionCountResp, Status> {
    let caller = calls::caller(app, &request)?;
    let tasks = tasks_of(app, &caller.owner, &request.get_ref().workflow_ids)?;
    let mut total = 0i64;
    for id in tasks {
        if let Some(row) = app.store.views.task(&id).map_err(error::storage)? {
            total += row.execution_count;
        }
    }
    Ok(pb::GetExecutionCountResp { total })
}

/// Finished runs over the last `days` days (UTC days, today included; default 7), with the
/// average duration in milliseconds.
pub async fn get_execution_stats(
    app: &App,
    request: Request<pb::GetExecutionStatsReq>,
) -> Result<pb::GetExecutionStatsResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let days = match req.days {
        d if d < 0 => return Err(DomainError::invalid("days must not be negative").into()),
        0 => 7,
        d => u64::try_from(d).unwrap_or(u64::MAX).min(3650),
    };
    let today = now_ms() / DAY_MS;
    let first_day = today.saturating_sub(days - 1);
    let mut sum = DayStats::default();
    for task_id in tasks_of(app, &caller.owner, &req.workflow_ids)? {
        let day = app
            .store
            .views
            .day_stats(&task_id, first_day)
            .map_err(error::storage)?;
        sum.total += day.total;
        sum.succeeded += day.succeeded;
        sum.failed += day.failed;
        sum.total_ms += day.total_ms;
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(pb::GetExecutionStatsResp {
        total: count(sum.total),
        succeeded: count(sum.succeeded),
        failed: count(sum.failed),
        avg_execution_time: if sum.total == 0 {
            0.0
        } else {
            sum.total_ms as f64 / sum.total as f64
        },
    })
}

/// The response for a run, finished or not.
pub fn trigger_response(task_id: &str, row: &ExecutionRow) -> pb::TriggerTaskResp {
    let finished = row.status.finished();
    pb::TriggerTaskResp {
        execution_id: row.id.clone(),
        status: convert::execution_status(row.status) as i32,
        workflow_id: task_id.to_owned(),
        start_at: (row.start_at > 0).then_some(row.start_at),
        end_at: finished.then_some(row.end_at),
        error: (!row.error.is_empty()).then(|| row.error.clone()),
        steps: convert::ran_steps_to_pb(&row.steps),
    }
}

/// `TriggerTask`: a client's firing, through the engine's single entry point. Its dedup key is
/// in the client namespace (`client:`), so it never uses up an operator's firing. Every call is a
/// new run, as in the original, except repeats: with an `idempotency-key` header, the same key
/// for the same task is the first run (held in the log for good); without one, an identical
/// request is the first run only when the first could not answer its caller (`rpc::repeats`).
/// `is_blocking` waits for the run (which belongs to the engine: a client that gives up does not
/// stop it).
pub async fn trigger_task(
    app: &SharedApp,
    request: Request<pb::TriggerTaskReq>,
) -> Result<pb::TriggerTaskResp, Status> {
    let caller = calls::writer(app, &request)?;
    let key = super::tasks::idempotency_key(app, request.metadata())?;
    let deadline = repeats::deadline(request.metadata(), std::time::Instant::now());
    let req = request.into_inner();
    let task = app.owned_task(&caller.owner, req.task_id.trim())?;
    let (kind, output) = convert::requested_firing(&req, task.trigger_kind)?;
    let input = convert::json_map_from_values(&req.trigger_input)?;
    let window_ms =
        u64::try_from(app.config.idempotency.trigger_window.as_millis()).unwrap_or(u64::MAX);
    let (dedup_key, window_ms) = match &key {
        Some(key) => (format!("client:{}:{}:{key}", caller.owner, task.id), None),
        // A fresh key: this call is a run of its own (its repeats are collapsed before here).
        None => (
            format!(
                "client:{}:{}:{}",
                caller.owner,
                task.id,
                crate::clock::new_id()
            ),
            Some(window_ms),
        ),
    };
    let digest = repeats::digest(&caller.owner, "TriggerTask", &req);
    let fire = {
        let app = app.clone();
        async move {
            let fired = app
                .engine
                .fire(FireRequest {
                    task_id: task.id.clone(),
                    actor: caller.owner.clone(),
                    firing: Firing {
                        dedup_key,
                        source: FiringSource::Client,
                        kind,
                        output,
                        input,
                    },
                    window_ms,
                })
                .await?;
            let execution_id = fired.execution_id().to_owned();
            let row = if req.is_blocking {
                app.engine
                    .wait(&task.id, &execution_id)
                    .await
                    .map_err(error::storage)?
            } else {
                match app
                    .store
                    .views
                    .execution(&task.id, &execution_id)
                    .map_err(error::storage)?
                {
                    Some(row) => row,
                    None => {
                        return Err(error::internal(
                            "the queued execution is missing",
                            &execution_id,
                        ));
                    }
                }
            };
            Ok(trigger_response(&task.id, &row))
        }
    };
    match key {
        Some(_) => fire.await,
        None => {
            app.repeats
                .triggers
                .run(
                    digest,
                    deadline,
                    app.config.idempotency.trigger_window,
                    fire,
                )
                .await
        }
    }
}
