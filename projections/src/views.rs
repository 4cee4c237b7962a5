//! `Views`: read-only access to the projections for the RPC layer and the engine. Reads see only
//! committed batches, so a row and the counters it changed are always seen together.

use events::fjall::{Database, Keyspace};
use serde::Deserialize;

use crate::executions::{self, ClaimRow, DayStats, ExecutionRow, TriggerRow};
use crate::secrets::{self, SecretRow};
use crate::tasks::{self, Status, TaskRow};
use crate::wallets::{self, WalletRow};
use crate::{access, activity, operators};
use events::task::TaskDefinition;

/// A pending execution as the engines see it (`Views::pending_claims`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingExecution {
    pub execution_id: String,
    pub task_id: String,
    pub claim: Option<ClaimRow>,
}

/// The read handle. Callers ask for rows and lists by what they mean; the key layouts stay in
/// the view modules (`tasks`, `executions`, ...) and here.
#[derive(Clone)]
pub struct Views {
    pub(crate) tasks: Keyspace,
    pub(crate) executions: Keyspace,
    pub(crate) wallets: Keyspace,
    pub(crate) secrets: Keyspace,
    pub(crate) access: Keyspace,
    pub(crate) operators: Keyspace,
    pub(crate) activity: Keyspace,
    /// The log's events, for what projections point to rather than copy.
    pub(crate) events: Keyspace,
}

fn json<T: for<'de> Deserialize<'de>>(
    keyspace: &Keyspace,
    key: &[u8],
) -> events::Result<Option<T>> {
    keyspace
        .get(key)?
        .map(|v| decode(keyspace, key, &v))
        .transpose()
}

fn decode<T: for<'de> Deserialize<'de>>(
    keyspace: &Keyspace,
    key: &[u8],
    value: &[u8],
) -> events::Result<T> {
    serde_json::from_slice(value).map_err(|e| events::Error::Projection {
        projection: String::from_utf8_lossy(keyspace.name().as_bytes()).into_owned(),
        message: format!("corrupt row at {}: {e}", String::from_utf8_lossy(key)),
    })
}

impl Views {
    /// Opens the views' keyspaces by name (the projections' names, and the log's `events`).
    pub(crate) fn open(db: &Database) -> events::Result<Self> {
        let open = |name: &str| db.keyspace(name, events::keyspace_options);
        Ok(Self {
            tasks: open(tasks::NAME)?,
            executions: open(executions::NAME)?,
            wallets: open(wallets::NAME)?,
            secrets: open(secrets::NAME)?,
            access: open(access::NAME)?,
            operators: open(operators::NAME)?,
            activity: open(activity::NAME)?,
            events: open("events")?,
        })
    }

