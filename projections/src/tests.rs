//! Property: whatever the sequence of commands (and however they are grouped into commits), the
//! incrementally maintained projections equal a rebuild from the log, byte for byte, and the log
//! verifies.

use std::sync::Arc;

use events::event::*;
use events::execution::{ExecutionOutcome, Firing, FiringSource};
use events::task::TriggerKind;
use events::{Command, Durability, Expected, Log, LogOptions};
use proptest::prelude::*;

use crate::{CATCH_UP_BATCH, KEYSPACES, Projections, REBUILD_MEMORY};

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Enable(u8),
    Disable(u8),
    Cancel(u8),
    Complete(u8),
    Fail(u8),
    Delete(u8),
    Trigger(u8, u8),
    Start(u8, u8),
    Step(u8, u8, u8),
    Finish(u8, u8, bool),
    Wallet(u8),
    Hide(u8, bool),
    Secret(u8, u8),
    SecretDelete(u8),
    Revoke(u8),
    Register(u8),
    Assign(u8, u8, bool),
    Attest(u8, u8),
    Fired(u8, u8),
    Claim(u8, u8, u8),
    Release(u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0u8..4;
    prop_oneof![
        3 => t.clone().prop_map(Op::Create),
        1 => t.clone().prop_map(Op::Enable),
        1 => t.clone().prop_map(Op::Disable),
        1 => t.clone().prop_map(Op::Cancel),
        1 => t.clone().prop_map(Op::Complete),
        1 => t.clone().prop_map(Op::Fail),
        1 => t.clone().prop_map(Op::Delete),
        3 => (t.clone(), 0u8..6).prop_map(|(t, e)| Op::Trigger(t, e)),
        2 => (t.clone(), 0u8..6).prop_map(|(t, e)| Op::Start(t, e)),
        2 => (t.clone(), 0u8..6, 0u8..3).prop_map(|(t, e, s)| Op::Step(t, e, s)),
        2 => (t.clone(), 0u8..6, any::<bool>()).prop_map(|(t, e, ok)| Op::Finish(t, e, ok)),
        1 => (0u8..3).prop_map(Op::Wallet),
        1 => (0u8..3, any::<bool>()).prop_map(|(w, h)| Op::Hide(w, h)),
        1 => (0u8..3, 0u8..3).prop_map(|(s, v)| Op::Secret(s, v)),
        1 => (0u8..3).prop_map(Op::SecretDelete),
        1 => (0u8..3).prop_map(Op::Revoke),
        1 => (0u8..3).prop_map(Op::Register),
        2 => (t.clone(), 0u8..3, any::<bool>()).prop_map(|(t, o, on)| Op::Assign(t, o, on)),
        1 => (t.clone(), 0u8..4).prop_map(|(t, r)| Op::Attest(t, r)),
        1 => (t.clone(), 0u8..4).prop_map(|(t, r)| Op::Fired(t, r)),
        2 => (t.clone(), 0u8..6, 0u8..3).prop_map(|(t, e, r)| Op::Claim(t, e, r)),
        1 => (t, 0u8..6, 0u8..3).prop_map(|(t, e, r)| Op::Release(t, e, r)),
    ]
}

fn task(t: u8) -> String {
    format!("01TASK{t:020}")
}

fn exec(t: u8, e: u8) -> String {
    format!("01EXEC{t:010}{e:010}")
}

fn owner(t: u8) -> String {
    format!("0xowner{}", t % 2)
}

fn scope(s: u8) -> SecretScope {
    SecretScope {
        owner: owner(s),
        org_id: String::new(),
        workflow_id: if s == 2 { task(0) } else { String::new() },
        name: format!("secret{s}"),
    }
}

