//! Replicas that start at the same moment on a fresh 3-node NATS cluster (real `nats-server`
//! processes on loopback): each creates the stream and every bucket beside it (the writer's
//! lease, the keys' fingerprints, the operators' nonces and presence) when it finds them
//! missing, and every one starts; the fingerprints are recorded once.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cluster::lease::Lease;
use cluster::{JetStream, KvNonces, KvPresence, Replicated, StreamSettings};
use events::{Envelope, Log, LogOptions, Projector, Tx, Ulid};

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &Envelope, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
}

const KEYS: [(&str, &str); 3] = [
    (
        "jwt.secret",
        "aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00",
    ),
    (
        "secrets.key",
        "bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11",
    ),
    (
        "log.key",
        "PRIVATE+KEY+ava-aggregator/31337+0a1b2c3d+AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh",
    ),
];

/// What one replica's start opens, in the order the aggregator opens it (`server::open_store`):
/// the stream, the fingerprints, its local log on the stream and the writer's lease, then the
/// operators' nonces and presence. Answers the key files this start recorded.
async fn start(url: String, i: usize, keys: Arc<tempfile::TempDir>) -> Result<Vec<String>, String> {
    let settings = StreamSettings {
        urls: vec![url],
        stream: "aggregator".into(),
        replicas: 3,
    };
    let e = |what: &str, e: &dyn std::fmt::Display| format!("replica {i}, {what}: {e}");
    let replicated = Replicated::connect(&settings)
        .await
        .map_err(|x| e("the stream", &x))?;
    let checked = cluster::fingerprints::check(&replicated, 3, keys.path())
        .await
        .map_err(|x| e("the fingerprints", &x))?;
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let backend = Arc::new(
        JetStream::open(&db, replicated.clone(), tokio::runtime::Handle::current())
            .await
            .map_err(|x| e("the local log", &x))?,
    );
    let log = Log::open_on(
        &db,
        LogOptions::default(),
        Box::new(NoProjections),
        backend.clone(),
    )
    .unwrap();
    Lease::open(backend, log, format!("r{i}"), Duration::from_secs(3), 3)
        .await
        .map_err(|x| e("the lease", &x))?;
    KvNonces::open(&replicated, 3, Duration::from_secs(30))
        .await
        .map_err(|x| e("the nonces", &x))?;
    KvPresence::open(&replicated, 3, &format!("r{i}"), Duration::from_secs(3))
        .await
        .map_err(|x| e("the presence", &x))?;
    Ok(checked.recorded.iter().map(|f| (*f).to_owned()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_all_start_and_record_the_fingerprints_once() {
    // Given a fresh 3-node cluster and one keys directory shared by every replica
    let nodes = support::nats_cluster(3).await;
    let keys = tempfile::tempdir().unwrap();
    for (file, contents) in KEYS {
        std::fs::write(keys.path().join(file), contents).unwrap();
    }
    let keys = Arc::new(keys);

    // When six replicas start at the same moment, two on each node
    let starts = (0..6).map(|i| tokio::spawn(start(nodes[i % 3].url.clone(), i, keys.clone())));
    let outcomes = futures_util::future::join_all(starts).await;

    // Then every one started
    let mut recorded: Vec<String> = Vec::new();
    for outcome in outcomes {
        recorded.extend(outcome.unwrap().unwrap());
    }
    // And no fingerprint was recorded by two of them (a create whose answer timed out, tried
    // again, finds its own value and is counted as matched)
    recorded.sort();
    let mut once = recorded.clone();
    once.dedup();
    assert_eq!(recorded, once);
    // And the bucket holds that one value, the keys' fingerprint, in its first revision
    let replicated = Replicated::connect(&StreamSettings {
        urls: vec![nodes[1].url.clone()],
        stream: "aggregator".into(),
        replicas: 3,
    })
    .await
    .unwrap();
    let bucket = replicated
        .jetstream()
        .get_key_value(cluster::fingerprints::bucket("aggregator"))
        .await
        .unwrap();
    for (file, contents) in KEYS {
        let entry = bucket.entry(file).await.unwrap().unwrap();
        assert_eq!(
            entry.value.as_ref(),
            cluster::fingerprints::fingerprint(file, contents.as_bytes()).as_bytes(),
            "{file}"
        );
        let history: Vec<_> =
            futures_util::StreamExt::collect::<Vec<_>>(bucket.history(file).await.unwrap()).await;
        assert_eq!(history.len(), 1, "{file} was written once");
    }
}
