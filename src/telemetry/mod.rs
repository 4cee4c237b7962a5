//! Telemetry: logs (`tracing`), Prometheus metrics and the HTTP endpoints.
//!
//! - `grpc_metrics`: requests by method and code, and their latencies, for every gRPC service;
//! - `http`: `/up`, `/metrics`, `/operators`.

mod grpc_metrics;
pub mod http;

pub use grpc_metrics::GrpcMetricsLayer;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{LogConfig, LogFormat};

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

/// Installs the log subscriber; `RUST_LOG` wins over the configured level.
pub fn init_logging(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
