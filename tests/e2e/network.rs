//! The operator network for the scenarios: anvil, the aggregator (in this process, so that a test
//! can read its log) and operator processes (the real `operator` binary, each with its own keys,
//! YAML config and log file), with test-sized settings: reconciliation every 200 ms, a short
//! reassignment grace, no confirmations, no cooldown.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aggregator::config::{Config, OperatorMember};
use aggregator::pb;
use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use events::Envelope;
use operator::client::{Client, registration};
use operator::config::{CapabilitiesConfig, Ethereum, OperatorConfig};
use tokio::process::{Child, Command};

use crate::anvil::{CHAIN_ID, Chain};
use crate::support::{TestServer, User, random_u64};

/// The `operator` binary of this build. It is another package's, so Cargo does not build it for
/// this test target (`CARGO_BIN_EXE_*` names this package's binaries only): the first call
/// builds it with the Cargo, the profile and the target directory that built this test, which
/// is a no-op when it is fresh (as after `cargo test --workspace`) and keeps it from being stale
/// after `cargo test --test e2e`. `OPERATOR_BIN` names another binary instead.
fn operator_binary() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("OPERATOR_BIN") {
                return Ok(PathBuf::from(path));
            }
            // <target>/<profile>/deps/e2e-<hash>
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .ok_or("the test binary is not in a Cargo target directory")?;
            let target = profile_dir
                .parent()
                .ok_or("the test binary is not in a Cargo target directory")?;
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev",
                Some(other) => other,
                None => "dev",
            };
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "operator", "--bin", "operator"])
                .args(["--profile", profile])
                .arg("--target-dir")
                .arg(target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .map_err(|e| format!("running cargo to build the operator: {e}"))?;
            if !status.success() {
                return Err(format!("building the operator binary failed: {status}"));
            }
            Ok(profile_dir.join(format!("operator{}", std::env::consts::EXE_SUFFIX)))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// An operator's keys.
#[derive(Clone)]
pub struct Keys {
    pub ecdsa: PrivateKeySigner,
    pub bls: [u8; 32],
}

impl Keys {
    pub fn random() -> Self {
        let mut bls = [0u8; 32];
        for chunk in bls.chunks_mut(8) {
            chunk.copy_from_slice(&random_u64().to_le_bytes());
        }
        Self {
            ecdsa: PrivateKeySigner::random(),
            bls,
        }
    }

    pub fn address(&self) -> Address {
        self.ecdsa.address()
    }

    pub fn bls_key(&self) -> blst::min_pk::SecretKey {
        attest::bls_key(&self.bls).unwrap()
    }

    pub fn member(&self) -> OperatorMember {
        registration(&self.ecdsa, &self.bls_key(), CHAIN_ID, 1).unwrap()
    }

    /// A signed client of the `Node` service with these keys, in this process.
    pub async fn client(&self, grpc: &str) -> anyhow::Result<Client> {
        Client::connect(grpc, self.ecdsa.clone(), self.bls_key(), CHAIN_ID).await
    }
}

/// One `operator` process; killed when dropped.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
}

impl OperatorProcess {
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// How an operator follows the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    Subscription,
    Polling,
}

pub struct Network {
    pub chain: Chain,
    pub server: TestServer,
    pub keys: Vec<Keys>,
    pub operators: Vec<Option<OperatorProcess>>,
    pub dir: tempfile::TempDir,
}

impl Network {
    /// Anvil and the aggregator, with `n` registered operators (not started: see `start_operator`).
    pub async fn new(n: usize, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let chain = Chain::start()?;
        Self::on_chain(chain, (0..n).map(|_| Keys::random()).collect(), |config| {
            config.operators.members = Vec::new();
            tweak(config);
        })
        .await
    }

