//! `replay`: what an auditor runs on a copy of an aggregator's data directory (or on one the
//! aggregator is not running on: fjall locks the directory).
//!
//! - `verify [--checkpoint FILE]`: the log's integrity (ULID order, hash chain, decoding,
//!   gapless streams), then every operator attestation (and the quorum it met) and report
//!   against the registrations the log holds (`attestations`); with a checkpoint kept, that the
//!   log is not shorter than it and its first events hash to its root (`transparency`);
//! - `prove --execution ID`, `check BUNDLE --log-key KEY [--operators FILE] [--quorum K]`,
//!   `consistency OLD NEW`: proof bundles and checkpoints (`transparency`, on `tlog`);
//! - `rebuild --into DIR`: a complete store rebuilt from the log alone (events copied, indexes
//!   and projections recomputed);
//! - `diff`: rebuild into a temporary directory and compare every derived keyspace with the live
//!   one, naming the first differing key;
//! - `timeline --task ID`: every event of a task and its executions, in order;
//! - `export --format jsonl [--from ULID] [--to ULID]`;
//! - `stats`: events per type, streams, size on disk.
//!
//! With `--nats URL --stream NAME`, `verify` and `export` read a replicated log's stream instead
//! of a data directory: its events are copied, exactly as stored, into a scratch database first
//! (`cluster::transfer::copy_into`, which checks what a keyspace cannot show: the stream's order),
//! and the same checks run on that copy.
//!
//! Commands write their report to the given writer and return whether the check passed, so the
//! end-to-end tests run them in-process exactly as the binary does.

pub mod attestations;
pub mod transparency;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use events::fjall::Database;
use events::{LogKeyspaces, Ulid};
use indicatif::{ProgressBar, ProgressStyle};
use projections::Projections;
use tlog::TileStore;

