//! The stream read for the tools, against a real `nats-server`: a message that does not hold
//! events is named, with its sequence, rather than copied.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use cluster::message::Outgoing;
use events::{LogKeyspaces, Ulid};
use support::{connect, nats_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_message_that_holds_no_event_is_named_not_copied() {
    // Given a stream whose second message holds bytes that are no stored event
    let server = nats_server(1024 * 1024).await;
    let replicated = connect(&server, "tampered").await;
    let mut payload = vec![1u8];
    payload.extend_from_slice(&7u32.to_be_bytes());
    payload.extend_from_slice(b"garbage");
    let message = Outgoing {
        payload,
        first: Ulid::generate(),
        through: 1,
    };
    let at = replicated.publish(&message, 1).await.unwrap();
    assert_eq!(at, 2);
    // When it is copied into a scratch database
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let log = LogKeyspaces::open(&db).unwrap();
    let err = cluster::transfer::copy_into(&replicated, &log)
        .await
        .unwrap_err()
        .to_string();
    // Then the copy fails naming the message
    assert!(
        err.contains("message 2 of stream tampered") && err.contains("does not decode"),
        "{err}"
    );

    // And an empty stream copies as no event at all
    let empty = connect(&server, "empty").await;
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let log = LogKeyspaces::open(&db).unwrap();
    let copied = cluster::transfer::copy_into(&empty, &log).await.unwrap();
    assert_eq!((copied.events, copied.position), (0, 1));
}
