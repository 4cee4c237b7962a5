//! Benchmark of the task engine, in one run:
//!
//! - trigger → execution finished for a one-node graph (custom code returning a constant),
//!   firings spread over many tasks, with durable commits: executions per second, and the
//!   latency (p50, p99) from the firing to the run's end, the load generator included;
//! - the sandbox: a fresh context plus a trivial script, median and p99, engine start amortised;
//! - the baseline, in the same run: one-event commands through the log alone (a fresh store),
//!   as many in flight, durable.
//!
//! `cargo bench --bench engine`; `BENCH_SECONDS` (default 5), `BENCH_TASKS` (default 256),
//! `BENCH_CONCURRENCY` (firings in flight, default 32). Targets: >= 2 000 executions/s with
//! p99 <= 20 ms; sandbox <= 1 ms median.

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aggregator::config::{Config, DurabilityMode};
use aggregator::engine::FireRequest;
use aggregator::engine::sandbox::{Script, ScriptKind};
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let seconds = Duration::from_secs(env("BENCH_SECONDS", 5));
    let tasks_n = env("BENCH_TASKS", 256) as usize;
    let concurrency = env("BENCH_CONCURRENCY", 32) as usize;

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        keys_dir: dir.path().join("keys"),
        durability: DurabilityMode::Sync,
        ..Config::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.limits.tasks_per_owner = u64::MAX;
    let app = aggregator::server::open(config).await.unwrap();

    // Tasks: a manual trigger and one custom-code node returning a constant.
    let owner = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    let mut tasks = Vec::new();
    for i in 0..tasks_n {
        let id = aggregator::clock::new_id();
        let mut definition = events::samples::definition();
        definition.name = format!("bench {i}");
        definition.trigger.trigger_type = 1;
        definition.trigger.config = Some(events::task::TriggerConfig::Manual(Default::default()));
        let command = events::Command::new(owner, events::now_ms()).append(
            events::stream::task(&id),
            events::Expected::NoStream,
            [events::event::TaskCreated {
                task_id: id.clone(),
                owner: owner.into(),
                wallet: events::samples::WALLET.into(),
                definition,
            }
            .into()],
        );
        app.store.log.append(command).await.unwrap();
        tasks.push(id);
    }
    let tasks = Arc::new(tasks);
    let engine = app.engine.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (engine, tasks, stop, counter) =
                (engine.clone(), tasks.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let task = &tasks[(w + i as usize * concurrency) % tasks.len()];
                    let begun = Instant::now();
                    let fired = engine
                        .fire(FireRequest {
                            task_id: task.clone(),
                            actor: "bench".into(),
                            firing: Firing {
                                dedup_key: format!("bench:{w}:{i}"),
                                source: FiringSource::Client,
                                kind: TriggerKind::Manual,
                                output: None,
                                input: Default::default(),
                            },
                            window_ms: Some(60_000),
                        })
                        .await
                        .unwrap();
                    engine.wait(task, fired.execution_id()).await.unwrap();
                    latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = counter.load(Ordering::Relaxed);
    let measured = Instant::now();
    tokio::time::sleep(seconds).await;
    let done = counter.load(Ordering::Relaxed) - warm;
    let rate = done as f64 / measured.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let _ = started;
    latencies.sort_by(f64::total_cmp);

    // The sandbox alone, engine start amortised.
    let sandbox = &engine.tools().sandbox;
    for _ in 0..200 {
        sandbox.run(trivial()).await.unwrap();
    }
    let mut js = Vec::new();
    for _ in 0..3000 {
        let begun = Instant::now();
        sandbox.run(trivial()).await.unwrap();
        js.push(begun.elapsed().as_secs_f64() * 1000.0);
    }
    js.sort_by(f64::total_cmp);

    let appends = log_baseline(concurrency, seconds).await;

    println!();
    println!("| measurement | result | target |");
    println!("|---|---:|---|");
    println!(
        "| baseline: one-event commands through the same log, {concurrency} in flight, fsync'd, per s | {appends:.0} | |"
    );
    println!(
        "| executions/s (one-node graph, {tasks_n} tasks, {concurrency} firings in flight, fsync'd) | {rate:.0} | >= 2000 |"
    );
    println!(
        "| executions per baseline command | {:.2} | |",
        rate / appends
    );
    println!(
        "| firing → finished p50 (ms) | {:.2} | |",
        percentile(&latencies, 0.5)
    );
    println!(
        "| firing → finished p99 (ms) | {:.2} | <= 20 |",
        percentile(&latencies, 0.99)
    );
    println!(
        "| sandbox: fresh context + trivial script, median (ms) | {:.3} | <= 1 |",
        percentile(&js, 0.5)
    );
    println!("| sandbox: p99 (ms) | {:.3} | |", percentile(&js, 0.99));
    println!("| executions measured | {done} | |");
    app.engine.shutdown(Duration::from_secs(5)).await;
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
}

/// The log's own rate on a fresh store: commands of one small event (an assignment), as many in
/// flight as the engine's firings, durable: what an execution's several commands are built on.
async fn log_baseline(concurrency: usize, seconds: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = aggregator::store::Store::open(dir.path(), events::Durability::Sync).unwrap();
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (store, stop, counter) = (store.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let command = events::Command::new("bench", events::now_ms()).append(
                        events::stream::assignment(&format!("t{w}")),
                        events::Expected::Any,
                        [events::event::OperatorAssigned {
                            task_id: format!("t{w}"),
                            operator: format!("0x{i:040x}"),
                        }
                        .into()],
                    );
                    store.log.append(command).await.unwrap();
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = counter.load(Ordering::Relaxed);
    let measured = Instant::now();
    tokio::time::sleep(seconds).await;
    let rate = (counter.load(Ordering::Relaxed) - warm) as f64 / measured.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let store = Arc::try_unwrap(store).ok().unwrap();
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
    rate
}

fn trivial() -> Script {
    Script {
        kind: ScriptKind::Body,
        source: "return 42;".into(),
        globals: Default::default(),
        time_limit: None,
    }
}
