//! The original's `aggregator.yaml` (Go, flat snake_case keys), converted to our configuration:
//! `aggregator config from-go aggregator.yaml`.
//!
//! What has a counterpart is carried over (RPC URLs, listen addresses, the data path, the
//! wallet factory, EntryPoint, per-owner cap, bundler and paymaster, the log level, the fee
//! rates of `fee_rates` into `fees`); what has none is listed, each
//! key with the reason, as comments at the top of the output, so that nothing is dropped
//! silently. Keys the original itself ignores are reported as such. The original's
//! `jwt_secret` can be carried into the keys directory ([`import_jwt_secret`]), so that session
//! tokens and API keys it minted keep verifying here.
//!
//! The chain id is not in the original's file (it asks its RPC node): it comes from
//! `--chain-id`, else stays at our default, with a note.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::config::Config;

/// The original's keys we read (`core/config/config.go`, `ConfigRaw`). Everything else is
/// collected in `other`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GoConfig {
    environment: Option<String>,
    eth_rpc_url: Option<String>,
    eth_ws_url: Option<String>,
    rpc_bind_address: Option<String>,
    http_bind_address: Option<String>,
    db_path: Option<String>,
    jwt_secret: Option<String>,
    smart_wallet: Option<GoSmartWallet>,
    fee_rates: Option<GoFeeRates>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// `fee_rates` (`ConfigRaw.FeeRates`): absent fields keep the original's defaults, which are
