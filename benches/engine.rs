//! Benchmark of the task engine, in one run:
//!
//! - trigger → execution finished for a one-node graph (custom code returning a constant),
//!   firings spread over many tasks, with durable commits: executions per second, and the
//!   latency (p50, p99) from the firing to the run's end, the load generator included;
//! - the sandbox: a fresh context plus a trivial script, median and p99, engine start amortised;
//! - the baseline, in the same run: the log alone (a fresh store, no engine) doing what an
//!   execution asks of it, as many at once, durable: per "execution", the same commands one
//!   after the other, with as many events on the same kinds of streams (the firing: two events
//!   on a task's stream and a new execution's; the run: its start, the trigger's and the node's
//!   steps and its end, four events, on the execution's stream). Its rate and latency bound the
//!   engine's: what the engine adds is the gap between the two rows.
//!
//! `cargo bench --bench engine`; `BENCH_SECONDS` (default 5), `BENCH_TASKS` (default 256),
//! `BENCH_CONCURRENCY` (firings in flight, default 32). Targets: >= 5 000 executions/s with
//! p99 <= 10 ms (issue 12); sandbox <= 1 ms median.

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aggregator::engine::FireRequest;
use aggregator::engine::sandbox::{Script, ScriptKind};
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;

mod common;

use common::{env, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    common::runtime().block_on(run());
}

async fn run() {
    let seconds = Duration::from_secs(env("BENCH_SECONDS", 5u64));
    let tasks_n = env("BENCH_TASKS", 256usize);
    let concurrency = env("BENCH_CONCURRENCY", 32usize);

    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.limits.tasks_per_owner = u64::MAX;
    // Every task has one owner here, standing for the many of a real store: the per-owner
    // share (16 at once by default) would otherwise halve the firings in flight.
    config.engine.owner_concurrency = concurrency;
    let app = aggregator::server::open(config).await.unwrap();

    // Tasks: a manual trigger and one custom-code node returning a constant.
    let tasks = common::tasks_in_log(&app, tasks_n, |definition| {
        definition.trigger.trigger_type = 1;
        definition.trigger.config = Some(events::task::TriggerConfig::Manual(Default::default()));
    })
    .await;
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

    let outside = log_baseline(concurrency, seconds).await;

    println!();
    println!("| measurement | result | target |");
    println!("|---|---:|---|");
    println!(
        "| baseline: the log alone, {COMMANDS_PER_EXECUTION} commands per execution ({concurrency} at once, fsync'd), executions/s | {:.0} | |",
        outside.rate
    );
    println!(
        "| baseline: p50 / p99 of an execution's {COMMANDS_PER_EXECUTION} commands (ms) | {:.2} / {:.2} | |",
        percentile(&outside.latencies, 0.5),
        percentile(&outside.latencies, 0.99)
    );
    println!(
        "| executions/s (one-node graph, {tasks_n} tasks, {concurrency} firings in flight, fsync'd) | {rate:.0} | >= 5000 |"
    );
    println!(
        "| executions/s, share of the baseline's | {:.2} | |",
        rate / outside.rate
    );
    println!(
        "| firing → finished p50 (ms) | {:.2} | |",
        percentile(&latencies, 0.5)
    );
    println!(
        "| firing → finished p99 (ms) | {:.2} | <= 10 |",
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

/// Commands an execution of the bench's one-node graph appends: the firing (`Engine::fire`), and
/// the run's start, steps and end together (its only node is free of side effects, so its steps
/// are buffered: `engine::run`).
const COMMANDS_PER_EXECUTION: usize = 2;

/// The outside baseline's rate, and the latency of each of its executions' commands together.
struct Outside {
    rate: f64,
    latencies: Vec<f64>,
}

/// The log alone on a fresh store, doing an execution's commands (`COMMANDS_PER_EXECUTION`, one
/// after the other, with as many events on the same kinds of streams), as many at once as the
/// engine's firings, durable.
async fn log_baseline(concurrency: usize, seconds: Duration) -> Outside {
    use events::event::{ExecutionFinished, ExecutionStarted, OperatorAssigned, StepRecorded};
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = aggregator::store::Store::open(dir.path(), events::Durability::Sync).unwrap();
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (store, stop, counter) = (store.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let task = format!("t{w}");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let begun = Instant::now();
                    let execution = aggregator::clock::new_id();
                    // The firing: an event on the task's stream (its version checked by the
                    // engine; any here, the store being fresh) and the execution's stream opened.
                    let fired = events::Command::new("bench", events::now_ms())
                        .idempotent(format!("fire:bench:{w}:{i}"), Some(60_000))
                        .append(
                            events::stream::assignment(&task),
                            events::Expected::Any,
                            [OperatorAssigned {
                                task_id: task.clone(),
                                operator: format!("0x{i:040x}"),
                            }
                            .into()],
                        )
                        .append(
                            events::stream::execution(&execution),
                            events::Expected::NoStream,
                            [ExecutionStarted {
                                execution_id: execution.clone(),
                                task_id: task.clone(),
                                started_at: 0,
                            }
                            .into()],
                        );
                    store.log.append(fired).await.unwrap();
                    // The run: start, the trigger's and the node's steps, end.
                    let step = |id: &str| -> events::Event {
                        StepRecorded {
                            execution_id: execution.clone(),
                            task_id: task.clone(),
                            step: events::execution::Step {
                                id: id.into(),
                                success: true,
                                ..Default::default()
                            },
                        }
                        .into()
                    };
                    let ran = events::Command::new("engine", events::now_ms()).append(
                        events::stream::execution(&execution),
                        events::Expected::Exactly(1),
                        [
                            ExecutionStarted {
                                execution_id: execution.clone(),
                                task_id: task.clone(),
                                started_at: 0,
                            }
                            .into(),
                            step("trigger"),
                            step("node"),
                            ExecutionFinished {
                                execution_id: execution.clone(),
                                task_id: task.clone(),
                                outcome: events::execution::ExecutionOutcome::Success,
                                error: String::new(),
                            }
                            .into(),
                        ],
                    );
                    store.log.append(ran).await.unwrap();
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
    let rate = (counter.load(Ordering::Relaxed) - warm) as f64 / measured.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    latencies.sort_by(f64::total_cmp);
    let store = Arc::try_unwrap(store).ok().unwrap();
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
    Outside { rate, latencies }
}

fn trivial() -> Script {
    Script {
        kind: ScriptKind::Body,
        source: "return 42;".into(),
        globals: Default::default(),
        time_limit: None,
    }
}
