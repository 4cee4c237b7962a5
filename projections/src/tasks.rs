//! Tasks: where each task stands, who owns it, and the counters by wallet and status.
//!
//! Keys (keyspace `tasks`):
//! - `t:<status>:<task id>` → `TaskRow` (JSON); a status change moves the key. The status letter is
//!   `x` while at least one run executes, otherwise the task's own status (`a i c f l`);
//! - `ts:<task id>` → the letter under which the row is (to find it by id);
//! - `td:<task id>` → the ULID of the task's `TaskCreated` event, which holds the submitted
//!   definition (written once; the definition is not copied);
//! - `u:<owner>:<wallet>:<task id>` → empty: a wallet's tasks in id (creation) order;
//! - `n:<owner>:<wallet>:<status>` → number of tasks (u64 BE) by their own status (not `x`);
//! - `o:<owner>` → number of tasks (u64 BE) the owner has (quota checks read it with one point
//!   read: a prefix scan over counters rewritten at every change would walk all their versions);
//! - `s:<letter>` → number of tasks (u64 BE) under each `t:` letter, for telemetry;
//! - `e:<expired_at, 20 digits>:<task id>` → empty: the active tasks that expire, by when, so that
//!   the expiry sweep reads only the tasks that are due.

use events::event::{Event, TaskCreated};
use events::task::{TaskDefinition, TriggerKind};
use events::{Envelope, Tx, fjall::Keyspace};
use serde::{Deserialize, Serialize};

use crate::{JsonRow, Projection, get_row, put_row};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "tasks";

/// A task's own status: the events of its stream decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "a")]
    Active,
    #[serde(rename = "i")]
    Disabled,
    #[serde(rename = "c")]
    Completed,
    #[serde(rename = "f")]
    Failed,
    #[serde(rename = "l")]
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Self::Active,
        Self::Disabled,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn letter(self) -> char {
        match self {
            Self::Active => 'a',
            Self::Disabled => 'i',
            Self::Completed => 'c',
            Self::Failed => 'f',
            Self::Cancelled => 'l',
        }
    }

    /// Statuses from which a task never runs again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "enabled",
            Self::Disabled => "disabled",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The letter of the executing state, which overlays the task's own status.
pub const EXECUTING: char = 'x';

/// What the read side knows of a task besides its definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    pub owner: String,
    pub wallet: String,
    pub name: String,
    pub trigger_kind: Option<TriggerKind>,
    pub status: Status,
    /// Runs started and not finished.
    pub running: u32,
    pub start_at: i64,
    pub expired_at: i64,
    pub max_execution: i64,
    /// Runs queued so far (what `max_execution` counts).
    pub execution_count: i64,
    /// Milliseconds since the epoch of the last firing, 0 before the first.
    pub last_ran_at: i64,
    pub created_at: i64,
    pub completed_at: i64,
    pub cancelled_at: i64,
    pub disabled_reason: String,
    pub failed_error: String,
    /// The task stream's version (last sequence number), for optimistic concurrency.
    pub version: u64,
}

impl JsonRow for TaskRow {
    const PROJECTION: &'static str = NAME;

    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.owner.len()
            + self.wallet.len()
            + self.name.len()
            + self.disabled_reason.len()
            + self.failed_error.len()
    }
}

impl TaskRow {
    /// The letter of the `t:` key the row is stored under.
    pub fn letter(&self) -> char {
        if self.running > 0 {
            EXECUTING
        } else {
            self.status.letter()
        }
    }
}

pub fn row_key(letter: char, task_id: &str) -> Vec<u8> {
    format!("t:{letter}:{task_id}").into_bytes()
}

pub fn locator_key(task_id: &str) -> Vec<u8> {
    format!("ts:{task_id}").into_bytes()
}

pub fn definition_key(task_id: &str) -> Vec<u8> {
    format!("td:{task_id}").into_bytes()
}

pub fn user_key(owner: &str, wallet: &str, task_id: &str) -> Vec<u8> {
    format!("u:{owner}:{wallet}:{task_id}").into_bytes()
}

/// Every `user_key` of an owner.
pub fn owner_prefix(owner: &str) -> Vec<u8> {
    format!("u:{owner}:").into_bytes()
}

pub fn owner_count_key(owner: &str) -> Vec<u8> {
    format!("o:{owner}").into_bytes()
}

