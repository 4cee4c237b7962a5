//! The configuration: a typed struct with named defaults, loaded from YAML (unknown keys are an
//! error), then overridden from the command line and the environment (`Overrides`).
//!
//! `config/aggregator.example.yaml` documents every field; it holds exactly the defaults and is
//! embedded in the binary, so `aggregator` with no arguments runs on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ip::Cidr;
pub use protocol::process::duration_text;
pub use protocol::registration::OperatorMember;

/// The documented defaults, embedded.
pub const EXAMPLE_YAML: &str = include_str!("../config/aggregator.example.yaml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The chain the aggregator serves; sign-in messages and tokens name it.
    pub chain_id: u64,
    /// The fjall database (event log and projections).
    pub data_dir: PathBuf,
    /// The JWT secret and the secret-encryption key, generated on first start (mode 0600), kept
    /// apart from `data_dir` so that a copy of the data handed to an auditor reveals no key.
    pub keys_dir: PathBuf,
    /// `sync`: every acknowledged command is fsync'd (group commit); `relaxed`: written to the OS
    /// only (survives a crash of the process, not of the machine).
    pub durability: DurabilityMode,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub ethereum: EthereumConfig,
    pub wallet: WalletConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub idempotency: IdempotencyConfig,
    pub engine: EngineConfig,
    pub operators: OperatorsConfig,
    pub fees: FeesConfig,
    pub event_log: EventLogConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chain_id: 31337,
            data_dir: PathBuf::from("./data"),
            keys_dir: PathBuf::from("./keys"),
            durability: DurabilityMode::Sync,
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            ethereum: EthereumConfig::default(),
            wallet: WalletConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            idempotency: IdempotencyConfig::default(),
            engine: EngineConfig::default(),
            operators: OperatorsConfig::default(),
            fees: FeesConfig::default(),
            event_log: EventLogConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    Sync,
    Relaxed,
}

impl From<DurabilityMode> for events::Durability {
    fn from(mode: DurabilityMode) -> Self {
        match mode {
            DurabilityMode::Sync => Self::Sync,
            DurabilityMode::Relaxed => Self::Relaxed,
        }
    }
}