/// ours too.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GoFeeRates {
    execution_fee_usd: Option<f64>,
    credit_limit_usd: Option<f64>,
    tiers: GoFeeTiers,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GoFeeTiers {
    tier_1: Option<f64>,
    tier_2: Option<f64>,
    tier_3: Option<f64>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GoSmartWallet {
    eth_rpc_url: Option<String>,
    eth_ws_url: Option<String>,
    factory_address: Option<String>,
    entrypoint_address: Option<String>,
    max_wallets_per_owner: Option<i64>,
    bundler_url: Option<String>,
    paymaster_address: Option<String>,
    controller_private_key: Option<String>,
    whitelist_addresses: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// The original's default and hard cap of `max_wallets_per_owner`.
const GO_DEFAULT_WALLETS_PER_OWNER: i64 = 5;
const GO_MAX_WALLETS_PER_OWNER: i64 = 2000;
/// The factory the original uses when its file names none.
const GO_DEFAULT_FACTORY: &str = "0xB99BC2E399e06CddCF5E725c0ea341E8f0322834";

/// A converted file.
#[derive(Debug)]
pub struct Converted {
    pub config: Config,
    /// The original's `jwt_secret`, when it has one.
    pub jwt_secret: Option<String>,
    /// What was not carried over, and why; one line each.
    pub notes: Vec<String>,
}

impl Converted {
    /// Our YAML, with the notes as comments above it.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        let mut out = String::from(
            "# Converted from the original aggregator's configuration by `aggregator config from-go`.\n",
        );
        for note in &self.notes {
            out.push_str("# - ");
            out.push_str(note);
            out.push('\n');
        }
        out.push_str(&serde_norway::to_string(&self.config)?);
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoConfigError {
    #[error("the file does not parse as the original's aggregator.yaml: {0}")]
    Parse(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Keys { path: PathBuf, message: String },
}

/// Converts the original's YAML onto `base` (our defaults with the command line's overrides),
/// whose `chain_id` and directories it keeps.
pub fn convert(text: &str, base: Config, chain_id_given: bool) -> Result<Converted, GoConfigError> {
    let go: GoConfig =
        serde_norway::from_str(text).map_err(|e| GoConfigError::Parse(e.to_string()))?;
    let mut config = base;
    let mut notes = Vec::new();

    if !chain_id_given {
        notes.push(format!(
            "chain_id: the original asks its RPC node; pass --chain-id (kept {})",
            config.chain_id
        ));
    }
    let wallet = go.smart_wallet.unwrap_or_default();
    // The smart-wallet RPC is the chain the tasks run on; the top-level one is EigenLayer's.
    let rpc = non_empty(wallet.eth_rpc_url).or(non_empty(go.eth_rpc_url));
    if rpc.is_some() {
        config.ethereum.rpc_url = rpc;
    }
    let ws = non_empty(wallet.eth_ws_url).or(non_empty(go.eth_ws_url));
    if ws.is_some() {
        config.ethereum.ws_url = ws;
    }
    if let Some(listen) = non_empty(go.rpc_bind_address) {
        config.grpc.listen = socket_address("rpc_bind_address", &listen)?;
    }
    if let Some(listen) = non_empty(go.http_bind_address) {
        config.http.listen = socket_address("http_bind_address", &listen)?;
        notes.push(
            "http_bind_address: ours serves /up, /metrics, /operator and /operators (no /telemetry page)"
                .into(),
        );
    }
    if let Some(path) = non_empty(go.db_path) {
        config.data_dir = PathBuf::from(path);
        notes.push(
            "db_path: became data_dir; the original's Badger data is not read (start with an empty event log)"
                .into(),
        );
    }
    match go.environment.as_deref().map(str::trim) {
        Some("development") => config.log.level = "debug".into(),
        Some("production") | None | Some("") => {}
        Some(other) => notes.push(format!(
            "environment: {other:?} is not development or production (log level kept {})",
            config.log.level
        )),
    }
    if let Some(factory) = non_empty(wallet.factory_address) {
        check_address("smart_wallet.factory_address", &factory)?;
        config.wallet.factory = factory;
        notes.push(
            "smart_wallet.factory_address: set wallet.account_implementation to that factory's accountImplementation() as well, or wallet addresses derived offline differ"
                .into(),
        );
    } else {
        notes.push(format!(
            "smart_wallet.factory_address: absent, so the original used its default factory {GO_DEFAULT_FACTORY}; wallet.factory stays {} (wallet addresses differ unless both name the same factory)",
            config.wallet.factory
        ));
    }
    if let Some(entry_point) = non_empty(wallet.entrypoint_address) {
        check_address("smart_wallet.entrypoint_address", &entry_point)?;
        config.wallet.entry_point = entry_point;
    }
    if let Some(max) = wallet.max_wallets_per_owner {
        // As the original reads it: no limit is not offered, and there is a hard cap.
        let max = if max <= 0 {
            GO_DEFAULT_WALLETS_PER_OWNER
        } else {
            max.min(GO_MAX_WALLETS_PER_OWNER)
        };
        config.wallet.max_per_owner = u32::try_from(max).unwrap_or(u32::MAX);
    }
    if let Some(bundler) = non_empty(wallet.bundler_url) {
        notes.push(
            "smart_wallet.bundler_url: became wallet.bundler_url (user operations go to that bundler; without it the aggregator bundles them itself)"
                .into(),
        );
        config.wallet.bundler_url = Some(bundler);
    }
    if let Some(paymaster) = non_empty(wallet.paymaster_address) {
        check_address("smart_wallet.paymaster_address", &paymaster)?;
        notes.push(
            "smart_wallet.paymaster_address: became wallet.paymaster; it sponsors every user operation, and its verifying signer must be the controller key of keys_dir"
                .into(),
        );
        config.wallet.paymaster = Some(paymaster);
    }
    if non_empty(wallet.controller_private_key).is_some() {
        notes.push(format!(
            "smart_wallet.controller_private_key: not carried into the config (keys live in keys_dir, never in a config file); to act for the original's wallets with it, write it as hex to {} before `aggregator chain deploy`, and set wallet.factory_kind: controlled_account only for a ControlledAccountFactory whose controller it is",
            config
                .keys_dir
                .join(crate::wallet::keys::CONTROLLER_KEY_FILE)
                .display()
        ));
    } else {
        notes.push(
            "smart_wallet.controller_private_key: absent; `aggregator chain deploy` (or the first start) creates controller.key in keys_dir"
                .into(),
        );
    }
    if wallet.whitelist_addresses.is_some() {
        notes.push(
            "smart_wallet.whitelist_addresses: not carried: with wallet.paymaster set every user operation is sponsored, without it none is (no per-address list)"
                .into(),
        );
    }
    if let Some(rates) = go.fee_rates {
        convert_fee_rates(rates, &mut config.fees, &mut notes)?;
    }
    let jwt_secret = non_empty(go.jwt_secret);
    for (key, _) in wallet.other {
        notes.push(format!(
            "smart_wallet.{key}: {}",
            why_not(&format!("smart_wallet.{key}"))
        ));
    }
    for (key, _) in go.other {
        notes.push(format!("{key}: {}", why_not(&key)));
    }
    Ok(Converted {
        config,
        jwt_secret,
        notes,
    })
}

/// `fee_rates` into `fees`: the execution fee and the value-fee tiers, which `EstimateFees`
/// answers with. The credit limit has no counterpart (no fee ledger: nothing is charged).
fn convert_fee_rates(
    rates: GoFeeRates,
    fees: &mut crate::config::FeesConfig,
    notes: &mut Vec<String>,
) -> Result<(), GoConfigError> {
    let rate = |key: &str, value: Option<f64>| -> Result<Option<f64>, GoConfigError> {
        match value {
            Some(v) if !v.is_finite() || v < 0.0 => Err(GoConfigError::Invalid(format!(
                "fee_rates.{key} {v} is not a non-negative number"
            ))),
            other => Ok(other),
        }
    };
    if let Some(fee) = rate("execution_fee_usd", rates.execution_fee_usd)? {
        fees.execution_fee_usd = fee;
    }
    for (key, value, field) in [
        (
            "tiers.tier_1",
            rates.tiers.tier_1,
            &mut fees.tier1_percentage,
        ),
        (
            "tiers.tier_2",
            rates.tiers.tier_2,
            &mut fees.tier2_percentage,
        ),
        (
            "tiers.tier_3",
            rates.tiers.tier_3,
            &mut fees.tier3_percentage,
        ),
    ] {
        if let Some(percent) = rate(key, value)? {
            *field = percent;
        }
    }
    notes.push(
        "fee_rates: became fees (execution_fee_usd, tier1..3_percentage); set fees.native_token_price_usd by hand, or EstimateFees answers success: false (no price service)"
            .into(),
    );
    if rates.credit_limit_usd.is_some() {
        notes.push(
            "fee_rates.credit_limit_usd: not carried: no fee ledger, no fees are charged, so no execution is blocked for an unpaid balance"
                .into(),
        );
    }
    for key in rates.other.keys() {
        notes.push(format!(
            "fee_rates.{key}: ignored, as the original ignores it"
        ));
    }
    for key in rates.tiers.other.keys() {
        notes.push(format!(
            "fee_rates.tiers.{key}: ignored, as the original ignores it"
        ));
    }
    Ok(())
}

/// Why a key of the original is not carried over.
fn why_not(key: &str) -> &'static str {
    match key {
        "ecdsa_private_key" => {
            "not carried: the aggregator signs nothing on chain as the AVS; operators sign their own reports"
        }
        "approved_operators" => {
            "not carried: operators are identified by an ECDSA and a BLS key (`operator register` prints their operators.members entry)"
        }
        "avs_registry_coordinator_address" | "operator_state_retriever_address" => {
            "not carried: the operator set comes from operators.members or operators.registry_contract"
        }
        "macros" => {
            "not carried: config-wide template variables and secrets would be readable by every user's code; store secrets with CreateSecret"
        }
        "tenderly_account" | "tenderly_project" | "tenderly_access_key" => {
            "not carried: no Tenderly simulation"
        }
        "moralis_api_key" => "not carried: balances are read on chain, without USD prices",
        "notifications" => "not carried: no AI summaries",
        "sentry_dsn" | "server_name" => "not carried: errors go to the logs (log.format: json)",
        "socket_path" => "not carried: no admin REPL; use `replay` on a copy of the data",
        "backup_dir" | "backup" => {
            "not carried: no backup command; `replay rebuild --into` copies the derived state"
        }
        _ => "ignored, as the original ignores it",
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn check_address(key: &str, value: &str) -> Result<(), GoConfigError> {
    value
        .parse::<alloy::primitives::Address>()
        .map(|_| ())
        .map_err(|_| GoConfigError::Invalid(format!("{key} {value:?} is not an address")))
}

/// `host:port` as the original's listener takes it: `:2206` means every interface, a name is
/// resolved (`localhost:2206`).
fn socket_address(key: &str, text: &str) -> Result<SocketAddr, GoConfigError> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    if let Ok(address) = full.parse() {
        return Ok(address);
    }
    full.to_socket_addrs()
        .ok()
        .and_then(|mut found| found.find(SocketAddr::is_ipv4))
        .ok_or_else(|| GoConfigError::Invalid(format!("{key} {text:?} is not host:port")))
}

/// Writes the original's `jwt_secret` (its bytes, as the original signs with them) as the JWT
/// secret of `keys_dir`. A different secret already there is replaced only with `overwrite`:
/// the tokens it signed would stop working.
pub fn import_jwt_secret(
    keys_dir: &Path,
    secret: &str,
    overwrite: bool,
) -> Result<PathBuf, GoConfigError> {
    crate::auth::keys::write_jwt_secret(keys_dir, secret.as_bytes(), overwrite).map_err(|e| {
        GoConfigError::Keys {
            path: e.path,
            message: e.message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as the original's own deployments write it (with keys the original ignores).
    const GO_YAML: &str = r#"
ecdsa_private_key: 0000000000000000000000000000000000000000000000000000000000000001
eth_rpc_url: https://eigen.example/rpc
eth_ws_url: wss://eigen.example/ws
rpc_bind_address: "0.0.0.0:2206"
http_bind_address: ":8080"
avs_registry_coordinator_address: 0x90c6d6f2A78d5Ce22AB8631Ddb142C03AC87De7a
operator_state_retriever_address: 0xb7bb920538e038DFFEfcB55caBf713652ED2031F
etherscan_url: https://sepolia.etherscan.io
environment: development
db_path: /tmp/ap-avs/db
jwt_secret: "a-test-secret-of-the-original"
smart_wallet:
  eth_rpc_url: https://chain.example/rpc
  eth_ws_url: wss://chain.example/ws
  bundler_url: https://bundler.example
  factory_address: 0xB99BC2E399e06CddCF5E725c0ea341E8f0322834
  entrypoint_address: 0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789
  controller_private_key: "0000000000000000000000000000000000000000000000000000000000000002"
  paymaster_address: 0xB985af5f96EF2722DC99aEBA573520903B86505e
  whitelist_addresses:
    - 0x0000000000000000000000000000000000000001
  max_wallets_per_owner: 2500
macros:
  secrets:
    ap_notify_bot_token: "x"
fee_rates:
  execution_fee_usd: 0.05
  credit_limit_usd: 20
  tiers:
    tier_1: 0.04
    tier_3: 0.25
"#;

    #[test]
    fn given_a_go_file_when_converted_then_what_has_a_counterpart_is_carried() {
        let converted = convert(GO_YAML, Config::default(), false).unwrap();
        let c = &converted.config;
        assert_eq!(
            c.ethereum.rpc_url.as_deref(),
            Some("https://chain.example/rpc")
        );
        assert_eq!(c.ethereum.ws_url.as_deref(), Some("wss://chain.example/ws"));
        assert_eq!(c.grpc.listen, "0.0.0.0:2206".parse().unwrap());
        assert_eq!(c.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/tmp/ap-avs/db"));
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.wallet.factory,
            "0xB99BC2E399e06CddCF5E725c0ea341E8f0322834"
        );
        assert_eq!(c.wallet.max_per_owner, 2000, "the original's hard cap");
        assert_eq!(
            c.wallet.bundler_url.as_deref(),
            Some("https://bundler.example")
        );
        assert_eq!(
            c.wallet.paymaster.as_deref(),
            Some("0xB985af5f96EF2722DC99aEBA573520903B86505e")
        );
        assert_eq!(
            converted.jwt_secret.as_deref(),
            Some("a-test-secret-of-the-original")
        );
        // fee_rates: given rates carried, the absent tier at the original's default (ours).
        assert_eq!(c.fees.execution_fee_usd, 0.05);
        assert_eq!(c.fees.tier1_percentage, 0.04);
        assert_eq!(c.fees.tier2_percentage, 0.09);
        assert_eq!(c.fees.tier3_percentage, 0.25);
        let notes = converted.notes.join("\n");
        for key in [
            "chain_id",
            "ecdsa_private_key",
            "smart_wallet.bundler_url",
            "smart_wallet.controller_private_key: not carried into the config",
            "smart_wallet.whitelist_addresses",
            "macros",
            "avs_registry_coordinator_address",
            "etherscan_url: ignored",
            "fee_rates: became fees",
            "fee_rates.credit_limit_usd: not carried",
        ] {
            assert!(notes.contains(key), "{key} missing from\n{notes}");
        }
        // The output is our configuration, unknown keys refused and all; no key in it.
        let yaml = converted.to_yaml().unwrap();
        assert!(!yaml.contains("0000000000000000000000000000000000000000000000000000000000000002"));
        let back = Config::from_yaml(&yaml, "converted").unwrap();
        assert_eq!(&back, c);
    }

    #[test]
    fn a_minimal_file_keeps_our_defaults_and_the_given_chain() {
        let base = Config {
            chain_id: 11_155_111,
            ..Config::default()
        };
        let converted = convert("jwt_secret: s\n", base, true).unwrap();
        assert_eq!(converted.config.chain_id, 11_155_111);
        assert_eq!(converted.config.grpc, Config::default().grpc);
        assert!(!converted.notes.join("\n").contains("chain_id"));
        assert_eq!(
            convert(
                "smart_wallet:\n  max_wallets_per_owner: 0\n",
                Config::default(),
                true
            )
            .unwrap()
            .config
            .wallet
            .max_per_owner,
            5
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let err = convert("rpc_bind_address: nowhere\n", Config::default(), true).unwrap_err();
        assert!(err.to_string().contains("rpc_bind_address"), "{err}");
        let err = convert(
            "smart_wallet:\n  factory_address: 0x12\n",
            Config::default(),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("factory_address"), "{err}");
        let err = convert(
            "smart_wallet:\n  paymaster_address: nope\n",
            Config::default(),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("paymaster_address"), "{err}");
        let err = convert(
            "fee_rates:\n  tiers:\n    tier_2: -1\n",
            Config::default(),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fee_rates.tiers.tier_2"), "{err}");
        let err = convert(
            "fee_rates:\n  execution_fee_usd: lots\n",
            Config::default(),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fee_rates"), "{err}");
        assert!(convert("- a list\n", Config::default(), true).is_err());
    }

    #[test]
    fn the_originals_secret_signs_and_verifies_here() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        import_jwt_secret(&keys_dir, "a-test-secret-of-the-original", false).unwrap();
        let keys = crate::auth::keys::Keys::load_or_create(&keys_dir).unwrap();
        assert_eq!(keys.jwt_secret.bytes(), b"a-test-secret-of-the-original");
        // The same again is fine; another secret needs overwrite.
        import_jwt_secret(&keys_dir, "a-test-secret-of-the-original", false).unwrap();
        let err = import_jwt_secret(&keys_dir, "another", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        import_jwt_secret(&keys_dir, "another", true).unwrap();
        let keys = crate::auth::keys::Keys::load(&keys_dir).unwrap();
        assert_eq!(keys.jwt_secret.bytes(), b"another");
    }
}
