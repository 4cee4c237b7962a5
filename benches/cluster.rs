//! Benchmark of the replicated log (issue 13): aggregator processes (the crate's binary, release)
//! on loopback, against the same binary on fjall alone, in the same run.
//!
//! - durable `CreateTask` calls per second, with 16 and 64 calls in flight (each from its own
//!   signed-in user), and their p50 / p99 latency, on: fjall alone (`durability: sync`, one
//!   process); JetStream with 1 replica (1 `nats-server`, stream replicas 1); JetStream with 3
//!   replicas (a 3-node NATS cluster, stream replicas 3, 3 aggregator processes, calls sent
//!   round-robin to all three, so that two thirds are forwarded to the writer);
//! - fail-over: under a load of 16 in flight on the 3 replicas, SIGKILL of the writer replica;
//!   the time until another replica holds the lease, and until a call sent after the kill
//!   through another replica is acknowledged;
//! - catch-up: a log of `BENCH_EVENTS` events (default 200 000, `TaskCreated` of 1 000 owners,
//!   written straight into a fjall log) imported into a 3-replica stream
//!   (`aggregator log import`), then a replica started on an empty data directory: events per
//!   second from its start to its first answer (it serves once caught up), against
//!   `replay rebuild` of the same log (a complete store rebuilt from a fjall log) in the same run.
//!
//! `cargo bench --bench cluster`; `BENCH_SECONDS` is each load's length (default 5),
//! `BENCH_LEASE_TTL` the replicas' `lease_ttl` (default 3s, the config's default), `BENCH_ONLY`
//! some of `fjall,r1,r3,catchup`, `BENCH_KEEP` keeps the processes' directories. Skips with a
//! message when `nats-server` is not installed (`.ci/run` installs it).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::pb::aggregator_client::AggregatorClient;
use tonic::transport::Channel;

#[path = "../tests/e2e/cluster_support.rs"]
mod cluster_support;
mod common;
#[allow(
    dead_code,
    reason = "the bench signs in and builds tasks as the tests do"
)]
#[path = "../tests/e2e/support.rs"]
mod support;

use cluster_support::{
    NatsNode, Replica, cluster_ready, copy_keys, events_in, jetstream_log, nats_nodes,
    start_replicas, writer_of,
};
use common::{env, percentile};
use support::{User, simple_task};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: [usize; 2] = [16, 64];

/// Limits that do not throttle the load (durability stays the default, `sync`).
const UNTHROTTLED: &str =
    "limits:\n  tasks_per_owner: 100000000\n  requests_per_second: 1000000\n  burst: 1000000\n";

fn seconds() -> Duration {
    Duration::from_secs(env("BENCH_SECONDS", 5))
}

fn lease_ttl() -> String {
    std::env::var("BENCH_LEASE_TTL").unwrap_or_else(|_| "3s".into())
}

/// A scratch directory, kept (and named) when `BENCH_KEEP` is set, for the processes' logs.
fn scratch() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

/// A signed-in user and its salt-0 wallet.
struct Bencher {
    user: User,
    wallet: String,
}

async fn sign_in(client: &mut AggregatorClient<Channel>) -> Bencher {
    let user = User::sign_in(client).await.unwrap();
    let wallet = user.wallet(client).await.unwrap();
    Bencher { user, wallet }
}

/// The processes of one setup, and a client per (user, replica).
struct Setup {
    name: &'static str,
    _nodes: Vec<NatsNode>,
    replicas: Vec<Replica>,
    users: Vec<Arc<Bencher>>,
    /// `channels[user][replica]`.
    channels: Vec<Vec<AggregatorClient<Channel>>>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// `nats` 0: fjall alone, one aggregator; else `nats` NATS nodes and as many replicas.
    async fn start(name: &'static str, nats: usize) -> Setup {
        let dir = scratch();
        let nodes = nats_nodes(dir.path(), nats).unwrap();
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let config = if nats == 0 {
            UNTHROTTLED.to_owned()
        } else {
            cluster_ready(&urls, nats).await.unwrap();
            format!("{}{UNTHROTTLED}", jetstream_log(&urls, nats, &lease_ttl()))
        };
        let mut replicas: Vec<Replica> = (0..nats.max(1))
            .map(|i| Replica::configured(dir.path(), i, &config).unwrap())
            .collect();
        let mut clients = start_replicas(&mut replicas).await.unwrap();
        let most = IN_FLIGHT.iter().copied().max().unwrap_or(1);
        let mut users = Vec::new();
        let mut channels = Vec::new();
        for _ in 0..most {
            users.push(Arc::new(sign_in(&mut clients[0]).await));
            let mut mine = Vec::new();
            for r in &replicas {
                mine.push(r.client().await.unwrap());
            }
            channels.push(mine);
        }
        Setup {
            name,
            _nodes: nodes,
            replicas,
            users,
            channels,
            _dir: dir,
        }
    }
}