/// The stream and event one operation appends.
fn event_of(op: &Op) -> (String, Event) {
    match *op {
        Op::Create(t) => {
            let mut definition = events::samples::definition();
            definition.name = format!("task {t}");
            (
                events::stream::task(&task(t)),
                TaskCreated {
                    task_id: task(t),
                    owner: owner(t),
                    wallet: format!("0xwallet{}", t % 3),
                    definition,
                }
                .into(),
            )
        }
        Op::Enable(t) => (
            events::stream::task(&task(t)),
            TaskEnabled { task_id: task(t) }.into(),
        ),
        Op::Disable(t) => (
            events::stream::task(&task(t)),
            TaskDisabled {
                task_id: task(t),
                reason: "user".into(),
            }
            .into(),
        ),
        Op::Cancel(t) => (
            events::stream::task(&task(t)),
            TaskCancelled { task_id: task(t) }.into(),
        ),
        Op::Complete(t) => (
            events::stream::task(&task(t)),
            TaskCompleted {
                task_id: task(t),
                reason: "max".into(),
            }
            .into(),
        ),
        Op::Fail(t) => (
            events::stream::task(&task(t)),
            TaskFailed {
                task_id: task(t),
                error: "bad".into(),
            }
            .into(),
        ),
        Op::Delete(t) => (
            events::stream::task(&task(t)),
            TaskDeleted { task_id: task(t) }.into(),
        ),
        Op::Trigger(t, e) => (
            events::stream::execution(&exec(t, e)),
            ExecutionQueued {
                execution_id: exec(t, e),
                task_id: task(t),
                owner: owner(t),
                index: i64::from(e),
                firing: Firing {
                    dedup_key: format!("{}:{e}", task(t)),
                    source: FiringSource::Client,
                    kind: TriggerKind::Manual,
                    output: None,
                    input: Default::default(),
                },
            }
            .into(),
        ),
        Op::Start(t, e) => (
            events::stream::execution(&exec(t, e)),
            ExecutionStarted {
                execution_id: exec(t, e),
                task_id: task(t),
                started_at: 0,
            }
            .into(),
        ),
        Op::Step(t, e, s) => {
            let mut step = events::samples::step();
            step.id = format!("node{s}");
            (
                events::stream::execution(&exec(t, e)),
                StepRecorded {
                    execution_id: exec(t, e),
                    task_id: task(t),
                    step,
                }
                .into(),
            )
        }
        Op::Claim(t, e, r) => (
            events::stream::execution(&exec(t, e)),
            ExecutionClaimed {
                execution_id: exec(t, e),
                task_id: task(t),
                owner: owner(t),
                replica: format!("replica{r}"),
                lease_until_ms: 1_764_000_000_000 + u64::from(r) * 1000,
            }
            .into(),
        ),
        Op::Release(t, e, r) => (
            events::stream::execution(&exec(t, e)),
            ExecutionReleased {
                execution_id: exec(t, e),
                task_id: task(t),
                replica: format!("replica{r}"),
            }
            .into(),
        ),
        Op::Finish(t, e, ok) => (
            events::stream::execution(&exec(t, e)),
            ExecutionFinished {
                execution_id: exec(t, e),
                task_id: task(t),
                outcome: if ok {
                    ExecutionOutcome::Success
                } else {
                    ExecutionOutcome::Failed
                },
                error: if ok {
                    String::new()
                } else {
                    "1 of 1 steps failed: code".into()
                },
            }
            .into(),
        ),
        Op::Wallet(w) => (
            events::stream::wallet(&owner(w), &format!("0xwallet{w}")),
            WalletRegistered {
                owner: owner(w),
                address: format!("0xwallet{w}"),
                salt: w.to_string(),
                factory: "0xfactory".into(),
            }
            .into(),
        ),
        Op::Hide(w, hide) => {
            let stream = events::stream::wallet(&owner(w), &format!("0xwallet{w}"));
            let (owner, address) = (owner(w), format!("0xwallet{w}"));
            let event = if hide {
                WalletHidden { owner, address }.into()
            } else {
                WalletUnhidden { owner, address }.into()
            };
            (stream, event)
        }
        Op::Secret(s, v) => {
            let sc = scope(s);
            let stream = events::stream::secret(&sc.org_id, &sc.owner, &sc.workflow_id, &sc.name);
            let event = if v == 0 {
                SecretCreated {
                    scope: sc,
                    ciphertext: format!("{v:02x}").repeat(20),
                    description: String::new(),
                }
                .into()
            } else {
                SecretUpdated {
                    scope: sc,
                    ciphertext: format!("{v:02x}").repeat(20),
                }
                .into()
            };
            (stream, event)
        }
        Op::SecretDelete(s) => {
            let sc = scope(s);
            let stream = events::stream::secret(&sc.org_id, &sc.owner, &sc.workflow_id, &sc.name);
            (stream, SecretDeleted { scope: sc }.into())
        }
        Op::Revoke(j) => (
            events::stream::api_key(&format!("jti{j}")),
            ApiKeyRevoked {
                jti: format!("jti{j}"),
            }
            .into(),
        ),
        Op::Register(o) => (
            events::stream::operator(&format!("0xop{o}")),
            OperatorRegistered {
                address: format!("0xop{o}"),
                bls_public_key: "aa".repeat(48),
                bls_proof_of_possession: "bb".repeat(96),
                ecdsa_binding: "cc".repeat(65),
                weight: u64::from(o) + 1,
            }
            .into(),
        ),
        Op::Assign(t, o, on) => {
            let (task_id, operator) = (task(t), format!("0xop{o}"));
            let event = if on {
                OperatorAssigned { task_id, operator }.into()
            } else {
                OperatorUnassigned {
                    task_id,
                    operator,
                    reason: "moved".into(),
                }
                .into()
            };
            (events::stream::assignment(&task(t)), event)
        }
        Op::Attest(t, r) => (
            events::stream::firing(&task(t), &format!("{}:{r}", task(t))),
            TriggerAttested {
                task_id: task(t),
                trigger_request_id: format!("{}:{r}", task(t)),
                chain_id: 31337,
                kind: TriggerKind::Block,
                output: Some(serde_json::json!({"blockNumber": r})),
                output_hash: "11".repeat(32),
                digest: "22".repeat(32),
                aggregate_signature: "33".repeat(96),
                signers: vec!["0xop0".into()],
                quorum: None,
            }
            .into(),
        ),
        Op::Fired(t, r) => (
            events::stream::task(&task(t)),
            TaskTriggered {
                task_id: task(t),
                execution_id: exec(t, r),
                index: i64::from(r),
                dedup_key: format!("{}:{r}", task(t)),
            }
            .into(),
        ),
    }
}

