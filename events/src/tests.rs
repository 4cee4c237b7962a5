//! Behaviour of the log: appends, optimistic concurrency, idempotency, closed streams, the hash
//! chain, tampering, poisoning, and the committed v1 fixture.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::event::{ApiKeyRevoked, Event, TaskCreated, TaskDeleted, TaskEnabled};
use crate::task::TaskDefinition;
use crate::{
    Command, Durability, Error, Expected, Log, LogKeyspaces, LogOptions, Projector, Tx, Ulid,
    open_database, verify,
};

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &crate::Envelope, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
}

/// Fails every apply once `fail` is set, as a projection hitting an I/O error would.
struct Failing(Arc<AtomicBool>);

impl Projector for Failing {
    fn apply(&mut self, _: &crate::Envelope, _: &mut Tx) -> crate::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(Error::Storage(crate::fjall::Error::Io(
                std::io::Error::other("simulated storage failure"),
            )));
        }
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
}

fn open(dir: &std::path::Path) -> (Log, LogKeyspaces) {
    let db = open_database(dir).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Log::open(&db, options, Box::new(NoProjections)).unwrap();
    let ks = log.keyspaces().clone();
    (log, ks)
}

fn created(task: &str) -> Event {
    Event::TaskCreated(TaskCreated {
        task_id: task.into(),
        owner: "0xowner".into(),
        wallet: "0xwallet".into(),
        definition: TaskDefinition::default(),
    })
}

fn enabled(task: &str) -> Event {
    Event::TaskEnabled(TaskEnabled {
        task_id: task.into(),
    })
}

fn cmd(stream: &str, expected: Expected, events: Vec<Event>) -> Command {
    Command::new("0xowner", 1_000).append(stream, expected, events)
}

#[test]
fn appends_are_read_back_in_order_with_gapless_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    log.append_blocking(cmd(
        "task:a",
        Expected::Exactly(1),
        vec![enabled("a"), enabled("a")],
    ))
    .unwrap();
    let stream = log.read_stream("task:a").unwrap();
    assert_eq!(
        stream.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(stream.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(log.stream_version("task:a").unwrap(), 3);
    assert_eq!(log.stream_version("task:b").unwrap(), 0);
}

#[test]
fn a_stale_expected_version_is_a_conflict_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    let err = log
        .append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { actual: 1, .. }), "{err}");
    let err = log
        .append_blocking(cmd("task:a", Expected::Exactly(0), vec![enabled("a")]))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(log.stream_version("task:a").unwrap(), 1);
}

#[test]
fn a_multi_stream_command_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    // The second stream's expectation fails: the first stream must not move either.
    let both = Command::new("x", 1)
        .append("task:b", Expected::NoStream, vec![created("b")])
        .append("task:a", Expected::Exactly(7), vec![enabled("a")]);
    assert!(log.append_blocking(both).is_err());
    assert_eq!(log.stream_version("task:b").unwrap(), 0);
    assert_eq!(log.stream_version("task:a").unwrap(), 1);
}

#[test]
fn concurrent_writers_on_one_stream_never_overwrite_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut won = 0;
                for _ in 0..50 {
                    let v = log.stream_version("task:a").unwrap();
                    if log
                        .append_blocking(cmd("task:a", Expected::Exactly(v), vec![enabled("a")]))
                        .is_ok()
                    {
                        won += 1;
                    }
                }
                won
            })
        })
        .collect();
    let won: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(log.stream_version("task:a").unwrap(), 1 + won);
}

#[test]
fn a_retried_command_returns_the_first_result_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ks) = open(dir.path());
    let first = log
        .append_blocking(
            cmd("task:a", Expected::NoStream, vec![created("a")]).idempotent("k1", Some(120_000)),
        )
        .unwrap();
    assert!(!first.deduplicated);
    // The retry would create another task: it must not.
    let retry = log
        .append_blocking(
            cmd("task:b", Expected::NoStream, vec![created("b")]).idempotent("k1", Some(120_000)),
        )
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.events, first.events);
    assert_eq!(log.stream_version("task:b").unwrap(), 0);
    assert_eq!(ks.scan(None).count(), 1);
}

