//! What replicas share beside the stream, against a real `nats-server`: the keys' fingerprints
//! (a replica with other keys refuses to start, naming the key) and the operators' request
//! nonces (a nonce seen by one replica is refused by another), and the operators' presence (a
//! stream held by one replica is seen by the others until it ends or its replica dies).

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use cluster::presence::Present;
use cluster::{KvNonces, KvPresence};
use support::{connect, nats_server};

fn keys_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

const JWT: &str = "aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00";
const SECRETS: &str = "bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11";
const LOG: &str =
    "PRIVATE+KEY+ava-aggregator/31337+0a1b2c3d+AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_keys_differ_refuses_to_start_naming_the_key() {
    // Given a first replica that recorded its keys' fingerprints
    let server = nats_server(1024 * 1024).await;
    let replicated = connect(&server, "aggregator").await;
    let first = keys_dir(&[
        ("jwt.secret", JWT),
        ("secrets.key", SECRETS),
        ("log.key", LOG),
    ]);
    let checked = cluster::fingerprints::check(&replicated, 1, first.path())
        .await
        .unwrap();
    assert_eq!(checked.recorded, ["jwt.secret", "secrets.key", "log.key"]);
    // (nothing in the bucket reveals a key)
    let bucket = replicated
        .jetstream()
        .get_key_value(cluster::fingerprints::bucket("aggregator"))
        .await
        .unwrap();
    let stored = bucket.get("secrets.key").await.unwrap().unwrap();
    let stored = String::from_utf8(stored.to_vec()).unwrap();
    assert!(!stored.contains(&SECRETS[..16]), "{stored}");

    // When a replica with a copy of the same directory starts: it passes
    let copy = keys_dir(&[
        ("jwt.secret", &format!("{JWT}\n")),
        ("secrets.key", SECRETS),
        ("log.key", LOG),
    ]);
    let again = cluster::fingerprints::check(&replicated, 1, copy.path())
        .await
        .unwrap();
    assert_eq!(again.matched, ["jwt.secret", "secrets.key", "log.key"]);
    assert!(again.recorded.is_empty());

    // When one starts with another secret-encryption key: refused, naming it
    let other = keys_dir(&[
        ("jwt.secret", JWT),
        ("secrets.key", &SECRETS.replace('b', "c")),
        ("log.key", LOG),
    ]);
    let err = cluster::fingerprints::check(&replicated, 1, other.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the secret-encryption key (secrets.key)") && err.contains("differs"),
        "{err}"
    );
    assert!(!err.contains(&SECRETS[..16]), "{err}");

    // When one has no log key: refused, naming it
    let missing = keys_dir(&[("jwt.secret", JWT), ("secrets.key", SECRETS)]);
    let err = cluster::fingerprints::check(&replicated, 1, missing.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the log key (log.key) is missing"), "{err}");

    // And a key made later (chain deploy's controller key) is recorded by the first to have it
    let deployed = keys_dir(&[
        ("jwt.secret", JWT),
        ("secrets.key", SECRETS),
        ("log.key", LOG),
        ("controller.key", SECRETS),
    ]);
    let checked = cluster::fingerprints::check(&replicated, 1, deployed.path())
        .await
        .unwrap();
    assert_eq!(checked.recorded, ["controller.key"]);
    let err = cluster::fingerprints::check(&replicated, 1, copy.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the controller key (controller.key) is missing"),
        "{err}"
    );

    // And another stream has fingerprints of its own
    let elsewhere = connect(&server, "other").await;
    cluster::fingerprints::check(&elsewhere, 1, other.path())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_seen_by_one_replica_is_refused_by_another() {
    // Given two replicas' nonce stores on one stream's bucket
    let server = nats_server(1024 * 1024).await;
    let a = KvNonces::open(
        &connect(&server, "aggregator").await,
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let b = KvNonces::open(
        &connect(&server, "aggregator").await,
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let operator = "70997970c51812dc3a010c7d01b50e0d17dc79c8";
    // When a request's nonce reaches the first, then (replayed) the second
    assert!(
        a.first_sight(operator, "00112233445566778899")
            .await
            .unwrap()
    );
    assert!(
        !b.first_sight(operator, "00112233445566778899")
            .await
            .unwrap()
    );
    assert!(
        !a.first_sight(operator, "00112233445566778899")
            .await
            .unwrap()
    );
    // Then only the first sight is accepted; another nonce, or another operator's, is new
    assert!(
        b.first_sight(operator, "00112233445566778800")
            .await
            .unwrap()
    );
    assert!(
        a.first_sight(
            "3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
            "00112233445566778899"
        )
        .await
        .unwrap()
    );

    // And of many replicas seeing one nonce at once, exactly one accepts it
    let stores: Vec<KvNonces> = vec![a.clone(), b.clone(), a.clone(), b.clone()];
    let sights = futures_util::future::join_all(
        stores
            .iter()
            .map(|s| s.first_sight(operator, "ffeeddccbbaa99887766")),
    )
    .await;
    assert_eq!(
        sights.into_iter().filter(|s| *s.as_ref().unwrap()).count(),
        1
    );

    // And the bucket keeps them for twice the freshness window (raised when a replica's is longer)
    KvNonces::open(
        &connect(&server, "aggregator").await,
        1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let mut stream = connect(&server, "aggregator")
        .await
        .jetstream()
        .get_stream("KV_aggregator_nonces")
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.max_age,
        Duration::from_secs(120)
    );
}

/// Waits until `done` holds (bounded, so that a failing run ends).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_held_by_one_replica_is_seen_by_the_others_until_it_leaves_or_lapses() {
    // Given two replicas' presence on one stream's bucket
    let server = nats_server(1024 * 1024).await;
    let ttl = Duration::from_secs(1);
    let a = KvPresence::open(&connect(&server, "aggregator").await, 1, "ra", ttl)
        .await
        .unwrap();
    let b = KvPresence::open(&connect(&server, "aggregator").await, 1, "rb", ttl)
        .await
        .unwrap();
    let held_by = |p: &KvPresence| {
        let mut others: Vec<Present> = p.others();
        others.sort_by(|x, y| (&x.operator, &x.replica).cmp(&(&y.operator, &y.replica)));
        others
            .into_iter()
            .map(|p| (p.operator, p.replica, p.value))
            .collect::<Vec<_>>()
    };
    let entry = |op: &str, replica: &str, value: &str| {
        (op.to_owned(), replica.to_owned(), value.as_bytes().to_vec())
    };

    // When the first holds an operator's stream: the second sees it (and is woken), the first
    // does not count its own
    a.hold("op1", b"blocks".to_vec());
    tokio::time::timeout(Duration::from_secs(30), b.changed())
        .await
        .expect("the second replica is told");
    eventually("b sees op1 on ra", || {
        held_by(&b) == [entry("op1", "ra", "blocks")]
    })
    .await;
    assert!(held_by(&a).is_empty());

    // When the operator moves to the second and the first lets it go: each sees the other's
    // entry only, and the first's release does not remove the second's
    b.hold("op1", b"time".to_vec());
    eventually("a sees op1 on rb", || {
        held_by(&a) == [entry("op1", "rb", "time")]
    })
    .await;
    a.release("op1");
    eventually("b no longer sees op1 on ra", || held_by(&b).is_empty()).await;
    assert_eq!(held_by(&a), [entry("op1", "rb", "time")]);

    // When a replica ends without letting its operators go: they lapse after the ttl
    drop(b);
    eventually("op1 on rb lapses", || held_by(&a).is_empty()).await;
}
