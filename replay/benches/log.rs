//! Benchmark of reading the whole log: `replay verify` and the projections' rebuild, each against
//! a raw baseline measured in the same run on the same log.
//!
//! The log is shaped like production: `BENCH_TASKS` tasks (default 100 000), each fired
//! `BENCH_RUNS` times (default 2); a firing is 5 events in 2 commands (triggered + queued, then
//! started, a step, finished), so the log holds `tasks × (1 + 5 × runs)` events.
//!
//! - verify: `replay::verify_log` (chain, decoding, streams and attestations in one pass, 2
//!   threads) against a raw fjall scan plus the sha-256 chain of the same bytes (the part no
//!   verifier can skip), and against the two decoding passes it made before;
//! - rebuild: `Projections::catch_up` into an empty database against a raw load of the same final
//!   rows into fjall (write batches of 50 000 rows, and sorted ingestion), in wall time.
//!
//! `BENCH_REBUILD_MEMORY=MIB` bounds the rows the rebuild holds (default 1024 MiB): a small log
//! with a small bound spills as a large log does.
//!
//! Each part also prints the process's peak RSS during it (Linux: `VmHWM`, reset before the part
//! through `/proc/self/clear_refs`); the rebuild, its wall time and the CPU seconds it used.
//!
//! `cargo bench -p replay --bench log`. The figures for 1 M tasks: `BENCH_TASKS=1000000`.

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::time::Instant;

use events::event::{
    ExecutionFinished, ExecutionQueued, ExecutionStarted, StepRecorded, TaskCreated, TaskTriggered,
};
use events::execution::ExecutionOutcome;
use events::fjall::{Database, KeyspaceCreateOptions, PersistMode};
use events::{Command, Durability, Expected, Log, LogKeyspaces, LogOptions};
use sha2::Digest;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tasks = env_u64("BENCH_TASKS", 100_000);
    let runs = env_u64("BENCH_RUNS", 2);
    // BENCH_LOG=DIR keeps the log in DIR and reuses it when it is there (for profiling, and
    // for the large sizes, which take minutes to write).
    let kept = std::env::var_os("BENCH_LOG").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let path = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let marker = path.join("bench-log");
    let shape = format!("{tasks} tasks x {runs} firings");
    if let Ok(kept_shape) = std::fs::read_to_string(&marker) {
        assert_eq!(
            kept_shape,
            shape,
            "the kept log in {} has another shape",
            path.display()
        );
        println!("reusing the log of {shape} in {}", path.display());
    } else {
        let built = Instant::now();
        build_log(&path, tasks, runs);
        std::fs::write(&marker, &shape).unwrap();
        println!(
            "log of {shape} built in {:.1} s",
            built.elapsed().as_secs_f64()
        );
    }

    let db = events::open_database(&path).unwrap();
    let log = LogKeyspaces::open(&db).unwrap();
    // A long-lived log is in tables but for its last memtable: flush it, as the reads of a
    // big log see it.
    for keyspace in [&log.events, &log.streams, &log.idempotency] {
        keyspace.rotate_memtable_and_wait().unwrap();
    }
    let (mut count, mut bytes) = (0u64, 0usize);
    for item in log.scan(None) {
        count += 1;
        bytes += item.unwrap().1.len();
    }
    println!(
        "{count} events, {} bytes on average, {} bytes on disk",
        bytes / count.max(1) as usize,
        db.disk_space().unwrap_or(0)
    );
    let count = count as f64;
    let mut table = Vec::new();
    // BENCH_ONLY=rebuild skips the verify part (for profiling one of them).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "rebuild" {
        reset_peak_rss();
        verify_rows(&log, count, &mut table);
        println!("verify part: peak RSS {}", peak_rss());
    }
    if only != "verify" {
        reset_peak_rss();
        rebuild_rows(&log, count, &mut table);
        println!(
            "rebuild part (with the final rows held for the raw loads): peak RSS {}",
            peak_rss()
        );
    }

    println!();
    println!(
        "| measurement | wall time | events/s | baseline | baseline time | ratio (baseline / ours) | target |"
    );
    println!("|---|---:|---:|---|---:|---:|---|");
    for r in &table {
        println!("{r}");
    }
}

