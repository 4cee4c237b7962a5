//! The store: one fjall database holding the event log and the projections, opened in the order
//! that keeps them consistent (projections catch up with the log before the writer starts).

use std::path::Path;

use events::{Durability, Log, LogKeyspaces, LogOptions};
use projections::{CatchUp, Projections, Views};

/// The write handle (`log`) and the read handle (`views`).
#[derive(Clone)]
pub struct Store {
    pub log: Log,
    pub views: Views,
    db: events::fjall::Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, bringing every projection up to date with the log
    /// (rebuilding those whose schema version changed).
    pub fn open(dir: &Path, durability: Durability) -> events::Result<(Self, CatchUp)> {
        Self::open_with(
            dir,
            LogOptions {
                durability,
                ..LogOptions::default()
            },
        )
    }

    /// `open` with every option of the log (the aggregator sets the largest event from
    /// `limits.max_event_bytes`).
    pub fn open_with(dir: &Path, options: LogOptions) -> events::Result<(Self, CatchUp)> {
        std::fs::create_dir_all(dir).map_err(|e| events::Error::Storage(e.into()))?;
        let db = events::open_database(dir)?;
        let mut projections = Projections::open(&db)?;
        let catch_up = projections.catch_up(&LogKeyspaces::open(&db)?, &|_| {})?;
        let views = projections.views();
        let log = Log::open(&db, options, Box::new(projections))?;
        Ok((Self { log, views, db }, catch_up))
    }

    /// Finishes queued commands, stops the writer and flushes everything to disk.
    pub fn close(&self) -> events::Result<()> {
        self.log.shutdown();
        self.db.persist(events::fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Events not yet folded into every projection (0 in steady state).
    pub fn projection_lag(&self) -> events::Result<u64> {
        projections::lag(&self.db, self.log.keyspaces())
    }

    /// Bytes on disk, for telemetry.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}
