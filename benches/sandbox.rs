//! Benchmark of the JavaScript sandbox against bare rquickjs, measured in the same run.
//!
//! (a) one run of a trivial script (`return 42;`: fresh context, script, result to JSON) through
//!     `Sandbox::run_blocking` and through the async `Sandbox::run` on a one-thread pool, median
//!     and p99 as the caller sees it and as the worker measures it (`Outcome::elapsed`);
//! (b) the same on bare rquickjs in the calling thread, each run with the collection that frees its
//!     context (the sandbox collects after replying): a reused runtime with the sandbox's
//!     intrinsics (and creating that context alone), with `Context::full`, and a new runtime per
//!     run (what reusing runtimes saves);
//! (c) a template-sized expression with ~1 KiB of globals, the engine's common case;
//! (d) throughput of the trivial script with 1 and 2 worker threads, 64 runs in flight.
//!
//! `cargo bench --bench sandbox`; `BENCH_RUNS` sets the runs per latency row (default 5000).
//! Target: median ≤ 1 ms for a fresh context and a trivial script, engine start amortised.

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::time::{Duration, Instant};

use aggregator::engine::sandbox::{Sandbox, SandboxConfig, Script};
use rquickjs::context::intrinsic;
use rquickjs::{Context, Runtime, Value};
use serde_json::json;

mod common;

use common::{env, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median and p99 of `samples`, in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let micros: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    (percentile(&micros, 0.5), percentile(&micros, 0.99))
}

fn row(what: &str, samples: &mut [Duration], note: &str) {
    let (median, p99) = percentiles(samples);
    println!("| {what} | {median:.1} µs | {p99:.1} µs | {note} |");
}

fn pool(threads: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        threads,
        ..SandboxConfig::default()
    })
}

/// `runs` timings of `f`, after `runs / 10` unmeasured ones.
fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..runs / 10 {
        f();
    }
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

/// The intrinsics of the sandbox's contexts (`src/engine/sandbox/runtime.rs`).
type Ours = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Proxy,
    intrinsic::Promise,
);

/// A context, the trivial script, its JSON, and the collection that frees the context (which
/// the sandbox does after replying).
fn bare(rt: &Runtime, context: impl Fn(&Runtime) -> Context) {
    let context = context(rt);
    context.with(|ctx| {
        let value: Value = ctx.eval("(function(){return 42;})()").unwrap();
        let json = ctx
            .json_stringify(value)
            .unwrap()
            .unwrap()
            .to_string()
            .unwrap();
        assert_eq!(json, "42");
    });
    drop(context);
    rt.run_gc();
}

fn main() {
    let runs = env("BENCH_RUNS", 5000usize);
    let trivial = || Script::body("return 42;");

    println!("\n{runs} runs per latency row\n");
    println!("| measurement | median | p99 | note |");
    println!("|---|---:|---:|---|");

    // (a) through the pool, one worker thread.
    let sandbox = pool(1);
    let mut inside = Vec::with_capacity(runs);
    let mut blocking = time(runs, || {
        let outcome = sandbox.run_blocking(trivial()).unwrap();
        assert_eq!(outcome.value, json!(42));
        inside.push(outcome.elapsed);
    });
    row(
        "`run_blocking`, `return 42;`, 1 thread",
        &mut blocking,
        "caller's round trip",
    );
    row(
        "same, measured on the worker",
        &mut inside,
        "`Outcome::elapsed`: context, script, JSON",
    );

    let tokio = common::runtime();
    let mut asynchronous = tokio.block_on(async {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs + runs / 10 {
            let started = Instant::now();
            let outcome = sandbox.run(trivial()).await.unwrap();
            assert_eq!(outcome.value, json!(42));
            if i >= runs / 10 {
                samples.push(started.elapsed());
            }
        }
        samples
    });
    row(
        "async `run`, `return 42;`, 1 thread",
        &mut asynchronous,
        "awaited from a tokio task",
    );

    // (b) bare rquickjs in this thread.
    let rt = Runtime::new().unwrap();
    let mut ours = time(runs, || {
        bare(&rt, |rt| Context::custom::<Ours>(rt).unwrap())
    });
    row(
        "bare rquickjs: reused runtime, the sandbox's intrinsics",
        &mut ours,
        "the sandbox's work minus console, globals, limits, threads",
    );
    let mut context_only = time(runs, || {
        drop(Context::custom::<Ours>(&rt).unwrap());
        rt.run_gc();
    });
    row(
        "bare rquickjs: only creating and collecting that context",
        &mut context_only,
        "the floor of a run",
    );
    let mut full = time(runs, || bare(&rt, |rt| Context::full(rt).unwrap()));
    row(
        "bare rquickjs: reused runtime, `Context::full`",
        &mut full,
        "baseline: no pool, no limits, no console",
    );
    let mut fresh_runtime = time(runs, || {
        let rt = Runtime::new().unwrap();
        bare(&rt, |rt| Context::full(rt).unwrap());
    });
    row(
        "bare rquickjs: new runtime per run, `Context::full`",
        &mut fresh_runtime,
        "baseline: what reusing runtimes saves",
    );

    // (c) a template-sized expression with globals.
    let trigger = json!({
        "data": {
            "blockNumber": 21_000_000,
            "transactionHash": format!("0x{}", "ab".repeat(32)),
            "from": format!("0x{}", "12".repeat(20)),
            "to": format!("0x{}", "34".repeat(20)),
            "value": "1500000000000000000",
            "logs": (0..8).map(|i| json!({ "index": i, "topic": format!("0x{}", "cd".repeat(32)) })).collect::<Vec<_>>(),
        }
    });
    let template = || Script {
        globals: serde_json::Map::from_iter([("trigger".to_owned(), trigger.clone())]),
        ..Script::expression("BigInt(trigger.data.value) > 10n ** 18n && trigger.data.logs.length")
    };
    let bytes = serde_json::to_string(&trigger).unwrap().len();
    let mut expression = time(runs, || {
        assert_eq!(sandbox.run_blocking(template()).unwrap().value, json!(8));
    });
    row(
        &format!("`run_blocking`, expression over {bytes} B of globals"),
        &mut expression,
        "a template or condition",
    );
    drop(sandbox);

    // (d) throughput, 64 runs in flight.
    println!();
    println!("| throughput, `return 42;`, 64 in flight | runs/s |");
    println!("|---|---:|");
    let total = runs * 4;
    for threads in [1, 2] {
        let sandbox = pool(threads);
        let per_second = tokio.block_on(async {
            // Let the workers start their runtimes.
            sandbox.run(trivial()).await.unwrap();
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..64 {
                let sandbox = sandbox.clone();
                tasks.spawn(async move {
                    for _ in (worker..total).step_by(64) {
                        sandbox.run(trivial()).await.unwrap();
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
            total as f64 / started.elapsed().as_secs_f64()
        });
        println!("| {threads} worker thread(s) | {per_second:.0} |");
    }
    println!();
}
