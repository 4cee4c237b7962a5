//! Assignment: which operators watch which task, and what each is told.
//!
//! - `watched`: the tasks operators watch (active, or running, with a non-manual trigger);
//! - `eligible`: the operators that may be given tasks: connected, or gone for less than the
//!   grace period (so that a restart or a short outage does not move every task);
//! - `per_task`: how many operators watch one task;
//! - `choose`: the `k` eligible operators able to watch a task's trigger with the highest
//!   rendezvous hash (`sha256(task ‖ operator)`), so operators joining or leaving move few tasks;
//!   while nobody is able, a task keeps what it has;
//! - `changes`: the `OperatorAssigned` / `OperatorUnassigned` events from one choice to the next;
//! - `stop`: what an operator that watched a task it no longer has is told;
//! - `due_again`: whether an unacknowledged message goes again.
//!
//! Pure: the time is passed in (`now`), never read here, so grace and re-send are tested
//! without sleeping.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use events::Event;
use events::event::{OperatorAssigned, OperatorUnassigned};
use events::task::TriggerKind;
use projections::tasks::{Status as TaskStatus, TaskRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an operator can watch (from its `SyncMessagesReq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub events: bool,
    pub blocks: bool,
    pub time: bool,
}

impl Capabilities {
    /// Until an operator connects, it keeps its assignments for the grace period as if it could
    /// watch anything: after a restart the first operator back must not take every task alone.
    pub const ANY: Self = Self {
        events: true,
        blocks: true,
        time: true,
    };

    pub fn can_watch(self, kind: TriggerKind) -> bool {
        match kind {
            TriggerKind::Block => self.blocks,
            TriggerKind::Event => self.events,
            TriggerKind::FixedTime | TriggerKind::Cron => self.time,
            TriggerKind::Manual => false,
        }
    }
}

/// Whether operators watch a task: active (or running) with a non-manual trigger.
pub fn watched(row: &TaskRow) -> bool {
    watches(row.status, row.trigger_kind)
}

/// [`watched`], from the two fields of the row it looks at.
pub fn watches(status: TaskStatus, trigger_kind: Option<TriggerKind>) -> bool {
    status == TaskStatus::Active && trigger_kind.is_some_and(|k| k != TriggerKind::Manual)
}

/// One registered operator as the pool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub connected: bool,
    /// Since when it is gone (`None` while connected).
    pub gone_since: Option<Instant>,
    /// What it could watch when it was last connected.
    pub capabilities: Capabilities,
}

/// The operators that may be given tasks at `now`: connected, or gone for less than `grace`.
pub fn eligible<'a>(
    members: impl IntoIterator<Item = (&'a Address, Presence)>,
    grace: Duration,
    now: Instant,
) -> Vec<(Address, Capabilities)> {
    members
        .into_iter()
        .filter(|(_, p)| {
            p.connected
                || p.gone_since
                    .is_some_and(|g| now.saturating_duration_since(g) < grace)
        })
        .map(|(a, p)| (*a, p.capabilities))
        .collect()
}

/// Operators per task: `configured`, or min(3, members) when it is 0.
pub fn per_task(configured: usize, members: usize) -> usize {
    if configured == 0 {
        members.min(3)
    } else {
        configured
    }
}

/// The `k` operators a task goes to: the highest rendezvous hashes among the eligible ones able
/// to watch its trigger. While nobody is, it keeps what it `had` (no flapping on a restart
/// before the operators reconnect).
pub fn choose(
    row: &TaskRow,
    eligible: &[(Address, Capabilities)],
    k: usize,
    had: &BTreeSet<Address>,
) -> BTreeSet<Address> {
    match row.trigger_kind {
        Some(kind) => choose_for(&row.id, kind, eligible, k, had),
        None => BTreeSet::new(),
    }
}

/// [`choose`] for the task `task_id` whose trigger is of `kind`.
pub fn choose_for(
    task_id: &str,
    kind: TriggerKind,
    eligible: &[(Address, Capabilities)],
    k: usize,
    had: &BTreeSet<Address>,
) -> BTreeSet<Address> {
    let mut candidates: Vec<&(Address, Capabilities)> =
        eligible.iter().filter(|(_, c)| c.can_watch(kind)).collect();
    candidates.sort_by_key(|(a, _)| std::cmp::Reverse(rendezvous(task_id, a)));
    let chosen: BTreeSet<Address> = candidates.iter().take(k).map(|(a, _)| *a).collect();
    if chosen.is_empty() {
        had.clone()
    } else {
        chosen
    }
}

fn rendezvous(task_id: &str, operator: &Address) -> [u8; 32] {
    Sha256::new()
        .chain_update(task_id.as_bytes())
        .chain_update(operator.as_slice())
        .finalize()
        .into()
}

/// The events from assignment `had` to `wanted` of `task`; `still_watched` says why operators
/// leave it (the task moved, or stopped).
pub fn changes(
    task: &str,
    had: &BTreeSet<Address>,
    wanted: &BTreeSet<Address>,
    still_watched: bool,
) -> Vec<Event> {
    let reason = if still_watched {
        "reassigned"
    } else {
        "the task stopped"
    };
    let mut events: Vec<Event> = Vec::new();
    for operator in wanted.difference(had) {
        events.push(
            OperatorAssigned {
                task_id: task.to_owned(),
                operator: format!("{operator:#x}"),
            }
            .into(),
        );
    }
    for operator in had.difference(wanted) {
        events.push(
            OperatorUnassigned {
                task_id: task.to_owned(),
                operator: format!("{operator:#x}"),
                reason: reason.into(),
            }
            .into(),
        );
    }
    events
}

/// What an operator that watched a task it no longer has is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The task is gone, or moved to other operators.
    Delete,
    /// It completed.
    Complete,
    /// It was disabled, cancelled or failed.
    Disable,
}

/// `Stop` for a task as it stands now (`None`: deleted).
pub fn stop(row: Option<&TaskRow>) -> Stop {
    match row.map(|r| r.status) {
        None | Some(TaskStatus::Active) => Stop::Delete,
        Some(TaskStatus::Completed) => Stop::Complete,
        Some(_) => Stop::Disable,
    }
}

/// Whether a message sent at `sent_at` and not acknowledged goes again at `now`.
pub fn due_again(sent_at: Instant, now: Instant, ack_timeout: Duration) -> bool {
    now.saturating_duration_since(sent_at) > ack_timeout
}

#[cfg(test)]
mod tests;
