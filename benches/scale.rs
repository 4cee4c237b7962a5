//! Benchmark of the aggregator at scale: a store of many active tasks, and the aggregator's
//! start-up on it.
//!
//! 1. The store: `BENCH_TASKS` (default 1 000 000) active tasks with a block trigger (the sample
//!    definition), over 1 000 owners, written straight into the log by an aggregator opened in
//!    this process (1 000 tasks per command), each assigned to the one registered operator, as a
//!    restart finds them. Its size on disk is reported.
//! 2. The start-up: the `aggregator` binary run on that store as a separate process, with the
//!    operator registered and not connected (so that the operator pool loads every task, as it
//!    does after a restart, and has nothing to send). Sampled every 20 ms: its RSS; until its gRPC
//!    API answers a call (`GetSignatureFormat`); until it is idle (less than 5 % of a core over
//!    half a second); its RSS at rest (2 s after that), and its peak (`VmHWM`).
//!
//! `cargo bench --bench scale`; `BENCH_TASKS` sets the store's size, `BENCH_RUNS` (default 2)
//! how many start-ups on the same store are measured; `BENCH_STORE=DIR` keeps the store in DIR
//! and reuses it when it is there with the same size (writing 1 M tasks takes over a minute;
//! for profiling a start-up); `BENCH_BASELINE=PATH` starts another `aggregator` binary on the
//! store after each of our runs (a same-run baseline). Targets (issue 12): 1 M active tasks in
//! at most 1 GiB of RSS, start-up in at most 5 s. CI never runs it (it writes ~2.4 GB).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aggregator::pb::aggregator_client::AggregatorClient;

mod common;

use common::env;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tasks per command while loading.
const CHUNK: usize = 1_000;
/// Owners the tasks are spread over.
const OWNERS: usize = 1_000;
/// Below this share of one core over `IDLE_WINDOW`, the process is idle.
const IDLE_SHARE: f64 = 0.05;
const IDLE_WINDOW: Duration = Duration::from_millis(500);