/// Certificate and key (PEM files) for a TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// Off by default: the official client speaks plaintext only.
    pub tls: Option<TlsConfig>,
    /// Largest request or response message.
    pub max_message_bytes: usize,
    /// Connections open at once; one past it is closed at once.
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed (it must start its HTTP/2
    /// or TLS handshake).
    #[serde(with = "duration_text")]
    pub handshake_timeout: Duration,
    /// HTTP/2 pings on idle connections, and how long an answer may take before the connection
    /// is dropped.
    #[serde(with = "duration_text")]
    pub keepalive_interval: Duration,
    #[serde(with = "duration_text")]
    pub keepalive_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2206)),
            tls: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/up`, `/metrics`, `/operators`, `/operator` (the original's list).
    pub listen: SocketAddr,
    /// Refused when set (the listener speaks plain HTTP): a TLS-terminating proxy goes in front.
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1323)),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EthereumConfig {
    /// JSON-RPC over HTTP; none needed for the default (wallet addresses derive offline).
    pub rpc_url: Option<String>,
    /// JSON-RPC over WebSocket (subscriptions).
    pub ws_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    /// The ERC-4337 v0.6 factory whose `getAddress` smart wallets follow.
    pub factory: String,
    /// `simple_account`: a stock `SimpleAccountFactory` (only owners sign: the aggregator cannot
    /// act for its wallets); `controlled_account`: a `ControlledAccountFactory`, whose wallets
    /// also accept the controller key (`aggregator chain deploy` sets it up).
    pub factory_kind: crate::wallet::FactoryKind,
    /// The factory's `accountImplementation()`.
    pub account_implementation: String,
    /// The EntryPoint the accounts use (nonces are read from it).
    pub entry_point: String,
    /// Smart wallets one owner may register with `GetWallet`.
    pub max_per_owner: u32,
    /// An external ERC-4337 bundler's JSON-RPC URL; none: the aggregator bundles itself
    /// (`handleOps` from the account of `bundler.key`).
    pub bundler_url: Option<String>,
    /// A v0.6 VerifyingPaymaster whose signer is the controller: when set, it sponsors every
    /// user operation (the wallets pay only the values they send).
    pub paymaster: Option<String>,
    /// How long a write waits for its user operation's receipt before answering "pending".
    #[serde(with = "duration_text")]
    pub receipt_timeout: Duration,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            factory: "0x9406Cc6185a346906296840746125a0E44976454".into(),
            factory_kind: crate::wallet::FactoryKind::SimpleAccount,
            account_implementation: "0x8ABB13360b87Be5EEb1B98647A016adD927a136c".into(),
            entry_point: "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789".into(),
            max_per_owner: 5,
            bundler_url: None,
            paymaster: None,
            receipt_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The `URI:` line of the sign-in message.
    pub signin_uri: String,
    /// How long a sign-in message from `GetSignatureFormat` stays valid (its `Expire At`).
    #[serde(with = "duration_text")]
    pub signin_lifetime: Duration,
    /// The longest token `GetKey` issues: a message whose `Expire At` is further than this from
    /// its `Issued At` is refused.
    #[serde(with = "duration_text")]
    pub max_token_lifetime: Duration,
    /// Tolerance for clocks ahead of ours (`Issued At` in the future).
    #[serde(with = "duration_text")]
    pub clock_skew: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signin_uri: "https://app.avaprotocol.org".into(),
            signin_lifetime: Duration::from_secs(24 * 3600),
            max_token_lifetime: Duration::from_secs(7 * 24 * 3600),
            clock_skew: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tasks one owner may have (deleted ones do not count).
    pub tasks_per_owner: u64,
    /// Secrets one owner may have.
    pub secrets_per_owner: u64,
    /// Sustained requests per second per caller (per client address, or per peer before sign-in).
    pub requests_per_second: u32,
    /// Burst above the sustained rate.
    pub burst: u32,
    /// `RunTrigger`, `RunNodeWithInputs`, `SimulateTask` per minute per caller: they run
    /// arbitrary code and requests. Sized so that a client calling as fast as the official
    /// client's own test suite (hundreds of runs a minute) is not refused; the sandbox and HTTP
    /// limits bound what each run costs.
    pub runs_per_minute: u32,
    pub max_nodes: usize,
    pub max_edges: usize,
    /// Entries of any other list of a definition: cron schedules, fixed-time epochs, event
    /// queries and their addresses and conditions, method calls, ABI entries.
    pub max_list_items: usize,
    /// Names, ids, addresses and other short strings.
    pub max_name_bytes: usize,
    /// Free text: code, queries, bodies, expressions, URLs. The original takes custom code up to
    /// 100 KB (and REST bodies up to 10 MB); a step must fit in `max_event_bytes`.
    pub max_text_bytes: usize,
    /// The encoded `input_variables` (and other `Value` maps) of one request.
    pub max_values_bytes: usize,
    pub max_secret_bytes: usize,
    /// The largest event the log accepts, in bytes: the one bound every other size limit fits
    /// under (checked at start-up). An event past it rejects its command.
    pub max_event_bytes: usize,
    /// How deep any value a user controls may nest (node outputs, trigger data, inputs) before
    /// it enters an event; deeper is a failed step or an invalid request. At most
    /// `MAX_VALUE_DEPTH`, so that every stored event and row stays readable. The default leaves
    /// room for protobuf readers too: a JSON level is two protobuf messages (`Value`, then
    /// `ListValue` or `Struct`), and prost decodes at most 100 nested messages.
    pub max_value_depth: usize,
    /// One step's output (and its rendered config), in bytes encoded.
    pub max_output_bytes: usize,
    /// All the steps of one execution together, in bytes encoded: an execution is answered in
    /// one message, so this stays under `grpc.max_message_bytes`. Steps past it are not run.
    pub max_execution_bytes: usize,
}

/// The deepest `limits.max_value_depth` may be: events and rows wrap a value in a few more levels,
/// and the log refuses events nested deeper than `events::bounds::MAX_EVENT_DEPTH`.
pub const MAX_VALUE_DEPTH: usize = events::bounds::MAX_EVENT_DEPTH - 32;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            tasks_per_owner: 1000,
            secrets_per_owner: 200,
            requests_per_second: 100,
            burst: 200,
            runs_per_minute: 1200,
            max_nodes: 200,
            max_edges: 400,
            max_list_items: 256,
            max_name_bytes: 256,
            max_text_bytes: 256 * 1024,
            max_values_bytes: 256 * 1024,
            max_secret_bytes: 8 * 1024,
            max_event_bytes: events::DEFAULT_MAX_EVENT_BYTES,
            max_value_depth: 32,
            max_output_bytes: 512 * 1024,
            max_execution_bytes: 3 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// A `CreateTask` repeated by the same caller with the same request (no `idempotency-key`
    /// header) returns the first task when the first could not answer its caller (still
    /// running, or done after the caller's deadline), for this long after the first finished
    /// (`rpc::repeats`).
    #[serde(with = "duration_text")]
    pub create_window: Duration,
    /// The same for `TriggerTask`.
    #[serde(with = "duration_text")]
    pub trigger_window: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            create_window: Duration::from_secs(120),
            trigger_window: Duration::from_secs(120),
        }
    }
}

/// The task engine: how many runs at once, their limits, the sandbox and outbound HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Executions running at once (they are I/O-bound).
    pub concurrency: usize,
    /// Executions of one owner running at once; the owner's others wait, queued.
    pub owner_concurrency: usize,
    /// Executions of one owner queued or running at once; a firing beyond is refused
    /// (RESOURCE_EXHAUSTED).
    pub owner_pending: usize,
    /// Runs of one task go one at a time, in the order they were queued.
    pub serial_per_task: bool,
    /// The longest an execution may run; what remains is recorded as failed.
    #[serde(with = "duration_text")]
    pub execution_limit: Duration,
    /// The longest one node may run.
    #[serde(with = "duration_text")]
    pub node_limit: Duration,
    /// Steps one execution may record (loop iterations count).
    pub max_steps: usize,
    /// Elements a loop node iterates over at most.
    pub max_loop_iterations: usize,
    /// Iterations a parallel loop runs at once.
    pub loop_parallelism: usize,
    /// JavaScript worker threads (0: one per core).
    pub js_threads: usize,
    /// Wall time of one script (custom code, a template, a condition).
    #[serde(with = "duration_text")]
    pub js_time_limit: Duration,
    /// Memory of one JavaScript runtime, in MiB.
    pub js_memory_mib: usize,
    /// JavaScript worker time one owner's scripts may use per minute; past it, their scripts fail
    /// at once until the minute rolls over (0s: no budget).
    #[serde(with = "duration_text")]
    pub js_owner_budget: Duration,
    /// The `node_modules` directory holding the npm packages custom code may `require` (lodash,
    /// dayjs, uuid, pinned in `js_modules/package.json`). `None`: `js_modules/node_modules` of
    /// the source tree the binary was built from, where `npm ci` in `js_modules/` installs them.
    pub js_modules_dir: Option<PathBuf>,
    /// Outbound HTTP of the REST and GraphQL nodes (see `engine::http`).
    pub http: OutboundHttpConfig,
    /// A JSON file of known tokens (`[{"address", "name", "symbol", "decimals"}]`) that
    /// `GetTokenMetadata` answers from before asking the chain, instead of the built-in list of
    /// the chain (`config/tokens/`: ethereum, sepolia, base, base-sepolia).
    pub token_whitelist: Option<PathBuf>,
    /// How often active tasks past their `expired_at` are completed.
    #[serde(with = "duration_text")]
    pub expiry_sweep: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            owner_concurrency: 16,
            owner_pending: 1000,
            serial_per_task: true,
            execution_limit: Duration::from_secs(120),
            node_limit: Duration::from_secs(30),
            max_steps: 1000,
            max_loop_iterations: 1000,
            loop_parallelism: 8,
            js_threads: 0,
            js_time_limit: Duration::from_secs(5),
            js_memory_mib: 64,
            js_owner_budget: Duration::from_secs(60),
            js_modules_dir: None,
            http: OutboundHttpConfig::default(),
            token_whitelist: None,
            expiry_sweep: Duration::from_secs(30),
        }
    }
}

pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HTTP_MAX_REQUEST_BYTES: usize = 1024 * 1024;
pub const DEFAULT_HTTP_MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;
pub const DEFAULT_HTTP_MAX_REDIRECTS: usize = 5;
pub const DEFAULT_HTTP_USER_AGENT: &str = concat!("ava-aggregator/", env!("CARGO_PKG_VERSION"));

/// `engine.http`: outbound HTTP of the REST and GraphQL nodes (`engine::http`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundHttpConfig {
    /// Address blocks that are requested even though they are private, loopback, link-local...
    /// (e.g. `10.20.0.0/16` for an internal API the tasks are meant to reach). Empty: only
    /// public addresses.
    pub allow: Vec<Cidr>,
    /// Host names (exactly, case-insensitive) whose addresses are not checked at all. Prefer
    /// `allow`: a name's addresses can change under you.
    pub allow_hosts: Vec<String>,
    /// The whole request: connecting, sending, redirects and reading the response.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// The URL, the headers and the body together.
    pub max_request_bytes: usize,
    /// The response body, as decoded.
    pub max_response_bytes: usize,
    pub max_redirects: usize,
    pub user_agent: String,
    /// Answer `https://mock-api.ap-aggregator.local/...` in process, as the original does (an
    /// httpbin-like responder that never touches the network), instead of resolving the name.
    pub mock_host: bool,
}