#[derive(Debug, Parser)]
#[command(name = "replay", version, about = "Audit an aggregator's event log")]
pub struct Cli {
    /// The aggregator's data directory (a copy, or one no aggregator is running on).
    #[arg(long, global = true, default_value = "./data", env = "REPLAY_DATA")]
    pub data: PathBuf,
    /// Threads for decoding while verifying (default: the number of cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Read a replicated log from NATS JetStream instead of a data directory (`verify`,
    /// `export`): the servers' URLs, comma-separated (e.g. nats://127.0.0.1:4222).
    #[arg(long, global = true, env = "REPLAY_NATS")]
    pub nats: Option<String>,
    /// The stream holding the log (with --nats).
    #[arg(
        long,
        global = true,
        default_value = "aggregator",
        env = "REPLAY_STREAM"
    )]
    pub stream: String,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check ULID order, the hash chain, decoding and stream sequences, then every operator
    /// attestation's aggregate signature, quorum and every report's signature; name the first
    /// bad event. With --checkpoint, also that the log is neither shorter than nor
    /// inconsistent with a checkpoint you kept.
    Verify {
        /// A checkpoint (signed note) kept from the aggregator's /checkpoint.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key (text or file, `aggregator log-key`): checks the checkpoint's
        /// signature too.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// Write the proof bundle of an execution (JSON) to stdout: its events, their inclusion
    /// proofs, the checkpoint they lead to, the operators' attestation.
    Prove {
        #[arg(long)]
        execution: String,
    },
    /// Check a proof bundle with nothing but the log's key and, for the operators' word, a
    /// file of operators you trust (the `operators.members` form). No data directory needed.
    Check {
        bundle: PathBuf,
        /// The log's verifier key (text or file).
        #[arg(long)]
        log_key: String,
        /// Operators (YAML or JSON: address, bls_public_key, proof_of_possession,
        /// ecdsa_binding, weight).
        #[arg(long)]
        operators: Option<PathBuf>,
        /// The least total weight of cosigners required (default: two thirds of the file's).
        #[arg(long)]
        quorum: Option<u64>,
    },
    /// Check that checkpoint OLD is a prefix of checkpoint NEW, with a consistency proof from
    /// this data directory's tree.
    Consistency {
        old: PathBuf,
        new: PathBuf,
        /// The log's verifier key (text or file): checks both signatures too.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// Rebuild a complete store (events, indexes, projections) from the log into an empty DIR.
    Rebuild {
        #[arg(long)]
        into: PathBuf,
        /// MiB of rows held in memory before they are written out (more: fewer, larger writes).
        #[arg(long, default_value_t = REBUILD_MEMORY_MIB)]
        memory: usize,
    },
    /// Rebuild the derived keyspaces from the log and compare them with the live ones.
    Diff {
        /// MiB of rows the rebuild holds in memory before it writes them out.
        #[arg(long, default_value_t = REBUILD_MEMORY_MIB)]
        memory: usize,
    },
    /// Every event of a task and of its executions, in order.
    Timeline {
        #[arg(long)]
        task: String,
    },
    /// Print events as JSON lines (with their hash), optionally within a ULID range (inclusive).
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Events per type, streams and size on disk.
    Stats,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
}

/// Runs one command. `Ok(false)` means the check ran and failed (exit code 1).
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<bool> {
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let copied = match &cli.nats {
        None => None,
        Some(urls) => {
            if !matches!(cli.command, Cmd::Verify { .. } | Cmd::Export { .. }) {
                bail!(
                    "--nats reads the stream for verify and export; for the other commands, copy it into a data directory first (`aggregator log export DIR`)"
                );
            }
            match copy_stream(urls, &cli.stream)? {
                Ok(copy) => Some(copy),
                Err(failure) => {
                    writeln!(out, "FAILED: {failure}")?;
                    return Ok(false);
                }
            }
        }
    };
    let data = copied.as_ref().map_or(cli.data.as_path(), |dir| dir.path());
    match &cli.command {
        Cmd::Verify {
            checkpoint,
            log_key,
        } => {
            let clean = verify(data, threads, out)?;
            let Some(checkpoint) = checkpoint else {
                return Ok(clean);
            };
            let (db, log) = open(data)?;
            let store = TileStore::open(&db)?;
            let kept = transparency::against_checkpoint(
                &log,
                // A stream's copy has no tree: it is computed from the events.
                copied.is_none().then_some(&store),
                checkpoint,
                log_key.as_deref(),
                out,
            )?;
            Ok(clean && kept)
        }
        Cmd::Prove { execution } => {
            let (db, log) = open(&cli.data)?;
            transparency::prove(&log, &TileStore::open(&db)?, execution, out)
        }
        Cmd::Check {
            bundle,
            log_key,
            operators,
            quorum,
        } => transparency::check(bundle, log_key, operators.as_deref(), *quorum, out),
        Cmd::Consistency { old, new, log_key } => {
            let (db, _) = open(&cli.data)?;
            transparency::consistency(&TileStore::open(&db)?, old, new, log_key.as_deref(), out)
        }
        Cmd::Rebuild { into, memory } => {
            let (_db, log) = open(&cli.data)?;
            rebuild(&log, into, memory * MIB, out)?;
            Ok(true)
        }
        Cmd::Diff { memory } => diff(&cli.data, memory * MIB, out),
        Cmd::Timeline { task } => timeline(&cli.data, task, out),
        Cmd::Export {
            format: _,
            from,
            to,
        } => export(data, from.as_deref(), to.as_deref(), out),
        Cmd::Stats => stats(&cli.data, out),
    }
}

/// The stream's events copied into a scratch data directory; `Err` inside: the stream is not a
/// log this tool can copy (out of order, undecodable, a message missing), said in words.
fn copy_stream(urls: &str, stream: &str) -> Result<std::result::Result<tempfile::TempDir, String>> {
    let settings = cluster::StreamSettings {
        urls: urls.split(',').map(|u| u.trim().to_owned()).collect(),
        stream: stream.to_owned(),
        replicas: 1,
    };
    let scratch = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let copied = runtime.block_on(async {
        let replicated = cluster::Replicated::attach(&settings).await?;
        let db = events::open_database(scratch.path())?;
        let log = LogKeyspaces::open(&db)?;
        let copied = cluster::transfer::copy_into(&replicated, &log).await?;
        db.persist(events::fjall::PersistMode::SyncAll)
            .map_err(events::Error::from)?;
        Ok::<_, cluster::Error>(copied)
    });
    match copied {
        Ok(_) => Ok(Ok(scratch)),
        Err(cluster::Error::Log(events::Error::Corrupt(what))) => Ok(Err(what)),
        Err(e) => Err(e.into()),
    }
}

fn open(data: &Path) -> Result<(Database, LogKeyspaces)> {
    if !data.join("keyspaces").exists() && !data.join("version").exists() {
        bail!("{} is not an aggregator data directory", data.display());
    }
    let db = events::open_database(data).with_context(|| {
        format!(
            "opening {} (is an aggregator running on it?)",
            data.display()
        )
    })?;
    let log = LogKeyspaces::open(&db)?;
    Ok((db, log))
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

/// What `replay verify` finds in a log: the log's integrity, and (when it holds) the
/// attestations' check.
pub type Verified = (
    std::result::Result<events::VerifyReport, events::VerifyFailure>,
    std::result::Result<attestations::Report, attestations::Failure>,
);

/// Verifies the log and every attestation in one pass over it: the events are decoded once, on
/// `threads` threads, and the attestation check reads the ones it needs as they are checked.
pub fn verify_log(
    log: &LogKeyspaces,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verified> {
    let mut check = attestations::Attestations::default();
    let outcome = events::verify_with(
        log,
        threads,
        progress,
        attestations::Attestations::wanted,
        |envelope| check.visit(&envelope),
    )?;
    Ok((outcome, check.finish()))
}

fn verify(data: &Path, threads: usize, out: &mut dyn Write) -> Result<bool> {
    let (_db, log) = open(data)?;
    let bar = progress(log.events.approximate_len() as u64, "verify");
    let started = std::time::Instant::now();
    let (outcome, attested) = verify_log(&log, threads, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    match outcome {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            writeln!(
                out,
                "ok: {} events in {} streams verified in {:.2} s ({:.0} events/s); head {}",
                report.events,
                report.streams,
                secs,
                report.events as f64 / secs.max(1e-9),
                report.head.map_or_else(
                    || "none".into(),
                    |(id, hash)| format!("{id} {}", hex(&hash))
                )
            )?;
            match attested {
                Ok(checked) => {
                    writeln!(
                        out,
                        "ok: {} operator attestations and {} reports verified against {} registrations; each attestation's quorum checked ({} v1 ones recorded none)",
                        checked.attestations,
                        checked.reports,
                        checked.registrations,
                        checked.without_quorum
                    )?;
                    Ok(true)
                }
                Err(failure) => {
                    writeln!(out, "FAILED: attestation check: {failure}")?;
                    Ok(false)
                }
            }
        }
        Err(failure) => {
            writeln!(out, "FAILED: the first bad event is {failure}")?;
            Ok(false)
        }
    }
}

const MIB: usize = 1024 * 1024;

/// The rebuild's default bound on rows in memory, in MiB.
const REBUILD_MEMORY_MIB: usize = projections::REBUILD_MEMORY / MIB;

/// Rebuilds everything derivable from `log` into the empty directory `into`, holding up to
/// `memory` bytes of rows at a time.
pub fn rebuild(log: &LogKeyspaces, into: &Path, memory: usize, out: &mut dyn Write) -> Result<()> {
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!("{} is not empty", into.display());
    }
    let target = events::open_database(into)?;
    let target_log = LogKeyspaces::open(&target)?;
    let total = log.events.approximate_len() as u64;

    let bar = progress(total, "copy events");
    let mut copied = 0u64;
    let mut ingestion = target_log.events.start_ingestion()?;
    for item in log.scan(None) {
        let (id, value) = item?;
        ingestion.write(id.to_bytes(), value)?;
        copied += 1;
        if copied.is_multiple_of(65_536) {
            bar.set_position(copied);
        }
    }
    ingestion.finish()?;
    bar.finish_and_clear();

    let bar = progress(total, "indexes");
    events::rebuild_indexes(&target_log, &target, &target_log, &|n| bar.set_position(n))?;
    bar.finish_and_clear();

    let bar = progress(total, "projections");
    let mut projections = Projections::open(&target)?.rebuild_memory(memory);
    projections.clear()?;
    projections.catch_up(&target_log, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    writeln!(out, "rebuilt {copied} events into {}", into.display())?;
    Ok(())
}

fn diff(data: &Path, memory: usize, out: &mut dyn Write) -> Result<bool> {
    let (db, log) = open(data)?;
    let scratch = tempfile::tempdir()?;
    let target = events::open_database(scratch.path())?;
    let target_log = LogKeyspaces::open(&target)?;
    let total = log.events.approximate_len() as u64;

    let bar = progress(total, "indexes");
    events::rebuild_indexes(&log, &target, &target_log, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    let bar = progress(total, "projections");
    let mut rebuilt = Projections::open(&target)?.rebuild_memory(memory);
    rebuilt.clear()?;
    rebuilt.catch_up(&log, &|n| bar.set_position(n))?;
    bar.finish_and_clear();

    let live = Projections::open(&db)?;
    let mut clean = true;
    let pairs = [
        ("streams", Some(&log.streams), Some(&target_log.streams)),
        (
            "idempotency",
            Some(&log.idempotency),
            Some(&target_log.idempotency),
        ),
    ]
    .into_iter()
    .chain(
        projections::KEYSPACES
            .iter()
            .map(|name| (*name, live.keyspace(name), rebuilt.keyspace(name))),
    );
    for (name, left, right) in pairs {
        let (Some(left), Some(right)) = (left, right) else {
            bail!("keyspace {name} is missing");
        };
        match events::first_difference(left, right)? {
            None => writeln!(out, "{name}: identical")?,
            Some(difference) => {
                clean = false;
                writeln!(out, "{name}: DIFFERS: {difference}")?;
            }
        }
    }
    Ok(clean)
}

fn timeline(data: &Path, task: &str, out: &mut dyn Write) -> Result<bool> {
    let (_db, log) = open(data)?;
    let all = log.task_timeline(task)?;
    if all.is_empty() {
        writeln!(out, "no events for task {task}")?;
        return Ok(false);
    }
    for e in all {
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.recorded_at),
        );
        let payload = serde_json::to_string(&payload_json(&e)?)?;
        let payload = if payload.len() > 300 {
            format!("{}…", payload.chars().take(300).collect::<String>())
        } else {
            payload
        };
        writeln!(
            out,
            "{at}  {}  {}#{}  {}  by {}  {payload}",
            e.id,
            e.stream,
            e.seq,
            e.event.type_name(),
            e.actor
        )?;
    }
    Ok(true)
}

/// The payload as JSON, from the stored bytes (after upcasting the typed event would re-encode
/// it; auditors see what is stored).
fn payload_json(e: &events::Envelope) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(EventJson(&e.event))?)
}

