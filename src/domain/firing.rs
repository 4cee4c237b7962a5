//! Firings: whether a task may run now, and the events that queue a run.
//!
//! One documented list of outcomes, shared by every source of firings: to operators they are the
//! `status` string of `NotifyTriggersResp`; to clients, `not_found` is NOT_FOUND ("task not
//! found"), a repeat returns the first execution, and the others are FAILED_PRECONDITION with the
//! word in the message.
//!
//! | status | meaning |
//! |---|---|
//! | `enabled` | accepted: the run is queued |
//! | `deduplicated` | this firing (its dedup key) was accepted before: the first run is returned |
//! | `not_found` | no such task (or not the caller's) |
//! | `disabled` | the task is disabled |
//! | `cancelled` | the task was cancelled |
//! | `not_started` | before the task's `start_at` |
//! | `expired` | after the task's `expired_at` |
//! | `exhausted` | the task reached its `max_execution` |
//! | `error` | the task failed for good, or the firing could not be recorded |

use events::Event;
use events::event::{ExecutionQueued, TaskCompleted, TaskTriggered};
use events::execution::Firing;
use projections::tasks::{Status, TaskRow};

/// Why a firing does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Disabled,
    Cancelled,
    NotStarted,
    Expired,
    Exhausted,
    Failed,
}

impl Refusal {
    /// The outcome word of the documented list.
    pub fn word(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Disabled => "disabled",
            Self::Cancelled => "cancelled",
            Self::NotStarted => "not_started",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Failed => "error",
        }
    }

    /// A sentence for clients, with the word in it.
    pub fn message(self) -> String {
        match self {
            Self::NotFound => "task not found".into(),
            Self::Disabled => "the task is disabled: enable it to trigger it".into(),
            Self::Cancelled => "the task is cancelled: it never runs again".into(),
            Self::NotStarted => {
                "the task has not started yet (not_started: before its start_at)".into()
            }
            Self::Expired => "the task has expired (after its expired_at)".into(),
            Self::Exhausted => "the task is exhausted: it reached its max_execution".into(),
            Self::Failed => "the task failed for good (error) and no longer runs".into(),
        }
    }
}

/// Whether a task may run at `now_ms`: enabled, not before `start_at`, not after `expired_at`,
/// runs queued below `max_execution` (0 = unlimited).
pub fn runnable(row: Option<&TaskRow>, now_ms: i64) -> Result<(), Refusal> {
    let row = row.ok_or(Refusal::NotFound)?;
    match row.status {
        Status::Active => {}
        Status::Disabled => return Err(Refusal::Disabled),
        Status::Cancelled => return Err(Refusal::Cancelled),
        Status::Failed => return Err(Refusal::Failed),
        Status::Completed => {
            return Err(if expired(row, now_ms) {
                Refusal::Expired
            } else {
                Refusal::Exhausted
            });
        }
    }
    if row.start_at > 0 && now_ms < row.start_at {
        return Err(Refusal::NotStarted);
    }
    if expired(row, now_ms) {
        return Err(Refusal::Expired);
    }
    if row.max_execution > 0 && row.execution_count >= row.max_execution {
        return Err(Refusal::Exhausted);
    }
    Ok(())
}

fn expired(row: &TaskRow, now_ms: i64) -> bool {
    row.expired_at > 0 && now_ms > row.expired_at
}

/// The events of an accepted firing: on the task's stream, the firing (and the completion when it
/// is the last run `max_execution` allows); on the execution's new stream, the queued run.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub task_events: Vec<Event>,
    pub execution_event: Event,
    pub index: i64,
}

pub fn accept(
    row: &TaskRow,
    execution_id: &str,
    firing: Firing,
    now_ms: i64,
) -> Result<Accepted, Refusal> {
    runnable(Some(row), now_ms)?;
    let index = row.execution_count;
    let mut task_events: Vec<Event> = vec![
        TaskTriggered {
            task_id: row.id.clone(),
            execution_id: execution_id.to_owned(),
            index,
            dedup_key: firing.dedup_key.clone(),
        }
        .into(),
    ];
    if row.max_execution > 0 && index + 1 >= row.max_execution {
        task_events.push(
            TaskCompleted {
                task_id: row.id.clone(),
                reason: "max_execution reached".into(),
            }
            .into(),
        );
    }
    Ok(Accepted {
        task_events,
        execution_event: ExecutionQueued {
            execution_id: execution_id.to_owned(),
            task_id: row.id.clone(),
            owner: row.owner.clone(),
            index,
            firing,
        }
        .into(),
        index,
    })
}

