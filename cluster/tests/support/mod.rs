//! A real `nats-server` with JetStream for the tests, on a loopback port it picks itself.

#![allow(clippy::unwrap_used, dead_code, reason = "tests")]

use std::process::Stdio;

use cluster::{Replicated, StreamSettings};
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Server {
    _child: tokio::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Starts `nats-server` with JetStream on a port it picks (`-1`), read back from its log.
pub async fn nats_server(max_payload: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:-1\"\nserver_name: test\nmax_payload: {max_payload}\njetstream {{\n  store_dir: {:?}\n}}\n",
            dir.path().join("js").display().to_string()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("nats-server")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server must be installed (apt-get install nats-server; .ci/run does it)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut url = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(at) = line.split("Listening for client connections on ").nth(1) {
            url = Some(format!("nats://{}", at.trim()));
        }
        if line.contains("Server is ready") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        url: url.expect("nats-server did not say where it listens"),
        _dir: dir,
    }
}

pub fn settings(server: &Server, stream: &str) -> StreamSettings {
    StreamSettings {
        urls: vec![server.url.clone()],
        stream: stream.into(),
        replicas: 1,
    }
}

pub async fn connect(server: &Server, stream: &str) -> Replicated {
    Replicated::connect(&settings(server, stream))
        .await
        .unwrap()
}