    /// The aggregator on `chain`, with the operators of `keys` in its config (unless `tweak`
    /// says otherwise).
    pub async fn on_chain(
        chain: Chain,
        keys: Vec<Keys>,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let server_dir = tempfile::tempdir()?;
        let mut config = TestServer::config(server_dir.path());
        config.ethereum.rpc_url = Some(chain.anvil.endpoint());
        config.operators.members = keys.iter().map(Keys::member).collect();
        config.operators.reconcile_every = Duration::from_millis(200);
        config.operators.ack_timeout = Duration::from_secs(2);
        config.operators.reassign_grace = Duration::from_secs(3);
        let members = config.operators.members.clone();
        tweak(&mut config);
        if config.operators.members.is_empty() && config.operators.registry_contract.is_none() {
            config.operators.members = members;
        }
        let mut server = TestServer::start_with(server_dir, config).await?;
        // Restarts keep the port: the operators were told where the aggregator is.
        server.keep_ports();
        let operators = keys.iter().map(|_| None).collect();
        Ok(Self {
            chain,
            server,
            keys,
            operators,
            dir: tempfile::tempdir()?,
        })
    }

    /// Starts operator `i` (again, after a kill).
    pub async fn start_operator(&mut self, i: usize, heads: Heads) -> anyhow::Result<()> {
        let keys = &self.keys[i];
        let config = OperatorConfig {
            aggregator: self.server.grpc_url(),
            chain_id: CHAIN_ID,
            ecdsa_key: Some(format!("0x{}", hex::encode(keys.ecdsa.to_bytes()))),
            ecdsa_key_file: None,
            bls_key: Some(format!("0x{}", hex::encode(keys.bls))),
            bls_key_file: None,
            ethereum: Ethereum {
                http_url: self.chain.anvil.endpoint(),
                ws_url: (heads == Heads::Subscription).then(|| self.chain.anvil.ws_endpoint()),
            },
            capabilities: CapabilitiesConfig::default(),
            confirmations: 0,
            event_cooldown: Duration::ZERO,
            max_events_per_block: 100,
            metrics_listen: "127.0.0.1:0".parse()?,
            ping_every: Duration::from_secs(1),
            poll_every: Duration::from_millis(100),
            state_file: self.dir.path().join(format!("operator-{i}-cosigned.json")),
            log_key: None,
        };
        let path = self.dir.path().join(format!("operator-{i}.yaml"));
        std::fs::write(&path, serde_norway::to_string(&config)?)?;
        let log = self.dir.path().join(format!("operator-{i}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(operator_binary()?)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .context("starting the operator binary")?;
        self.operators[i] = Some(OperatorProcess { child, log });
        Ok(())
    }

    pub async fn kill_operator(&mut self, i: usize) {
        if let Some(mut operator) = self.operators[i].take() {
            operator.kill().await;
        }
    }

    /// The operators' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.keys.len() {
            let path = self.dir.path().join(format!("operator-{i}.log"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!(
                    "--- operator {i} ({:#x})\n",
                    self.keys[i].address()
                ));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn app(&self) -> &aggregator::app::App {
        &self.server.running().app
    }

    /// Waits until `n` operators watch the task: assigned, connected, every message acknowledged.
    pub async fn wait_watched(&self, task_id: &str, n: usize) -> anyhow::Result<Vec<String>> {
        self.eventually(&format!("{n} operators watching {task_id}"), || {
            let assigned = self.app().store.views.assigned(task_id)?;
            let snapshot = self.app().pool.snapshot();
            let ready = assigned
                .iter()
                .filter(|a| {
                    snapshot.iter().any(|o| {
                        &o.address == *a && o.connected && o.unacknowledged == 0 && o.tasks > 0
                    })
                })
                .count();
            Ok((assigned.len() == n && ready == n).then_some(assigned))
        })
        .await
    }

    /// Polls `check` every 100 ms for up to 30 s; fails with the operators' logs.
    pub async fn eventually<T>(
        &self,
        what: &str,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check()? {
                return Ok(value);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("timed out waiting for {what}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Mines `n` blocks at once.
    pub async fn mine(&self, n: u64) -> anyhow::Result<u64> {
        self.chain
            .provider
            .raw_request::<_, serde_json::Value>("anvil_mine".into(), (format!("0x{n:x}"),))
            .await?;
        Ok(self.chain.provider.get_block_number().await?)
    }

    pub async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.chain.provider.get_block_number().await?)
    }

    /// The task's executions (finished or not) with their firings, oldest first.
    pub fn executions(&self, task_id: &str) -> anyhow::Result<Vec<Run>> {
        let views = &self.app().store.views;
        let mut runs = Vec::new();
        for id in views.execution_ids(task_id)? {
            let row = views
                .execution(task_id, &id)?
                .context("an execution without its row")?;
            let trigger = views
                .trigger(task_id, &id)?
                .context("an execution without its firing")?;
            runs.push(Run {
                row,
                firing: trigger.firing,
            });
        }
        Ok(runs)
    }

    /// Waits until the task has `n` finished executions, then a little longer to see no more come.
    pub async fn wait_runs(&self, task_id: &str, n: usize) -> anyhow::Result<Vec<Run>> {
        self.eventually(&format!("{n} finished executions of {task_id}"), || {
            let runs = self.executions(task_id)?;
            let finished = runs.iter().filter(|r| r.finished()).count();
            anyhow::ensure!(
                runs.len() <= n,
                "more executions than expected: {:#?}",
                runs.iter().map(|r| &r.firing).collect::<Vec<_>>()
            );
            Ok((finished == n).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let runs = self.executions(task_id)?;
        anyhow::ensure!(
            runs.len() == n,
            "{} executions after settling, expected {n}: {:#?}",
            runs.len(),
            runs.iter().map(|r| &r.firing).collect::<Vec<_>>()
        );
        Ok(runs)
    }

    /// Every event of a firing's stream.
    pub fn firing(&self, task_id: &str, request_id: &str) -> anyhow::Result<Vec<Envelope>> {
        Ok(self
            .app()
            .store
            .log
            .read_stream(&events::stream::firing(task_id, request_id))?)
    }

    /// A signed-in user with a smart wallet, and a client.
    pub async fn user(
        &self,
    ) -> anyhow::Result<(
        pb::aggregator_client::AggregatorClient<tonic::transport::Channel>,
        User,
        String,
    )> {
        let mut c = self.server.client().await?;
        let user = User::sign_in(&mut c).await?;
        let wallet = user.wallet(&mut c).await?;
        Ok((c, user, wallet))
    }
}

/// An execution and the firing that queued it.
#[derive(Debug, Clone)]
pub struct Run {
    pub row: projections::executions::ExecutionRow,
    pub firing: events::execution::Firing,
}

impl Run {
    pub fn finished(&self) -> bool {
        matches!(
            self.row.status,
            projections::executions::RunStatus::Success
                | projections::executions::RunStatus::Failed
        )
    }

    /// The firing's output field `name`.
    pub fn output(&self, name: &str) -> serde_json::Value {
        self.firing
            .output
            .as_ref()
            .and_then(|o| o.get(name))
            .cloned()
            .unwrap_or_default()
    }
}

/// A trigger of the given kind for `task_of`'s request.
pub fn trigger(kind: pb::task_trigger::TriggerType) -> pb::TaskTrigger {
    use pb::task_trigger::TriggerType as T;
    let r#type = match &kind {
        T::Manual(_) => pb::TriggerType::Manual,
        T::FixedTime(_) => pb::TriggerType::FixedTime,
        T::Cron(_) => pb::TriggerType::Cron,
        T::Block(_) => pb::TriggerType::Block,
        T::Event(_) => pb::TriggerType::Event,
    };
    pb::TaskTrigger {
        name: "trigger".into(),
        r#type: r#type as i32,
        trigger_type: Some(kind),
        id: "trigger1".into(),
    }
}

pub fn block_trigger(interval: i64) -> pb::TaskTrigger {
    trigger(pb::task_trigger::TriggerType::Block(pb::BlockTrigger {
        config: Some(pb::block_trigger::Config { interval }),
    }))
}

/// A task of one code node under `trigger`.
pub fn watched_task(name: &str, wallet: &str, trigger: pb::TaskTrigger) -> pb::CreateTaskReq {
    let mut request = crate::support::task_of(
        name,
        wallet,
        vec![crate::support::code_node("code", "return 1;")],
        None,
    );
    request.trigger = Some(trigger);
    request
}
