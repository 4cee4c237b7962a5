//! Tasks: create, read, list, enable / disable, cancel, delete, count.

use std::collections::BTreeSet;

use events::{Command, Expected};
use projections::tasks::TaskRow;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};

use crate::address::lower;
use crate::app::{App, AppError};
use crate::clock::{now_ms, now_ms_i64};
use crate::domain::{DomainError, secrets, task};
use crate::pb;
use crate::pb::convert;
use crate::rpc::paging::{self, Order};
use crate::rpc::{calls, error};
use crate::store::{Decision, Loaded, Settled};

/// `CreateTask`: validated, then one `TaskCreated` on a new stream. A repeat of the same request by
/// the same caller within the configured window (the official client's retries) returns the
/// first task, unless that task was deleted meanwhile.
pub async fn create_task(
    app: &App,
    request: Request<pb::CreateTaskReq>,
) -> Result<pb::CreateTaskResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    let now = now_ms_i64();

    let definition = convert::definition_from_create(&req)?;
    let identity = task::identity(
        &definition.input_variables,
        &req.name,
        &req.smart_wallet_address,
    )?;
    // Counted and appended under the owner's slot: concurrent creations see each other.
    let _slot = app.owner_slots.hold(&caller.owner).await;
    let state = task::OwnerState {
        owns_runner: app
            .is_owners_wallet(calls::owner_address(&caller)?, identity.runner)
            .map_err(error::storage)?,
        owned: owned_task_count(app, &caller.owner)?,
    };
    // Parsing schedules and ABIs is CPU work: off the async workers, which serve everyone.
    let (limits, owner, task_id) = (
        app.config.limits.clone(),
        caller.owner.clone(),
        crate::clock::new_id(),
    );
    let created = tokio::task::spawn_blocking(move || {
        task::create(definition, identity, task_id, &owner, state, &limits, now)
    })
    .await
    .map_err(|e| error::storage(events::Error::Corrupt(format!("validation stopped: {e}"))))??;

    let digest = Sha256::new()
        .chain_update(caller.owner.as_bytes())
        .chain_update(prost::Message::encode_to_vec(&req))
        .finalize();
    let window =
        u64::try_from(app.config.idempotency.create_window.as_millis()).unwrap_or(u64::MAX);
    let command = Command::new(caller.owner.clone(), now_ms())
        .idempotent(format!("create:{}", hex::encode(digest)), Some(window))
        .append(
            events::stream::task(&created.task_id),
            Expected::NoStream,
            [created.into()],
        );
    let committed = app.append(command).await.map_err(error::storage)?;
    let stream = committed
        .events
        .first()
        .map(|e| e.stream.clone())
        .ok_or_else(|| error::internal("the create committed no event", &req.name))?;
    let id = events::stream::task_id_of(&stream)
        .unwrap_or(&stream)
        .to_owned();
    Ok(pb::CreateTaskResp { id })
}

/// Tasks an owner has (deleted ones are gone from the counters).
fn owned_task_count(app: &App, owner: &str) -> Result<u64, Status> {
    app.store
        .views
        .owner_task_count(owner)
        .map_err(error::storage)
}

fn task_response(app: &App, row: &TaskRow, nodes: bool, edges: bool) -> Result<pb::Task, Status> {
    let definition = app
        .store
        .views
        .task_definition(&row.id)
        .map_err(error::storage)?
        .ok_or_else(DomainError::task_not_found)?;
    Ok(convert::task_to_pb(row, &definition, nodes, edges))
}

pub async fn get_task(app: &App, request: Request<pb::IdReq>) -> Result<pb::Task, Status> {
    let caller = calls::caller(app, &request)?;
    let id = request.into_inner().id;
    let row = app.owned_task(&caller.owner, id.trim())?;
    task_response(app, &row, true, true)
}

/// The ids of the caller's tasks in the given wallets (all wallets when none is given), newest
/// first.
fn task_ids(app: &App, owner: &str, wallets: &[String]) -> Result<Vec<String>, Status> {
    let mut ids = BTreeSet::new();
    if wallets.is_empty() {
        ids.extend(
            app.store
                .views
                .owner_task_ids(owner)
                .map_err(error::storage)?,
        );
    } else {
        for wallet in wallets {
            let wallet = crate::address::parse_address("smart_wallet_address", wallet)?;
            ids.extend(
                app.store
                    .views
                    .wallet_task_ids(owner, &lower(wallet))
                    .map_err(error::storage)?,
            );
        }
    }
    Ok(ids.into_iter().rev().collect())
}

