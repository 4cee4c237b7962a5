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
    start(&format!("server_name: test\nmax_payload: {max_payload}\n")).await
}

/// Starts `n` JetStream nodes routed to each other into one cluster on loopback, and waits
/// until they answer the JetStream API. (A JetStream cluster needs its routes configured: each
/// node's route port is picked free here, and every node routes to all of them.)
pub async fn nats_cluster(n: usize) -> Vec<Server> {
    let ports: Vec<u16> = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let routes = ports
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = format!(
            "server_name: n{i}\ncluster {{\n  name: test\n  listen: \"127.0.0.1:{port}\"\n  routes: [{routes}]\n}}\n"
        );
        nodes.push(start(&config).await);
    }
    // JetStream answers once the nodes elected its meta leader: a look-up of a stream that
    // does not exist is then answered "not found", not refused or left unanswered.
    let client = async_nats::connect(&nodes[0].url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Err(e) = js.get_stream("none").await
            && let async_nats::jetstream::context::GetStreamErrorKind::JetStream(e) = e.kind()
            && e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the NATS cluster never served JetStream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    nodes
}

/// Starts `nats-server` with JetStream and `config` (its name and more).
async fn start(config: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nats.conf");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:-1\"\n{config}jetstream {{\n  store_dir: {:?}\n}}\n",
            dir.path().join("js").display().to_string()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("nats-server")
        .arg("-c")
        .arg(&path)
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
