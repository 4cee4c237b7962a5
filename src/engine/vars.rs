//! The variables a run's templates and code see:
//!
//! - every input variable of the task by its name; `settings` enriched with the task's `id`,
//!   `owner`, `runner`, `startAt` and `expiredAt` (values the user set win);
//! - `<trigger name>`: `{ data: the trigger's output, input: TriggerTask's trigger_input }`;
//! - `<node name>`: `{ data: its output, input: its config }`, for every step before;
//! - `context`: `{ taskId, executionId, index, status, executionCount, lastRanAt, completedAt }`;
//! - `date`: `{ now, now_iso }` (milliseconds and ISO text, at the start of the run) and
//!   `aa_sender` (the runner wallet), as the original offers them;
//! - `apContext.configVars.<name>`: the owner's secrets, decrypted in memory for this run only. A
//!   user secret wins over a workflow secret of the same name, as in the original.

use serde_json::{Map, Value, json};

use events::execution::Firing;
use events::task::TaskDefinition;

use projections::tasks::TaskRow;

use crate::address::checksum;
use crate::secrets::SecretBox;
use crate::store::Store;

pub fn base(
    definition: &TaskDefinition,
    task: &TaskRow,
    firing: &Firing,
    execution_id: &str,
    index: i64,
) -> Map<String, Value> {
    let mut vars: Map<String, Value> = definition
        .input_variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut settings = match vars.remove("settings") {
        Some(Value::Object(s)) => s,
        _ => Map::new(),
    };
    for (key, value) in [
        ("id", Value::from(task.id.clone())),
        ("owner", Value::from(checksum(&task.owner))),
        ("runner", Value::from(checksum(&task.wallet))),
        ("startAt", Value::from(task.start_at)),
        ("expiredAt", Value::from(task.expired_at)),
    ] {
        settings.entry(key).or_insert(value);
    }
    vars.insert("settings".into(), Value::Object(settings));
    vars.insert(
        definition.trigger.name.clone(),
        json!({ "data": firing.output.clone().unwrap_or(Value::Null), "input": firing.input }),
    );
    vars.insert(
        "context".into(),
        json!({
            "taskId": task.id,
            "executionId": execution_id,
            "index": index,
            "status": task.status.name(),
            "executionCount": task.execution_count,
            "lastRanAt": task.last_ran_at,
            "completedAt": task.completed_at,
        }),
    );
    let now = crate::clock::now_ms();
    let iso = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(now),
    )
    .to_string();
    vars.entry("date")
        .or_insert_with(|| json!({ "now": now, "now_iso": iso }));
    vars.entry("aa_sender")
        .or_insert_with(|| Value::from(checksum(&task.wallet)));
    vars
}

/// The owner's secrets visible to `workflow` (or user-scoped only when `None`), decrypted.
pub fn secrets(
    store: &Store,
    sealer: &SecretBox,
    owner: &str,
    workflow: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let mut user = Map::new();
    let mut scoped = Map::new();
    for row in store
        .views
        .owner_secrets(owner)
        .map_err(|e| e.to_string())?
    {
        let visible =
            row.scope.workflow_id.is_empty() || Some(row.scope.workflow_id.as_str()) == workflow;
        if !visible {
            continue;
        }
        let stream = events::stream::secret(
            &row.scope.org_id,
            &row.scope.owner,
            &row.scope.workflow_id,
            &row.scope.name,
        );
        let clear = sealer
            .open(&stream, &row.ciphertext)
            .map_err(|e| format!("secret {}: {e}", row.scope.name))?;
        let text = String::from_utf8_lossy(&clear).into_owned();
        if row.scope.workflow_id.is_empty() {
            user.insert(row.scope.name, Value::String(text));
        } else {
            scoped.insert(row.scope.name, Value::String(text));
        }
    }
    // The original loads workflow secrets first and user secrets over them (its #104).
    scoped.extend(user);
    Ok(scoped)
}

/// Adds `apContext.configVars`.
pub fn with_secrets(
    mut vars: Map<String, Value>,
    secrets: Map<String, Value>,
) -> Map<String, Value> {
    vars.insert("apContext".into(), json!({ "configVars": secrets }));
    vars
}
