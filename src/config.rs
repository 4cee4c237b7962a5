//! The configuration: a typed struct with named defaults, loaded from YAML (unknown keys are an
//! error), then overridden from the command line and the environment (`Overrides`).
//!
//! `config/aggregator.example.yaml` documents every field; it holds exactly the defaults and is
//! embedded in the binary, so `aggregator` with no arguments runs on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2206)),
            tls: None,
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/up`, `/metrics`, `/operators`.
    pub listen: SocketAddr,
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
    /// arbitrary code and requests.
    pub runs_per_minute: u32,
    pub max_nodes: usize,
    pub max_edges: usize,
    /// Names, ids, addresses and other short strings.
    pub max_name_bytes: usize,
    /// Free text: code, queries, bodies, expressions, URLs.
    pub max_text_bytes: usize,
    /// The encoded `input_variables` (and other `Value` maps) of one request.
    pub max_values_bytes: usize,
    pub max_secret_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            tasks_per_owner: 1000,
            secrets_per_owner: 200,
            requests_per_second: 100,
            burst: 200,
            runs_per_minute: 60,
            max_nodes: 200,
            max_edges: 400,
            max_name_bytes: 256,
            max_text_bytes: 64 * 1024,
            max_values_bytes: 256 * 1024,
            max_secret_bytes: 8 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// A `CreateTask` repeated by the same caller with the same request within this window
    /// returns the first task (the official client retries up to 3 times, 30 s apart).
    #[serde(with = "duration_text")]
    pub create_window: Duration,
    /// Same for `TriggerTask` without an `idempotency-key` header.
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
    /// Outbound HTTP of the REST and GraphQL nodes (see `engine::http`).
    pub http: crate::engine::http::HttpConfig,
    /// A JSON file of known tokens (`[{"address", "name", "symbol", "decimals"}]`) that
    /// `GetTokenMetadata` answers from before asking the chain.
    pub token_whitelist: Option<PathBuf>,
    /// How often active tasks past their `expired_at` are completed.
    #[serde(with = "duration_text")]
    pub expiry_sweep: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            serial_per_task: true,
            execution_limit: Duration::from_secs(120),
            node_limit: Duration::from_secs(30),
            max_steps: 1000,
            max_loop_iterations: 1000,
            loop_parallelism: 8,
            js_threads: 0,
            js_time_limit: Duration::from_secs(5),
            js_memory_mib: 64,
            http: crate::engine::http::HttpConfig::default(),
            token_whitelist: None,
            expiry_sweep: Duration::from_secs(30),
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

/// One operator: its ECDSA address, its BLS12-381 public key and the proofs binding them (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorMember {
    pub address: String,
    pub bls_public_key: String,
    /// The BLS key's signature of itself.
    pub proof_of_possession: String,
    /// The ECDSA key's EIP-191 signature of the binding text.
    pub ecdsa_binding: String,
    #[serde(default = "one")]
    pub weight: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `aggregator=debug,info`; `RUST_LOG` wins when set.
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
        if self.operators.quorum_denominator == 0
            || self.operators.quorum_numerator > self.operators.quorum_denominator
        {
            return invalid(
                "operators.quorum_numerator / quorum_denominator must be a share between 0 and 1"
                    .into(),
            );
        }
        if self.limits.requests_per_second == 0
            || self.limits.burst == 0
            || self.limits.runs_per_minute == 0
        {
            return invalid("limits.requests_per_second, limits.burst and limits.runs_per_minute must be positive".into());
        }
        Ok(())
    }
}

/// Durations as text (`120s`, `7d`, `1h 30m`), in both directions.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
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
    fn durations_parse_as_text() {
        let config = Config::from_yaml("idempotency:\n  create_window: 5m\n", "test").unwrap();
        assert_eq!(config.idempotency.create_window, Duration::from_secs(300));
        assert!(Config::from_yaml("idempotency:\n  create_window: soon\n", "test").is_err());
    }
}