    /// A view's keyspace by its name (`tasks::NAME`, ...), for tools that copy or compare raw
    /// rows (the benchmarks' baselines); everything else reads through the methods below.
    pub fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        match name {
            tasks::NAME => Some(&self.tasks),
            executions::NAME => Some(&self.executions),
            wallets::NAME => Some(&self.wallets),
            secrets::NAME => Some(&self.secrets),
            access::NAME => Some(&self.access),
            operators::NAME => Some(&self.operators),
            activity::NAME => Some(&self.activity),
            _ => None,
        }
    }

    /// A task's row, wherever its status puts it.
    pub fn task(&self, task_id: &str) -> events::Result<Option<TaskRow>> {
        let Some(letter) = self.tasks.get(tasks::locator_key(task_id))? else {
            return Ok(None);
        };
        let letter = letter.first().copied().map_or('?', char::from);
        json(&self.tasks, &tasks::row_key(letter, task_id))
    }

    /// The definition a task was created with, read from its `TaskCreated` event.
    pub fn task_definition(&self, task_id: &str) -> events::Result<Option<TaskDefinition>> {
        let Some(pointer) = self.tasks.get(tasks::definition_key(task_id))? else {
            return Ok(None);
        };
        let bytes: [u8; 16] = pointer.as_ref().try_into().map_err(|_| {
            events::Error::Corrupt(format!("task {task_id}: bad definition pointer"))
        })?;
        let id = events::Ulid::from_bytes(bytes);
        let value = self.events.get(bytes)?.ok_or_else(|| {
            events::Error::Corrupt(format!(
                "task {task_id}: its TaskCreated event {id} is missing"
            ))
        })?;
        match events::decode_at(id, &value)?.event {
            events::Event::TaskCreated(created) => Ok(Some(created.definition)),
            other => Err(events::Error::Corrupt(format!(
                "task {task_id}: event {id} is a {}, not a TaskCreated",
                other.type_name()
            ))),
        }
    }

    /// Task ids of one wallet, in creation order.
    pub fn wallet_task_ids(&self, owner: &str, wallet: &str) -> events::Result<Vec<String>> {
        let prefix = tasks::user_key(owner, wallet, "");
        let mut ids = Vec::new();
        for guard in self.tasks.prefix(&prefix) {
            let key = guard.key()?;
            if let Some(id) = key.get(prefix.len()..) {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(ids)
    }

    /// Ids of every task of an owner, by wallet, then in creation order.
    pub fn owner_task_ids(&self, owner: &str) -> events::Result<Vec<String>> {
        let prefix = tasks::owner_prefix(owner);
        let mut ids = Vec::new();
        for guard in self.tasks.prefix(&prefix) {
            let key = guard.key()?;
            let rest = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
            if let Some((_, id)) = rest.rsplit_once(':') {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    /// Number of tasks of a wallet with the given own status.
    pub fn task_count(&self, owner: &str, wallet: &str, status: Status) -> events::Result<u64> {
        Ok(tasks::read_counter(
            self.tasks
                .get(tasks::counter_key(owner, wallet, status))?
                .map(|v| v.to_vec()),
        ))
    }

    /// Number of tasks an owner has.
    pub fn owner_task_count(&self, owner: &str) -> events::Result<u64> {
        Ok(tasks::read_counter(
            self.tasks
                .get(tasks::owner_count_key(owner))?
                .map(|v| v.to_vec()),
        ))
    }

    /// Number of tasks whose row is under `letter` (`a i c f l x`).
    pub fn tasks_with_letter(&self, letter: char) -> events::Result<u64> {
        Ok(tasks::read_counter(
            self.tasks
                .get(tasks::letter_count_key(letter))?
                .map(|v| v.to_vec()),
        ))
    }

    /// Ids of the tasks whose row is under `letter` (`a i c f l x`).
    /// Every task row under one status letter, decoded as `T`, in key order, in one prefix
    /// scan (no point read per task). `T` is `TaskRow`, or a struct of some of its fields, named
    /// as there: the others are skipped, not built (what a pass over a million rows can afford).
    pub fn for_each_task_with_letter<T: for<'de> Deserialize<'de>>(
        &self,
        letter: char,
        mut f: impl FnMut(T),
    ) -> events::Result<()> {
        let prefix = tasks::row_key(letter, "");
        for guard in self.tasks.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            f(decode(&self.tasks, &key, &value)?);
        }
        Ok(())
    }

    pub fn task_ids_with_letter(&self, letter: char) -> events::Result<Vec<String>> {
        let prefix = tasks::row_key(letter, "");
        let mut ids = Vec::new();
        for guard in self.tasks.prefix(&prefix) {
            let key = guard.key()?;
            if let Some(id) = key.get(prefix.len()..) {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(ids)
    }

    pub fn execution(
        &self,
        task_id: &str,
        execution_id: &str,
    ) -> events::Result<Option<ExecutionRow>> {
        executions::read(&self.executions, task_id, execution_id)
    }

    /// Active tasks whose `expired_at` is at or before `now_ms`, soonest first.
    pub fn due_expiries(&self, now_ms: i64) -> events::Result<Vec<String>> {
        let mut ids = Vec::new();
        let prefix = tasks::EXPIRY_PREFIX.as_bytes();
        for guard in self.tasks.prefix(prefix) {
            let key = guard.key()?;
            let rest = key.get(prefix.len()..).unwrap_or_default();
            let (at, id) = rest.split_at(rest.len().min(20));
            let at: i64 = std::str::from_utf8(at)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(i64::MAX);
            if at > now_ms {
                break;
            }
            ids.push(String::from_utf8_lossy(id.get(1..).unwrap_or_default()).into_owned());
        }
        Ok(ids)
    }

    /// A task's execution ids, oldest first.
    pub fn execution_ids(&self, task_id: &str) -> events::Result<Vec<String>> {
        let prefix = executions::history_prefix(task_id);
        let mut ids = Vec::new();
        for guard in self.executions.prefix(&prefix) {
            let key = guard.key()?;
            ids.push(
                String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned(),
            );
        }
        Ok(ids)
    }

    /// A task's finished runs summed over the UTC days from `first_day` (days since the epoch)
    /// on.
    pub fn day_stats(&self, task_id: &str, first_day: u64) -> events::Result<DayStats> {
        let prefix = executions::day_prefix(task_id);
        let mut sum = DayStats::default();
        for guard in self
            .executions
            .range(executions::day_key(task_id, first_day)..)
        {
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(&prefix) {
                break;
            }
            let day: DayStats = decode(&self.executions, &key, &value)?;
            sum.total += day.total;
            sum.succeeded += day.succeeded;
            sum.failed += day.failed;
            sum.total_ms += day.total_ms;
        }
        Ok(sum)
    }

    pub fn trigger(&self, task_id: &str, execution_id: &str) -> events::Result<Option<TriggerRow>> {
        json(
            &self.executions,
            &executions::trigger_key(task_id, execution_id),
        )
    }

    /// Executions queued and not finished: (execution id, task id), oldest first.
    pub fn pending_executions(&self) -> events::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for guard in self.executions.prefix(executions::QUEUE_PREFIX) {
            let (key, value) = guard.into_inner()?;
            let id = key
                .get(executions::QUEUE_PREFIX.len()..)
                .unwrap_or_default();
            out.push((
                String::from_utf8_lossy(id).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    /// Executions queued and not finished, oldest first, each with its claim if one was made
    /// (on a replicated log): what every replica's engine looks at to take executions.
    pub fn pending_claims(&self) -> events::Result<Vec<PendingExecution>> {
        let mut claims = std::collections::HashMap::new();
        for guard in self.executions.prefix(executions::CLAIM_PREFIX) {
            let (key, value) = guard.into_inner()?;
            let id = key
                .get(executions::CLAIM_PREFIX.len()..)
                .unwrap_or_default();
            let claim: ClaimRow = decode(&self.executions, &key, &value)?;
            claims.insert(String::from_utf8_lossy(id).into_owned(), claim);
        }
        Ok(self
            .pending_executions()?
            .into_iter()
            .map(|(execution_id, task_id)| PendingExecution {
                claim: claims.remove(&execution_id),
                execution_id,
                task_id,
            })
            .collect())
    }

    /// One execution's place in the queue: `None` once it finished (or was never queued), else
    /// its claim if one was made.
    pub fn pending_claim(&self, execution_id: &str) -> events::Result<Option<Option<ClaimRow>>> {
        if self
            .executions
            .get(executions::queue_key(execution_id))?
            .is_none()
        {
            return Ok(None);
        }
        Ok(Some(json(
            &self.executions,
            &executions::claim_key(execution_id),
        )?))
    }

    pub fn wallet(&self, owner: &str, address: &str) -> events::Result<Option<WalletRow>> {
        json(&self.wallets, &wallets::wallet_key(owner, address))
    }

    pub fn wallets_of(&self, owner: &str) -> events::Result<Vec<WalletRow>> {
        let mut out = Vec::new();
        for guard in self.wallets.prefix(wallets::owner_prefix(owner)) {
            let (key, _) = guard.into_inner()?;
            if let Some(row) = json(&self.wallets, &key)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    pub fn secret(&self, scope: &events::event::SecretScope) -> events::Result<Option<SecretRow>> {
        json(&self.secrets, &secrets::secret_key(scope))
    }

    /// Every secret of an owner (user- and workflow-scoped), by workflow then name.
    pub fn owner_secrets(&self, owner: &str) -> events::Result<Vec<SecretRow>> {
        let mut rows = Vec::new();
        for guard in self.secrets.prefix(secrets::owner_prefix(owner)) {
            let (key, value) = guard.into_inner()?;
            rows.push(decode(&self.secrets, &key, &value)?);
        }
        Ok(rows)
    }

    /// Registered operators (active or not).
    pub fn operators(&self) -> events::Result<Vec<operators::OperatorRow>> {
        let mut out = Vec::new();
        for guard in self.operators.prefix(operators::OPERATOR_PREFIX) {
            let (key, _) = guard.into_inner()?;
            if let Some(row) = json(&self.operators, &key)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The operators a task is assigned to.
    pub fn assigned(&self, task_id: &str) -> events::Result<Vec<String>> {
        let prefix = operators::assignment_prefix(task_id);
        let mut out = Vec::new();
        for guard in self.operators.prefix(&prefix) {
            let key = guard.key()?;
            out.push(
                String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned(),
            );
        }
        Ok(out)
    }

    /// Number of tasks assigned to an operator.
    pub fn operator_task_count(&self, operator: &str) -> events::Result<u64> {
        let prefix = crate::operators::operator_task_prefix(operator);
        let mut n = 0u64;
        for guard in self.operators.prefix(&prefix) {
            guard.key()?;
            n += 1;
        }
        Ok(n)
    }

    /// Every assignment, (task id, operator), handed to `f` in key order without collecting them.
    pub fn for_each_assignment(&self, mut f: impl FnMut(&str, &str)) -> events::Result<()> {
        for guard in self.operators.prefix(operators::ASSIGNMENT_PREFIX) {
            let key = guard.key()?;
            let text = String::from_utf8_lossy(
                key.get(operators::ASSIGNMENT_PREFIX.len()..)
                    .unwrap_or_default(),
            );
            if let Some((task, operator)) = text.rsplit_once(':') {
                f(task, operator);
            }
        }
        Ok(())
    }

    /// Every assignment: (task id, operator).
    pub fn assignments(&self) -> events::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for guard in self.operators.prefix(operators::ASSIGNMENT_PREFIX) {
            let key = guard.key()?;
            let text = String::from_utf8_lossy(
                key.get(operators::ASSIGNMENT_PREFIX.len()..)
                    .unwrap_or_default(),
            )
            .into_owned();
            if let Some((task, operator)) = text.rsplit_once(':') {
                out.push((task.to_owned(), operator.to_owned()));
            }
        }
        Ok(out)
    }

    /// Firings attested by operators that the engine has not queued yet.
    pub fn pending_attestations(&self) -> events::Result<Vec<operators::PendingAttestation>> {
        let mut out = Vec::new();
        for guard in self.operators.prefix(operators::PENDING_PREFIX) {
            let (key, _) = guard.into_inner()?;
            if let Some(row) = json(&self.operators, &key)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    pub fn is_revoked(&self, jti: &str) -> events::Result<bool> {
        Ok(self.access.get(access::revoked_key(jti))?.is_some())
    }
}
