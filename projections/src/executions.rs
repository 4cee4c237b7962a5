//! Executions: each run's history and its firing, the runs still pending, and daily counters.
//!
//! Keys (keyspace `executions`):
//! - `history:<task id>:<execution id>` → the run's head (JSON: `ExecutionRow` with the ids of its
//!   steps in the order they were recorded, not the steps);
//! - `step:<task id>:<execution id>:<step id>` → `Step` (JSON): one row per step, so that recording
//!   a step writes that step and the small head, not the whole history again (a run of many large
//!   steps used to rewrite all of them at every step);
//! - `trigger:<task id>:<execution id>` → `TriggerRow` (JSON): the firing that started the run;
//! - `q:<execution id>` → task id: queued and not finished (the engine's queue is the log; this is
//!   its index);
//! - `claim:<execution id>` → `ClaimRow` (JSON): the replica that last claimed the pending
//!   execution and until when (a replicated log's engines, see `ExecutionClaimed`); removed when
//!   its claimant releases it (`ExecutionReleased`), and with the `q:` row when it finishes;
//! - `d:<task id>:<day>` → `DayStats` (JSON), day = days since the epoch (UTC) of the finish.
//!
//! Execution ids are ULIDs, so the history of a task is in time order.

use events::event::Event;
use events::execution::{ExecutionOutcome, Firing, Step};
use events::{Envelope, Tx, fjall::Keyspace};
use serde::{Deserialize, Serialize};

use crate::{JsonRow, Projection, get_row, put_json, put_row};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "executions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Success,
    Failed,
    PartialSuccess,
}

impl RunStatus {
    /// Whether the execution has ended.
    pub fn finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::PartialSuccess)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRow {
    pub id: String,
    pub task_id: String,
    pub owner: String,
    pub index: i64,
    pub status: RunStatus,
    pub queued_at: i64,
    /// When the run started (0 while queued).
    pub start_at: i64,
    pub end_at: i64,
    pub error: String,
    pub steps: Vec<Step>,
}

/// What the `history:` key holds: the row without its steps, and the order of their ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Head {
    id: String,
    task_id: String,
    owner: String,
    index: i64,
    status: RunStatus,
    queued_at: i64,
    start_at: i64,
    end_at: i64,
    error: String,
    steps: Vec<String>,
}

impl JsonRow for Head {
    const PROJECTION: &'static str = NAME;

    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.task_id.len()
            + self.owner.len()
            + self.error.len()
            + self
                .steps
                .iter()
                .map(|s| s.len() + std::mem::size_of::<String>())
                .sum::<usize>()
    }
}

