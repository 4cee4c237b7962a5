//! Benchmark of the event-sourced core against raw fjall, measured in the same run.
//!
//! (a) durable command appends per second (event + projection rows + checkpoint, fsync'd), with 1
//!     and with 64 concurrent writers, against raw fjall batches of the same byte sizes with the
//!     same durability (1 raw writer; raw group commit of 64);
//! (b) `verify` and projection `rebuild` in events per second on a log of `BENCH_EVENTS` events
//!     (default 1 000 000), against a raw fjall scan plus sha-256 of the same bytes, and a raw bulk
//!     insert of the same projection rows.
//!
//! `cargo bench --bench core`; `BENCH_SECONDS` sets each append measurement's length (default 3).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aggregator::store::Store;
use events::event::{
    ExecutionFinished, ExecutionQueued, ExecutionStarted, StepRecorded, TaskCreated, TaskTriggered,
};
use events::execution::ExecutionOutcome;
use events::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use events::{Command, Durability, Expected, LogKeyspaces};
use sha2::Digest;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    what: String,
    ours: f64,
    baseline: f64,
    unit: &'static str,
    target: &'static str,
}

fn main() {
    let seconds = env_u64("BENCH_SECONDS", 3);
    let events_n = env_u64("BENCH_EVENTS", 1_000_000);
    let mut rows = Vec::new();

    let shape = command_shape();
    println!(
        "command shape: {} keys, {} bytes (event {} B, index, projection rows, checkpoint)",
        shape.len(),
        shape.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        shape.first().map_or(0, |(_, v)| v.len())
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for writers in [1usize, 64] {
        if !only.is_empty() && only != format!("appends{writers}") {
            continue;
        }
        let ours = append_rate(writers, Duration::from_secs(seconds));
        let raw = raw_group_rate(&shape, writers, Duration::from_secs(seconds));
        rows.push(Row {
            what: format!("durable appends, {writers} writer(s)"),
            ours,
            baseline: raw,
            unit: "commands/s",
            target: if writers == 1 {
                ">= 0.8x"
            } else {
                ">= 0.8x and >= 20000/s"
            },
        });
    }

    if !only.is_empty() && only != "log" {
        print_table(&rows);
        return;
    }
    let (verify, raw_scan, rebuild, raw_insert) = log_rates(events_n);
    rows.push(Row {
        what: format!("verify, {events_n} events"),
        ours: verify,
        baseline: raw_scan,
        unit: "events/s",
        target: ">= 1M/s",
    });
    rows.push(Row {
        what: format!("rebuild projections, {events_n} events"),
        ours: rebuild.0,
        baseline: raw_insert.0,
        unit: "events/s | rows/s",
        target: "time <= 2x raw",
    });

    print_table(&rows);
    println!(
        "| rebuild wall time vs raw insert of the final rows | {:.2} s | {:.2} s | {:.2}x | >= 0.5x |",
        rebuild.1,
        raw_insert.1,
        raw_insert.1 / rebuild.1
    );
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| measurement | ours | raw fjall baseline | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {} ({}) |",
            r.what,
            r.ours,
            r.baseline,
            r.ours / r.baseline,
            r.target,
            r.unit
        );
    }
}

/// One benchmark command: a firing of a task (task stream + a new execution stream).
fn firing_command(task: &str, version: u64, exec: &str, index: i64) -> Command {
    Command::new(events::samples::OWNER, events::now_ms())
        .append(
            events::stream::task(task),
            Expected::Exactly(version),
            vec![
                TaskTriggered {
                    task_id: task.into(),
                    execution_id: exec.into(),
                    index,
                    dedup_key: format!("{task}:{index}"),
                }
                .into(),
            ],
        )
        .append(
            events::stream::execution(exec),
            Expected::NoStream,
            vec![
                ExecutionQueued {
                    execution_id: exec.into(),
                    task_id: task.into(),
                    owner: events::samples::OWNER.into(),
                    index,
                    firing: events::samples::firing(),
                }
                .into(),
            ],
        )
}

fn create_task(store: &Store, task: &str) {
    let command = Command::new(events::samples::OWNER, events::now_ms()).append(
        events::stream::task(task),
        Expected::NoStream,
        vec![
            TaskCreated {
                task_id: task.into(),
                owner: events::samples::OWNER.into(),
                wallet: events::samples::WALLET.into(),
                definition: events::samples::definition(),
            }
            .into(),
        ],
    );
    store.log.append_blocking(command).unwrap();
}

