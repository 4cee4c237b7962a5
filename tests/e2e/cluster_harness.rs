//! What the cluster scenarios share: a 3-node NATS JetStream cluster (`nats-server` processes,
//! routes on loopback), aggregator replica processes with `event_log.backend: jetstream` (each
//! with its own data directory, ports and a copy of the first one's keys), and what is asked of
//! them (who writes, their logs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aggregator::pb::aggregator_client::AggregatorClient;
use tonic::transport::Channel;

use crate::engine_crash::free_port;

pub const STREAM: &str = "aggregator";

/// The `nats-server` binary: on the PATH, or where Debian puts it.
fn nats_binary() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

pub struct NatsNode {
    config: PathBuf,
    pub url: String,
    child: Option<Child>,
}

impl NatsNode {
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.config.with_extension("log"))?;
        self.child = Some(
            Command::new(nats_binary())
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Three JetStream nodes routed to each other on loopback, each with its own store.
pub fn nats_cluster(dir: &Path) -> anyhow::Result<Vec<NatsNode>> {
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let route_list = routes
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = dir.join(format!("nats{i}.conf"));
        std::fs::write(
            &config,
            format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client}\njetstream {{\n  store_dir: {store:?}\n}}\ncluster {{\n  name: aggregators\n  listen: 127.0.0.1:{route}\n  routes: [{route_list}]\n}}\n",
                client = clients[i],
                route = routes[i],
                store = dir.join(format!("nats{i}")).display().to_string(),
            ),
        )?;
        let mut node = NatsNode {
            config,
            url: format!("nats://127.0.0.1:{}", clients[i]),
            child: None,
        };
        node.start()?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Waits until the cluster elected its JetStream leader and takes a stream of 3 replicas.
pub async fn cluster_ready(urls: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connected = ::cluster::Replicated::connect(&::cluster::StreamSettings {
            urls: urls.to_vec(),
            stream: STREAM.into(),
            replicas: 3,
        })
        .await;
        match connected {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub struct Replica {
    pub config: PathBuf,
    pub data: PathBuf,
    pub grpc: String,
    pub http: String,
    pub child: Option<Child>,
}

impl Replica {
    pub fn new(dir: &Path, i: usize, urls: &[String]) -> anyhow::Result<Self> {
        Self::with_config(dir, i, urls, "")
    }

    /// A replica whose config also holds `extra` (top-level YAML sections).
    pub fn with_config(dir: &Path, i: usize, urls: &[String], extra: &str) -> anyhow::Result<Self> {
        let data = dir.join(format!("data{i}"));
        let keys = dir.join(format!("keys{i}"));
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join(format!("aggregator{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "data_dir: {data}\nkeys_dir: {keys}\ngrpc:\n  listen: {grpc}\nhttp:\n  listen: {http}\nevent_log:\n  backend: jetstream\n  nats_urls: [{urls}]\n  stream: {STREAM}\n  replicas: 3\n  lease_ttl: 2s\n  claim_ttl: 2s\n{extra}",
                data = data.display(),
                keys = keys.display(),
                urls = urls.join(", "),
            ),
        )?;
        Ok(Self {
            config,
            data,
            grpc,
            http,
            child: None,
        })
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.config.with_extension("log"))?;
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_aggregator"))
                .args(["--config", self.config.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?; // SIGKILL
            child.wait()?;
        }
        Ok(())
    }

    /// A graceful stop (SIGTERM), so that its data directory can be opened here.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        Ok(())
    }

    pub async fn client(&self) -> anyhow::Result<AggregatorClient<Channel>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match AggregatorClient::connect(format!("http://{}", self.grpc)).await {
                Ok(client) => return Ok(client),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether it writes the log now (its `log_writer` gauge).
    pub async fn writes(&self) -> bool {
        let Ok(response) = reqwest::get(format!("http://{}/metrics", self.http)).await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines().any(|line| line.trim() == "log_writer 1")
    }

    /// Sends the process a signal by name (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the replica is not running"))?;
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// The replica's id (a ULID per process start), from its start-up log line.
    pub async fn id(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text =
                std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default();
            let plain = strip_ansi(&text);
            let line = plain
                .lines()
                .find(|l| l.contains("a replica of the replicated log"));
            if let Some(at) = line.and_then(|l| l.find("replica=").map(|at| (l, at))) {
                let (line, at) = at;
                let id: String = line[at + "replica=".len()..].chars().take(26).collect();
                if id.len() == 26 {
                    return Ok(id);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no replica id in its log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

pub async fn writer_of(replicas: &[Replica]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        if r.child.is_some() && r.writes().await {
            return Some(i);
        }
    }
    None
}

/// The first replica's keys, copied for replica `i` (every replica uses the same keys).
pub fn copy_keys(dir: &Path, i: usize) -> anyhow::Result<()> {
    let keys = dir.join(format!("keys{i}"));
    std::fs::create_dir_all(&keys)?;
    for entry in std::fs::read_dir(dir.join("keys0"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), keys.join(entry.file_name()))?;
    }
    Ok(())
}

pub fn events_in(data: &Path) -> anyhow::Result<u64> {
    let db = events::open_database(data)?;
    let log = events::LogKeyspaces::open(&db)?;
    Ok(log.scan(None).count() as u64)
}

/// The text without terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