struct EventJson<'a>(&'a events::Event);

impl serde::Serialize for EventJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        events::event::serialize_payload(self.0, s)
    }
}

fn parse_ulid(text: Option<&str>, what: &str) -> Result<Option<Ulid>> {
    text.map(|t| Ulid::from_string(t).with_context(|| format!("--{what} {t:?} is not a ULID")))
        .transpose()
}

fn export(data: &Path, from: Option<&str>, to: Option<&str>, out: &mut dyn Write) -> Result<bool> {
    let (_db, log) = open(data)?;
    let from = parse_ulid(from, "from")?;
    let to = parse_ulid(to, "to")?;
    let mut out = std::io::BufWriter::new(out);
    for item in log.scan(from) {
        let (id, value) = item?;
        if to.is_some_and(|to| id > to) {
            break;
        }
        let (hash, body) =
            events::split_stored(&value).map_err(|e| anyhow::anyhow!("event {id}: {e}"))?;
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).with_context(|| format!("event {id} is not JSON"))?;
        object.insert("hash".into(), serde_json::Value::String(hex(&hash)));
        serde_json::to_writer(&mut out, &object)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(true)
}

fn stats(data: &Path, out: &mut dyn Write) -> Result<bool> {
    let (db, log) = open(data)?;
    let bar = progress(log.events.approximate_len() as u64, "stats");
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes = 0u64;
    let mut count = 0u64;
    for item in log.scan(None) {
        let (id, value) = item?;
        let header = events::decode_header_at(id, &value)?;
        *by_type.entry(header.event_type).or_default() += 1;
        bytes += value.len() as u64;
        count += 1;
        if count.is_multiple_of(65_536) {
            bar.set_position(count);
        }
    }
    bar.finish_and_clear();
    let mut streams = 0u64;
    for guard in log.streams.iter() {
        if guard.key()?.ends_with(&1u64.to_be_bytes()) {
            streams += 1;
        }
    }
    writeln!(
        out,
        "events: {count} ({bytes} bytes stored, {} bytes on average)",
        bytes.checked_div(count).unwrap_or(0)
    )?;
    writeln!(out, "streams: {streams}")?;
    writeln!(out, "size on disk: {} bytes", db.disk_space()?)?;
    writeln!(out, "events per type:")?;
    for (event_type, n) in by_type {
        writeln!(out, "  {event_type:<26} {n}")?;
    }
    Ok(true)
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