#[test]
fn an_idempotency_key_expires_with_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    let at = |t: u64, stream: &str| {
        let mut c =
            cmd(stream, Expected::NoStream, vec![created(stream)]).idempotent("k", Some(100));
        c.recorded_at = t;
        c
    };
    assert!(
        !log.append_blocking(at(1_000, "task:a"))
            .unwrap()
            .deduplicated
    );
    assert!(
        log.append_blocking(at(1_099, "task:b"))
            .unwrap()
            .deduplicated
    );
    let after = log.append_blocking(at(1_100, "task:c")).unwrap();
    assert!(!after.deduplicated);
    assert_eq!(after.events[0].stream, "task:c");
}

#[test]
fn an_idempotency_key_is_free_again_once_its_stream_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(
        cmd("task:a", Expected::NoStream, vec![created("a")]).idempotent("k", None),
    )
    .unwrap();
    log.append_blocking(cmd(
        "task:a",
        Expected::Exactly(1),
        vec![Event::TaskDeleted(TaskDeleted {
            task_id: "a".into(),
        })],
    ))
    .unwrap();
    let again = log
        .append_blocking(
            cmd("task:b", Expected::NoStream, vec![created("b")]).idempotent("k", None),
        )
        .unwrap();
    assert!(!again.deduplicated);
    assert_eq!(again.events[0].stream, "task:b");
}

#[test]
fn nothing_is_appended_to_a_closed_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    log.append_blocking(cmd(
        "task:a",
        Expected::Any,
        vec![Event::TaskDeleted(TaskDeleted {
            task_id: "a".into(),
        })],
    ))
    .unwrap();
    let err = log
        .append_blocking(cmd("task:a", Expected::Any, vec![enabled("a")]))
        .unwrap_err();
    assert!(matches!(err, Error::StreamClosed { .. }), "{err}");
}

#[test]
fn invalid_commands_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path());
    assert!(matches!(
        log.append_blocking(Command::new("x", 1)).unwrap_err(),
        Error::InvalidCommand(_)
    ));
    let twice = Command::new("x", 1)
        .append("s", Expected::Any, vec![enabled("a")])
        .append("s", Expected::Any, vec![enabled("a")]);
    assert!(matches!(
        log.append_blocking(twice).unwrap_err(),
        Error::InvalidCommand(_)
    ));
}

#[test]
fn state_survives_a_reopen_and_ulids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (log, _) = open(dir.path());
        let c = log.append_blocking(
            cmd("task:a", Expected::NoStream, vec![created("a")]).idempotent("k", None),
        );
        log.shutdown();
        c.unwrap()
    };
    let (log, ks) = open(dir.path());
    let retry = log
        .append_blocking(
            cmd("task:z", Expected::NoStream, vec![created("z")]).idempotent("k", None),
        )
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.events, first.events);
    let next = log
        .append_blocking(cmd("task:a", Expected::Exactly(1), vec![enabled("a")]))
        .unwrap();
    assert!(next.events[0].id > first.events[0].id);
    let report = verify(&ks, 2, &|_| {}).unwrap().unwrap();
    assert_eq!(report.events, 2);
}

#[test]
fn verify_names_the_event_whose_bytes_were_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ks) = open(dir.path());
    for i in 0..50 {
        log.append_blocking(cmd(
            &format!("apikey:{i}"),
            Expected::NoStream,
            vec![Event::ApiKeyRevoked(ApiKeyRevoked {
                jti: format!("j{i}"),
            })],
        ))
        .unwrap();
    }
    assert!(verify(&ks, 2, &|_| {}).unwrap().is_ok());
    // Rewrite event #20 through the storage API: fjall's own checksums stay valid.
    let (victim, value) = ks.scan(None).nth(20).unwrap().unwrap();
    let forged = String::from_utf8(value.to_vec()[32..].to_vec())
        .unwrap()
        .replace("j20", "jXX");
    let mut bytes = value.to_vec()[..32].to_vec();
    bytes.extend_from_slice(forged.as_bytes());
    ks.events.insert(victim.to_bytes(), bytes).unwrap();
    let failure = verify(&ks, 2, &|_| {}).unwrap().unwrap_err();
    assert_eq!(failure.position, 20);
    assert_eq!(failure.id, victim.to_string());
    assert!(failure.reason.contains("hash chain"), "{failure}");
}

