//! Telemetry: logs (`tracing`), Prometheus metrics and the HTTP endpoints.
//!
//! - `grpc_metrics`: requests by method and code, and their latencies, for every gRPC service;
//! - `catalog`: every metric the aggregator exports, described and registered at start-up;
//! - `pulse`: the last hour of the log folded in memory (rates, latencies, per-operator activity);
//! - `http`: `/up`, `/metrics`, `/operators`, and the console's routes;
//! - `console`: the live page at `/telemetry`.
//!
//! The metrics recorder and the log subscriber (with its filter: our crates at the configured
//! level, dependencies from `warn` up) are the process conventions the operator shares, in
//! `protocol::process`.

pub mod catalog;
pub mod console;
mod grpc_metrics;
pub mod http;
pub mod pulse;

pub use grpc_metrics::GrpcMetricsLayer;

use crate::config::{LogConfig, LogFormat};

pub use protocol::process::metrics;

/// Installs the log subscriber; `RUST_LOG` wins over the configured level.
pub fn init_logging(config: &LogConfig) {
    protocol::process::init_logging(&config.level, config.format == LogFormat::Json);
}
