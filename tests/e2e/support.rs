//! Helpers shared by the scenarios.

use std::path::Path;

use aggregator::store::Store;
use events::Durability;

pub fn open_store(dir: &Path, durability: Durability) -> anyhow::Result<Store> {
    Ok(Store::open(dir, durability)?.0)
}

/// Runs a `replay` command in-process, as the binary would, returning (passed, output).
pub fn replay(data: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    use clap::Parser;
    let mut argv = vec!["replay", "--data", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = replay::Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    let passed = replay::run(&cli, &mut out)?;
    Ok((passed, String::from_utf8(out)?))
}

/// A few random bits without another dependency.
pub fn random_u64() -> u64 {
    events::Ulid::generate().random() as u64
}

// ---- A server started in the test ----

use aggregator::config::Config;
use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;
use aggregator::server::Running;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use tonic::transport::Channel;

/// An aggregator on ephemeral loopback ports, with its own data and keys directories.
pub struct TestServer {
    pub running: Option<Running>,
    /// Holds the data and keys directories until the test ends.
    _dir: tempfile::TempDir,
    pub config: Config,
}

impl TestServer {
    /// The default configuration on ephemeral ports, relaxed durability (fsyncs make no
    /// difference to what these tests check; the crash tests use `sync`).
    pub fn config(dir: &Path) -> Config {
        let mut config = Config {
            data_dir: dir.join("data"),
            keys_dir: dir.join("keys"),
            durability: aggregator::config::DurabilityMode::Relaxed,
            ..Config::default()
        };
        config.grpc.listen = "127.0.0.1:0".parse().unwrap();
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config
    }

    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = Self::config(dir.path());
        Self::start_with(dir, config).await
    }

    pub async fn start_with(dir: tempfile::TempDir, config: Config) -> anyhow::Result<Self> {
        let running = aggregator::server::start(config.clone()).await?;
        Ok(Self {
            running: Some(running),
            _dir: dir,
            config,
        })
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the server is running")
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running().grpc)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.running().http)
    }

    pub async fn client(&self) -> anyhow::Result<AggregatorClient<Channel>> {
        Ok(AggregatorClient::connect(self.grpc_url()).await?)
    }

    /// Stops the server gracefully (the data directory stays).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            running.stop().await?;
        }
        Ok(())
    }

    /// Restarts listen where this run listens (by default a restart takes new ports).
    pub fn keep_ports(&mut self) {
        self.config.grpc.listen = self.running().grpc;
        self.config.http.listen = self.running().http;
    }

    /// Starts it again on the same directories (new ports unless `keep_ports`).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.running = Some(aggregator::server::start(self.config.clone()).await?);
        Ok(())
    }
}

/// A wallet owner with a fresh key.
pub struct User {
    pub signer: PrivateKeySigner,
    pub token: String,
}

impl User {
    pub fn address(&self) -> String {
        self.signer.address().to_checksum(None)
    }

    /// Signs in through GetSignatureFormat and GetKey, as the official client does.
    pub async fn sign_in(client: &mut AggregatorClient<Channel>) -> anyhow::Result<Self> {
        let signer = PrivateKeySigner::random();
        let token = sign_in_as(client, &signer).await?;
        Ok(Self { signer, token })
    }

    /// A request carrying this user's `authkey`.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        with_key(message, &self.token)
    }

    /// The user's salt-0 smart wallet, from GetWallet.
    pub async fn wallet(&self, client: &mut AggregatorClient<Channel>) -> anyhow::Result<String> {
        let resp = client
            .get_wallet(self.req(pb::GetWalletReq {
                salt: "0".into(),
                factory_address: String::new(),
            }))
            .await?
            .into_inner();
        Ok(resp.address)
    }
}

pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authkey", key.parse().unwrap());
    request
}

pub async fn sign_in_as(
    client: &mut AggregatorClient<Channel>,
    signer: &PrivateKeySigner,
) -> anyhow::Result<String> {
    let message = client
        .get_signature_format(pb::GetSignatureFormatReq {
            wallet: signer.address().to_checksum(None),
        })
        .await?
        .into_inner()
        .message;
    let signature = signer.sign_message_sync(message.as_bytes())?;
    let key = client
        .get_key(pb::GetKeyReq {
            message,
            signature: format!("0x{}", hex::encode(signature.as_bytes())),
        })
        .await?
        .into_inner()
        .key;
    Ok(key)
}