impl Default for OutboundHttpConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            allow_hosts: Vec::new(),
            timeout: DEFAULT_HTTP_TIMEOUT,
            connect_timeout: DEFAULT_HTTP_CONNECT_TIMEOUT,
            max_request_bytes: DEFAULT_HTTP_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_HTTP_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_HTTP_MAX_REDIRECTS,
            user_agent: DEFAULT_HTTP_USER_AGENT.to_owned(),
            mock_host: true,
        }
    }
}

/// The operator network: who the operators are, how tasks are shared out, what a quorum is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorsConfig {
    /// The operator set, when the config names it (see `operator register` for the values).
    pub members: Vec<OperatorMember>,
    /// A registry contract to read the operator set from instead (`OperatorRegistry`, on
    /// `ethereum.rpc_url`); re-read every `registry_refresh`.
    pub registry_contract: Option<String>,
    #[serde(with = "duration_text")]
    pub registry_refresh: Duration,
    /// Operators that watch each task (0: min(3, the number of operators)).
    pub per_task: usize,
    /// A firing runs once operators holding at least `quorum_numerator / quorum_denominator` of
    /// the assigned operators' weight signed the same digest (default two thirds: 1 of 1, 2 of 2,
    /// 2 of 3 with equal weights).
    pub quorum_numerator: u64,
    pub quorum_denominator: u64,
    /// How far an operator request's signing time may be from ours.
    #[serde(with = "duration_text")]
    pub freshness: Duration,
    /// A pushed message not acknowledged within this is sent again.
    #[serde(with = "duration_text")]
    pub ack_timeout: Duration,
    /// An operator gone longer than this loses its tasks to others.
    #[serde(with = "duration_text")]
    pub reassign_grace: Duration,
    /// How often assignments and pushed messages are reconciled with the tasks.
    #[serde(with = "duration_text")]
    pub reconcile_every: Duration,
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            registry_contract: None,
            registry_refresh: Duration::from_secs(60),
            per_task: 0,
            quorum_numerator: 2,
            quorum_denominator: 3,
            freshness: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            reassign_grace: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(1),
        }
    }
}

