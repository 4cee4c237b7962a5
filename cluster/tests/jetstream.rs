//! The replicated log against a real `nats-server` (JetStream, one node, on loopback ports it
//! picks itself): replicas hold the same bytes, a replica behind the stream cannot append, a
//! retried publish is stored once, groups larger than a message are split.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;

use cluster::message::Outgoing;
use cluster::{JetStream, Replicated};
use events::event::TaskCreated;
use events::task::TaskDefinition;
use events::{
    Command, Envelope, Error, Event, Expected, Log, LogKeyspaces, LogOptions, Projector, Tx, Ulid,
};
use support::Server;

/// Smaller than the default 1 MB, so that a group of large commands needs several messages.
const MAX_PAYLOAD: usize = 64 * 1024;

async fn nats_server() -> Server {
    support::nats_server(MAX_PAYLOAD).await
}

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &Envelope, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
}

struct Replica {
    log: Log,
    replicated: Replicated,
    backend: Arc<JetStream>,
    _dir: tempfile::TempDir,
}

async fn replica(server: &Server) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let replicated = support::connect(server, "aggregator").await;
    let backend = Arc::new(
        JetStream::open(&db, replicated.clone(), tokio::runtime::Handle::current())
            .await
            .unwrap(),
    );
    let log = Log::open_on(
        &db,
        LogOptions::default(),
        Box::new(NoProjections),
        backend.clone(),
    )
    .unwrap();
    Replica {
        log,
        replicated,
        backend,
        _dir: dir,
    }
}

impl Replica {
    /// Follows the stream and waits until the local database holds its head (as a replica does
    /// before it takes commands).
    async fn follow(&self) -> tokio::task::JoinHandle<cluster::Result<()>> {
        let (log, replicated) = (self.log.clone(), self.replicated.clone());
        let position = events::Backend::position(self.backend.as_ref());
        let following = tokio::spawn(cluster::follow(log, replicated, position));
        cluster::catch_up(&self.log, &self.replicated)
            .await
            .unwrap();
        following
    }
}

fn created(task: &str, padding: usize) -> Event {
    Event::TaskCreated(TaskCreated {
        task_id: task.into(),
        owner: "0xowner".into(),
        wallet: "x".repeat(padding),
        definition: TaskDefinition::default(),
    })
}

fn create(task: &str, padding: usize) -> Command {
    Command::new("0xowner", 1_000).append(
        format!("task:{task}"),
        Expected::NoStream,
        vec![created(task, padding)],
    )
}

fn events_of(ks: &LogKeyspaces) -> Vec<(Ulid, Vec<u8>)> {
    ks.scan(None)
        .map(|item| {
            let (id, value) = item.unwrap();
            (id, value.to_vec())
        })
        .collect()
}

fn verified(ks: &LogKeyspaces) -> u64 {
    events::verify(ks, 1, &|_| {}).unwrap().unwrap().events
}

