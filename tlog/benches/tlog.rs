//! Benchmark of the transparency log, each figure beside a baseline measured in the same run.
//!
//! (a) inclusion and consistency proofs made from the stored tiles (fjall) of a tree of
//!     `BENCH_LEAVES` leaves (default 1 000 000), against a raw read and the root of a full tile
//!     per level (the most a proof reads and hashes);
//! (b) inclusion and consistency proofs checked, against the bare SHA-256 compressions they need;
//! (c) leaves appended to the tree in memory, against the SHA-256 of each leaf alone;
//! (d) start-up on a log of `BENCH_EVENTS` events (default 200 000; the report's figure is 10 M):
//!     loading the tree from its tiles, against rehashing the whole log (what start-up would cost
//!     without persisted tiles).
//!
//! (e) durable appends (fsync'd group commits, the aggregator's projections) with the tree and a
//!     checkpoint signed every second, against the same without them, 1 and 16 writers (target:
//!     at most 10 % slower): `BENCH_ROUNDS` (default 3) samples of each, interleaved, medians.
//!
//! `cargo bench -p tlog`; `BENCH_SECONDS` sets each rate measurement's length (default 2);
//! `BENCH_ONLY=proofs`, `appends` or `startup` runs only (a-c), (e) or (d).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::time::{Duration, Instant};

use events::event::WalletRegistered;
use events::{Command, Expected, Log, LogOptions, Projector, Tx, Ulid};
use sha2::{Digest, Sha256};
use tlog::tree::Appender;
use tlog::{Hash, TileStore, Tree, proof};

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
    baseline_is: &'static str,
}

/// Runs `f` repeatedly for about `d`, returns calls per second.
fn rate(d: Duration, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..64 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// A cheap deterministic spread of indexes.
fn pick(n: u64, size: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % size
}

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &events::Envelope, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
}

fn main() {
    let seconds = Duration::from_secs(env_u64("BENCH_SECONDS", 2));
    let leaves = env_u64("BENCH_LEAVES", 1_000_000);
    let events_n = env_u64("BENCH_EVENTS", 200_000);
    let mut rows = Vec::new();

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut sink = 0u8;
    if only.is_empty() || only == "proofs" {
        proofs(leaves, seconds, &mut rows, &mut sink);
    }

    if only.is_empty() || only == "appends" {
        // (e) appends with the tree and checkpoints on, and off: samples interleaved (the order
        // alternating between rounds), so that both see the same machine; the medians compared.
        let rounds = env_u64("BENCH_ROUNDS", 3).max(1) as usize;
        for writers in [1usize, 16] {
            let (mut offs, mut ons) = (Vec::new(), Vec::new());
            // Each sample's data directory is removed only after the last sample: removing one
            // (hundreds of MB) while the next runs would slow that one down.
            let mut dirs = Vec::new();
            for round in 0..rounds {
                for tree in [round % 2 == 1, round % 2 == 0] {
                    let (r, dir) = append_rate(tree, writers, seconds);
                    dirs.push(dir);
                    if tree {
                        ons.push(r);
                    } else {
                        offs.push(r);
                    }
                }
            }
            drop(dirs);
            let ratios: Vec<f64> = ons.iter().zip(&offs).map(|(on, off)| on / off).collect();
            eprintln!(
                "{writers} writer(s): off {offs:.0?}, on {ons:.0?}, on/off per round {ratios:.3?}"
            );
            rows.push(Row {
                what: format!("durable appends, {writers} writer(s), tree + checkpoints"),
                ours: median(&mut ons),
                baseline: median(&mut offs),
                unit: "commands/s",
                baseline_is: "the same without the tree, interleaved; medians (target >= 0.90x)",
            });
        }
    }

    if only.is_empty() || only == "startup" {
        // (d) start-up on a large log.
        let (ours, baseline) = startup(events_n);
        rows.push(Row {
            what: format!("start-up: the tree of {events_n} events"),
            ours,
            baseline,
            unit: "ms",
            baseline_is: "rehashing the whole log",
        });
    }

    println!();
    println!(
        "{:<48} {:>14} {:>14} {:>8}  baseline",
        "measure", "ours", "baseline", "ratio"
    );
    for r in &rows {
        let digits = if r.unit == "ms" { 2 } else { 0 };
        println!(
            "{:<48} {:>14.digits$} {:>14.digits$} {:>7.2}x  {} ({})",
            r.what,
            r.ours,
            r.baseline,
            r.ours / r.baseline.max(1e-9),
            r.baseline_is,
            r.unit
        );
    }
    println!("(sink {sink})");
}

