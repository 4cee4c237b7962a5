//! Claims: on a replicated log, every replica's engine runs executions, each taken by one
//! replica through the log.
//!
//! - A replica takes a pending execution by appending `ExecutionClaimed` (its id, the owner, a
//!   lease) to the execution's stream against the version it read (`claimable` decides on the
//!   `claim:` row of the executions projection). The log's writer appends it only at that
//!   version: of two replicas racing for one execution, one wins and the other's command
//!   conflicts, and it moves on. A claim is granted over another only once that one's lease has
//!   lapsed, judged by the claimant's clock at its command's `recorded_at` (kept in the log, so
//!   what was granted when can be checked afterwards): the writer judges versions, not time,
//!   and a claimant whose clock runs ahead takes over early by its skew at most, which the step
//!   protocol makes safe (below).
//! - The claimant renews the claim (the same event again) three times per lease while the run
//!   goes on (`renew`), on the version it shares with the run's recorder (`run::Cursor`): a run
//!   may take minutes (`engine.execution_limit`, a write node's receipt wait) while a claim
//!   lapses in `event_log.claim_ttl` (10 s), so that a dead replica's executions are taken over
//!   quickly and a live one's never are.
//! - Which executions a replica takes (`choose`): pending ones unclaimed, lapsed, or its own
//!   that it does not run; with `engine.serial_per_task` only the oldest pending execution of
//!   each task (the next is taken once it finished, so runs of a task stay in order across
//!   replicas); no more than the owner's `engine.owner_concurrency` claimed at once across
//!   replicas, and no more than this replica's free `engine.concurrency`.
//! - Why a lapsed claim cannot make a side effect run twice: every event of a run is appended
//!   against the stream's version, and a new claim moves it. The old claimant, if it still runs
//!   (paused, cut off), can append nothing more: a step with effects whose `StepStarted` it had
//!   recorded is found interrupted by the new claimant and not run again; one it had not yet
//!   recorded it never starts, since `StepStarted` is durable before the node runs.
//!
//! - A replica that stops gracefully releases what it holds (`release_all`, appending
//!   `ExecutionReleased` once its runs have had the shutdown's grace to finish and the rest
//!   were stopped): another replica takes each at once instead of after the lease lapses. A run
//!   stopped mid-step is then handled as after a lapse: its started, unrecorded step with
//!   effects is recorded interrupted by the next claimant, not run again.
//!
//! On fjall (one process) nothing is claimed: the engine schedules what it fires and resumes
//! what is pending at start, as it always did.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use events::event::{ExecutionClaimed, ExecutionReleased};
use events::{Command, Expected};
use projections::PendingExecution;
use projections::executions::ClaimRow;

use super::run::{Cursor, SharedCursor};
use crate::store::Store;

/// How a replica claims executions (`Engine::start`, on a replicated log).
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// This replica's id (unique among the replicas: a ULID per process start).
    pub replica: String,
    /// How long a claim holds unrenewed (`event_log.claim_ttl`).
    pub ttl: Duration,
    /// Moves with every commit the local database takes (its position on the replicated log):
    /// the engine looks for executions to claim then, besides every `RESUME_EVERY`.
    pub wake: tokio::sync::watch::Receiver<u64>,
}

/// Whether `me` may claim an execution whose claim is `claim`, at `now_ms`: unclaimed, its lease
/// lapsed, or claimed by `me` (a run of its own that ended without finishing).
pub fn claimable(claim: Option<&ClaimRow>, me: &str, now_ms: u64) -> bool {
    claim.is_none_or(|c| c.replica == me || !c.live(now_ms))
}