/// A valid task request running on `wallet`: a manual trigger and a custom-code node.
pub fn simple_task(name: &str, wallet: &str) -> pb::CreateTaskReq {
    use aggregator::pb::convert::value_from_json;
    let settings = serde_json::json!({ "name": name, "runner": wallet });
    pb::CreateTaskReq {
        trigger: Some(pb::TaskTrigger {
            name: "manualTrigger".into(),
            r#type: pb::TriggerType::Manual as i32,
            id: "trigger1".into(),
            trigger_type: Some(pb::task_trigger::TriggerType::Manual(pb::ManualTrigger {
                config: Some(pb::manual_trigger::Config {
                    data: Some(value_from_json(&serde_json::json!({"hello": "world"}))),
                    ..Default::default()
                }),
            })),
        }),
        nodes: vec![pb::TaskNode {
            id: "node1".into(),
            name: "code".into(),
            r#type: pb::NodeType::CustomCode as i32,
            task_type: Some(pb::task_node::TaskType::CustomCode(pb::CustomCodeNode {
                config: Some(pb::custom_code_node::Config {
                    lang: 1,
                    source: "return 42;".into(),
                }),
            })),
        }],
        edges: vec![pb::TaskEdge {
            id: "e1".into(),
            source: "trigger1".into(),
            target: "node1".into(),
        }],
        input_variables: [("settings".to_owned(), value_from_json(&settings))]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Runs `npm ci` in `dir` unless `installed` (a file the packages bring) exists, so that plain
/// `cargo test` works on a fresh clone. Callers run it once per process (`OnceLock`): two `npm ci`
/// in one folder would trip over each other.
pub fn npm_ci(dir: &Path, installed: &Path) -> anyhow::Result<()> {
    if installed.exists() {
        return Ok(());
    }
    eprintln!(
        "{} is missing: running npm ci in {}",
        installed.display(),
        dir.display()
    );
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| {
            anyhow::anyhow!(
                "running npm ci in {} (is Node.js installed?): {e}",
                dir.display()
            )
        })?;
    anyhow::ensure!(
        status.success(),
        "npm ci in {} failed: {status}",
        dir.display()
    );
    anyhow::ensure!(
        installed.exists(),
        "npm ci in {} did not install {}",
        dir.display(),
        installed.display()
    );
    Ok(())
}

// ---- Building tasks from parts ----

pub fn manual_trigger() -> pb::TaskTrigger {
    use aggregator::pb::convert::value_from_json;
    pb::TaskTrigger {
        name: "manualTrigger".into(),
        r#type: pb::TriggerType::Manual as i32,
        id: "trigger1".into(),
        trigger_type: Some(pb::task_trigger::TriggerType::Manual(pb::ManualTrigger {
            config: Some(pb::manual_trigger::Config {
                data: Some(value_from_json(&serde_json::json!({"start": true}))),
                ..Default::default()
            }),
        })),
    }
}

/// A task of the given nodes, each connected from the trigger unless `edges` says otherwise.
pub fn task_of(
    name: &str,
    wallet: &str,
    nodes: Vec<pb::TaskNode>,
    edges: Option<Vec<pb::TaskEdge>>,
) -> pb::CreateTaskReq {
    let mut request = simple_task(name, wallet);
    request.trigger = Some(manual_trigger());
    request.edges = edges.unwrap_or_else(|| {
        nodes
            .iter()
            .map(|n| pb::TaskEdge {
                id: format!("e-{}", n.id),
                source: "trigger1".into(),
                target: n.id.clone(),
            })
            .collect()
    });
    request.nodes = nodes;
    request
}

pub fn code_node(id: &str, source: &str) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: pb::NodeType::CustomCode as i32,
        task_type: Some(pb::task_node::TaskType::CustomCode(pb::CustomCodeNode {
            config: Some(pb::custom_code_node::Config {
                lang: 1,
                source: source.into(),
            }),
        })),
    }
}

pub fn rest_node(id: &str, method: &str, url: &str, body: &str) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: pb::NodeType::RestApi as i32,
        task_type: Some(pb::task_node::TaskType::RestApi(pb::RestApiNode {
            config: Some(pb::rest_api_node::Config {
                url: url.into(),
                method: method.into(),
                body: body.into(),
                headers: [("content-type".to_owned(), "application/json".to_owned())]
                    .into_iter()
                    .collect(),
                options: None,
            }),
        })),
    }
}

pub fn edge(source: &str, target: &str) -> pb::TaskEdge {
    pb::TaskEdge {
        id: format!("{source}->{target}"),
        source: source.into(),
        target: target.into(),
    }
}

/// A server whose engine may call loopback fixtures (tests allow-list them explicitly).
pub async fn server_allowing_loopback() -> anyhow::Result<TestServer> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.engine.http.allow = vec!["127.0.0.0/8".parse()?];
    TestServer::start_with(dir, config).await
}

/// Triggers a task (blocking) and returns the response.
pub async fn run_blocking(
    client: &mut AggregatorClient<Channel>,
    user: &User,
    task_id: &str,
) -> anyhow::Result<pb::TriggerTaskResp> {
    Ok(client
        .trigger_task(user.req(pb::TriggerTaskReq {
            task_id: task_id.into(),
            trigger_type: pb::TriggerType::Manual as i32,
            trigger_output: Some(pb::trigger_task_req::TriggerOutput::ManualTrigger(
                pb::manual_trigger::Output {
                    data: Some(aggregator::pb::convert::value_from_json(
                        &serde_json::json!({"n": random_u64() % 1000}),
                    )),
                },
            )),
            is_blocking: true,
            ..Default::default()
        }))
        .await?
        .into_inner())
}

/// The JSON output of a step.
pub fn step_output(step: &pb::execution::Step) -> serde_json::Value {
    use pb::execution::step::OutputData as O;
    let data = match &step.output_data {
        Some(O::CustomCode(o)) => o.data.clone(),
        Some(O::RestApi(o)) => o.data.clone(),
        Some(O::Graphql(o)) => o.data.clone(),
        Some(O::Branch(o)) => o.data.clone(),
        Some(O::Filter(o)) => o.data.clone(),
        Some(O::Loop(o)) => o.data.clone(),
        Some(O::ContractRead(o)) => o.data.clone(),
        Some(O::Balance(o)) => o.data.clone(),
        Some(O::ManualTrigger(o)) => o.data.clone(),
        Some(O::BlockTrigger(o)) => o.data.clone(),
        Some(O::EventTrigger(o)) => o.data.clone(),
        Some(O::CronTrigger(o)) => o.data.clone(),
        Some(O::FixedTimeTrigger(o)) => o.data.clone(),
        Some(O::EthTransfer(o)) => o.data.clone(),
        Some(O::ContractWrite(o)) => o.data.clone(),
        None => None,
    };
    data.map(|v| aggregator::pb::convert::json_from_value(&v).unwrap())
        .unwrap_or(serde_json::Value::Null)
}
