//! Benchmark of the event-sourced core against raw fjall, measured in the same run.
//!
//! Durable command appends per second (event + projection rows + checkpoint, fsync'd), with 1
//! and with 64 concurrent writers, against raw fjall batches of the same byte sizes with the
//! same durability (1 raw writer; raw group commit of 64).
//!
//! Reading the whole log (`replay verify`, the projections' rebuild) is measured by
//! `replay/benches/log.rs` (`cargo bench -p replay --bench log`).
//!
//! `cargo bench --bench core`; `BENCH_SECONDS` sets each append measurement's length (default 3).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aggregator::store::Store;
use events::event::{ExecutionQueued, TaskCreated, TaskTriggered};
use events::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use events::{Command, Durability, Expected};

mod common;

use common::env;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Row {
    what: String,
    ours: f64,
    baseline: f64,
    unit: &'static str,
    target: &'static str,
}

fn main() {
    let seconds = env("BENCH_SECONDS", 3u64);
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

    print_table(&rows);
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
    let runtime = common::runtime();
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