async fn append_many(log: &Log, count: usize, padding: usize) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(create(&format!("t{i}"), padding)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_follows_the_stream_holds_the_writers_bytes() {
    // Given a writer on the stream that appended concurrent commands (group commit)
    let server = nats_server().await;
    let a = replica(&server).await;
    a.follow().await;
    append_many(&a.log, 60, 10).await;
    let idempotent = a
        .log
        .append(create("once", 10).idempotent("key-1", Some(60_000)))
        .await
        .unwrap();
    // When a replica starts on an empty data directory and catches up
    let b = replica(&server).await;
    b.follow().await;
    let position = cluster::catch_up(&b.log, &b.replicated).await.unwrap();
    // Then it holds the same events, byte for byte, at the stream's head
    assert_eq!(position, a.replicated.head().await.unwrap());
    assert_eq!(events_of(b.log.keyspaces()), events_of(a.log.keyspaces()));
    assert_eq!(verified(b.log.keyspaces()), 61);
    // And it knows what the writer decided: a repeat is answered from the log, not appended
    let repeat = b
        .log
        .append(create("once", 10).idempotent("key-1", Some(60_000)))
        .await
        .unwrap();
    assert!(repeat.deduplicated);
    assert_eq!(repeat.events, idempotent.events);
    // And the first writer follows what the second appends next
    b.log.append(create("from-b", 10)).await.unwrap();
    cluster::catch_up(&a.log, &a.replicated).await.unwrap();
    assert_eq!(events_of(a.log.keyspaces()), events_of(b.log.keyspaces()));
    assert_eq!(verified(a.log.keyspaces()), 62);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_stream_cannot_append() {
    // Given a writer that appended three commands, and a replica that has not read them
    let server = nats_server().await;
    let a = replica(&server).await;
    // (it reads the stream up to its head, then stops reading: it will not see what b appends)
    a.follow().await.abort();
    for i in 0..3 {
        a.log.append(create(&format!("a{i}"), 10)).await.unwrap();
    }
    let head = a.replicated.head().await.unwrap();
    let b = replica(&server).await;
    // When the replica appends
    let refused = b.log.append(create("b0", 10)).await;
    // Then the stream refuses it (expected last sequence), and nothing of it is stored anywhere
    assert!(matches!(refused, Err(Error::NotWriter(_))), "{refused:?}");
    assert_eq!(a.replicated.head().await.unwrap(), head);
    assert!(events_of(b.log.keyspaces()).is_empty());
    // And once it has caught up, it appends; then the first one, behind now, is refused
    b.follow().await;
    b.log.append(create("b0", 10)).await.unwrap();
    let stale = a.log.append(create("a3", 10)).await;
    assert!(matches!(stale, Err(Error::NotWriter(_))), "{stale:?}");
    assert_eq!(verified(b.log.keyspaces()), 4);
    assert_eq!(verified(a.log.keyspaces()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_after_a_lost_acknowledgement_is_stored_once() {
    let server = nats_server().await;
    let a = replica(&server).await;
    let expected = a.replicated.head().await.unwrap();
    let message = Outgoing {
        payload: cluster::message::genesis(),
        first: Ulid::generate(),
        through: 0,
    };
    let first = a.replicated.publish(&message, expected).await.unwrap();
    // The same message again, as a writer whose acknowledgement was lost sends it
    let again = a.replicated.publish(&message, expected).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(a.replicated.head().await.unwrap(), expected + 1);
    // Another message expecting the same position is refused
    let other = Outgoing {
        first: Ulid::generate(),
        ..message
    };
    assert!(matches!(
        a.replicated.publish(&other, expected).await,
        Err(cluster::Refused::Moved(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_larger_than_a_message_are_split_between_commands() {
    // Given commands of about 6 KB each, 40 at once, against a server taking 64 KiB messages
    let server = nats_server().await;
    let a = replica(&server).await;
    a.follow().await;
    append_many(&a.log, 40, 6_000).await;
    // Then every command is in the stream: a replica reading it holds the same log
    let b = replica(&server).await;
    b.follow().await;
    assert_eq!(events_of(b.log.keyspaces()), events_of(a.log.keyspaces()));
    assert_eq!(verified(b.log.keyspaces()), 40);
    // And no message held more than fits (the genesis message is the first)
    let messages = a.replicated.head().await.unwrap() - 1;
    assert!(messages >= (40 * 6_000 / MAX_PAYLOAD) as u64, "{messages}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_with_a_log_of_its_own_is_refused() {
    let server = nats_server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let log = Log::open(&db, LogOptions::default(), Box::new(NoProjections)).unwrap();
    log.append(create("local", 10)).await.unwrap();
    tokio::task::block_in_place(|| log.shutdown());
    let replicated = support::connect(&server, "aggregator").await;
    let err = JetStream::open(&db, replicated, tokio::runtime::Handle::current())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("aggregator log import"), "{err}");
}