/// Runs the operations through a live log (several writer threads, so that commands share group
/// commits), then rebuilds the projections from the log into another database and compares.
fn check(ops: Vec<Vec<Op>>) -> Result<(), TestCaseError> {
    let live_dir = tempfile::tempdir().unwrap();
    let db = events::open_database(live_dir.path()).unwrap();
    let mut projections = Projections::open(&db).unwrap();
    let log_ks = events::LogKeyspaces::open(&db).unwrap();
    projections.catch_up(&log_ks, &|_| {}).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Arc::new(Log::open(&db, options, Box::new(projections)).unwrap());

    let chunks: Vec<Vec<Vec<Op>>> = {
        let mut lanes = vec![Vec::new(), Vec::new(), Vec::new()];
        for (i, command) in ops.into_iter().enumerate() {
            lanes[i % 3].push(command);
        }
        lanes
    };
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|lane| {
            let log = log.clone();
            std::thread::spawn(move || {
                for command in lane {
                    let mut by_stream: Vec<(String, Vec<Event>)> = Vec::new();
                    for op in &command {
                        let (stream, event) = event_of(op);
                        match by_stream.iter_mut().find(|(s, _)| *s == stream) {
                            Some((_, events)) => events.push(event),
                            None => by_stream.push((stream, vec![event])),
                        }
                    }
                    let mut c = Command::new("0xactor", 1_764_000_000_000);
                    for (stream, events) in by_stream {
                        c = c.append(stream, Expected::Any, events);
                    }
                    // Closed streams (deleted tasks) and events after a closing one are refused:
                    // that is part of what is being exercised.
                    let _ = log.append_blocking(c);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.shutdown();

    let report = events::verify(&log_ks, 2, &|_| {}).unwrap();
    prop_assert!(report.is_ok(), "verify failed: {:?}", report);

    // Rebuilt twice: with all rows in memory, and with so little memory that the rebuild
    // spills every few events and its cache overflows (what a large log does).
    let live = Projections::open(&db).unwrap();
    for (memory, batch) in [(REBUILD_MEMORY, CATCH_UP_BATCH), (4096, 3)] {
        let rebuilt_dir = tempfile::tempdir().unwrap();
        let rebuilt_db = events::open_database(rebuilt_dir.path()).unwrap();
        let mut rebuilt = Projections::open(&rebuilt_db).unwrap();
        rebuilt.rebuild_memory = memory;
        rebuilt.catch_up_batch = batch;
        rebuilt.catch_up(&log_ks, &|_| {}).unwrap();
        for name in KEYSPACES {
            let difference = events::first_difference(
                live.keyspace(name).unwrap(),
                rebuilt.keyspace(name).unwrap(),
            )
            .unwrap();
            prop_assert!(
                difference.is_none(),
                "{name} (rebuilt in {memory} bytes): {}",
                difference.unwrap()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn incremental_projections_equal_a_rebuild(ops in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..120)) {
        check(ops)?;
    }
}

/// A deterministic case that covers every projection at least once, so a broken projection fails
/// even if the random cases miss it.
#[test]
fn every_projection_is_exercised() {
    let ops = vec![
        vec![Op::Create(0)],
        vec![Op::Create(1), Op::Disable(1)],
        vec![Op::Trigger(0, 0)],
        vec![Op::Claim(0, 0, 1), Op::Start(0, 0), Op::Step(0, 0, 1)],
        vec![Op::Claim(0, 0, 2)],
        vec![Op::Release(0, 0, 1), Op::Release(0, 0, 2)],
        vec![Op::Claim(0, 0, 1)],
        vec![Op::Finish(0, 0, false)],
        vec![Op::Claim(0, 0, 1)],
        vec![Op::Wallet(1), Op::Hide(1, true)],
        vec![Op::Secret(2, 0)],
        vec![Op::Secret(2, 1)],
        vec![Op::Revoke(1)],
        vec![Op::Cancel(0)],
        vec![Op::Delete(1)],
    ];
    check(ops).unwrap();
}

#[test]
fn a_claim_is_seen_while_its_execution_is_pending_and_goes_with_its_release_or_finish() {
    // Given a task with a queued execution.
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let mut projections = Projections::open(&db).unwrap();
    let log_ks = events::LogKeyspaces::open(&db).unwrap();
    projections.catch_up(&log_ks, &|_| {}).unwrap();
    let views = projections.views();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Log::open(&db, options, Box::new(projections)).unwrap();
    let append = |ops: &[Op]| {
        for op in ops {
            let (stream, event) = event_of(op);
            let command = Command::new("engine", 1).append(stream, Expected::Any, [event]);
            log.append_blocking(command).unwrap();
        }
    };
    append(&[Op::Create(0), Op::Trigger(0, 0)]);
    let pending = views.pending_claims().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].claim, None, "not claimed yet");
    // When one replica claims it, then another.
    append(&[Op::Claim(0, 0, 1)]);
    let claim = views.pending_claim(&exec(0, 0)).unwrap().unwrap().unwrap();
    assert_eq!(claim.replica, "replica1");
    assert!(claim.live(claim.lease_until_ms - 1) && !claim.live(claim.lease_until_ms));
    append(&[Op::Claim(0, 0, 2)]);
    let pending = views.pending_claims().unwrap();
    assert_eq!(pending[0].claim.as_ref().unwrap().replica, "replica2");
    assert_eq!(pending[0].claim.as_ref().unwrap().owner, owner(0));
    // When a replica that does not hold it releases it: the claim stays.
    append(&[Op::Release(0, 0, 1)]);
    let pending = views.pending_claims().unwrap();
    assert_eq!(pending[0].claim.as_ref().unwrap().replica, "replica2");
    // When its holder releases it: it is unclaimed, as before any claim.
    append(&[Op::Release(0, 0, 2)]);
    let pending = views.pending_claims().unwrap();
    assert_eq!(pending.len(), 1, "still pending");
    assert_eq!(pending[0].claim, None, "unclaimed");
    append(&[Op::Claim(0, 0, 2)]);
    // Then its finish takes the claim with it, and a renewal after the finish brings none back.
    append(&[Op::Finish(0, 0, true), Op::Claim(0, 0, 2)]);
    assert!(views.pending_claims().unwrap().is_empty());
    assert_eq!(views.pending_claim(&exec(0, 0)).unwrap(), None);
}

/// The names agree: every projection is opened by its own name, `KEYSPACES` lists them in the
/// order they apply, and `Views` reads the same keyspaces.
#[test]
fn projections_views_and_keyspaces_name_the_same_keyspaces() {
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let projections = Projections::open(&db).unwrap();
    let names: Vec<&str> = projections.all.iter().map(|p| p.name()).collect();
    assert_eq!(names, KEYSPACES);
    let views = projections.views();
    for projection in &projections.all {
        assert_eq!(
            views.keyspace(projection.name()).map(|k| k.name()),
            Some(projection.keyspace().name()),
        );
    }
}