/// Resets the kernel's peak RSS of this process to its current RSS (Linux 4.0+; a no-op elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak RSS since the last reset, as `VmHWM` reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kb| format!("{} MiB", kb / 1024))
}

/// CPU seconds the process has used (user and system, all threads; Linux: `/proc/self/stat`,
/// in the kernel's 100 ticks a second), steadier than wall time on a shared machine.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command's name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn verify_rows(log: &LogKeyspaces, count: f64, table: &mut Vec<String>) {
    // Raw: the scan and the hash chain, the sequential part of any verification.
    let _ = log.scan(None).count(); // the cache warmed alike for every reader below
    let start = Instant::now();
    let mut prev = [0u8; 32];
    for item in log.scan(None) {
        let (_, value) = item.unwrap();
        let mut h = sha2::Sha256::new();
        h.update(prev);
        h.update(value.get(32..).unwrap_or_default());
        prev = h.finalize().into();
    }
    let raw_scan = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let (report, attested) = replay::verify_log(log, 2, &|_| {}).unwrap();
    let report = report.unwrap();
    attested.unwrap();
    let verify = start.elapsed().as_secs_f64();
    assert_eq!(report.events as f64, count);

    let start = Instant::now();
    events::verify(log, 2, &|_| {}).unwrap().unwrap();
    replay::attestations::verify(log, 2).unwrap().unwrap();
    let two_passes = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut decoded = 0u64;
    events::for_each_decoded(log, None, 2, |_| {
        decoded += 1;
        Ok(())
    })
    .unwrap();
    let decoding = start.elapsed().as_secs_f64();
    table.push(row(
        "replay verify (one pass, 2 threads)",
        count,
        verify,
        raw_scan,
        ">= 2 M events/s",
    ));
    table.push(row(
        "verify before: log, then attestations",
        count,
        two_passes,
        raw_scan,
        "",
    ));
    table.push(row(
        "decoding alone (2 threads)",
        count,
        decoding,
        raw_scan,
        "",
    ));
}

fn rebuild_rows(log: &LogKeyspaces, count: f64, table: &mut Vec<String>) {
    let into = tempfile::tempdir().unwrap();
    let target = events::open_database(into.path()).unwrap();
    // BENCH_REBUILD_MEMORY=MIB: the rows the rebuild holds in memory (default 1024 MiB), so
    // that a small log shows the spilling a large one does.
    let memory = env_u64("BENCH_REBUILD_MEMORY", 0);
    let mut rebuilt = projections::Projections::open(&target).unwrap();
    if memory > 0 {
        rebuilt = rebuilt.rebuild_memory(memory as usize * 1024 * 1024);
    }
    let start = Instant::now();
    let cpu = cpu_seconds();
    let outcome = rebuilt.catch_up(log, &|_| {}).unwrap();
    let rebuild = start.elapsed().as_secs_f64();
    println!(
        "rebuild: {rebuild:.2} s, {:.1} s of CPU, peak RSS {}, {} spills of the rows held",
        cpu_seconds() - cpu,
        peak_rss(),
        outcome.spills
    );

    let mut rows = Vec::new();
    for name in projections::KEYSPACES {
        let mut keyspace = Vec::new();
        for g in rebuilt.keyspace(name).unwrap().iter() {
            let (k, v) = g.into_inner().unwrap();
            keyspace.push((k, v));
        }
        rows.push((*name, keyspace));
    }
    let row_count: usize = rows.iter().map(|(_, r)| r.len()).sum();
    let row_bytes: usize = rows
        .iter()
        .flat_map(|(_, r)| r.iter())
        .map(|(k, v)| k.len() + v.len())
        .sum();
    println!("{row_count} projection rows, {row_bytes} bytes");
    // One copy of the rows on disk at a time: at 1 M tasks they are several GB.
    drop(rebuilt);
    drop(target);
    drop(into);
    let batches = raw_load(&rows, false);
    let ingested = raw_load(&rows, true);
    table.push(row(
        "rebuild projections",
        count,
        rebuild,
        ingested,
        ">= 1 M events/s",
    ));
    table.push(row(
        "raw: final rows in write batches",
        count,
        batches,
        ingested,
        "",
    ));
}