/// The original's fee structure, as `EstimateFees` answers it (`domain::fees`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeesConfig {
    /// Flat platform fee per execution, in USD.
    pub execution_fee_usd: f64,
    /// Value-fee percentages by tier (of the value a workflow moves).
    pub tier1_percentage: f64,
    pub tier2_percentage: f64,
    pub tier3_percentage: f64,
    /// The chain's currency.
    pub native_token_symbol: String,
    /// The price source: the native token's price in USD. None: fee estimates answer
    /// `success: false`, saying so (gas costs are still listed).
    pub native_token_price_usd: Option<f64>,
}

impl Default for FeesConfig {
    fn default() -> Self {
        Self {
            execution_fee_usd: 0.02,
            tier1_percentage: 0.03,
            tier2_percentage: 0.09,
            tier3_percentage: 0.18,
            native_token_symbol: "ETH".into(),
            native_token_price_usd: None,
        }
    }
}

/// The event log as a transparency log: its checkpoints (see `transparency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventLogConfig {
    /// A checkpoint is signed at most this often, when the log grew.
    #[serde(with = "duration_text")]
    pub checkpoint_interval: Duration,
    /// The log's name in its checkpoints (a schema-less URL, e.g. `aggregator.example.com/log`).
    /// Unset: the log key's name, `ava-aggregator/<chain id>` for a key made on first start.
    pub origin: Option<String>,
    /// Where the log is durable: `fjall` (embedded, the default) or `jetstream` (a NATS
    /// JetStream stream, the only source of truth; the local database keeps derived copies).
    pub backend: LogBackend,
    /// NATS servers to connect to (`jetstream`), e.g. `nats://127.0.0.1:4222`.
    pub nats_urls: Vec<String>,
    /// The JetStream stream holding the log (`jetstream`).
    pub stream: String,
    /// Copies of the stream the NATS cluster keeps (`jetstream`; 1 against a single server).
    pub replicas: usize,
    /// What a read RPC on a replica sees (`jetstream`): `linearizable` (every command
    /// acknowledged before the read arrived, on any replica) or `local` (what this replica holds).
    pub reads: ReadConsistency,
    /// How long the writer's lease holds without being renewed (`jetstream`): a writer that
    /// dies is replaced after about this long.
    #[serde(with = "duration_text")]
    pub lease_ttl: Duration,
    /// How long a replica's claim on an execution holds unrenewed (`jetstream`): the claimant
    /// renews it three times per period while the run goes on, and an execution whose claimant
    /// died is taken by another replica after about this long.
    #[serde(with = "duration_text")]
    pub claim_ttl: Duration,
}