/// What one load saw.
#[derive(Default)]
struct Calls {
    /// (sent, acknowledged, replica) of each acknowledged call.
    acked: Vec<(Instant, Instant, usize)>,
    errors: u64,
}

/// `in_flight` callers, each with its own user, creating tasks through the replicas in turn
/// (one call after the other, each to the next replica) until `stop`.
fn load(
    setup: &Setup,
    in_flight: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Arc<Mutex<Calls>>, Vec<tokio::task::JoinHandle<()>>) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let turn = Arc::new(AtomicUsize::new(0));
    let replicas = setup.replicas.len();
    let workers = (0..in_flight)
        .map(|w| {
            let user = setup.users[w].clone();
            let channels = setup.channels[w].clone();
            let calls = calls.clone();
            let turn = turn.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !*stop.borrow() {
                    let replica = turn.fetch_add(1, Ordering::Relaxed) % replicas;
                    let mut client = channels[replica].clone();
                    let name = format!("bench {w}-{i}");
                    let request = user.user.req(simple_task(&name, &user.wallet));
                    let sent = Instant::now();
                    let result =
                        tokio::time::timeout(Duration::from_secs(30), client.create_task(request))
                            .await;
                    let mut calls = calls.lock().unwrap();
                    match result {
                        Ok(Ok(_)) => calls.acked.push((sent, Instant::now(), replica)),
                        _ => calls.errors += 1,
                    }
                    drop(calls);
                    i += 1;
                }
            })
        })
        .collect();
    (calls, workers)
}

