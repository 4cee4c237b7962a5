//! The processes of a cluster on loopback, shared by the cluster scenarios (`cluster*.rs`) and
//! the cluster benchmark (`benches/cluster.rs` includes this file by path), so that a fix to how
//! they are started or waited for reaches every one of them:
//!
//! - [`NatsNode`], [`nats_nodes`]: `nats-server` processes with JetStream, routed to each other
//!   when there is more than one, each with its own store; [`cluster_ready`] waits for them.
//! - [`Replica`]: one aggregator process (the crate's binary) with its own config, data and keys
//!   directories and ports, and what is asked of it (a client once it answers, whether it
//!   writes, its id, signals); [`start_replicas`] starts the first, copies its keys to the
//!   others ([`copy_keys`]) and starts them.
//! - [`writer_of`]: which replica writes the log (its `log_writer` gauge); [`events_in`]: the
//!   events a stopped replica's data directory holds; [`execution_events`]: one execution's.
//!
//! It depends on nothing of the test binary (the bench links it too).

#![allow(dead_code, reason = "each includer uses a part")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aggregator::pb::aggregator_client::AggregatorClient;
use tonic::transport::Channel;

/// The stream the replicas share unless told otherwise.
pub const STREAM: &str = "aggregator";

/// A port free on loopback now (the process that gets it binds it a moment later), never one
/// this process handed out before: the system hands a port just released out again, and two
/// nodes given the same route port cannot form a cluster.
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if GIVEN
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(port)
        {
            return Ok(port);
        }
    }
    anyhow::bail!("no fresh loopback port in 100 tries")
}

/// The `nats-server` binary: where Debian puts it, or on the PATH.
pub fn nats_binary() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

/// Whether `nats-server` can be run here.
pub fn nats_installed() -> bool {
    Command::new(nats_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub struct NatsNode {
    pub config: PathBuf,
    pub url: String,
    pub child: Option<Child>,
}

impl NatsNode {
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.child = Some(spawn_logged(nats_binary(), "-c", &self.config)?);
        Ok(())
    }

    pub fn kill(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child)
    }
}