pub async fn list_tasks(
    app: &App,
    request: Request<pb::ListTasksReq>,
) -> Result<pb::ListTasksResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let page = paging::request(&req.before, &req.after, req.limit, true)?;
    let ids = task_ids(app, &caller.owner, &req.smart_wallet_address)?;
    let (range, page_info) = paging::select(&ids, Order::Descending, &page);
    let mut items = Vec::with_capacity(range.len());
    for id in ids.get(range).unwrap_or_default() {
        if let Some(row) = app.store.views.task(id).map_err(error::storage)? {
            items.push(task_response(
                app,
                &row,
                req.include_nodes,
                req.include_edges,
            )?);
        }
    }
    Ok(pb::ListTasksResp {
        items,
        page_info: Some(page_info),
    })
}

/// Loads the caller's task, lets `decide` pick the events, appends them against the version it
/// decided on (`Store::decide_and_append`). Returns the row as decided on and whether anything
/// was appended.
async fn change_task(
    app: &App,
    owner: &str,
    id: &str,
    decide: impl Fn(&TaskRow) -> Result<Vec<events::Event>, DomainError>,
) -> Result<(TaskRow, bool), Status> {
    let settled = app
        .store
        .decide_and_append(
            |_| {
                // The row carries the version of the stream it folds.
                let row = app.owned_task(owner, id)?;
                Ok::<_, AppError>(Loaded {
                    version: row.version,
                    state: row,
                })
            },
            |loaded| {
                let new_events = decide(&loaded.state)?;
                if new_events.is_empty() {
                    return Ok(Decision::Unchanged(loaded.state));
                }
                let command = Command::new(owner.to_owned(), now_ms()).append(
                    events::stream::task(id),
                    loaded.expected(),
                    new_events,
                );
                Ok(Decision::Append(command, loaded.state))
            },
        )
        .await?;
    match settled {
        Settled::Unchanged(row) => Ok((row, false)),
        Settled::Appended(row, _) => Ok((row, true)),
        Settled::Contended => Err(error::contended("task")),
    }
}

pub async fn set_task_enabled(
    app: &App,
    request: Request<pb::SetTaskEnabledReq>,
) -> Result<pb::SetTaskEnabledResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    let id = req.id.trim();
    // As the original: an unknown task, or one that can no longer change, is answered in-band.
    let (before, changed) = match change_task(app, &caller.owner, id, |row| {
        Ok(task::set_enabled(row, req.enabled)?.into_iter().collect())
    })
    .await
    {
        Ok(done) => done,
        Err(e) if matches!(e.code(), Code::NotFound | Code::FailedPrecondition) => {
            return Ok(pb::SetTaskEnabledResp {
                success: false,
                status: in_band_status(&e).into(),
                message: e.message().to_owned(),
                id: id.to_owned(),
                previous_status: String::new(),
                updated_at: now_ms_i64(),
            });
        }
        Err(e) => return Err(e),
    };
    let status = if req.enabled { "enabled" } else { "disabled" };
    Ok(pb::SetTaskEnabledResp {
        success: true,
        status: status.into(),
        message: if changed {
            format!("task {status}")
        } else {
            format!("task was already {status}")
        },
        id: id.to_owned(),
        previous_status: status_enum_name(before.status).into(),
        updated_at: now_ms_i64(),
    })
}

/// The in-band `status` word the original answers for a refusal.
fn in_band_status(e: &Status) -> &'static str {
    if e.code() == Code::NotFound {
        "not_found"
    } else {
        "error"
    }
}

/// A task status as the contract's `TaskStatus` enum names it (`Enabled`, `Disabled`...), which is
/// how the original words `previous_status`.
fn status_enum_name(status: projections::tasks::Status) -> &'static str {
    use projections::tasks::Status as S;
    match status {
        S::Active => "Enabled",
        S::Disabled | S::Cancelled => "Disabled",
        S::Completed => "Completed",
        S::Failed => "Failed",
    }
}