/// The keys and values one firing command writes, measured on a scratch store.
fn command_shape() -> Vec<(Vec<u8>, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Durability::Relaxed).unwrap();
    create_task(&store, "01BENCHTASK000000000000000");
    let before = snapshot(&store);
    store
        .log
        .append_blocking(firing_command(
            "01BENCHTASK000000000000000",
            1,
            "01BENCHEXEC000000000000000",
            0,
        ))
        .unwrap();
    let after = snapshot(&store);
    store.close().unwrap();
    after
        .into_iter()
        .filter(|kv| !before.contains(kv))
        .collect()
}

fn snapshot(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let ks = store.log.keyspaces();
    let v = &store.views;
    let mut out = Vec::new();
    for keyspace in [
        &ks.events,
        &ks.streams,
        &ks.idempotency,
        v.keyspace(projections::tasks::NAME).unwrap(),
        v.keyspace(projections::executions::NAME).unwrap(),
    ] {
        for g in keyspace.iter() {
            let (k, val) = g.into_inner().unwrap();
            out.push((k.to_vec(), val.to_vec()));
        }
    }
    // The checkpoint rows (one per projection).
    for _ in 0..projections::KEYSPACES.len() {
        out.push((b"checkpoint-of-a-projection".to_vec(), vec![b'x'; 60]));
    }
    out
}

/// Runs `writers` concurrent tasks (on a 2-thread tokio runtime, as the server does) that each
/// repeat `op` until told to stop; returns completed operations per second after a warm-up.
fn drive<F, Fut>(writers: usize, length: Duration, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            runtime.spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(w, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // warm-up
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(length);
    let rate = (done.load(Ordering::Relaxed) - start_count) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    rate
}

/// Firing commands per second through the store, `writers` tasks, each on its own task stream.
fn append_rate(writers: usize, length: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Durability::Sync).unwrap();
    for w in 0..writers {
        create_task(&store, &format!("01BENCHTASK{w:015}"));
    }
    let log = store.log.clone();
    let rate = drive(writers, length, move |w, i| {
        let log = log.clone();
        async move {
            let task = format!("01BENCHTASK{w:015}");
            let exec = events::Ulid::generate().to_string();
            let index = i64::try_from(i).unwrap();
            log.append(firing_command(&task, i + 1, &exec, index))
                .await
                .unwrap();
        }
    });
    store.close().unwrap();
    rate
}

fn raw_db(dir: &std::path::Path) -> (Database, Keyspace) {
    let db = Database::builder(dir).open().unwrap();
    let ks = db.keyspace("raw", KeyspaceCreateOptions::default).unwrap();
    (db, ks)
}

/// Unique keys with the shape's sizes.
fn keyed(shape: &[(Vec<u8>, Vec<u8>)], n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    shape
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let mut key = format!("{n:016}{i:04}").into_bytes();
            key.resize(k.len().max(20), b'k');
            (key, v.clone())
        })
        .collect()
}

/// `writers` tasks hand their batches to one committer thread that commits each drained group
/// with one fsync, then acknowledges: the same shape as our writer, without events or projections.
fn raw_group_rate(shape: &[(Vec<u8>, Vec<u8>)], writers: usize, length: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (db, ks) = raw_db(dir.path());
    type Job = (Vec<(Vec<u8>, Vec<u8>)>, tokio::sync::oneshot::Sender<()>);
    let (tx, rx) = mpsc::channel::<Job>();
    let committer = std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            for (rows, _) in &mut group {
                for (k, v) in rows.drain(..) {
                    batch.insert(&ks, k, v);
                }
            }
            batch.commit().unwrap();
            for (_, ack) in group {
                let _ = ack.send(());
            }
        }
    });
    let shape = shape.to_vec();
    let sender = std::sync::Mutex::new(tx);
    let rate = drive(writers, length, move |w, i| {
        let (ack, wait) = tokio::sync::oneshot::channel();
        let rows = keyed(&shape, ((w as u64) << 40) + i);
        let sent = sender.lock().unwrap().send((rows, ack));
        async move {
            sent.unwrap();
            wait.await.unwrap();
        }
    });
    committer.join().unwrap_or(());
    rate
}

