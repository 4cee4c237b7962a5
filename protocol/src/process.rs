//! What the aggregator and the operator process do alike, so that an operator running both reads
//! one set of conventions: durations as text in their YAML, one metrics recorder per process,
//! the log subscriber, and stopping on SIGINT or SIGTERM.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's metrics recorder (installed once, shared by every server in the process).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0, 30.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test process with several servers) keeps working.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The crates of this workspace: they log at the configured level (a test checks that every
/// workspace member is here).
const OWN_CRATES: &[&str] = &[
    "aggregator",
    "operator",
    "protocol",
    "events",
    "projections",
    "attest",
    "cluster",
    "replay",
    "tlog",
];

/// The filter for a configured level: a bare level applies to our crates, dependencies log from
/// `warn` up (or `error`/`off` when that is the level), so that the storage engine's per-flush
/// and recovery INFO lines stay out; anything with `=` or `,` is a full filter, taken as it is.
pub fn log_filter(level: &str) -> String {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return level.to_owned();
    }
    let dependencies = match level.to_ascii_lowercase().as_str() {
        "error" | "off" => level,
        _ => "warn",
    };
    let mut filter = dependencies.to_owned();
    for name in OWN_CRATES {
        filter.push_str(&format!(",{name}={level}"));
    }
    filter
}

/// Installs the log subscriber at `level` (a bare level or a `tracing` filter, see
/// `log_filter`), as JSON lines or as text; `RUST_LOG` wins over `level`.
pub fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log_filter(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Durations as text (`120s`, `7d`, `1h 30m`), in both directions: the one form of every
/// duration in a configuration file (the operator's too).
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn text(value: &Duration) -> String {
        humantime::format_duration(*value).to_string()
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{OWN_CRATES, log_filter};

    #[test]
    fn a_bare_level_is_ours_and_dependencies_log_warnings_only() {
        let filter = log_filter("info");
        assert!(filter.starts_with("warn,"), "{filter}");
        assert!(filter.contains("aggregator=info"), "{filter}");
        assert!(filter.contains("events=info"), "{filter}");
        assert!(log_filter("error").starts_with("error,"));
        assert_eq!(log_filter("info,fjall=info"), "info,fjall=info");
        assert_eq!(log_filter("aggregator=debug"), "aggregator=debug");
        // Every filter this builds is one tracing accepts.
        for level in ["trace", "debug", "info", "warn", "error", "off"] {
            tracing_subscriber::EnvFilter::try_new(log_filter(level)).unwrap();
        }
    }

    /// A crate added to the workspace logs at the configured level too, not at `warn` as a
    /// dependency would.
    #[test]
    fn every_crate_of_the_workspace_logs_at_the_configured_level() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let name_of = |dir: &std::path::Path| {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            let package = manifest.split("[package]").nth(1).unwrap().to_owned();
            let line = package
                .lines()
                .find(|l| l.trim_start().starts_with("name"))
                .unwrap()
                .to_owned();
            line.split('"').nth(1).unwrap().replace('-', "_")
        };
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members = workspace
            .split("members = [")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap()
            .to_owned();
        let members: Vec<&str> = members
            .split(',')
            .map(|m| m.trim().trim_matches('"'))
            .filter(|m| !m.is_empty())
            .collect();
        assert!(members.len() > 1, "{members:?}");
        for member in members {
            let name = name_of(&root.join(member));
            assert!(
                OWN_CRATES.contains(&name.as_str()),
                "{name} (workspace member {member}) is not in OWN_CRATES"
            );
        }
    }
}