/// Writes `n` events through the log's writer (their tree caught up), then measures opening the
/// tree from its tiles against rebuilding it from the log. Returns both in milliseconds.
fn startup(n: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = events::open_database(dir.path()).unwrap();
        let log = Log::open(
            &db,
            LogOptions {
                durability: events::Durability::Relaxed,
                ..LogOptions::default()
            },
            Box::new(NoProjections),
        )
        .unwrap();
        let started = Instant::now();
        let per_command = 500u64;
        for c in 0..n.div_ceil(per_command) {
            let events: Vec<events::Event> = (0..per_command.min(n - c * per_command))
                .map(|i| {
                    WalletRegistered {
                        owner: events::samples::OWNER.into(),
                        address: format!("0x{:040x}", c * per_command + i),
                        salt: i.to_string(),
                        factory: "0x9406cc6185a346906296840746125a0e44976454".into(),
                    }
                    .into()
                })
                .collect();
            log.append_blocking(Command::new("system", 1_764_000_000_000).append(
                format!("bench:{c}"),
                Expected::NoStream,
                events,
            ))
            .unwrap();
        }
        eprintln!(
            "wrote {n} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let store = TileStore::open(&db).unwrap();
        let started = Instant::now();
        tlog::follow::catch_up(&db, log.keyspaces(), &store, &|_| {}).unwrap();
        eprintln!("built the tree in {:.1} s", started.elapsed().as_secs_f64());
        log.shutdown();
        db.persist(events::fjall::PersistMode::SyncAll).unwrap();
    }
    let db = events::open_database(dir.path()).unwrap();
    let store = TileStore::open(&db).unwrap();
    let started = Instant::now();
    let appender = Appender::open(&store).unwrap();
    let root = appender.tree().root().unwrap();
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(appender.tree().size(), n);

    let log = events::LogKeyspaces::open(&db).unwrap();
    let started = Instant::now();
    let mut rebuilt = Appender::empty();
    for item in log.scan(None) {
        let (id, value) = item.unwrap();
        tlog::follow::push_stored(&mut rebuilt, id, &value).unwrap();
    }
    let rebuilt_root = rebuilt.tree().root().unwrap();
    let rehash_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(root, rebuilt_root);
    (load_ms, rehash_ms)
}

/// Commands per second through the log's writer with the aggregator's projections, fsync'd;
/// with `tree`, the Merkle tree in the writer and a checkpoint signed every second. Returns the
/// data directory with the rate, for the caller to remove.
fn append_rate(tree: bool, writers: usize, d: Duration) -> (f64, tempfile::TempDir) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let mut projections = projections::Projections::open(&db).unwrap();
    let keyspaces = events::LogKeyspaces::open(&db).unwrap();
    projections.catch_up(&keyspaces, &|_| {}).unwrap();
    let store = TileStore::open(&db).unwrap();
    let projector: Box<dyn Projector> = if tree {
        let appender = tlog::follow::catch_up(&db, &keyspaces, &store, &|_| {}).unwrap();
        Box::new(tlog::follow::WithTree::new(projections, appender, &store))
    } else {
        Box::new(projections)
    };
    let log = Log::open(&db, LogOptions::default(), projector).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let issuer = tree.then(|| {
        let issuer = tlog::issue::Issuer::new(
            db.clone(),
            store.clone(),
            tlog::LogKey::generate("bench.test/log").unwrap(),
        );
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                issuer.issue().unwrap();
            }
        })
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            let stop = stop.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let task_id = format!("01BENCH{w:04}{i:015}");
                    let event = events::event::TaskCreated {
                        task_id: task_id.clone(),
                        owner: events::samples::OWNER.into(),
                        wallet: events::samples::WALLET.into(),
                        definition: events::samples::definition(),
                    };
                    log.append_blocking(
                        Command::new(events::samples::OWNER, 1_764_000_000_000).append(
                            events::stream::task(&task_id),
                            Expected::NoStream,
                            [event.into()],
                        ),
                    )
                    .unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(d);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    if let Some(issuer) = issuer {
        issuer.join().unwrap();
    }
    log.shutdown();
    (rate, dir)
}

