//! `aggregator log export DIR` and `aggregator log import --from DIR`: the event log between a
//! replicated stream (`event_log.nats_urls`, `event_log.stream`) and a data directory.
//!
//! - Export writes a complete data directory from the stream: the events exactly as stored
//!   (`cluster::transfer::copy_into`), their indexes and the projections and tree computed from
//!   them as a store opening on them does, then verified as `replay verify` does. It is what a
//!   single-node aggregator runs on, and what the auditors' tools read.
//! - Import loads a single-node (fjall) log into an empty stream, so that a deployment can grow
//!   into a cluster: the log is verified whole first (nothing published can be taken back: the
//!   stream refuses deletes), then published in order, whole commands per message, each hash
//!   checked to chain as it goes. An interrupted import is run again as it was: the stream's
//!   events are checked to be the log's first ones, byte for byte, and it goes on after them
//!   (`cluster::transfer::import`).
//!   Replicas started on empty data directories on that stream then hold the same events.

use std::path::Path;

use anyhow::{Context, bail};
use events::{Durability, LogKeyspaces};

use crate::config::Config;
use crate::store::Store;

fn settings(config: &Config) -> anyhow::Result<cluster::StreamSettings> {
    if config.event_log.nats_urls.is_empty() {
        bail!(
            "event_log.nats_urls is empty: name the NATS servers of the stream (in the config file)"
        );
    }
    Ok(cluster::StreamSettings {
        urls: config.event_log.nats_urls.clone(),
        stream: config.event_log.stream.clone(),
        replicas: config.event_log.replicas,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What `export` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub events: u64,
    /// The stream's last sequence the copy holds.
    pub position: u64,
}

/// Writes the stream's log into `dir` (absent or empty) as a complete data directory. Fails,
/// naming the first bad event, when the copy does not verify (the copy stays, for a look).
pub fn export(config: &Config, dir: &Path) -> anyhow::Result<Exported> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: export into a new directory",
            dir.display()
        );
    }
    let settings = settings(config)?;
    // The store's own opening makes the directory private (0700, files 0600) before anything
    // is written; then the events go in beneath it.
    Store::open(dir, Durability::Sync)?.0.close()?;
    let db = events::open_database(dir)?;
    let log = LogKeyspaces::open(&db)?;
    let copied = runtime()?
        .block_on(async {
            let replicated = cluster::Replicated::attach(&settings).await?;
            cluster::transfer::copy_into(&replicated, &log).await
        })
        .with_context(|| format!("copying stream {}", settings.stream))?;
    events::rebuild_indexes(&log, &db, &log, &|_| {})?;
    drop((log, db));
    // Projections and the tree catch up from nothing, as on any store's first opening.
    let (store, _) = Store::open(dir, Durability::Sync)?;
    let verified = events::verify(store.log.keyspaces(), threads(), &|_| {})?;
    store.close()?;
    if let Err(failure) = verified {
        bail!(
            "the copy in {} does not verify: the first bad event is {failure}",
            dir.display()
        );
    }
    Ok(Exported {
        events: copied.events,
        position: copied.position,
    })
}

/// Loads the log of the data directory `from` (no aggregator may run on it) into the stream,
/// which must be empty or hold the start of that log (an interrupted import).
pub fn import(config: &Config, from: &Path) -> anyhow::Result<cluster::transfer::Imported> {
    let settings = settings(config)?;
    if !from.join("keyspaces").exists() {
        bail!("{} is not an aggregator data directory", from.display());
    }
    let db = events::open_database(from).with_context(|| {
        format!(
            "opening {} (is an aggregator running on it? stop it first)",
            from.display()
        )
    })?;
    let log = LogKeyspaces::open(&db)?;
    if log.head()?.is_none() {
        bail!("{} holds no events: nothing to import", from.display());
    }
    if let Err(failure) = events::verify(&log, threads(), &|_| {})? {
        bail!(
            "the log in {} does not verify, nothing was imported: the first bad event is {failure}",
            from.display()
        );
    }
    runtime()?
        .block_on(async {
            let replicated = cluster::Replicated::connect(&settings).await?;
            cluster::transfer::import(&replicated, &log, &|n| {
                tracing::debug!(events = n, "imported");
            })
            .await
        })
        .with_context(|| format!("importing into stream {}", settings.stream))
}