/// What a read on a replica of a replicated log sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// The replica first catches up with the stream's last sequence as of the read's arrival.
    Linearizable,
    /// The replica answers from what it holds (it may be behind the writer by a moment).
    Local,
}

/// The default lease of the log's writer.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// The default lease of a replica's claim on an execution.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(10);

/// The default stream name of a replicated log.
pub const DEFAULT_LOG_STREAM: &str = "aggregator";
/// The default copies of a replicated log's stream: a 3-node NATS cluster survives one node lost.
pub const DEFAULT_LOG_REPLICAS: usize = 3;

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(5),
            origin: None,
            backend: LogBackend::Fjall,
            nats_urls: Vec::new(),
            stream: DEFAULT_LOG_STREAM.into(),
            replicas: DEFAULT_LOG_REPLICAS,
            reads: ReadConsistency::Linearizable,
            lease_ttl: DEFAULT_LEASE_TTL,
            claim_ttl: DEFAULT_CLAIM_TTL,
        }
    }
}

/// Where the event log is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// The embedded fjall database in `data_dir`.
    Fjall,
    /// A NATS JetStream stream (`event_log.nats_urls`, `stream`, `replicas`).
    Jetstream,
}

impl EventLogConfig {
    fn validate_backend(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.backend == LogBackend::Fjall {
            return Ok(());
        }
        if self.nats_urls.is_empty() {
            return invalid("event_log.backend jetstream needs event_log.nats_urls (at least one nats://host:port)".into());
        }
        if let Some(url) = self
            .nats_urls
            .iter()
            .find(|u| u.trim().is_empty() || u.contains(char::is_whitespace))
        {
            return invalid(format!(
                "event_log.nats_urls: {url:?} is not a server address"
            ));
        }
        // JetStream stream names: no whitespace, '.', '*', '>', path separators.
        if self.stream.is_empty()
            || self.stream.len() > 64
            || !self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(format!(
                "event_log.stream {:?} must be 1 to 64 letters, digits, '-' or '_'",
                self.stream
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return invalid(format!(
                "event_log.replicas {} must be 1 to 5 (JetStream's limit)",
                self.replicas
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.lease_ttl) {
            return invalid(format!(
                "event_log.lease_ttl {:?} must be 1s to 60s",
                self.lease_ttl
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.claim_ttl) {
            return invalid(format!(
                "event_log.claim_ttl {:?} must be 1s to 5m",
                self.claim_ttl
            ));
        }
        Ok(())
    }

    /// The configured origin, and the one a new key is named with.
    pub fn origin(&self, chain_id: u64) -> (Option<&str>, String) {
        (
            self.origin.as_deref(),
            self.origin
                .clone()
                .unwrap_or_else(|| format!("ava-aggregator/{chain_id}")),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level for our own crates (dependencies log from `warn` up), or a full `tracing` filter
    /// when it holds `=` or `,` (e.g. `info,aggregator=debug`); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Command-line flags, each also read from an environment variable; they win over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// YAML config file (default: the embedded defaults).
    #[arg(long, env = "AGGREGATOR_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "AGGREGATOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "AGGREGATOR_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    #[arg(long, env = "AGGREGATOR_CHAIN_ID")]
    pub chain_id: Option<u64>,
    #[arg(long, env = "AGGREGATOR_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    #[arg(long, env = "AGGREGATOR_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    #[arg(long, env = "AGGREGATOR_RPC_URL")]
    pub rpc_url: Option<String>,
    #[arg(long, env = "AGGREGATOR_WS_URL")]
    pub ws_url: Option<String>,
    #[arg(long, env = "AGGREGATOR_DURABILITY", value_enum)]
    pub durability: Option<DurabilityMode>,
    #[arg(long, env = "AGGREGATOR_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[arg(long, env = "AGGREGATOR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Parse {
        origin: String,
        source: serde_norway::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses YAML; keys it does not know are an error.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The file named by the overrides (or the embedded defaults), then the overrides.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Self::from_yaml(EXAMPLE_YAML, "the embedded default config")?,
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir.clone_from(v);
        }
        if let Some(v) = &o.keys_dir {
            self.keys_dir.clone_from(v);
        }
        if let Some(v) = o.chain_id {
            self.chain_id = v;
        }
        if let Some(v) = o.grpc_listen {
            self.grpc.listen = v;
        }
        if let Some(v) = o.http_listen {
            self.http.listen = v;
        }
        if let Some(v) = &o.rpc_url {
            self.ethereum.rpc_url = Some(v.clone());
        }
        if let Some(v) = &o.ws_url {
            self.ethereum.ws_url = Some(v.clone());
        }
        if let Some(v) = o.durability {
            self.durability = v;
        }
        if let Some(v) = &o.log_level {
            self.log.level.clone_from(v);
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.chain_id == 0 {
            return invalid("chain_id must not be 0".into());
        }
        if self.auth.max_token_lifetime < self.auth.signin_lifetime {
            return invalid("auth.max_token_lifetime is shorter than auth.signin_lifetime".into());
        }
        if self.event_log.checkpoint_interval < Duration::from_millis(100) {
            return invalid("event_log.checkpoint_interval must be at least 100ms".into());
        }
        if let Some(origin) = &self.event_log.origin
            && (origin.is_empty() || origin.contains(char::is_whitespace) || origin.contains('+'))
        {
            return invalid(format!(
                "event_log.origin {origin:?} must be non-empty, without spaces or '+'"
            ));
        }
        self.event_log.validate_backend()?;
        for (name, value) in [
            ("wallet.factory", &self.wallet.factory),
            (
                "wallet.account_implementation",
                &self.wallet.account_implementation,
            ),
            ("wallet.entry_point", &self.wallet.entry_point),
        ] {
            if value.parse::<alloy::primitives::Address>().is_err() {
                return invalid(format!("{name} {value:?} is not an address"));
            }
        }
        if let Some(paymaster) = &self.wallet.paymaster
            && paymaster.parse::<alloy::primitives::Address>().is_err()
        {
            return invalid(format!("wallet.paymaster {paymaster:?} is not an address"));
        }
        if let Some(url) = &self.wallet.bundler_url
            && url.parse::<reqwest::Url>().is_err()
        {
            return invalid("wallet.bundler_url is not a URL".into());
        }
        if self.operators.quorum_numerator == 0
            || self.operators.quorum_denominator == 0
            || self.operators.quorum_numerator > self.operators.quorum_denominator
        {
            return invalid(
                "operators.quorum_numerator / quorum_denominator must be a share above 0 and at most 1 (0 would run any firing no operator signed)"
                    .into(),
            );
        }
        if self.http.tls.is_some() {
            return invalid(
                "http.tls is not supported: keep the HTTP listener on loopback or behind a TLS-terminating proxy (grpc.tls is)".into(),
            );
        }
        if self.limits.max_execution_bytes + 256 * 1024 > self.grpc.max_message_bytes {
            return invalid(format!(
                "limits.max_execution_bytes ({}) must stay 256 KiB under grpc.max_message_bytes ({}): an execution is answered in one message",
                self.limits.max_execution_bytes, self.grpc.max_message_bytes
            ));
        }
        if self.grpc.max_connections == 0 {
            return invalid("grpc.max_connections must be positive".into());
        }
        if self.limits.requests_per_second == 0
            || self.limits.burst == 0
            || self.limits.runs_per_minute == 0
        {
            return invalid("limits.requests_per_second, limits.burst and limits.runs_per_minute must be positive".into());
        }
        self.limits.check_sizes().map_err(ConfigError::Invalid)
    }
}

impl LimitsConfig {
    /// Every size limit fits under `max_event_bytes`: the largest events are a step (its output,
    /// its rendered config, its log and error, each text at most `max_text_bytes`) and a firing
    /// (its data and the caller's input), with room for the envelope.
    fn check_sizes(&self) -> Result<(), String> {
        const ENVELOPE: usize = 64 * 1024;
        if self.max_value_depth == 0 || self.max_value_depth > MAX_VALUE_DEPTH {
            return Err(format!(
                "limits.max_value_depth must be between 1 and {MAX_VALUE_DEPTH}"
            ));
        }
        let step = 2 * self.max_output_bytes + 2 * self.max_text_bytes + ENVELOPE;
        let firing = self.max_output_bytes + self.max_values_bytes + ENVELOPE;
        for (what, bytes) in [
            (
                "a step (2 × max_output_bytes + 2 × max_text_bytes + 64 KiB)",
                step,
            ),
            (
                "a firing (max_output_bytes + max_values_bytes + 64 KiB)",
                firing,
            ),
            (
                "a secret (max_secret_bytes + 64 KiB)",
                self.max_secret_bytes + ENVELOPE,
            ),
        ] {
            if bytes > self.max_event_bytes {
                return Err(format!(
                    "limits.max_event_bytes ({}) is smaller than {what}: {bytes} bytes",
                    self.max_event_bytes
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_exactly_the_defaults() {
        let parsed = Config::from_yaml(EXAMPLE_YAML, "example").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            Config::from_yaml("chain_id: 1\ngrpc:\n  listn: 127.0.0.1:1\n", "test").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut config = Config::from_yaml("chain_id: 5\n", "test").unwrap();
        config.apply(&Overrides {
            chain_id: Some(7),
            data_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        });
        assert_eq!(config.chain_id, 7);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn settings_that_would_weaken_the_service_are_refused() {
        for (yaml, says) in [
            ("operators:\n  quorum_numerator: 0\n", "above 0"),
            (
                "http:\n  tls: { cert: /c.pem, key: /k.pem }\n",
                "http.tls is not supported",
            ),
            ("limits:\n  max_value_depth: 120\n", "max_value_depth"),
            (
                "limits:\n  max_event_bytes: 100000\n",
                "smaller than a step",
            ),
            ("grpc:\n  max_connections: 0\n", "max_connections"),
            (
                "event_log:\n  backend: jetstream\n",
                "needs event_log.nats_urls",
            ),
            (
                "event_log:\n  backend: jetstream\n  nats_urls: [nats://127.0.0.1:4222]\n  stream: a.b\n",
                "event_log.stream",
            ),
            (
                "event_log:\n  backend: jetstream\n  nats_urls: [nats://127.0.0.1:4222]\n  replicas: 0\n",
                "event_log.replicas",
            ),
            ("event_log:\n  backend: raft\n", "unknown variant"),
        ] {
            let err = Config::from_yaml(yaml, "test").unwrap_err();
            assert!(err.to_string().contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn durations_parse_as_text() {
        let config = Config::from_yaml("idempotency:\n  create_window: 5m\n", "test").unwrap();
        assert_eq!(config.idempotency.create_window, Duration::from_secs(300));
        assert!(Config::from_yaml("idempotency:\n  create_window: soon\n", "test").is_err());
    }
}
