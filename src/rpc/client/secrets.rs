//! Secrets: created, updated, deleted and listed, never returned with their value. Values are
//! sealed (`crate::secret_box`) before they reach an event.
//!
//! Listing: without `workflow_id`, every secret of the caller; with it, the secrets that task's
//! runs see: the caller's user secrets and that workflow's (a workflow secret overrides a user
//! secret of the same name). Ordered by workflow then name; the cursor is `<workflow|_>:<name>`.

use events::Command;
use events::event::SecretScope;
use projections::secrets::SecretRow;
use tonic::{Request, Status};

use crate::app::App;
use crate::app::AppError;
use crate::auth::Caller;
use crate::clock::{now_ms, now_ms_i64};
use crate::domain::DomainResult;
use crate::domain::secrets as rules;
use crate::pb;
use crate::rpc::calls;
use crate::rpc::error;
use crate::rpc::paging::{self, Order};
use crate::store::{Decision, Settled};

fn scope_name(scope: &SecretScope) -> &'static str {
    if scope.workflow_id.is_empty() {
        "user"
    } else {
        "workflow"
    }
}

/// The scope a request names (a workflow id is not looked up: the owner is part of the key).
fn scope(
    app: &App,
    caller: &Caller,
    name: &str,
    workflow_id: &str,
    org_id: &str,
) -> Result<SecretScope, Status> {
    Ok(rules::scope(
        &caller.owner,
        name.trim(),
        workflow_id,
        org_id,
        &app.config.limits,
    )?)
}

pub(crate) fn stream_of(scope: &SecretScope) -> String {
    events::stream::secret(&scope.org_id, &scope.owner, &scope.workflow_id, &scope.name)
}

fn owners_secrets(app: &App, owner: &str) -> Result<Vec<SecretRow>, Status> {
    app.store.views.owner_secrets(owner).map_err(error::storage)
}

/// Decides on the current row and appends against the stream's version
/// (`Store::decide_and_append`).
async fn change(
    app: &App,
    caller: &Caller,
    scope: &SecretScope,
    decide: impl Fn(Option<&SecretRow>) -> DomainResult<events::Event>,
) -> Result<(), Status> {
    let stream = stream_of(scope);
    let settled = app
        .store
        .decide_and_append(
            |store| Ok::<_, AppError>(store.at_version(&stream, |views| views.secret(scope))?),
            |loaded| {
                let event = decide(loaded.state.as_ref())?;
                let command = Command::new(caller.owner.clone(), now_ms()).append(
                    stream.clone(),
                    loaded.expected(),
                    [event],
                );
                Ok(Decision::Append(command, ()))
            },
        )
        .await?;
    match settled {
        Settled::Unchanged(()) | Settled::Appended((), _) => Ok(()),
        Settled::Contended => Err(error::contended("secret")),
    }
}

pub async fn create_secret(
    app: &App,
    request: Request<pb::CreateOrUpdateSecretReq>,
) -> Result<pb::CreateSecretResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    rules::check_new_name(&req.name)?;
    let scope = scope(app, &caller, &req.name, &req.workflow_id, &req.org_id)?;
    rules::check_value(&req.secret, &app.config.limits)?;
    let ciphertext = app
        .secret_box
        .seal(&stream_of(&scope), req.secret.as_bytes())
        .map_err(|e| error::internal("sealing the secret failed", e))?;
    // Counted and appended under the owner's slot: concurrent creations see each other.
    let _slot = app.owner_slots.hold(&caller.owner).await;
    let count = owners_secrets(app, &caller.owner)?.len() as u64;
    let limit = app.config.limits.secrets_per_owner;
    let existed = app
        .store
        .views
        .secret(&scope)
        .map_err(error::storage)?
        .is_some();
    change(app, &caller, &scope, |existing| {
        rules::create(existing, count, limit, scope.clone(), ciphertext.clone())
    })
    .await?;
    Ok(pb::CreateSecretResp {
        success: true,
        status: if existed { "updated" } else { "created" }.into(),
        message: if existed {
            "secret updated"
        } else {
            "secret created"
        }
        .into(),
        created_at: now_ms_i64(),
        secret_name: scope.name.clone(),
        scope: scope_name(&scope).into(),
    })
}