/// (a), (b), (c): a tree of `leaves` leaves appended in memory and stored as tiles, proofs made
/// from them and checked.
fn proofs(leaves: u64, seconds: Duration, rows: &mut Vec<Row>, sink: &mut u8) {
    // (c) appends in memory, and a tile store to prove from.
    let dir = tempfile::tempdir().unwrap();
    let db = events::open_database(dir.path()).unwrap();
    let store = TileStore::open(&db).unwrap();
    let leaf_hashes: Vec<Hash> = (0..leaves)
        .map(|i| tlog::leaf_hash(&i.to_le_bytes()))
        .collect();
    let started = Instant::now();
    let mut tree = Tree::new();
    let mut batch = db.batch();
    for (i, h) in leaf_hashes.iter().enumerate() {
        tree.push(*h);
        if i % 1024 == 1023 {
            for (id, data) in tree.take_tiles() {
                batch.insert(store.keyspace(), tlog::store::tile_key(id), data);
            }
        }
    }
    let tree_rate = leaves as f64 / started.elapsed().as_secs_f64();
    for (id, data) in tree.take_tiles() {
        batch.insert(store.keyspace(), tlog::store::tile_key(id), data);
    }
    batch.commit().unwrap();
    let started = Instant::now();
    for i in 0..leaves {
        *sink ^= tlog::leaf_hash(&i.to_le_bytes()).0[0];
    }
    let hash_rate = leaves as f64 / started.elapsed().as_secs_f64();
    rows.push(Row {
        what: format!("tree appends in memory ({leaves} leaves)"),
        ours: tree_rate,
        baseline: hash_rate,
        unit: "leaves/s",
        baseline_is: "leaf hashes alone",
    });

    // (a) proofs from stored tiles.
    let root = tree.root().unwrap();
    let inclusion = rate(seconds, |n| {
        let p = proof::inclusion(&store, leaves, pick(n, leaves)).unwrap();
        *sink ^= p.len() as u8;
    });
    // What making a proof from tiles costs at most, done bare: per level, a raw fjall read of a
    // tile and the root of a full tile (255 node hashes; the hashes between tile levels are
    // recomputed from the tile below, as in Go's sumdb).
    let levels = (64 - u64::from(leaves.leading_zeros())).div_ceil(8);
    let reads = rate(seconds, |n| {
        for k in 0..levels {
            let id = tlog::TileId::new(0, pick(n * 7 + k, leaves >> 8));
            let tile = store
                .keyspace()
                .get(tlog::store::tile_key(id))
                .unwrap()
                .unwrap();
            *sink ^= tlog_tiles::Tile::subtree_hash(&tile).0[0];
        }
    });
    rows.push(Row {
        what: "inclusion proofs made from fjall tiles".into(),
        ours: inclusion,
        baseline: reads,
        unit: "proofs/s",
        baseline_is: "a raw read and a tile root per level",
    });
    let consistency = rate(seconds, |n| {
        let old = pick(n, leaves - 1) + 1;
        let p = proof::consistency(&store, old, leaves).unwrap();
        *sink ^= p.len() as u8;
    });
    rows.push(Row {
        what: "consistency proofs made from fjall tiles".into(),
        ours: consistency,
        baseline: reads,
        unit: "proofs/s",
        baseline_is: "a raw read and a tile root per level",
    });

    // (b) checking proofs.
    let samples: Vec<(u64, Vec<Hash>)> = (0..256)
        .map(|n| {
            let i = pick(n, leaves);
            (i, proof::inclusion(&store, leaves, i).unwrap())
        })
        .collect();
    let checks = rate(seconds, |n| {
        let (i, p) = &samples[(n % 256) as usize];
        proof::verify_inclusion(p, leaves, root, *i, leaf_hashes[*i as usize]).unwrap();
    });
    let path_len = samples.iter().map(|(_, p)| p.len()).sum::<usize>() / samples.len();
    let bare = rate(seconds, |n| {
        let mut h = [n as u8; 32];
        for _ in 0..path_len {
            h = Sha256::new()
                .chain_update([1u8])
                .chain_update(h)
                .chain_update(h)
                .finalize()
                .into();
        }
        *sink ^= h[0];
    });
    rows.push(Row {
        what: format!("inclusion proofs checked ({path_len} hashes)"),
        ours: checks,
        baseline: bare,
        unit: "proofs/s",
        baseline_is: "the node hashes alone",
    });
    let old_sizes: Vec<(u64, Hash, Vec<Hash>)> = (0..64)
        .map(|n| {
            let old = pick(n, leaves - 1) + 1;
            (
                old,
                proof::root(&store, old).unwrap(),
                proof::consistency(&store, old, leaves).unwrap(),
            )
        })
        .collect();
    let consistency_checks = rate(seconds, |n| {
        let (old, old_root, p) = &old_sizes[(n % 64) as usize];
        proof::verify_consistency(p, *old, *old_root, leaves, root).unwrap();
    });
    rows.push(Row {
        what: "consistency proofs checked".into(),
        ours: consistency_checks,
        baseline: bare / 2.0,
        unit: "proofs/s",
        baseline_is: "2x the node hashes of a path",
    });
}