impl JsonRow for DayStats {
    const PROJECTION: &'static str = NAME;

    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

impl Head {
    fn into_row(self, steps: Vec<Step>) -> ExecutionRow {
        ExecutionRow {
            id: self.id,
            task_id: self.task_id,
            owner: self.owner,
            index: self.index,
            status: self.status,
            queued_at: self.queued_at,
            start_at: self.start_at,
            end_at: self.end_at,
            error: self.error,
            steps,
        }
    }
}

/// An execution with its steps, read from the keyspace.
pub fn read(
    keyspace: &Keyspace,
    task_id: &str,
    execution_id: &str,
) -> events::Result<Option<ExecutionRow>> {
    let Some(bytes) = keyspace.get(history_key(task_id, execution_id))? else {
        return Ok(None);
    };
    let head: Head = serde_json::from_slice(&bytes).map_err(|e| corrupt(&e))?;
    let mut steps = Vec::with_capacity(head.steps.len());
    for step_id in &head.steps {
        let key = step_key(task_id, execution_id, step_id);
        let bytes = keyspace.get(&key)?.ok_or_else(|| {
            corrupt(&format!(
                "execution {execution_id} lists step {step_id} but has no row for it"
            ))
        })?;
        steps.push(serde_json::from_slice(&bytes).map_err(|e| corrupt(&e))?);
    }
    Ok(Some(head.into_row(steps)))
}

fn corrupt(e: &dyn std::fmt::Display) -> events::Error {
    events::Error::Projection {
        projection: "executions".into(),
        message: format!("corrupt row: {e}"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRow {
    pub execution_id: String,
    pub task_id: String,
    pub firing: Firing,
}

/// Runs that finished on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayStats {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Sum of (end - start) in milliseconds, for the average.
    pub total_ms: u64,
}

pub fn history_key(task_id: &str, execution_id: &str) -> Vec<u8> {
    format!("history:{task_id}:{execution_id}").into_bytes()
}

pub fn history_prefix(task_id: &str) -> Vec<u8> {
    format!("history:{task_id}:").into_bytes()
}

pub fn step_key(task_id: &str, execution_id: &str, step_id: &str) -> Vec<u8> {
    format!("step:{task_id}:{execution_id}:{step_id}").into_bytes()
}

pub fn trigger_key(task_id: &str, execution_id: &str) -> Vec<u8> {
    format!("trigger:{task_id}:{execution_id}").into_bytes()
}

pub fn queue_key(execution_id: &str) -> Vec<u8> {
    format!("q:{execution_id}").into_bytes()
}

pub const QUEUE_PREFIX: &[u8] = b"q:";

pub fn claim_key(execution_id: &str) -> Vec<u8> {
    format!("claim:{execution_id}").into_bytes()
}

pub const CLAIM_PREFIX: &[u8] = b"claim:";

/// Who holds a pending execution's claim, and until when (ms since the epoch, the claimant's
/// clock as its command recorded it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRow {
    pub replica: String,
    pub owner: String,
    pub lease_until_ms: u64,
}

impl ClaimRow {
    /// Whether the lease still holds at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms < self.lease_until_ms
    }
}

pub fn day_key(task_id: &str, day: u64) -> Vec<u8> {
    format!("d:{task_id}:{day:08}").into_bytes()
}

pub fn day_prefix(task_id: &str) -> Vec<u8> {
    format!("d:{task_id}:").into_bytes()
}

pub const DAY_MS: u64 = 86_400_000;

/// When an updated run started and ended (what the day's counters need of it).
struct Span {
    start_at: i64,
    end_at: i64,
}

#[derive(Clone)]
pub struct Executions {
    keyspace: Keyspace,
}

impl Executions {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    fn update(
        &self,
        tx: &mut Tx,
        task_id: &str,
        execution_id: &str,
        change: impl FnOnce(&mut Head),
    ) -> events::Result<Option<Span>> {
        let key = history_key(task_id, execution_id);
        let Some(mut row) = get_row::<Head>(tx, &self.keyspace, &key)? else {
            return Ok(None);
        };
        change(&mut row);
        let span = Span {
            start_at: row.start_at,
            end_at: row.end_at,
        };
        put_row(tx, &self.keyspace, key, row);
        Ok(Some(span))
    }
}

impl Projection for Executions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema_version(&self) -> u32 {
        2
    }

    fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn apply(&self, env: &Envelope, tx: &mut Tx) -> events::Result<()> {
        let at = i64::try_from(env.recorded_at).unwrap_or(i64::MAX);
        match &env.event {
            Event::ExecutionQueued(e) => {
                let row = Head {
                    id: e.execution_id.clone(),
                    task_id: e.task_id.clone(),
                    owner: e.owner.clone(),
                    index: e.index,
                    status: RunStatus::Pending,
                    queued_at: at,
                    start_at: 0,
                    end_at: 0,
                    error: String::new(),
                    steps: Vec::new(),
                };
                put_row(
                    tx,
                    &self.keyspace,
                    history_key(&e.task_id, &e.execution_id),
                    row,
                );
                let trigger = TriggerRow {
                    execution_id: e.execution_id.clone(),
                    task_id: e.task_id.clone(),
                    firing: e.firing.clone(),
                };
                put_json(
                    tx,
                    &self.keyspace,
                    trigger_key(&e.task_id, &e.execution_id),
                    &trigger,
                    self.name(),
                )?;
                tx.insert(
                    &self.keyspace,
                    queue_key(&e.execution_id),
                    e.task_id.as_bytes(),
                );
                Ok(())
            }
            Event::ExecutionStarted(e) => {
                self.update(tx, &e.task_id, &e.execution_id, |row| {
                    row.status = RunStatus::Running;
                    row.start_at = if e.started_at > 0 { e.started_at } else { at };
                })?;
                Ok(())
            }
            Event::StepRecorded(e) => {
                let head = self.update(tx, &e.task_id, &e.execution_id, |row| {
                    // A step recorded again (a read re-run after a crash) replaces the first.
                    if !row.steps.contains(&e.step.id) {
                        row.steps.push(e.step.id.clone());
                    }
                })?;
                if head.is_some() {
                    put_json(
                        tx,
                        &self.keyspace,
                        step_key(&e.task_id, &e.execution_id, &e.step.id),
                        &e.step,
                        self.name(),
                    )?;
                }
                Ok(())
            }
            Event::ExecutionClaimed(e) => {
                // Only a pending execution has a claim (a renewal that raced the finish does not
                // bring one back).
                if tx
                    .get(&self.keyspace, &queue_key(&e.execution_id))?
                    .is_some()
                {
                    let claim = ClaimRow {
                        replica: e.replica.clone(),
                        owner: e.owner.clone(),
                        lease_until_ms: e.lease_until_ms,
                    };
                    put_json(
                        tx,
                        &self.keyspace,
                        claim_key(&e.execution_id),
                        &claim,
                        self.name(),
                    )?;
                }
                Ok(())
            }
            Event::ExecutionReleased(e) => {
                // The claim goes only when it is the releaser's (the engine appends a release
                // against the version of its own claim, so in the log it always is).
                let held = match tx.get(&self.keyspace, &claim_key(&e.execution_id))? {
                    Some(bytes) => {
                        serde_json::from_slice::<ClaimRow>(&bytes)
                            .map_err(|err| crate::corrupt(NAME, &err))?
                            .replica
                            == e.replica
                    }
                    None => false,
                };
                if held {
                    tx.remove(&self.keyspace, claim_key(&e.execution_id));
                }
                Ok(())
            }
            Event::ExecutionFinished(e) => {
                let row = self.update(tx, &e.task_id, &e.execution_id, |row| {
                    row.status = match e.outcome {
                        ExecutionOutcome::Success => RunStatus::Success,
                        ExecutionOutcome::Failed => RunStatus::Failed,
                        ExecutionOutcome::PartialSuccess => RunStatus::PartialSuccess,
                    };
                    row.error.clone_from(&e.error);
                    row.end_at = at;
                    if row.start_at == 0 {
                        row.start_at = at;
                    }
                })?;
                tx.remove(&self.keyspace, queue_key(&e.execution_id));
                tx.remove(&self.keyspace, claim_key(&e.execution_id));
                if let Some(row) = row {
                    let key = day_key(&e.task_id, env.recorded_at / DAY_MS);
                    let mut day: DayStats = get_row(tx, &self.keyspace, &key)?.unwrap_or_default();
                    day.total += 1;
                    match e.outcome {
                        ExecutionOutcome::Success => day.succeeded += 1,
                        // A run with a failed step (or an untaken branch) did not fully succeed.
                        ExecutionOutcome::Failed | ExecutionOutcome::PartialSuccess => {
                            day.failed += 1;
                        }
                    }
                    day.total_ms +=
                        u64::try_from(row.end_at.saturating_sub(row.start_at)).unwrap_or(0);
                    put_row(tx, &self.keyspace, key, day);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