pub async fn update_secret(
    app: &App,
    request: Request<pb::CreateOrUpdateSecretReq>,
) -> Result<pb::UpdateSecretResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    let scope = scope(app, &caller, &req.name, &req.workflow_id, &req.org_id)?;
    rules::check_value(&req.secret, &app.config.limits)?;
    let ciphertext = app
        .secret_box
        .seal(&stream_of(&scope), req.secret.as_bytes())
        .map_err(|e| error::internal("sealing the secret failed", e))?;
    change(app, &caller, &scope, |existing| {
        rules::update(existing, scope.clone(), ciphertext.clone())
    })
    .await?;
    Ok(pb::UpdateSecretResp {
        success: true,
        status: "updated".into(),
        message: "secret updated".into(),
        updated_at: now_ms_i64(),
        secret_name: scope.name.clone(),
        scope: scope_name(&scope).into(),
    })
}

pub async fn delete_secret(
    app: &App,
    request: Request<pb::DeleteSecretReq>,
) -> Result<pb::DeleteSecretResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    let mut scope = scope(app, &caller, &req.name, &req.workflow_id, &req.org_id)?;
    if scope.workflow_id.is_empty() {
        let named: Vec<SecretRow> = owners_secrets(app, &caller.owner)?
            .into_iter()
            .filter(|r| r.scope.name == scope.name && r.scope.org_id.is_empty())
            .collect();
        if let Some(target) = rules::delete_target(&scope.name, &named)? {
            scope = target.scope.clone();
        }
    }
    change(app, &caller, &scope, |existing| {
        rules::delete(existing, scope.clone())
    })
    .await?;
    Ok(pb::DeleteSecretResp {
        success: true,
        status: "deleted".into(),
        message: "secret deleted".into(),
        deleted_at: now_ms_i64(),
        secret_name: scope.name.clone(),
        scope: scope_name(&scope).into(),
    })
}

pub async fn list_secrets(
    app: &App,
    request: Request<pb::ListSecretsReq>,
) -> Result<pb::ListSecretsResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let page = paging::request(&req.before, &req.after, req.limit, false)?;
    // A cursor is a `<workflow id or _>:<name>` this list handed out; anything else is an error,
    // not an empty page.
    for cursor in [&req.before, &req.after] {
        let well_formed = cursor.is_empty()
            || cursor.split_once(':').is_some_and(|(w, name)| {
                !w.is_empty()
                    && !name.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !well_formed {
            return Err(paging::invalid_cursor(cursor).into());
        }
    }
    let workflow = req.workflow_id.trim();
    let rows: Vec<SecretRow> = owners_secrets(app, &caller.owner)?
        .into_iter()
        .filter(|r| {
            workflow.is_empty() || r.scope.workflow_id.is_empty() || r.scope.workflow_id == workflow
        })
        .collect();
    let keys: Vec<String> = rows
        .iter()
        .map(|r| {
            let w = if r.scope.workflow_id.is_empty() {
                "_"
            } else {
                &r.scope.workflow_id
            };
            format!("{w}:{}", r.scope.name)
        })
        .collect();
    let (range, page_info) = paging::select(&keys, Order::Ascending, &page);
    let items = rows
        .get(range)
        .unwrap_or_default()
        .iter()
        .map(|r| pb::Secret {
            name: r.scope.name.clone(),
            scope: scope_name(&r.scope).into(),
            workflow_id: r.scope.workflow_id.clone(),
            org_id: String::new(),
            created_at: if req.include_timestamps {
                r.created_at
            } else {
                0
            },
            updated_at: if req.include_timestamps {
                r.updated_at
            } else {
                0
            },
            created_by: if req.include_created_by {
                crate::address::checksum(&r.created_by)
            } else {
                String::new()
            },
            description: if req.include_description {
                r.description.clone()
            } else {
                String::new()
            },
        })
        .collect();
    Ok(pb::ListSecretsResp {
        items,
        page_info: Some(page_info),
    })
}