pub fn letter_count_key(letter: char) -> Vec<u8> {
    format!("s:{letter}").into_bytes()
}

/// The expiry index entry of a task that can expire (active, with an `expired_at`).
pub fn expiry_key(row: &TaskRow) -> Option<Vec<u8>> {
    (row.status == Status::Active && row.expired_at > 0)
        .then(|| format!("{EXPIRY_PREFIX}{:020}:{}", row.expired_at, row.id).into_bytes())
}

pub const EXPIRY_PREFIX: &str = "e:";

pub fn counter_key(owner: &str, wallet: &str, status: Status) -> Vec<u8> {
    format!("n:{owner}:{wallet}:{}", status.letter()).into_bytes()
}

#[derive(Clone)]
pub struct Tasks {
    keyspace: Keyspace,
}

impl Tasks {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    fn load(&self, tx: &mut Tx, task_id: &str) -> events::Result<Option<TaskRow>> {
        let Some(letter) = tx.get(&self.keyspace, &locator_key(task_id))? else {
            return Ok(None);
        };
        let letter = letter.first().copied().map_or('?', char::from);
        get_row(tx, &self.keyspace, &row_key(letter, task_id))
    }

    /// Writes the row under its (possibly new) letter, removing the old key.
    fn store(&self, tx: &mut Tx, before: Option<char>, row: TaskRow) -> events::Result<()> {
        let letter = row.letter();
        if let Some(old) = before
            && old != letter
        {
            tx.remove(&self.keyspace, row_key(old, &row.id));
            self.add(tx, letter_count_key(old), -1)?;
        }
        if before != Some(letter) {
            tx.insert(&self.keyspace, locator_key(&row.id), [letter as u8]);
            self.add(tx, letter_count_key(letter), 1)?;
        }
        put_row(tx, &self.keyspace, row_key(letter, &row.id), row);
        Ok(())
    }

    fn count(
        &self,
        tx: &mut Tx,
        owner: &str,
        wallet: &str,
        status: Status,
        delta: i64,
    ) -> events::Result<()> {
        self.add(tx, counter_key(owner, wallet, status), delta)
    }

    /// Adds `delta` to a counter row, removing it at zero.
    fn add(&self, tx: &mut Tx, key: Vec<u8>, delta: i64) -> events::Result<()> {
        let current = read_counter(tx.get(&self.keyspace, &key)?);
        let next = current.saturating_add_signed(delta);
        if next == 0 {
            tx.remove(&self.keyspace, key);
        } else {
            tx.insert(&self.keyspace, key, next.to_be_bytes());
        }
        Ok(())
    }

    /// Loads the row of the task an event names, folds the event into it, stores it back and
    /// keeps the counters in step with its own status.
    fn update(&self, tx: &mut Tx, task_id: &str, env: &Envelope) -> events::Result<()> {
        let Some(mut row) = self.load(tx, task_id)? else {
            return Ok(()); // a run of a deleted task finishing, for instance
        };
        let before_letter = row.letter();
        let before_status = row.status;
        let before_expiry = expiry_key(&row);
        row.apply(env);
        let after_expiry = expiry_key(&row);
        if before_expiry != after_expiry {
            if let Some(key) = before_expiry {
                tx.remove(&self.keyspace, key);
            }
            if let Some(key) = after_expiry {
                tx.insert(&self.keyspace, key, []);
            }
        }
        if row.status != before_status {
            self.count(tx, &row.owner, &row.wallet, before_status, -1)?;
            self.count(tx, &row.owner, &row.wallet, row.status, 1)?;
        }
        self.store(tx, Some(before_letter), row)
    }

    fn create(&self, tx: &mut Tx, env: &Envelope, created: &TaskCreated) -> events::Result<()> {
        let row = TaskRow::created(env, created);
        if let Some(key) = expiry_key(&row) {
            tx.insert(&self.keyspace, key, []);
        }
        // The definition stays in its event: the row points to it (no second copy to write).
        tx.insert(&self.keyspace, definition_key(&row.id), env.id.to_bytes());
        tx.insert(
            &self.keyspace,
            user_key(&row.owner, &row.wallet, &row.id),
            [],
        );
        self.add(tx, owner_count_key(&row.owner), 1)?;
        self.count(tx, &row.owner, &row.wallet, Status::Active, 1)?;
        self.store(tx, None, row)
    }