/// Builds a log of about `n` events (executions of 5 events each over 1 000 tasks), then measures
/// verify and rebuild against their raw baselines. Returns (verify events/s, raw scan+hash
/// events/s, (rebuild events/s, rebuild seconds), (raw insert rows/s, raw insert seconds)).
fn log_rates(n: u64) -> (f64, f64, (f64, f64), (f64, f64)) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Durability::Relaxed).unwrap();
    let tasks = 1_000u64;
    for t in 0..tasks {
        create_task(&store, &format!("01LOGTASK{t:017}"));
    }
    let executions = n.saturating_sub(tasks) / 5;
    println!("building a log of {} events...", tasks + executions * 5);
    let built = Instant::now();
    let lanes = 16u64;
    let threads: Vec<_> = (0..lanes)
        .map(|lane| {
            let log = store.log.clone();
            std::thread::spawn(move || {
                let mut versions = std::collections::HashMap::new();
                let mut e = lane;
                while e < executions {
                    let t = e % tasks;
                    if t % lanes != lane {
                        e += 1;
                        continue;
                    }
                    let task = format!("01LOGTASK{t:017}");
                    let version = versions.entry(t).or_insert(1u64);
                    let exec = format!("01LOGEXEC{e:017}");
                    let index = i64::try_from(*version).unwrap() - 1;
                    log.append_blocking(firing_command(&task, *version, &exec, index))
                        .unwrap();
                    *version += 1;
                    let stream = events::stream::execution(&exec);
                    let mut step = events::samples::step();
                    step.id = "node1".into();
                    let run = Command::new(events::samples::OWNER, events::now_ms()).append(
                        stream,
                        Expected::Exactly(1),
                        vec![
                            ExecutionStarted {
                                execution_id: exec.clone(),
                                task_id: task.clone(),
                                started_at: 0,
                            }
                            .into(),
                            StepRecorded {
                                execution_id: exec.clone(),
                                task_id: task.clone(),
                                step,
                            }
                            .into(),
                            ExecutionFinished {
                                execution_id: exec.clone(),
                                task_id: task.clone(),
                                outcome: ExecutionOutcome::Success,
                                error: String::new(),
                            }
                            .into(),
                        ],
                    );
                    log.append_blocking(run).unwrap();
                    e += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    store.close().unwrap();
    println!("built in {:.1} s", built.elapsed().as_secs_f64());
    drop(store);

    let db = events::open_database(dir.path()).unwrap();
    let log = LogKeyspaces::open(&db).unwrap();
    let count = log.scan(None).count() as f64;

    // Warm the cache equally for both.
    let _ = log.scan(None).count();
    let start = Instant::now();
    let report = events::verify(&log, 2, &|_| {}).unwrap().unwrap();
    let verify = report.events as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut prev = [0u8; 32];
    for item in log.scan(None) {
        let (_, value) = item.unwrap();
        let mut h = sha2::Sha256::new();
        h.update(prev);
        h.update(value.get(32..).unwrap_or_default());
        prev = h.finalize().into();
    }
    let raw_scan = count / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut n = 0u64;
    events::for_each_decoded(&log, None, 2, |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    println!(
        "decoding alone (2 threads): {:.0} events/s",
        n as f64 / start.elapsed().as_secs_f64()
    );

    let into = tempfile::tempdir().unwrap();
    let target = events::open_database(into.path()).unwrap();
    let mut rebuilt = projections::Projections::open(&target).unwrap();
    let start = Instant::now();
    rebuilt.catch_up(&log, &|_| {}).unwrap();
    let rebuild_secs = start.elapsed().as_secs_f64();
    let rebuild = count / rebuild_secs;

    // The same final rows, inserted raw in large batches without fsync (as the rebuild does).
    let mut rows_data = Vec::new();
    for name in projections::KEYSPACES {
        for g in rebuilt.keyspace(name).unwrap().iter() {
            let (k, v) = g.into_inner().unwrap();
            rows_data.push((k.to_vec(), v.to_vec()));
        }
    }
    let raw_dir = tempfile::tempdir().unwrap();
    let (raw, ks) = raw_db(raw_dir.path());
    let start = Instant::now();
    for chunk in rows_data.chunks(50_000) {
        let mut batch = raw.batch();
        for (k, v) in chunk {
            batch.insert(&ks, k.clone(), v.clone());
        }
        batch.commit().unwrap();
    }
    raw.persist(PersistMode::SyncAll).unwrap();
    let raw_secs = start.elapsed().as_secs_f64();
    println!("{} projection rows, {} events", rows_data.len(), count);
    (
        verify,
        raw_scan,
        (rebuild, rebuild_secs),
        (rows_data.len() as f64 / raw_secs, raw_secs),
    )
}
