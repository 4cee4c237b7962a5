//! The operator's configuration (YAML; unknown keys are an error).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::process::duration_text;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The aggregator's gRPC endpoint, e.g. `http://127.0.0.1:2206`.
    pub aggregator: String,
    /// The chain the aggregator serves (part of every signed digest).
    #[serde(default = "default_chain_id")]
    pub chain_id: u64,
    /// The ECDSA key (hex, 32 bytes), or `ecdsa_key_file` holding it.
    #[serde(default)]
    pub ecdsa_key: Option<String>,
    #[serde(default)]
    pub ecdsa_key_file: Option<PathBuf>,
    /// The BLS key material (hex, at least 32 bytes), or `bls_key_file` holding it.
    #[serde(default)]
    pub bls_key: Option<String>,
    #[serde(default)]
    pub bls_key_file: Option<PathBuf>,
    pub ethereum: Ethereum,
    #[serde(default)]
    pub capabilities: CapabilitiesConfig,
    /// Blocks a block or event firing waits under the head before it is reported: the guard
    /// against reorgs (0 on anvil, which does not reorganise).
    #[serde(default)]
    pub confirmations: u64,
    /// The cooldown of an event trigger that sets none.
    #[serde(default = "default_cooldown", with = "duration_text")]
    pub event_cooldown: Duration,
    /// The events per block an event query may match before its task is reported as overloaded.
    #[serde(default = "default_cap")]
    pub max_events_per_block: u32,
    /// `/metrics` and `/up`.
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_ping", with = "duration_text")]
    pub ping_every: Duration,
    /// How often the chain is polled when there is no WebSocket endpoint.
    #[serde(default = "default_poll", with = "duration_text")]
    pub poll_every: Duration,
    /// The last checkpoint of the aggregator's log this operator cosigned (and the log key it
    /// pinned): it never signs two roots for one size, nor a checkpoint inconsistent with it.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// The aggregator's log verifier key (`aggregator log-key`). Unset: the key the aggregator
    /// names with its first checkpoint is pinned in `state_file` and held to from then on.
    #[serde(default)]
    pub log_key: Option<String>,
}

fn default_state_file() -> PathBuf {
    PathBuf::from("./operator-state/cosigned.json")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ethereum {
    pub http_url: String,
    /// New heads by subscription; without it the operator polls `http_url`.
    #[serde(default)]
    pub ws_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapabilitiesConfig {
    pub events: bool,
    pub blocks: bool,
    pub time: bool,
}

impl Default for CapabilitiesConfig {
    fn default() -> Self {
        Self {
            events: true,
            blocks: true,
            time: true,
        }
    }
}

fn default_chain_id() -> u64 {
    31337
}

fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}

fn default_cap() -> u32 {
    protocol::triggers::DEFAULT_EVENTS_PER_BLOCK
}

fn default_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

fn default_ping() -> Duration {
    Duration::from_secs(10)
}

fn default_poll() -> Duration {
    Duration::from_millis(500)
}

fn key_text(inline: &Option<String>, file: &Option<PathBuf>, what: &str) -> anyhow::Result<String> {
    match (inline, file) {
        (Some(key), _) => Ok(key.trim().to_owned()),
        (None, Some(path)) => Ok(std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the {what} from {}: {e}", path.display()))?
            .trim()
            .to_owned()),
        (None, None) => anyhow::bail!("the config has no {what} (set {what} or {what}_file)"),
    }
}

impl OperatorConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn ecdsa(&self) -> anyhow::Result<alloy::signers::local::PrivateKeySigner> {
        Ok(key_text(&self.ecdsa_key, &self.ecdsa_key_file, "ecdsa_key")?.parse()?)
    }

    pub fn bls(&self) -> anyhow::Result<blst::min_pk::SecretKey> {
        let text = key_text(&self.bls_key, &self.bls_key_file, "bls_key")?;
        let bytes = hex::decode(text.trim_start_matches("0x"))
            .map_err(|_| anyhow::anyhow!("bls_key is not hex"))?;
        Ok(attest::bls_key(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_keys_come_from_files_or_inline() {
        let example: OperatorConfig =
            serde_norway::from_str(include_str!("../../config/operator.example.yaml")).unwrap();
        assert_eq!(example.chain_id, 31337);
        assert_eq!(example.event_cooldown, Duration::from_secs(300));
        assert!(
            example.ecdsa().is_err(),
            "the example's key files are not there"
        );

        let mut inline = example.clone();
        inline.ecdsa_key = Some(format!("0x{}", "11".repeat(32)));
        inline.bls_key = Some(format!("0x{}", "22".repeat(32)));
        inline.ecdsa().unwrap();
        inline.bls().unwrap();
        inline.bls_key = Some("not hex".into());
        assert!(inline.bls().is_err());

        let unknown = "aggregator: x\nethereum: {http_url: y}\nsurprise: 1\n";
        assert!(serde_norway::from_str::<OperatorConfig>(unknown).is_err());
    }
}