/// Starts `program FLAG config`, its stderr in the config's `.log` sibling.
fn spawn_logged(program: &str, flag: &str, config: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(config.with_extension("log"))?;
    Ok(Command::new(program)
        .arg(flag)
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// SIGKILLs the child, if any, and reaps it.
fn kill(child: &mut Option<Child>) -> anyhow::Result<()> {
    if let Some(mut child) = child.take() {
        child.kill()?;
        child.wait()?;
    }
    Ok(())
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A scenario's scratch directory: kept, and named on stderr, when `CLUSTER_TEST_KEEP` is set,
/// for a look at the processes' logs and data directories after a failure.
pub fn scratch(scenario: &str) -> anyhow::Result<tempfile::TempDir> {
    let mut dir = tempfile::tempdir()?;
    if std::env::var_os("CLUSTER_TEST_KEEP").is_some() {
        eprintln!("{scenario} in {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    Ok(dir)
}

/// A 3-node cluster below `dir`, ready for a 3-replica stream: its nodes and client URLs.
pub async fn ready_cluster(dir: &Path) -> anyhow::Result<(Vec<NatsNode>, Vec<String>)> {
    let nodes = nats_cluster(dir)?;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    cluster_ready(&urls, 3).await?;
    Ok((nodes, urls))
}

/// Three JetStream nodes routed to each other on loopback, each with its own store.
pub fn nats_cluster(dir: &Path) -> anyhow::Result<Vec<NatsNode>> {
    nats_nodes(dir, 3)
}

/// `n` JetStream nodes below `dir`, started; more than one form a cluster (routes on loopback).
pub fn nats_nodes(dir: &Path, n: usize) -> anyhow::Result<Vec<NatsNode>> {
    let clients: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
    let routes: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
    let route_list = routes
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for i in 0..n {
        let config = dir.join(format!("nats{i}.conf"));
        let cluster = if n > 1 {
            format!(
                "cluster {{\n  name: aggregators\n  listen: 127.0.0.1:{route}\n  routes: [{route_list}]\n}}\n",
                route = routes[i],
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client}\njetstream {{\n  store_dir: {store:?}\n}}\n{cluster}",
                client = clients[i],
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

/// Waits until the nodes elected their JetStream leader and take a stream of `replicas` copies
/// (the stream [`STREAM`], created here when missing, as the first replica would).
pub async fn cluster_ready(urls: &[String], replicas: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connected = ::cluster::Replicated::connect(&::cluster::StreamSettings {
            urls: urls.to_vec(),
            stream: STREAM.into(),
            replicas,
        })
        .await;
        match connected {
            Ok(_) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The `event_log` section of a replica on `urls` (stream [`STREAM`], `replicas` copies), with
/// the lease the cluster tests use (a dead writer replaced within about 2 s).
pub fn jetstream_log(urls: &[String], replicas: usize, lease_ttl: &str) -> String {
    format!(
        "event_log:\n  backend: jetstream\n  nats_urls: [{urls}]\n  stream: {STREAM}\n  replicas: {replicas}\n  lease_ttl: {lease_ttl}\n",
        urls = urls.join(", "),
    )
}

/// The `event_log` section of a replica of the scenarios' 3-node cluster: 3 copies, and a dead
/// writer's lease and a dead claimant's claims lapsing within about 2 s.
pub fn test_cluster_log(urls: &[String]) -> String {
    format!("{}  claim_ttl: 2s\n", jetstream_log(urls, 3, "2s"))
}

pub struct Replica {
    pub config: PathBuf,
    pub data: PathBuf,
    pub keys: PathBuf,
    pub grpc: String,
    pub http: String,
    pub child: Option<Child>,
}

impl Replica {
    /// Replica `i` of the 3-node cluster at `urls` ([`test_cluster_log`]).
    pub fn new(dir: &Path, i: usize, urls: &[String]) -> anyhow::Result<Self> {
        Self::with_config(dir, i, urls, "")
    }

    /// Replica `i` of the 3-node cluster at `urls` whose config also holds `extra` (top-level
    /// YAML sections).
    pub fn with_config(dir: &Path, i: usize, urls: &[String], extra: &str) -> anyhow::Result<Self> {
        Self::configured(dir, i, &format!("{}{extra}", test_cluster_log(urls)))
    }

    /// Aggregator `i` below `dir` with `more` appended to its config (its `event_log` section,
    /// limits, ...); without an `event_log` section it keeps its log in fjall.
    pub fn configured(dir: &Path, i: usize, more: &str) -> anyhow::Result<Self> {
        let data = dir.join(format!("data{i}"));
        let keys = dir.join(format!("keys{i}"));
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join(format!("aggregator{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "data_dir: {data}\nkeys_dir: {keys}\ngrpc:\n  listen: {grpc}\nhttp:\n  listen: {http}\n{more}",
                data = data.display(),
                keys = keys.display(),
            ),
        )?;
        Ok(Self {
            config,
            data,
            keys,
            grpc,
            http,
            child: None,
        })
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        self.child = Some(spawn_logged(
            env!("CARGO_BIN_EXE_aggregator"),
            "--config",
            &self.config,
        )?);
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child)
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

    /// A client once it answers a call (within 60 s). A connection alone says little: the
    /// process binds its port before it has checked its keys and caught up, and the kernel
    /// accepts connections on a bound port meanwhile.
    pub async fn client(&self) -> anyhow::Result<AggregatorClient<Channel>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async {
                let mut client = AggregatorClient::connect(format!("http://{}", self.grpc)).await?;
                client
                    .get_signature_format(aggregator::pb::GetSignatureFormatReq {
                        wallet: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
                    })
                    .await?;
                anyhow::Ok(client)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(client)) => return Ok(client),
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => return Err(anyhow::anyhow!("{e}: {}", self.log_tail())),
                Err(_) => anyhow::bail!("no answer within 60 s: {}", self.log_tail()),
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

    /// The last lines of its log, for a failure's message.
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

/// Starts the first replica, waits for it to answer (its keys are written by then), gives the
/// others a copy of its keys and starts them; answers once every one answers.
pub async fn start_replicas(
    replicas: &mut [Replica],
) -> anyhow::Result<Vec<AggregatorClient<Channel>>> {
    let Some((first, others)) = replicas.split_first_mut() else {
        return Ok(Vec::new());
    };
    first.start()?;
    let mut clients = vec![first.client().await?];
    for replica in others.iter_mut() {
        copy_keys(&first.keys, &replica.keys)?;
        replica.start()?;
        clients.push(replica.client().await?);
    }
    Ok(clients)
}

/// The replica writing the log now, among those running.
pub async fn writer_of(replicas: &[Replica]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        if r.child.is_some() && r.writes().await {
            return Some(i);
        }
    }
    None
}

/// The replica writing the log, once one does (within 30 s).
pub async fn wait_for_writer(replicas: &[Replica]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(w) = writer_of(replicas).await {
            return Ok(w);
        }
        anyhow::ensure!(Instant::now() < deadline, "no replica writes the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A manual firing of `task_id`, not waiting for its run.
pub fn manual_firing(task_id: &str) -> aggregator::pb::TriggerTaskReq {
    use aggregator::pb;
    pb::TriggerTaskReq {
        task_id: task_id.into(),
        trigger_type: pb::TriggerType::Manual as i32,
        trigger_output: Some(pb::trigger_task_req::TriggerOutput::ManualTrigger(
            pb::manual_trigger::Output {
                data: Some(pb::convert::value_from_json(&serde_json::json!({"n": 1}))),
            },
        )),
        is_blocking: false,
        ..Default::default()
    }
}

/// A copy of the keys directory `from` in `to` (every replica uses the same keys).
pub fn copy_keys(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Checks each replica's data directory (the replicas stopped first): its log verifies
/// (`replay verify`) and its projections equal a rebuild from it (`replay diff`).
pub fn verified_everywhere(replicas: &[Replica]) -> anyhow::Result<()> {
    for r in replicas {
        let (ok, out) = crate::support::replay(&r.data, &["verify"])?;
        assert!(ok, "{}: {out}", r.data.display());
        let (ok, out) = crate::support::replay(&r.data, &["diff"])?;
        assert!(ok, "{}: {out}", r.data.display());
    }
    Ok(())
}

/// How many events the (closed) data directory's log holds.
pub fn events_in(data: &Path) -> anyhow::Result<u64> {
    let db = events::open_database(data)?;
    let log = events::LogKeyspaces::open(&db)?;
    Ok(log.scan(None).count() as u64)
}

/// The events of one execution's stream in the (closed) data directory's log, in order.
pub fn execution_events(data: &Path, execution_id: &str) -> anyhow::Result<Vec<events::Envelope>> {
    let db = events::open_database(data)?;
    let log = events::LogKeyspaces::open(&db)?;
    Ok(log.read_stream(&events::stream::execution(execution_id))?)
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