fn main() {
    let tasks = env("BENCH_TASKS", 1_000_000usize);
    let runs = env("BENCH_RUNS", 2usize);
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_STORE").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("bench-store");
    let shape = format!("{tasks} tasks");
    let reused = match std::fs::read_to_string(&marker) {
        Ok(kept_shape) => {
            assert_eq!(
                kept_shape,
                shape,
                "the kept store in {} has another size",
                dir.display()
            );
            true
        }
        Err(_) => false,
    };
    let config_path = dir.join("aggregator.yaml");
    let grpc = free_port();
    let mut config = common::config(&dir);
    config.grpc.listen = format!("127.0.0.1:{grpc}").parse().unwrap();
    config.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.limits.tasks_per_owner = u64::MAX;
    config.operators.members = vec![operator()];
    std::fs::write(&config_path, serde_norway::to_string(&config).unwrap()).unwrap();

    let written = if reused {
        "reused".to_owned()
    } else {
        let loading = Instant::now();
        common::runtime().block_on(load(config.clone(), tasks));
        std::fs::write(&marker, &shape).unwrap();
        format!("written in {:.1} s", loading.elapsed().as_secs_f64())
    };
    let data = size_of(&config.data_dir);

    println!();
    println!(
        "{tasks} active tasks (block triggers, each assigned to the one operator), {written}; data {:.0} MB",
        data as f64 / 1e6
    );
    println!();
    println!(
        "| run | API answers (s) | idle (s) | CPU until idle (s) | peak RSS while loading (MiB) | RSS at rest (MiB) | VmHWM (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // BENCH_BASELINE=PATH: an `aggregator` binary of other code (say, the previous commit's),
    // started on the same store, each of its runs right after ours (ours first: the first start
    // after writing the store does the compactions the writes left, whoever starts).
    let ours = Path::new(env!("CARGO_BIN_EXE_aggregator")).to_path_buf();
    let baseline = std::env::var_os("BENCH_BASELINE").map(std::path::PathBuf::from);
    let mut binaries = vec![("ours", ours)];
    binaries.extend(baseline.map(|b| ("baseline", b)));
    for (run, (label, binary)) in (1..=runs).flat_map(|run| binaries.iter().map(move |b| (run, b)))
    {
        let s = start_up(binary, &config_path, grpc);
        println!(
            "| {run} {label} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            s.answers.as_secs_f64(),
            s.idle.as_secs_f64(),
            s.cpu_until_idle,
            mib(s.peak_rss),
            mib(s.rest_rss),
            mib(s.hwm),
        );
    }
    println!();
    println!("targets: RSS <= 1024 MiB; start-up (until idle) <= 5 s");
}

/// The one operator, registered from the config (its proof of possession checked at start-up;
/// no ECDSA binding, which the config may leave out).
fn operator() -> aggregator::config::OperatorMember {
    let bls = attest::bls_key(&[7u8; 32]).unwrap();
    aggregator::config::OperatorMember {
        address: "0x00000000000000000000000000000000000000aa".into(),
        bls_public_key: hex::encode(bls.sk_to_pk().to_bytes()),
        proof_of_possession: hex::encode(attest::proof_of_possession(&bls)),
        ecdsa_binding: String::new(),
        weight: 1,
    }
}

async fn load(config: aggregator::config::Config, tasks: usize) {
    let operator = config.operators.members[0].address.clone();
    let app = aggregator::server::open(config).await.unwrap();
    let mut written = 0;
    while written < tasks {
        let n = CHUNK.min(tasks - written);
        let owner = format!("0x{:040x}", (written / CHUNK) % OWNERS + 1);
        let mut command = events::Command::new(owner.clone(), events::now_ms());
        for _ in 0..n {
            let id = aggregator::clock::new_id();
            let mut definition = events::samples::definition();
            definition.name = format!("scale {written}");
            command = command
                .append(
                    events::stream::task(&id),
                    events::Expected::NoStream,
                    [events::event::TaskCreated {
                        task_id: id.clone(),
                        owner: owner.clone(),
                        wallet: events::samples::WALLET.into(),
                        definition,
                    }
                    .into()],
                )
                .append(
                    events::stream::assignment(&id),
                    events::Expected::Any,
                    [events::event::OperatorAssigned {
                        task_id: id.clone(),
                        operator: operator.clone(),
                    }
                    .into()],
                );
            written += 1;
        }
        app.store.log.append(command).await.unwrap();
    }
    app.engine.shutdown(Duration::from_secs(5)).await;
    app.pool.close();
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
}

struct StartUp {
    answers: Duration,
    idle: Duration,
    cpu_until_idle: f64,
    peak_rss: u64,
    rest_rss: u64,
    hwm: u64,
}

/// Runs the aggregator on the store and samples it until it is at rest; then stops it.
fn start_up(binary: &Path, config: &Path, grpc: u16) -> StartUp {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let probe = common::runtime();
    let mut peak_rss = 0;
    let mut answers = None;
    let mut window: Option<(Instant, f64)> = None;
    let idle = loop {
        std::thread::sleep(Duration::from_millis(20));
        assert!(child.try_wait().unwrap().is_none(), "the aggregator exited");
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:") * 1024);
        if answers.is_none() && probe.block_on(answer(grpc)) {
            answers = Some(started.elapsed());
        }
        let now = Instant::now();
        let cpu = cpu_seconds(pid);
        match window {
            Some((since, at)) if now - since >= IDLE_WINDOW => {
                let share = (cpu - at) / (now - since).as_secs_f64();
                if answers.is_some() && share < IDLE_SHARE {
                    break since - started;
                }
                window = Some((now, cpu));
            }
            Some(_) => {}
            None => window = Some((now, cpu)),
        }
        if started.elapsed() > Duration::from_secs(600) {
            stop(&mut child);
            panic!("the aggregator was not idle within 10 minutes");
        }
    };
    let cpu_until_idle = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let rest_rss = status_kib(pid, "VmRSS:") * 1024;
    let hwm = status_kib(pid, "VmHWM:") * 1024;
    stop(&mut child);
    StartUp {
        answers: answers.unwrap_or_default(),
        idle,
        cpu_until_idle,
        peak_rss,
        rest_rss,
        hwm,
    }
}

/// Whether the gRPC API answers a call (any status the service itself gives is an answer).
async fn answer(port: u16) -> bool {
    let Ok(mut client) = AggregatorClient::connect(format!("http://127.0.0.1:{port}")).await else {
        return false;
    };
    match client
        .get_signature_format(aggregator::pb::GetSignatureFormatReq::default())
        .await
    {
        Ok(_) => true,
        Err(status) => status.code() != tonic::Code::Unavailable,
    }
}

/// SIGTERM, then waits for the graceful stop (the store closed, so that the next run opens it).
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `/proc/<pid>/status` field in KiB (0 once the process is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User and system CPU time of the process so far, in seconds (`/proc/<pid>/stat`, in ticks of
/// 1/100 s, the kernel's `USER_HZ` on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn size_of(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_of(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