struct Throughput {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// A load of `in_flight` for a second (discarded) and then `seconds()`.
async fn throughput(setup: &Setup, in_flight: usize) -> Throughput {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (calls, workers) = load(setup, in_flight, stopped);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = Instant::now();
    tokio::time::sleep(seconds()).await;
    let to = Instant::now();
    stop.send_replace(true);
    for w in workers {
        w.await.unwrap();
    }
    let calls = calls.lock().unwrap();
    let mut latencies: Vec<f64> = calls
        .acked
        .iter()
        .filter(|(_, acked, _)| *acked >= from && *acked < to)
        .map(|(sent, acked, _)| acked.duration_since(*sent).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Throughput {
        rate: latencies.len() as f64 / to.duration_since(from).as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        errors: calls.errors,
    }
}

struct Failover {
    /// `None`: no replica held the lease within 60 s.
    lease_moved: Option<(usize, Duration)>,
    /// `None`: no write acknowledged within 60 s.
    first_write: Option<Duration>,
    writer: Option<usize>,
}

/// Under a load of 16 in flight: SIGKILL of the writer replica.
async fn failover(setup: &mut Setup) -> Failover {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (calls, workers) = load(setup, 16, stopped);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let Some(writer) = writer_of(&setup.replicas).await else {
        stop.send_replace(true);
        return Failover {
            lease_moved: None,
            first_write: None,
            writer: None,
        };
    };
    let killed = Instant::now();
    setup.replicas[writer].kill().unwrap();
    let mut lease_moved = None;
    let mut first_write = None;
    while killed.elapsed() < Duration::from_secs(60)
        && (lease_moved.is_none() || first_write.is_none())
    {
        if lease_moved.is_none()
            && let Some(w) = writer_of(&setup.replicas).await
        {
            lease_moved = Some((w, killed.elapsed()));
        }
        if first_write.is_none() {
            first_write = calls
                .lock()
                .unwrap()
                .acked
                .iter()
                .filter(|(sent, _, replica)| *sent > killed && *replica != writer)
                .map(|(_, acked, _)| acked.duration_since(killed))
                .min();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send_replace(true);
    for w in workers {
        w.await.unwrap();
    }
    Failover {
        lease_moved,
        first_write,
        writer: Some(writer),
    }
}

/// `events` `TaskCreated` events of 1 000 owners, 1 000 per command, in a fjall log below
/// `dir` (its `data` and `keys`).
async fn write_log(dir: &Path, events: usize) {
    let config = common::config(dir);
    let running = aggregator::server::start(config).await.unwrap();
    let mut written = 0;
    while written < events {
        let mut command = events::Command::new("system", events::now_ms());
        for i in written..(written + 1_000).min(events) {
            let id = aggregator::clock::new_id();
            let mut definition = events::samples::definition();
            definition.name = format!("bench {i}");
            command = command.append(
                events::stream::task(&id),
                events::Expected::NoStream,
                [events::event::TaskCreated {
                    task_id: id,
                    owner: format!("0x{:040x}", 1 + i % 1_000),
                    wallet: events::samples::WALLET.into(),
                    definition,
                }
                .into()],
            );
        }
        running.app.store.log.append(command).await.unwrap();
        written = (written + 1_000).min(events);
    }
    running.stop().await.unwrap();
}

struct CatchUp {
    events: u64,
    import: Duration,
    replica: Duration,
    rebuild: Duration,
    startup_empty: Duration,
}

async fn catch_up(events: usize) -> CatchUp {
    let dir = scratch();
    let source = dir.path().join("source");
    write_log(&source, events).await;
    let data = source.join("data");
    let events = events_in(&data).unwrap();

    // The baseline: a complete store rebuilt from the fjall log.
    let rebuild = {
        let data = data.clone();
        let into = dir.path().join("rebuilt");
        tokio::task::spawn_blocking(move || {
            use clap::Parser;
            let cli = replay::Cli::try_parse_from([
                "replay",
                "--data",
                data.to_str().unwrap(),
                "rebuild",
                "--into",
                into.to_str().unwrap(),
            ])
            .unwrap();
            let started = Instant::now();
            let mut out = Vec::new();
            assert!(
                replay::run(&cli, &mut out).unwrap(),
                "{}",
                String::from_utf8_lossy(&out)
            );
            started.elapsed()
        })
        .await
        .unwrap()
    };

    // The same log imported into a stream of 3 replicas.
    let nodes = nats_nodes(dir.path(), 3).unwrap();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    cluster_ready(&urls, 3).await.unwrap();
    let config = format!("{}{UNTHROTTLED}", jetstream_log(&urls, 3, &lease_ttl()));
    let importer = Replica::configured(dir.path(), 0, &config).unwrap();
    copy_keys(&source.join("keys"), &importer.keys).unwrap();
    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("--config")
        .arg(&importer.config)
        .args(["log", "import", "--from"])
        .arg(&data)
        .output()
        .unwrap();
    let import = started.elapsed();
    assert!(
        output.status.success(),
        "log import: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A replica on an empty data directory: it serves once caught up.
    let mut fresh = Replica::configured(dir.path(), 1, &config).unwrap();
    copy_keys(&source.join("keys"), &fresh.keys).unwrap();
    let started = Instant::now();
    fresh.start().unwrap();
    fresh.client().await.unwrap();
    let replica = started.elapsed();
    fresh.stop().unwrap();
    assert_eq!(
        events_in(&fresh.data).unwrap(),
        events,
        "the fresh replica holds every event"
    );

    // Its start-up alone: a replica on an empty stream.
    let empty = tempfile::tempdir().unwrap();
    let nodes_empty = nats_nodes(empty.path(), 1).unwrap();
    let urls_empty: Vec<String> = nodes_empty.iter().map(|n| n.url.clone()).collect();
    cluster_ready(&urls_empty, 1).await.unwrap();
    let mut alone = Replica::configured(
        empty.path(),
        0,
        &format!(
            "{}{UNTHROTTLED}",
            jetstream_log(&urls_empty, 1, &lease_ttl())
        ),
    )
    .unwrap();
    let started = Instant::now();
    alone.start().unwrap();
    alone.client().await.unwrap();
    let startup_empty = started.elapsed();
    drop(nodes);
    CatchUp {
        events,
        import,
        replica,
        rebuild,
        startup_empty,
    }
}

fn main() {
    if !cluster_support::nats_installed() {
        println!(
            "cluster bench skipped: nats-server is not installed (apt-get install nats-server; .ci/run does it)"
        );
        return;
    }
    common::runtime().block_on(async_main());
}

async fn async_main() {
    let seconds = seconds();
    println!(
        "cluster bench: durable CreateTask, {} s per load after 1 s of warm-up, aggregator processes (release) on loopback, lease_ttl {}",
        seconds.as_secs(),
        lease_ttl()
    );
    let mut rows = Vec::new();
    let mut failed_over = None;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runs = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    for (part, name, nats) in [
        ("fjall", "fjall alone (1 process)", 0),
        ("r1", "JetStream, 1 replica (1 nats-server)", 1),
        (
            "r3",
            "JetStream, 3 replicas (3-node cluster, round-robin)",
            3,
        ),
    ] {
        if !runs(part) {
            continue;
        }
        let mut setup = Setup::start(name, nats).await;
        for in_flight in IN_FLIGHT {
            let t = throughput(&setup, in_flight).await;
            println!(
                "  {:<52} {in_flight:>3} in flight: {:>7.0} calls/s, p50 {:>6.1} ms, p99 {:>6.1} ms, {} errors",
                setup.name, t.rate, t.p50_ms, t.p99_ms, t.errors
            );
            rows.push((setup.name, in_flight, t));
        }
        if nats == 3 {
            failed_over = Some(failover(&mut setup).await);
        }
    }
    let events = env("BENCH_EVENTS", 200_000usize);
    let caught = if runs("catchup") {
        println!("  writing a log of {events} events for the catch-up ...");
        Some(catch_up(events).await)
    } else {
        None
    };

    let fjall = |in_flight: usize| {
        rows.iter()
            .find(|(name, n, _)| name.starts_with("fjall") && *n == in_flight)
            .map_or(f64::NAN, |(_, _, t)| t.rate)
    };
    println!();
    println!("| setup | in flight | CreateTask/s | × fjall alone | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    for (name, in_flight, t) in &rows {
        println!(
            "| {name} | {in_flight} | {:.0} | {:.2} | {:.1} | {:.1} | {} |",
            t.rate,
            t.rate / fjall(*in_flight),
            t.p50_ms,
            t.p99_ms,
            t.errors
        );
    }
    if let Some(f) = failed_over {
        let secs = |d: Option<Duration>| {
            d.map_or("not within 60 s".to_owned(), |d| {
                format!("after {:.2} s", d.as_secs_f64())
            })
        };
        match f.writer {
            None => println!("\nfail-over: not measured, no replica said it wrote the log"),
            Some(writer) => println!(
                "\nfail-over (3 replicas, 16 in flight, writer replica {} SIGKILLed): {} held the lease {}; first write sent after the kill acknowledged through another replica {}",
                writer + 1,
                f.lease_moved
                    .map_or("no replica".to_owned(), |(w, _)| format!(
                        "replica {}",
                        w + 1
                    )),
                secs(f.lease_moved.map(|(_, d)| d)),
                secs(f.first_write)
            ),
        }
    }
    let Some(caught) = caught else { return };
    let rate = |d: Duration| caught.events as f64 / d.as_secs_f64();
    println!(
        "catch-up of {} events: fresh replica on a 3-replica stream {:.2} s from start to first answer ({:.0} events/s; start-up on an empty stream alone {:.2} s); baseline replay rebuild of the same fjall log {:.2} s ({:.0} events/s); the replica's rate {:.2}× the rebuild's; log import into the stream {:.2} s ({:.0} events/s)",
        caught.events,
        caught.replica.as_secs_f64(),
        rate(caught.replica),
        caught.startup_empty.as_secs_f64(),
        caught.rebuild.as_secs_f64(),
        rate(caught.rebuild),
        rate(caught.replica) / rate(caught.rebuild),
        caught.import.as_secs_f64(),
        rate(caught.import),
    );
}