pub async fn cancel_task(
    app: &App,
    request: Request<pb::IdReq>,
) -> Result<pb::CancelTaskResp, Status> {
    let caller = calls::writer(app, &request)?;
    let id = request.into_inner().id;
    let id = id.trim();
    let (before, _) =
        change_task(app, &caller.owner, id, |row| Ok(vec![task::cancel(row)?])).await?;
    Ok(pb::CancelTaskResp {
        success: true,
        status: "cancelled".into(),
        message: "task cancelled: it never runs again".into(),
        cancelled_at: now_ms_i64(),
        id: id.to_owned(),
        previous_status: before.status.name().into(),
    })
}

pub async fn delete_task(
    app: &App,
    request: Request<pb::IdReq>,
) -> Result<pb::DeleteTaskResp, Status> {
    let caller = calls::writer(app, &request)?;
    let id = request.into_inner().id;
    let id = id.trim();
    let before = match delete_with_secrets(app, &caller.owner, id).await {
        Ok(before) => before,
        // As the original: an unknown task is answered in-band, not as a gRPC error.
        Err(e) if e.code() == Code::NotFound => {
            return Ok(pb::DeleteTaskResp {
                success: false,
                status: "not_found".into(),
                message: e.message().to_owned(),
                deleted_at: 0,
                id: id.to_owned(),
                previous_status: String::new(),
            });
        }
        Err(e) => return Err(e),
    };
    Ok(pb::DeleteTaskResp {
        success: true,
        status: "deleted".into(),
        message: "task deleted".into(),
        deleted_at: now_ms_i64(),
        id: id.to_owned(),
        previous_status: status_enum_name(before.status).into(),
    })
}

/// Deletes the task and, in the same command, its workflow's secrets (`SecretDeleted` each,
/// against each secret stream's version).
async fn delete_with_secrets(app: &App, owner: &str, id: &str) -> Result<TaskRow, Status> {
    let settled = app
        .store
        .decide_and_append(
            |store| {
                let row = app.owned_task(owner, id)?;
                let mut secrets = Vec::new();
                for secret in secrets::of_deleted_task(id, store.views.owner_secrets(owner)?) {
                    let stream = super::secrets::stream_of(&secret.scope);
                    secrets.push((store.log.stream_version(&stream)?, stream, secret));
                }
                Ok::<_, AppError>(Loaded {
                    version: row.version,
                    state: (row, secrets),
                })
            },
            |loaded| {
                let expected = loaded.expected();
                let (row, secrets) = loaded.state;
                let mut command = Command::new(owner.to_owned(), now_ms()).append(
                    events::stream::task(id),
                    expected,
                    [task::delete(&row)],
                );
                for (version, stream, secret) in secrets {
                    let deleted = secrets::delete(Some(&secret), secret.scope.clone())?;
                    command = command.append(stream, Expected::Exactly(version), [deleted]);
                }
                Ok(Decision::Append(command, row))
            },
        )
        .await?;
    match settled {
        Settled::Unchanged(row) | Settled::Appended(row, _) => Ok(row),
        Settled::Contended => Err(error::contended("task")),
    }
}

/// Tasks in the given wallets (all the caller's when none is given).
pub async fn get_workflow_count(
    app: &App,
    request: Request<pb::GetWorkflowCountReq>,
) -> Result<pb::GetWorkflowCountResp, Status> {
    let caller = calls::caller(app, &request)?;
    let addresses = request.into_inner().addresses;
    let total = if addresses.is_empty() {
        owned_task_count(app, &caller.owner)?
    } else {
        let mut wallets = BTreeSet::new();
        for address in &addresses {
            wallets.insert(lower(crate::address::parse_address("address", address)?));
        }
        let mut total = 0;
        for wallet in wallets {
            for status in projections::tasks::Status::ALL {
                total += app
                    .store
                    .views
                    .task_count(&caller.owner, &wallet, status)
                    .map_err(error::storage)?;
            }
        }
        total
    };
    Ok(pb::GetWorkflowCountResp {
        total: i64::try_from(total).unwrap_or(i64::MAX),
    })
}