    fn delete(&self, tx: &mut Tx, task_id: &str) -> events::Result<()> {
        let Some(row) = self.load(tx, task_id)? else {
            return Ok(());
        };
        tx.remove(&self.keyspace, row_key(row.letter(), task_id));
        if let Some(key) = expiry_key(&row) {
            tx.remove(&self.keyspace, key);
        }
        self.add(tx, letter_count_key(row.letter()), -1)?;
        tx.remove(&self.keyspace, locator_key(task_id));
        tx.remove(&self.keyspace, definition_key(task_id));
        tx.remove(&self.keyspace, user_key(&row.owner, &row.wallet, task_id));
        self.add(tx, owner_count_key(&row.owner), -1)?;
        self.count(tx, &row.owner, &row.wallet, row.status, -1)
    }
}

impl Projection for Tasks {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema_version(&self) -> u32 {
        5
    }

    fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn apply(&self, env: &Envelope, tx: &mut Tx) -> events::Result<()> {
        match &env.event {
            Event::TaskCreated(created) => self.create(tx, env, created),
            Event::TaskDeleted(e) => self.delete(tx, &e.task_id),
            other => match task_of(other) {
                Some(task_id) => self.update(tx, task_id, env),
                None => Ok(()),
            },
        }
    }
}

/// The task whose row an event changes (besides creation and deletion).
fn task_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::TaskEnabled(e) => &e.task_id,
        Event::TaskDisabled(e) => &e.task_id,
        Event::TaskCancelled(e) => &e.task_id,
        Event::TaskCompleted(e) => &e.task_id,
        Event::TaskFailed(e) => &e.task_id,
        Event::TaskTriggered(e) => &e.task_id,
        Event::ExecutionStarted(e) => &e.task_id,
        Event::ExecutionFinished(e) => &e.task_id,
        _ => return None,
    })
}

impl TaskRow {
    /// The row a `TaskCreated` event starts.
    pub fn created(env: &Envelope, created: &TaskCreated) -> Self {
        let TaskDefinition {
            name,
            trigger,
            start_at,
            expired_at,
            max_execution,
            ..
        } = &created.definition;
        Self {
            id: created.task_id.clone(),
            owner: created.owner.clone(),
            wallet: created.wallet.clone(),
            name: name.clone(),
            trigger_kind: trigger.config.as_ref().map(|c| c.kind()),
            status: Status::Active,
            running: 0,
            start_at: *start_at,
            expired_at: *expired_at,
            max_execution: *max_execution,
            execution_count: 0,
            last_ran_at: 0,
            created_at: ms(env.recorded_at),
            completed_at: 0,
            cancelled_at: 0,
            disabled_reason: String::new(),
            failed_error: String::new(),
            version: env.seq,
        }
    }

    /// Folds a later event of the task into the row. Pure: the domain's tests fold events with it
    /// exactly as the projection does.
    pub fn apply(&mut self, env: &Envelope) {
        let at = ms(env.recorded_at);
        let on_task_stream = match &env.event {
            Event::TaskEnabled(_) => {
                self.status = Status::Active;
                self.disabled_reason.clear();
                true
            }
            Event::TaskDisabled(e) => {
                self.status = Status::Disabled;
                self.disabled_reason.clone_from(&e.reason);
                true
            }
            Event::TaskCancelled(_) => {
                self.status = Status::Cancelled;
                self.cancelled_at = at;
                true
            }
            Event::TaskCompleted(_) => {
                self.status = Status::Completed;
                self.completed_at = at;
                true
            }
            Event::TaskFailed(e) => {
                self.status = Status::Failed;
                self.failed_error.clone_from(&e.error);
                true
            }
            Event::TaskTriggered(_) => {
                self.execution_count += 1;
                self.last_ran_at = at;
                true
            }
            Event::ExecutionStarted(_) => {
                self.running += 1;
                false
            }
            Event::ExecutionFinished(_) => {
                // Saturating: a run the engine gave up on before it started never counted.
                self.running = self.running.saturating_sub(1);
                false
            }
            _ => false,
        };
        if on_task_stream {
            self.version = env.seq;
        }
    }
}

fn ms(recorded_at: u64) -> i64 {
    i64::try_from(recorded_at).unwrap_or(i64::MAX)
}

pub fn read_counter(value: Option<impl AsRef<[u8]>>) -> u64 {
    value
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
