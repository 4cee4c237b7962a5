//! Telemetry: logs (`tracing`), Prometheus metrics and the HTTP endpoints.
//!
//! - `grpc_metrics`: requests by method and code, and their latencies, for every gRPC service;
//! - `http`: `/up`, `/metrics`, `/operators`.

mod grpc_metrics;
pub mod http;

pub use grpc_metrics::GrpcMetricsLayer;

use crate::config::{LogConfig, LogFormat};

pub use protocol::process::metrics;

/// Installs the log subscriber; `RUST_LOG` wins over the configured level.
pub fn init_logging(config: &LogConfig) {
    protocol::process::init_logging(&config.level, config.format == LogFormat::Json);
}