#[test]
fn a_failed_commit_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(dir.path()).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let log = Log::open(&db, LogOptions::default(), Box::new(Failing(fail.clone()))).unwrap();
    log.append_blocking(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .unwrap();
    fail.store(true, Ordering::SeqCst);
    let err = log
        .append_blocking(cmd("task:b", Expected::NoStream, vec![created("b")]))
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    fail.store(false, Ordering::SeqCst);
    // Even though the cause is gone, the store refuses writes until it is reopened.
    let err = log
        .append_blocking(cmd("task:c", Expected::NoStream, vec![created("c")]))
        .unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    assert!(log.poisoned().is_some());
    assert_eq!(log.stream_version("task:b").unwrap(), 0);
}

/// Writes a row per event in the `rows` keyspace (key: the event's ULID) and refuses, as a
/// projection refusing a row would, the second event of any command on stream `task:bad`.
struct Picky {
    rows: crate::fjall::Keyspace,
}

impl Projector for Picky {
    fn apply(&mut self, envelope: &crate::Envelope, tx: &mut Tx) -> crate::Result<()> {
        tx.insert(&self.rows, envelope.id.to_bytes().to_vec(), b"row".to_vec());
        if envelope.stream == "task:bad" && envelope.seq == 2 {
            return Err(Error::Projection {
                projection: "picky".into(),
                message: "refuses this row".into(),
            });
        }
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
}

#[test]
fn a_command_a_projection_refuses_is_rejected_alone_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(dir.path()).unwrap();
    let rows = db
        .keyspace("rows", crate::fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let log = Log::open(
        &db,
        LogOptions::default(),
        Box::new(Picky { rows: rows.clone() }),
    )
    .unwrap();
    // Many commands at once, so that the refused one shares its group with others.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "bad", "c", "d"]
            .into_iter()
            .map(|task| {
                let log = log.clone();
                scope.spawn(move || {
                    log.append_blocking(cmd(
                        &format!("task:{task}"),
                        Expected::NoStream,
                        vec![created(task), enabled(task)],
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        matches!(&results[1], Err(Error::Projection { .. })),
        "{:?}",
        results[1]
    );
    for ok in [&results[0], &results[2], &results[3]] {
        assert!(ok.is_ok(), "{ok:?}");
    }
    assert!(log.poisoned().is_none());
    assert_eq!(log.stream_version("task:bad").unwrap(), 0);
    assert_eq!(log.stream_version("task:a").unwrap(), 2);
    // The refused command's first row was staged before its second event failed: it is gone.
    assert_eq!(rows.len().unwrap(), 6);
    // The chain still verifies: no hash of the refused events entered it.
    let later = log.append_blocking(cmd("task:e", Expected::NoStream, vec![created("e")]));
    assert!(later.is_ok());
    let ks = log.keyspaces().clone();
    assert_eq!(verify(&ks, 2, &|_| {}).unwrap().unwrap().events, 7);
}

#[test]
fn an_event_over_the_logs_size_or_depth_bound_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(dir.path()).unwrap();
    let options = LogOptions {
        max_event_bytes: 4096,
        ..LogOptions::default()
    };
    let log = Log::open(&db, options, Box::new(NoProjections)).unwrap();
    let big = TaskDefinition {
        name: "x".repeat(5000),
        ..TaskDefinition::default()
    };
    let too_large = Event::TaskCreated(TaskCreated {
        task_id: "big".into(),
        owner: "0xowner".into(),
        wallet: "0xwallet".into(),
        definition: big,
    });
    let err = log
        .append_blocking(cmd("task:big", Expected::NoStream, vec![too_large]))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(
        err.to_string()
            .contains("more than the log's limit of 4096"),
        "{err}"
    );

    let mut deep = serde_json::json!(1);
    for _ in 0..crate::bounds::MAX_EVENT_DEPTH {
        deep = serde_json::json!([deep]);
    }
    let mut nested = TaskDefinition::default();
    nested.input_variables.insert("v".into(), deep);
    let too_deep = Event::TaskCreated(TaskCreated {
        task_id: "deep".into(),
        owner: "0xowner".into(),
        wallet: "0xwallet".into(),
        definition: nested,
    });
    let err = log
        .append_blocking(cmd("task:deep", Expected::NoStream, vec![too_deep]))
        .unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
    assert!(log.poisoned().is_none());
    log.append_blocking(cmd("task:ok", Expected::NoStream, vec![created("ok")]))
        .unwrap();
    let ks = log.keyspaces().clone();
    assert_eq!(verify(&ks, 2, &|_| {}).unwrap().unwrap().events, 1);
}

/// The v1 encoding of every event type, committed in `tests/fixtures/events-v1.log`: one event
/// per line, `<hex of the stored hash> <stored JSON body>`. Each must still decode, and the lines
/// must verify as a chain.
#[test]
fn the_v1_fixture_still_decodes() {
    let text = include_str!("../tests/fixtures/events-v1.log");
    let mut prev = crate::GENESIS_HASH;
    let mut types = std::collections::BTreeSet::new();
    for line in text.lines() {
        let (hash, body) = line.split_once(' ').unwrap();
        let mut value = hex::decode(hash).unwrap();
        value.extend_from_slice(body.as_bytes());
        let (hash, body) = crate::split_stored(&value).unwrap();
        assert_eq!(
            hash,
            crate::chain_hash(&prev, body),
            "chain broken in the fixture"
        );
        prev = hash;
        let env = crate::decode(&value).unwrap();
        assert_eq!(env.stored_version, 1);
        if let crate::Event::TriggerAttested(a) = &env.event {
            assert_eq!(a.quorum, None, "a v1 attestation did not record its quorum");
            assert_eq!(a.signers.len(), 1);
        }
        types.insert(env.event.type_name());
    }
    let all: std::collections::BTreeSet<_> = crate::EVENT_TYPES.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, all, "the fixture must hold every event type");
}

/// The v2 encoding of every event type whose current version is 2, committed in
/// `tests/fixtures/events-v2.log` (same layout as v1).
#[test]
fn the_v2_fixture_still_decodes() {
    let text = include_str!("../tests/fixtures/events-v2.log");
    let mut types = std::collections::BTreeSet::new();
    for line in text.lines() {
        let (hash, body) = line.split_once(' ').unwrap();
        let mut value = hex::decode(hash).unwrap();
        value.extend_from_slice(body.as_bytes());
        let env = crate::decode(&value).unwrap();
        assert_eq!(env.stored_version, 2);
        if let crate::Event::TriggerAttested(a) = &env.event {
            let quorum = a.quorum.as_ref().expect("v2 records the quorum");
            assert!(quorum.reached());
            assert_eq!(quorum.weights.len(), a.signers.len());
        }
        types.insert(env.event.type_name());
    }
    let at_v2: std::collections::BTreeSet<_> = crate::EVENT_TYPES
        .iter()
        .filter(|(_, v)| *v == 2)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        types, at_v2,
        "the fixture must hold every type at version 2"
    );
}

/// Writes the v2 fixture from `samples::all()`: the types whose current version is 2. Run it
/// only when a type reaches version 2 (`cargo test -p events -- --ignored write_v2_fixture`).
#[test]
#[ignore = "writes the committed fixture"]
fn write_v2_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ks) = open(dir.path());
    for (i, event) in crate::samples::all()
        .into_iter()
        .filter(|e| e.schema_version() == 2)
        .enumerate()
    {
        let c = Command::new(
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            1_765_000_000_000 + i as u64,
        )
        .append(format!("fixture:v2:{i}"), Expected::NoStream, vec![event]);
        log.append_blocking(c).unwrap();
    }
    let mut out = String::new();
    for item in ks.scan(None) {
        let (_, value) = item.unwrap();
        let (hash, body) = crate::split_stored(&value).unwrap();
        out.push_str(&hex::encode(hash));
        out.push(' ');
        out.push_str(std::str::from_utf8(body).unwrap());
        out.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events-v2.log");
    std::fs::write(path, out).unwrap();
}

/// Writes the fixture above from `samples::all()`. Run it only when adding a new event type
/// (`cargo test -p events -- --ignored write_v1_fixture`), never to "fix" a failing decode.
#[test]
#[ignore = "writes the committed fixture"]
fn write_v1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (log, ks) = open(dir.path());
    for (i, event) in crate::samples::all().into_iter().enumerate() {
        let mut c = Command::new(
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            1_764_000_000_000 + i as u64,
        )
        .append(format!("fixture:{i}"), Expected::NoStream, vec![event]);
        if i == 0 {
            c = c.idempotent("create:fixture", Some(120_000));
        }
        log.append_blocking(c).unwrap();
    }
    let mut out = String::new();
    for item in ks.scan(None) {
        let (_, value) = item.unwrap();
        let (hash, body) = crate::split_stored(&value).unwrap();
        out.push_str(&hex::encode(hash));
        out.push(' ');
        out.push_str(std::str::from_utf8(body).unwrap());
        out.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events-v1.log");
    std::fs::write(path, out).unwrap();
}

/// A replicated log in memory: what the leading writer publishes, in order, one message per
/// group; `depose` makes the next publish find the log moved under it. With `verdicts`, every
/// publish waits for the test's verdict instead: `true` deposes it, `false` lands it.
#[derive(Default)]
struct InMemoryReplicated {
    messages: std::sync::Mutex<Vec<Vec<crate::fjall::Slice>>>,
    position: std::sync::atomic::AtomicU64,
    depose: AtomicBool,
    verdicts: std::sync::Mutex<Option<std::sync::mpsc::Receiver<bool>>>,
}

impl crate::Backend for InMemoryReplicated {
    fn publishes(&self) -> bool {
        true
    }
    fn commit(
        &self,
        batch: crate::fjall::OwnedWriteBatch,
        commands: &[crate::Records],
    ) -> crate::Result<crate::Landed> {
        let deposed = match self.verdicts.lock().unwrap().as_ref() {
            Some(verdicts) => verdicts.recv().unwrap_or(true),
            None => self.depose.swap(false, Ordering::SeqCst),
        };
        if deposed {
            return Ok(crate::Landed::Deposed {
                durable: 0,
                reason: "another replica appended".into(),
            });
        }
        let message = commands
            .iter()
            .flatten()
            .map(|(_, stored)| stored.clone())
            .collect();
        self.messages.lock().unwrap().push(message);
        batch.commit()?;
        self.position.fetch_add(1, Ordering::SeqCst);
        Ok(crate::Landed::Durable)
    }
    fn commit_followed(
        &self,
        batch: crate::fjall::OwnedWriteBatch,
        through: u64,
    ) -> crate::Result<()> {
        batch.commit()?;
        self.position.store(through, Ordering::SeqCst);
        Ok(())
    }
    fn position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }
}

fn open_on(dir: &std::path::Path, backend: Arc<InMemoryReplicated>) -> Log {
    let db = open_database(dir).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    Log::open_on(&db, options, Box::new(NoProjections), backend).unwrap()
}

fn events_of(ks: &LogKeyspaces) -> Vec<(Ulid, Vec<u8>)> {
    ks.scan(None)
        .map(|item| {
            let (id, value) = item.unwrap();
            (id, value.to_vec())
        })
        .collect()
}

#[tokio::test]
async fn a_follower_holds_the_same_bytes_as_the_writer_and_can_write_next() {
    // Given a writer publishing each group to a replicated log
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_log = Arc::new(InMemoryReplicated::default());
    let a = open_on(a_dir.path(), a_log.clone());
    a.append(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .await
        .unwrap();
    a.append(
        cmd("task:a", Expected::Exactly(1), vec![enabled("a")]).idempotent("k1", Some(60_000)),
    )
    .await
    .unwrap();
    // When another replica follows what it published, in order
    let b_log = Arc::new(InMemoryReplicated::default());
    let b = open_on(b_dir.path(), b_log.clone());
    let published = a_log.messages.lock().unwrap().clone();
    for (i, message) in published.into_iter().enumerate() {
        b.follow(i as u64 + 1, message).unwrap();
    }
    // Then it holds the same events, byte for byte, at the same position
    assert_eq!(b.sync().await.unwrap(), 2);
    assert_eq!(events_of(b.keyspaces()), events_of(a.keyspaces()));
    assert!(verify::verify(b.keyspaces(), 1, &|_| {}).unwrap().is_ok());
    // And it knows the stream heads and idempotency keys: it can write next
    let repeat = b
        .append(
            cmd("task:a", Expected::Exactly(1), vec![enabled("a")]).idempotent("k1", Some(60_000)),
        )
        .await
        .unwrap();
    assert!(repeat.deduplicated);
    let next = b
        .append(cmd("task:a", Expected::Exactly(2), vec![enabled("a")]))
        .await
        .unwrap();
    assert_eq!(next.events[0].seq, 3);
    assert!(next.events[0].id > events_of(a.keyspaces()).last().unwrap().0);
    assert!(verify::verify(b.keyspaces(), 1, &|_| {}).unwrap().is_ok());
}

#[tokio::test]
async fn a_follower_refuses_a_message_that_does_not_chain() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_log = Arc::new(InMemoryReplicated::default());
    let a = open_on(a_dir.path(), a_log.clone());
    a.append(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .await
        .unwrap();
    a.append(cmd("task:b", Expected::NoStream, vec![created("b")]))
        .await
        .unwrap();
    let b = open_on(b_dir.path(), Arc::new(InMemoryReplicated::default()));
    // The second message alone, at position 1: its hash does not chain onto genesis.
    let second = a_log.messages.lock().unwrap()[1].clone();
    b.follow(1, second).unwrap();
    assert!(matches!(b.sync().await, Err(Error::Poisoned(reason)) if reason.contains("chain")));
    assert!(events_of(b.keyspaces()).is_empty());
}

#[tokio::test]
async fn a_deposed_writer_appends_nothing_and_resumes_from_what_landed() {
    // Given a writer whose next publish finds that another replica appended first
    let dir = tempfile::tempdir().unwrap();
    let replicated = Arc::new(InMemoryReplicated::default());
    let log = open_on(dir.path(), replicated.clone());
    log.append(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .await
        .unwrap();
    replicated.depose.store(true, Ordering::SeqCst);
    // When it appends
    let refused = log
        .append(cmd("task:a", Expected::Exactly(1), vec![enabled("a")]))
        .await;
    // Then the command is refused as not the writer's, and nothing of it is stored
    assert!(matches!(refused, Err(Error::NotWriter(_))), "{refused:?}");
    assert_eq!(log.sync().await.unwrap(), 1);
    assert_eq!(events_of(log.keyspaces()).len(), 1);
    // And the writer resumes from the stored state: the same expected version succeeds
    let next = log
        .append(cmd("task:a", Expected::Exactly(1), vec![enabled("a")]))
        .await
        .unwrap();
    assert_eq!(next.events[0].seq, 2);
    assert!(verify::verify(log.keyspaces(), 1, &|_| {}).unwrap().is_ok());
}

/// A writer that lost its lease without knowing it (a paused process, resumed) has a group in
/// flight when the new writer's message arrives: the group is deposed while the writer waits
/// for it, and the followed message is taken on top of what landed, not of the deposed group
/// (which would not chain, and poisoned the store).
#[tokio::test]
async fn a_writer_deposed_while_it_follows_takes_the_followed_message_on_what_landed() {
    let pause = || std::thread::sleep(std::time::Duration::from_millis(200));
    // Given replica B, which writes, and replica A, which follows B's first message
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_log = Arc::new(InMemoryReplicated::default());
    let b = open_on(b_dir.path(), b_log.clone());
    b.append(cmd("task:a", Expected::NoStream, vec![created("a")]))
        .await
        .unwrap();
    let (verdict, verdicts) = std::sync::mpsc::channel();
    let gated = Arc::new(InMemoryReplicated {
        verdicts: std::sync::Mutex::new(Some(verdicts)),
        ..InMemoryReplicated::default()
    });
    let a = open_on(a_dir.path(), gated);
    a.follow(1, b_log.messages.lock().unwrap()[0].clone())
        .unwrap();
    assert_eq!(a.sync().await.unwrap(), 1);
    b.append(cmd("task:b", Expected::NoStream, vec![created("b")]))
        .await
        .unwrap();
    // When A, believing it writes, publishes a lone command (landed on its writer's thread,
    // which waits), queues two more meanwhile (one group, for the committer)...
    let append = |stream: &str| {
        let (a, stream) = (a.clone(), stream.to_owned());
        std::thread::spawn(move || {
            a.append_blocking(cmd(&stream, Expected::NoStream, vec![created(&stream)]))
        })
    };
    let lone = append("task:x");
    pause();
    let group = [append("task:y"), append("task:z")];
    pause();
    verdict.send(true).unwrap();
    assert!(matches!(lone.join().unwrap(), Err(Error::NotWriter(_))));
    pause();
    // ...and B's second message arrives while that group is in flight, then it is deposed
    a.follow(2, b_log.messages.lock().unwrap()[1].clone())
        .unwrap();
    pause();
    verdict.send(true).unwrap();
    for appended in group {
        assert!(matches!(appended.join().unwrap(), Err(Error::NotWriter(_))));
    }
    // Then A holds B's two messages, byte for byte, and is not poisoned
    assert_eq!(a.sync().await.unwrap(), 2);
    assert_eq!(events_of(a.keyspaces()), events_of(b.keyspaces()));
    assert!(verify::verify(a.keyspaces(), 1, &|_| {}).unwrap().is_ok());
}

/// A replicated log that checks the writer lands one group at a time, in order: each commit
/// takes a moment (as a publish does), and notes whether another was landing meanwhile.
#[derive(Default)]
struct OneAtATime {
    landing: std::sync::atomic::AtomicUsize,
    overlapped: AtomicBool,
    firsts: std::sync::Mutex<Vec<Ulid>>,
}

impl crate::Backend for OneAtATime {
    fn publishes(&self) -> bool {
        true
    }
    fn commit(
        &self,
        batch: crate::fjall::OwnedWriteBatch,
        commands: &[crate::Records],
    ) -> crate::Result<crate::Landed> {
        if self.landing.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        if let Some((id, _)) = commands.iter().flatten().next() {
            self.firsts.lock().unwrap().push(*id);
        }
        std::thread::sleep(std::time::Duration::from_micros(300));
        batch.commit()?;
        self.landing.fetch_sub(1, Ordering::SeqCst);
        Ok(crate::Landed::Durable)
    }
}

#[test]
fn groups_land_one_at_a_time_in_order_while_lone_commands_and_bursts_mix() {
    // Given a writer whose commits take a moment, so that groups queue behind the one landing
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(OneAtATime::default());
    let db = open_database(dir.path()).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Log::open_on(&db, options, Box::new(NoProjections), backend.clone()).unwrap();
    // When bursts of appends from many threads alternate with lone ones
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let task = format!("t{t}-{i}");
                    log.append_blocking(cmd(
                        &format!("task:{task}"),
                        Expected::NoStream,
                        vec![created(&task)],
                    ))
                    .unwrap();
                    if (i + t) % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(700));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Then no two groups were landing at once, they landed in log order, and the log verifies
    assert!(
        !backend.overlapped.load(Ordering::SeqCst),
        "two groups were committed at once"
    );
    let firsts = backend.firsts.lock().unwrap().clone();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "groups landed out of log order"
    );
    let ks = log.keyspaces().clone();
    assert_eq!(events_of(&ks).len(), 12 * 60);
    assert!(verify(&ks, 2, &|_| {}).unwrap().is_ok());
}