/// A task past its `expired_at` that is still active completes (`c`).
pub fn expiry(row: &TaskRow, now_ms: i64) -> Option<Event> {
    (row.status == Status::Active && expired(row, now_ms)).then(|| {
        TaskCompleted {
            task_id: row.id.clone(),
            reason: "expired".into(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;
    use events::event::{TaskCreated, TaskDisabled};
    use events::execution::FiringSource;
    use events::task::TriggerKind;

    fn created(start_at: i64, expired_at: i64, max_execution: i64) -> Event {
        let mut definition = events::samples::definition();
        definition.start_at = start_at;
        definition.expired_at = expired_at;
        definition.max_execution = max_execution;
        TaskCreated {
            task_id: "t".into(),
            owner: "0xo".into(),
            wallet: "0xw".into(),
            definition,
        }
        .into()
    }

    fn firing(key: &str) -> Firing {
        Firing {
            dedup_key: key.into(),
            source: FiringSource::Client,
            kind: TriggerKind::Manual,
            output: None,
            input: Default::default(),
        }
    }

    fn triggered(accepted: &Accepted) -> Vec<Event> {
        accepted.task_events.clone()
    }

    #[test]
    fn an_active_task_queues_a_run_with_its_index() {
        let state = given(vec![created(0, 0, 0)]);
        let accepted = accept(&state, "e1", firing("k1"), 2_000).unwrap();
        assert_eq!(accepted.index, 0);
        assert_eq!(accepted.task_events.len(), 1);
        assert!(matches!(
            accepted.execution_event,
            Event::ExecutionQueued(_)
        ));
    }

    #[test]
    fn the_last_allowed_run_completes_the_task_and_then_it_is_exhausted() {
        let state = given(vec![created(0, 0, 2)]);
        let first = accept(&state, "e1", firing("k1"), 2_000).unwrap();
        assert_eq!(first.task_events.len(), 1);
        let mut events = vec![created(0, 0, 2)];
        events.extend(triggered(&first));
        let state = given(events.clone());
        let second = accept(&state, "e2", firing("k2"), 2_000).unwrap();
        assert!(matches!(
            second.task_events.last(),
            Some(Event::TaskCompleted(_))
        ));
        events.extend(triggered(&second));
        let state = given(events);
        assert_eq!(
            accept(&state, "e3", firing("k3"), 2_000).unwrap_err(),
            Refusal::Exhausted
        );
    }

    #[test]
    fn zero_max_execution_means_unlimited() {
        let mut events = vec![created(0, 0, 0)];
        for i in 0..50 {
            let state = given(events.clone());
            let accepted =
                accept(&state, &format!("e{i}"), firing(&format!("k{i}")), 2_000).unwrap();
            events.extend(accepted.task_events);
        }
        assert_eq!(given(events).execution_count, 50);
    }

    #[test]
    fn refusals_name_their_reason() {
        assert_eq!(runnable(None, 0), Err(Refusal::NotFound));
        let state = given(vec![created(5_000, 0, 0)]);
        assert_eq!(runnable(Some(&state), 2_000), Err(Refusal::NotStarted));
        let state = given(vec![created(0, 3_000, 0)]);
        assert_eq!(runnable(Some(&state), 4_000), Err(Refusal::Expired));
        assert!(expiry(&state, 4_000).is_some());
        assert!(expiry(&state, 2_000).is_none());
        let state = given(vec![
            created(0, 0, 0),
            TaskDisabled {
                task_id: "t".into(),
                reason: "user".into(),
            }
            .into(),
        ]);
        assert_eq!(runnable(Some(&state), 2_000), Err(Refusal::Disabled));
        assert!(Refusal::Disabled.message().contains("disabled"));
        assert_eq!(Refusal::NotStarted.word(), "not_started");
    }
}