/// What `choose` needs to know of this replica and its engine.
pub struct Room<'a> {
    pub me: &'a str,
    pub now_ms: u64,
    /// Executions scheduled here and not finished.
    pub scheduled: &'a HashSet<String>,
    pub serial_per_task: bool,
    pub owner_concurrency: usize,
    /// How many more this replica may take now.
    pub free: usize,
    /// Whether this replica may run the task's executions at all: one that does not write
    /// the log leaves those whose nodes send user operations to the writer, so that the
    /// bundler account's nonce has one owner.
    pub takes: &'a dyn Fn(&str) -> bool,
}

/// The pending executions (oldest first) this replica takes now, as (execution, task, owner);
/// `owner_of` gives the owner of an unclaimed one's task.
pub fn choose(
    pending: &[PendingExecution],
    room: &Room<'_>,
    mut owner_of: impl FnMut(&str) -> Option<String>,
) -> Vec<(String, String, String)> {
    let mut claimed_per_owner: HashMap<&str, usize> = HashMap::new();
    for p in pending {
        if let Some(claim) = &p.claim
            && claim.live(room.now_ms)
        {
            *claimed_per_owner.entry(claim.owner.as_str()).or_default() += 1;
        }
    }
    let mut taken_per_owner: HashMap<String, usize> = HashMap::new();
    let mut tasks_seen: HashSet<&str> = HashSet::new();
    let mut chosen = Vec::new();
    for p in pending {
        if chosen.len() >= room.free {
            break;
        }
        let first_of_task = tasks_seen.insert(p.task_id.as_str());
        if room.serial_per_task && !first_of_task {
            continue; // an older run of the task is pending: it goes first
        }
        if room.scheduled.contains(&p.execution_id)
            || !claimable(p.claim.as_ref(), room.me, room.now_ms)
            || !(room.takes)(&p.task_id)
        {
            continue;
        }
        let owner = match &p.claim {
            Some(claim) => Some(claim.owner.clone()),
            None => owner_of(&p.task_id),
        };
        let Some(owner) = owner else { continue };
        let live_own = p
            .claim
            .as_ref()
            .is_some_and(|c| c.live(room.now_ms) && c.replica == room.me);
        let running = claimed_per_owner
            .get(owner.as_str())
            .copied()
            .unwrap_or(0)
            .saturating_sub(usize::from(live_own))
            + taken_per_owner.get(&owner).copied().unwrap_or(0);
        if running >= room.owner_concurrency {
            continue;
        }
        *taken_per_owner.entry(owner.clone()).or_default() += 1;
        chosen.push((p.execution_id.clone(), p.task_id.clone(), owner));
    }
    chosen
}

