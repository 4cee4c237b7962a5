//! What the benches share (each includes this file with `mod common;`): their settings from the
//! environment, percentiles, the two-worker runtime they measure on, the aggregator's config for
//! a bench, and tasks written straight into the log.
//!
//! Not every bench uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::str::FromStr;

use aggregator::config::{Config, DurabilityMode};

/// A setting from the environment (`BENCH_SECONDS`, ...), or `default` when unset or unreadable.
pub fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-quantile (0 to 1) of sorted samples, the nearest rank; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A multi-threaded tokio runtime of two workers, as many as the machine the targets are set for.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The aggregator's config for a bench: state below `dir`, durable commits, ports the system
/// picks on loopback.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        keys_dir: dir.join("keys"),
        durability: DurabilityMode::Sync,
        ..Config::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// The owner of the tasks the benches write into the log.
pub const OWNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// `n` tasks created straight in the log (no gRPC), each the sample definition as `shape`
/// leaves it; returns their ids.
pub async fn tasks_in_log(
    app: &aggregator::app::App,
    n: usize,
    shape: impl Fn(&mut events::task::TaskDefinition),
) -> Vec<String> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let id = aggregator::clock::new_id();
        let mut definition = events::samples::definition();
        definition.name = format!("bench {i}");
        shape(&mut definition);
        let command = events::Command::new(OWNER, events::now_ms()).append(
            events::stream::task(&id),
            events::Expected::NoStream,
            [events::event::TaskCreated {
                task_id: id.clone(),
                owner: OWNER.into(),
                wallet: events::samples::WALLET.into(),
                definition,
            }
            .into()],
        );
        app.store.log.append(command).await.unwrap();
        tasks.push(id);
    }
    tasks
}