fn row(what: &str, events: f64, secs: f64, baseline: f64, target: &str) -> String {
    let base = if what.starts_with("rebuild") || what.starts_with("raw") {
        "raw sorted ingestion of the final rows"
    } else {
        "raw scan + sha-256 chain"
    };
    format!(
        "| {what} | {secs:.2} s | {:.0} | {base} | {baseline:.2} s | {:.2}x | {target} |",
        events / secs,
        baseline / secs
    )
}

/// Loads the rows into a fresh database, durably at the end (as the rebuild does); seconds.
fn raw_load(
    rows: &[(&str, Vec<(events::fjall::Slice, events::fjall::Slice)>)],
    ingest: bool,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path()).open().unwrap();
    let keyspaces: Vec<_> = rows
        .iter()
        .map(|(name, _)| db.keyspace(name, KeyspaceCreateOptions::default).unwrap())
        .collect();
    let start = Instant::now();
    for ((_, rows), keyspace) in rows.iter().zip(&keyspaces) {
        if ingest {
            let mut ingestion = keyspace.start_ingestion().unwrap();
            for (k, v) in rows {
                ingestion.write(k.clone(), v.clone()).unwrap();
            }
            ingestion.finish().unwrap();
        } else {
            for chunk in rows.chunks(50_000) {
                let mut batch = db.batch();
                for (k, v) in chunk {
                    batch.insert(keyspace, k.clone(), v.clone());
                }
                batch.commit().unwrap();
            }
        }
    }
    db.persist(PersistMode::SyncAll).unwrap();
    start.elapsed().as_secs_f64()
}

/// A projector that keeps nothing: the bench's log is read by the rebuild into a database of its
/// own, so live projection rows beside the log would only double its size on disk.
struct NoProjections;

impl events::Projector for NoProjections {
    fn apply(&mut self, _: &events::Envelope, _: &mut events::Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: events::Ulid, _: &mut events::Tx) -> events::Result<()> {
        Ok(())
    }
}

/// Writes the log through the log's writer, as the aggregator does (without fsync per group and
/// without live projections: the shape of the log matters here, not the append rate).
fn build_log(dir: &std::path::Path, tasks: u64, runs: u64) {
    let db = events::open_database(dir).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Log::open(&db, options, Box::new(NoProjections)).unwrap();
    let lanes = 16u64;
    std::thread::scope(|scope| {
        for lane in 0..lanes {
            let log = log.clone();
            scope.spawn(move || {
                let mut t = lane;
                while t < tasks {
                    let task = format!("01LOGTASK{t:017}");
                    log.append_blocking(created(&task)).unwrap();
                    t += lanes;
                }
            });
        }
    });
    std::thread::scope(|scope| {
        for lane in 0..lanes {
            let log = log.clone();
            scope.spawn(move || {
                for run in 0..runs {
                    let mut t = lane;
                    while t < tasks {
                        let task = format!("01LOGTASK{t:017}");
                        let exec = format!("01LOGEXEC{:017}", run * tasks + t);
                        let index = i64::try_from(run).unwrap();
                        log.append_blocking(triggered(&task, run + 1, &exec, index))
                            .unwrap();
                        log.append_blocking(ran(&task, &exec)).unwrap();
                        t += lanes;
                    }
                }
            });
        }
    });
    log.shutdown();
    db.persist(PersistMode::SyncAll).unwrap();
}

fn created(task: &str) -> Command {
    Command::new(events::samples::OWNER, events::now_ms()).append(
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
    )
}

/// A firing: the task stream's `TaskTriggered` and a new execution stream.
fn triggered(task: &str, version: u64, exec: &str, index: i64) -> Command {
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

/// The run of a queued execution: started, one step, finished.
fn ran(task: &str, exec: &str) -> Command {
    let mut step = events::samples::step();
    step.id = "node1".into();
    Command::new(events::samples::OWNER, events::now_ms()).append(
        events::stream::execution(exec),
        Expected::Exactly(1),
        vec![
            ExecutionStarted {
                execution_id: exec.into(),
                task_id: task.into(),
                started_at: 0,
            }
            .into(),
            StepRecorded {
                execution_id: exec.into(),
                task_id: task.into(),
                step,
            }
            .into(),
            ExecutionFinished {
                execution_id: exec.into(),
                task_id: task.into(),
                outcome: ExecutionOutcome::Success,
                error: String::new(),
            }
            .into(),
        ],
    )
}
