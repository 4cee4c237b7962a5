//! A replica's start waits out servers that cannot answer yet: a NATS server without JetStream
//! (as a node answers while its JetStream is still starting or has no leader) is replaced on
//! the same port by one with JetStream, and the replica's connect, begun before, succeeds.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::Stdio;
use std::time::Duration;

use cluster::{Replicated, StreamSettings};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `nats-server` on `port`, with JetStream or without, ready when this returns.
async fn server(dir: &std::path::Path, port: u16, jetstream: bool) -> tokio::process::Child {
    let config = dir.join(format!("nats-{jetstream}.conf"));
    let js = if jetstream {
        format!(
            "jetstream {{\n  store_dir: {:?}\n}}\n",
            dir.join("js").display().to_string()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &config,
        format!("listen: \"127.0.0.1:{port}\"\nserver_name: patience\n{js}"),
    )
    .unwrap();
    let child = tokio::process::Command::new("nats-server")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server must be installed (apt-get install nats-server; .ci/run does it)");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nats-server did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_begun_before_jetstream_answers_succeeds_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut without = server(dir.path(), port, false).await;
    let settings = StreamSettings {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        stream: "patience".into(),
        replicas: 1,
    };

    let connecting = tokio::spawn(async move { Replicated::connect(&settings).await });
    // Given the connect under way against a server with no JetStream for over a second,
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connecting.is_finished(), "the connect gave up at once");
    without.kill().await.unwrap();
    without.wait().await.unwrap();
    // when a server with JetStream takes the port,
    let _with = server(dir.path(), port, true).await;

    // then the connect made the stream and its genesis message.
    let replicated = tokio::time::timeout(Duration::from_secs(60), connecting)
        .await
        .expect("the connect still waits")
        .unwrap()
        .unwrap();
    assert_eq!(replicated.head().await.unwrap(), 1);
}