/// Claims an execution for `me` until `ttl` from now, if it is pending and claimable as this
/// replica's database holds it: `Some` with the cursor its run records on, `None` when another
/// replica holds it or took it first (the append conflicted), or it finished.
pub async fn claim(
    store: &Store,
    me: &str,
    ttl: Duration,
    task_id: &str,
    execution_id: &str,
    owner: &str,
) -> Result<Option<SharedCursor>, events::Error> {
    let stream = events::stream::execution(execution_id);
    let loaded = store.at_version(&stream, |views| views.pending_claim(execution_id))?;
    let now = crate::clock::now_ms();
    let expected = loaded.expected();
    let Some(claim) = loaded.state else {
        return Ok(None); // finished
    };
    if !claimable(claim.as_ref(), me, now) {
        return Ok(None);
    }
    let command = Command::new("engine", now).append(
        stream,
        expected,
        [claimed(task_id, execution_id, owner, me, now, ttl)],
    );
    match store.append(command).await {
        Ok(_) => Ok(Some(std::sync::Arc::new(tokio::sync::Mutex::new(Cursor {
            version: loaded.version + 1,
            finished: false,
        })))),
        Err(events::Error::Conflict { .. } | events::Error::StreamClosed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn claimed(
    task_id: &str,
    execution_id: &str,
    owner: &str,
    me: &str,
    now: u64,
    ttl: Duration,
) -> events::Event {
    ExecutionClaimed {
        execution_id: execution_id.to_owned(),
        task_id: task_id.to_owned(),
        owner: owner.to_owned(),
        replica: me.to_owned(),
        lease_until_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
    }
    .into()
}

/// How many times a release that conflicted (an append of the run, aborted at shutdown, landed
/// after the release was decided) is decided again on what the log holds then.
const RELEASE_ATTEMPTS: usize = 5;

/// Gives up every claim `me` holds on a pending execution (`ExecutionReleased`), so that another
/// replica takes each at once rather than once its lease lapses: called at a graceful shutdown,
/// once this replica's runs have ended or been stopped. Each release is appended against the
/// version of the stream whose latest claim is `me`'s; one that conflicts is decided again (a
/// few times) on the log as it is then. Answers how many were released.
pub async fn release_all(store: &Store, me: &str) -> Result<usize, events::Error> {
    let mut released = 0;
    for pending in store.views.pending_claims()? {
        if pending.claim.as_ref().is_none_or(|c| c.replica != me) {
            continue;
        }
        for attempt in 1..=RELEASE_ATTEMPTS {
            let stream = events::stream::execution(&pending.execution_id);
            let loaded =
                store.at_version(&stream, |views| views.pending_claim(&pending.execution_id))?;
            let expected = loaded.expected();
            // Finished meanwhile, or taken over by another replica: nothing of ours to release.
            let Some(Some(claim)) = loaded.state else {
                break;
            };
            if claim.replica != me {
                break;
            }
            let event = ExecutionReleased {
                execution_id: pending.execution_id.clone(),
                task_id: pending.task_id.clone(),
                replica: me.to_owned(),
            };
            let command = Command::new("engine", crate::clock::now_ms()).append(
                stream,
                expected,
                [event.into()],
            );
            match store.append(command).await {
                Ok(_) => {
                    released += 1;
                    break;
                }
                Err(events::Error::Conflict { .. }) if attempt < RELEASE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(events::Error::Conflict { .. } | events::Error::StreamClosed { .. }) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(released)
}

/// Renews `me`'s claim three times per `ttl` until the run records its end or the claim is
/// lost (another replica's claim moved the stream: the run's next append conflicts too).
/// Aborted when the run ends.
pub async fn renew(
    store: Store,
    cursor: SharedCursor,
    me: String,
    ttl: Duration,
    ids: (String, String, String),
) {
    let (task_id, execution_id, owner) = ids;
    let stream = events::stream::execution(&execution_id);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let mut cursor = cursor.lock().await;
        if cursor.finished {
            return;
        }
        let now = crate::clock::now_ms();
        let command = Command::new("engine", now).append(
            stream.clone(),
            Expected::Exactly(cursor.version),
            [claimed(&task_id, &execution_id, &owner, &me, now, ttl)],
        );
        match store.append(command).await {
            Ok(_) => cursor.version += 1,
            Err(events::Error::Conflict { .. } | events::Error::StreamClosed { .. }) => {
                tracing::warn!(%execution_id, "the claim on the execution was lost: another replica took it over");
                return;
            }
            // The writer is changing, or the log refuses for now: the next renewal tries again
            // (the lease outlasts two missed ones).
            Err(e) => tracing::warn!(%execution_id, error = %e, "the claim could not be renewed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(execution: &str, task: &str, claim: Option<(&str, &str, u64)>) -> PendingExecution {
        PendingExecution {
            execution_id: execution.into(),
            task_id: task.into(),
            claim: claim.map(|(replica, owner, until)| ClaimRow {
                replica: replica.into(),
                owner: owner.into(),
                lease_until_ms: until,
            }),
        }
    }

    fn room<'a>(scheduled: &'a HashSet<String>, serial: bool) -> Room<'a> {
        Room {
            me: "me",
            now_ms: 1_000,
            scheduled,
            serial_per_task: serial,
            owner_concurrency: 2,
            free: 10,
            takes: &any_task,
        }
    }

    fn any_task(_: &str) -> bool {
        true
    }

    #[test]
    fn given_a_task_that_sends_then_only_a_replica_that_may_send_takes_its_runs() {
        // Given a run of a task that sends user operations and one of a task that does not.
        let list = vec![pending("e1", "sends", None), pending("e2", "reads", None)];
        let none = HashSet::new();
        // When a replica that does not write the log chooses.
        let follower = Room {
            takes: &|task: &str| task != "sends",
            ..room(&none, true)
        };
        let chosen = choose(&list, &follower, |_| Some("0xo".into()));
        // Then it leaves the sending task's run to the writer.
        let ids: Vec<&str> = chosen.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ids, ["e2"]);
        // And the writer takes both.
        assert_eq!(
            choose(&list, &room(&none, true), |_| Some("0xo".into())).len(),
            2
        );
    }

    #[test]
    fn given_claims_then_only_unclaimed_lapsed_or_own_ones_are_claimable() {
        let claim = |replica: &str, until| ClaimRow {
            replica: replica.into(),
            owner: "0xo".into(),
            lease_until_ms: until,
        };
        assert!(claimable(None, "me", 1_000));
        assert!(!claimable(Some(&claim("other", 1_001)), "me", 1_000));
        assert!(
            claimable(Some(&claim("other", 1_000)), "me", 1_000),
            "lapsed"
        );
        assert!(claimable(Some(&claim("me", 5_000)), "me", 1_000), "its own");
    }

    #[test]
    fn given_runs_serial_per_task_then_only_the_oldest_of_each_task_is_taken() {
        // Given two runs of task a (the first held by another replica) and one of task b.
        let list = vec![
            pending("e1", "a", Some(("other", "0xo", 2_000))),
            pending("e2", "a", None),
            pending("e3", "b", None),
        ];
        let none = HashSet::new();
        // When this replica chooses, with runs serial per task.
        let chosen = choose(&list, &room(&none, true), |_| Some("0xo".into()));
        // Then it takes b's run only: a's second waits for its first.
        assert_eq!(chosen, vec![("e3".into(), "b".into(), "0xo".into())]);
        // And without the rule it takes both unclaimed ones (the owner's concurrency allowing).
        let wide = Room {
            owner_concurrency: 3,
            ..room(&none, false)
        };
        let chosen = choose(&list, &wide, |_| Some("0xo".into()));
        assert_eq!(chosen.len(), 2);
    }

    #[test]
    fn given_an_owner_at_their_concurrency_across_replicas_then_no_more_of_theirs_is_taken() {
        // Given an owner with two live claims on other replicas (their concurrency) and one
        // lapsed, and another owner's run.
        let list = vec![
            pending("e1", "a", Some(("r2", "0xbusy", 2_000))),
            pending("e2", "b", Some(("r3", "0xbusy", 2_000))),
            pending("e3", "c", Some(("r3", "0xbusy", 900))),
            pending("e4", "d", None),
            pending("e5", "e", None),
        ];
        let owners = |task: &str| Some(if task == "d" { "0xbusy" } else { "0xidle" }.into());
        let none = HashSet::new();
        // When this replica chooses.
        let chosen = choose(&list, &room(&none, true), owners);
        // Then it takes only the other owner's run.
        let ids: Vec<&str> = chosen.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ids, ["e5"]);
    }

    #[test]
    fn given_runs_scheduled_here_or_no_room_then_they_are_not_taken_again() {
        let list = vec![pending("e1", "a", None), pending("e2", "b", None)];
        let scheduled: HashSet<String> = ["e1".to_owned()].into();
        let chosen = choose(&list, &room(&scheduled, true), |_| Some("0xo".into()));
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].0, "e2");
        let full = Room {
            free: 0,
            ..room(&scheduled, true)
        };
        assert!(choose(&list, &full, |_| Some("0xo".into())).is_empty());
    }
}
