//! The read side: views folded from the event log.
//!
//! Layout:
//! - `Projection`: one view, a pure function of the events (no config, no keys, no clock, no
//!   chain), in a keyspace of its own;
//! - `tasks`, `executions`, `wallets`, `secrets`, `access`, `operators`, `activity`: the views, one
//!   module each, with their key layouts and read functions;
//! - `Projections`: the set, hooked into the log's writer so that the events, the rows they change
//!   and the checkpoint commit in one batch; catch-up on start-up and rebuild from the log;
//! - `Views`: the read handle the RPC layer and the engine use; it owns the key layouts (callers
//!   ask for rows and lists by meaning, never scan keys), and opens its keyspaces by name.
//!
//! Checkpoints and schema versions live in the `projection_meta` keyspace: a projection whose
//! schema version changed is cleared and rebuilt on start-up (the migration mechanism).

pub mod access;
pub mod activity;
pub mod executions;
pub mod operators;
mod rebuild;
pub mod secrets;
pub mod tasks;
#[cfg(test)]
mod tests;
mod views;
pub mod wallets;

use events::fjall::{Database, Keyspace};
use events::{Envelope, LogKeyspaces, Projector, Tx, Ulid};
use serde::{Deserialize, Serialize};

pub use views::{PendingExecution, Views};

/// One view of the log.
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;
    /// Bumped when the rows' layout or meaning changes: the view is then rebuilt from the log.
    fn schema_version(&self) -> u32;
    fn keyspace(&self) -> &Keyspace;
    /// Folds one event. Holds no rule and cannot fail but on storage errors or corrupt rows.
    fn apply(&self, envelope: &Envelope, tx: &mut Tx) -> events::Result<()>;
}

/// Where a projection stands, in `projection_meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    version: u32,
    checkpoint: Ulid,
}

/// Events applied per batch during catch-up and rebuild.
const CATCH_UP_BATCH: usize = 50_000;

/// Bytes of rows kept in memory during catch-up and rebuild, unless set otherwise
/// (`Projections::rebuild_memory`).
pub const REBUILD_MEMORY: usize = 1024 * 1024 * 1024;

/// The names of the projections' keyspaces, in the order of `Projections::all`.
pub const KEYSPACES: &[&str] = &[
    tasks::NAME,
    executions::NAME,
    wallets::NAME,
    secrets::NAME,
    access::NAME,
    operators::NAME,
    activity::NAME,
];

/// Events in the log after the projections' oldest checkpoint (0 when they are up to date, which
/// they are whenever the writer runs: rows commit with their events).
pub fn lag(db: &Database, log: &LogKeyspaces) -> events::Result<u64> {
    let meta = db.keyspace("projection_meta", events::keyspace_options)?;
    let mut oldest: Option<Ulid> = None;
    for name in KEYSPACES {
        let checkpoint = match meta.get(name)? {
            Some(v) => {
                serde_json::from_slice::<Meta>(&v)
                    .map_err(|e| corrupt(name, &e))?
                    .checkpoint
            }
            None => Ulid::nil(),
        };
        oldest = Some(oldest.map_or(checkpoint, |o| o.min(checkpoint)));
    }
    let from = oldest.unwrap_or_else(Ulid::nil);
    let mut lag = 0u64;
    for item in log.scan(Some(from)) {
        let (id, _) = item?;
        if id > from {
            lag += 1;
        }
    }
    Ok(lag)
}

/// Every projection of the system, applied together.
pub struct Projections {
    db: Database,
    /// The read handle (its keyspaces are the projections').
    views: Views,
    meta: Keyspace,
    all: Vec<Box<dyn Projection>>,
    /// Last applied event per projection (same order as `all`).
    checkpoints: Vec<Ulid>,
    /// Bytes of rows a catch-up keeps in memory.
    rebuild_memory: usize,
    /// Events a catch-up applies between writes (and, in a rebuild, between spills).
    catch_up_batch: usize,
}

/// What start-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Projections cleared because their schema version changed (or that were new).
    pub rebuilt: Vec<&'static str>,
    /// Events applied.
    pub applied: u64,
    /// Times a rebuild from scratch wrote out the rows it held, before the end.
    pub spills: u32,
}

impl Projections {
    /// Opens the projections' keyspaces in `db`, by name.
    pub fn open(db: &Database) -> events::Result<Self> {
        let views = Views::open(db)?;
        let all: Vec<Box<dyn Projection>> = vec![
            Box::new(tasks::Tasks::new(views.tasks.clone())),
            Box::new(executions::Executions::new(views.executions.clone())),
            Box::new(wallets::Wallets::new(views.wallets.clone())),
            Box::new(secrets::Secrets::new(views.secrets.clone())),
            Box::new(access::Access::new(views.access.clone())),
            Box::new(operators::Operators::new(views.operators.clone())),
            Box::new(activity::Activity::new(views.activity.clone())),
        ];
        let meta = db.keyspace("projection_meta", events::keyspace_options)?;
        let checkpoints = vec![Ulid::nil(); all.len()];
        Ok(Self {
            db: db.clone(),
            views,
            meta,
            all,
            checkpoints,
            rebuild_memory: REBUILD_MEMORY,
            catch_up_batch: CATCH_UP_BATCH,
        })
    }

    /// Sets the bytes of rows a catch-up keeps in memory (at least 1 MiB): past them a rebuild
    /// writes what it gathered and goes on.
    pub fn rebuild_memory(mut self, bytes: usize) -> Self {
        self.rebuild_memory = bytes.max(1 << 20);
        self
    }

    /// The read handle on these projections.
    pub fn views(&self) -> Views {
        self.views.clone()
    }

    pub fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        self.all
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.keyspace())
    }

    /// Brings every projection up to date with the log in `source` (which may live in another
    /// database: `replay rebuild` reads one and writes the other). A projection whose stored
    /// schema version differs from the code's is cleared first and rebuilt from the start.
    pub fn catch_up(
        &mut self,
        source: &LogKeyspaces,
        progress: &dyn Fn(u64),
    ) -> events::Result<CatchUp> {
        let mut outcome = CatchUp::default();
        for (i, projection) in self.all.iter().enumerate() {
            let stored = self.meta.get(projection.name())?;
            let meta: Option<Meta> = stored
                .map(|v| serde_json::from_slice(&v))
                .transpose()
                .map_err(|e| corrupt(projection.name(), &e))?;
            match meta {
                Some(meta) if meta.version == projection.schema_version() => {
                    if let Some(slot) = self.checkpoints.get_mut(i) {
                        *slot = meta.checkpoint;
                    }
                }
                _ => {
                    if meta.is_some() || !projection.keyspace().is_empty()? {
                        tracing::info!(
                            projection = projection.name(),
                            "schema version changed: rebuilding from the log"
                        );
                        projection.keyspace().clear()?;
                    }
                    outcome.rebuilt.push(projection.name());
                    if let Some(slot) = self.checkpoints.get_mut(i) {
                        *slot = Ulid::nil();
                    }
                }
            }
        }
        let from = self
            .checkpoints
            .iter()
            .min()
            .copied()
            .unwrap_or_else(Ulid::nil);
        // Rebuilding everything from scratch: rows gather in memory (none is read from fjall
        // before a spill) and are ingested sorted, the projections on two threads (`rebuild`).
        // Checkpoints are written once at the end, after the rows: a rebuild interrupted before
        // leaves no checkpoint, so it starts again.
        let bulk = self.checkpoints.iter().all(Ulid::is_nil);
        let memory = self.rebuild_memory;
        let mut tx = if from.is_nil() {
            Tx::complete(memory)
        } else {
            Tx::with_cache(memory)
        };
        let mut last = None;
        if bulk {
            let rebuilt = rebuild::rebuild(
                &self.all,
                &self.db,
                source,
                memory,
                self.catch_up_batch,
                progress,
            )?;
            last = rebuilt.last;
            outcome.applied = rebuilt.applied;
            outcome.spills = rebuilt.spills;
            // The ingested tables are on disk before the checkpoints that vouch for them.
            self.db.persist(events::fjall::PersistMode::SyncAll)?;
        } else {
            let mut in_batch = 0usize;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let after = (!from.is_nil()).then_some(from);
            events::for_each_decoded(source, after, threads, |envelope| {
                let id = envelope.id;
                for (projection, checkpoint) in self.all.iter().zip(&self.checkpoints) {
                    if id > *checkpoint {
                        projection.apply(&envelope, &mut tx)?;
                    }
                }
                last = Some(id);
                in_batch += 1;
                outcome.applied += 1;
                if in_batch >= self.catch_up_batch {
                    self.flush(&mut tx, id)?;
                    in_batch = 0;
                    progress(outcome.applied);
                }
                Ok(())
            })?;
        }
        match last {
            Some(id) => self.flush(&mut tx, id)?,
            None => {
                // Nothing to apply: still record versions so a fresh store is not "rebuilt" again.
                let head = source.head()?.map_or(Ulid::nil(), |(id, _)| id);
                let checkpoints = self.checkpoints.clone();
                for (projection, checkpoint) in self.all.iter().zip(checkpoints) {
                    self.write_meta(&mut tx, projection.as_ref(), checkpoint.max(head))?;
                }
                let mut batch = self.db.batch();
                tx.drain_into(&mut batch)?;
                batch.commit()?;
            }
        }
        self.db.persist(events::fjall::PersistMode::SyncAll)?;
        progress(outcome.applied);
        Ok(outcome)
    }

    fn flush(&mut self, tx: &mut Tx, last: Ulid) -> events::Result<()> {
        self.checkpoint(last, tx)?;
        let mut batch = self.db.batch();
        tx.drain_into(&mut batch)?;
        batch.commit()?;
        Ok(())
    }

    fn write_meta(
        &self,
        tx: &mut Tx,
        projection: &dyn Projection,
        checkpoint: Ulid,
    ) -> events::Result<()> {
        let meta = Meta {
            version: projection.schema_version(),
            checkpoint,
        };
        put_json(
            tx,
            &self.meta,
            projection.name().as_bytes().to_vec(),
            &meta,
            "projection_meta",
        )
    }

    /// Clears every projection and its checkpoint (before a rebuild into a fresh database).
    pub fn clear(&mut self) -> events::Result<()> {
        for projection in &self.all {
            projection.keyspace().clear()?;
            self.meta.remove(projection.name())?;
        }
        self.checkpoints.iter_mut().for_each(|c| *c = Ulid::nil());
        Ok(())
    }
}

impl Projector for Projections {
    fn apply(&mut self, envelope: &Envelope, tx: &mut Tx) -> events::Result<()> {
        for projection in &self.all {
            projection.apply(envelope, tx)?;
        }
        Ok(())
    }

    /// A projection already past `last` (during a catch-up where another one is rebuilt) keeps
    /// its own checkpoint: it must not apply those events twice.
    fn checkpoint(&mut self, last: Ulid, tx: &mut Tx) -> events::Result<()> {
        for (projection, checkpoint) in self.all.iter().zip(self.checkpoints.iter_mut()) {
            *checkpoint = (*checkpoint).max(last);
            let meta = Meta {
                version: projection.schema_version(),
                checkpoint: *checkpoint,
            };
            put_json(
                tx,
                &self.meta,
                projection.name().as_bytes().to_vec(),
                &meta,
                "projection_meta",
            )?;
        }
        Ok(())
    }

    /// A deposed writer's staged checkpoints did not land: read them again.
    fn reset(&mut self) -> events::Result<()> {
        for (projection, checkpoint) in self.all.iter().zip(self.checkpoints.iter_mut()) {
            let stored = self.meta.get(projection.name())?;
            let meta: Option<Meta> = stored
                .map(|v| serde_json::from_slice(&v))
                .transpose()
                .map_err(|e| corrupt(projection.name(), &e))?;
            *checkpoint = meta.map_or(Ulid::nil(), |m| m.checkpoint);
        }
        Ok(())
    }
}

fn corrupt(projection: &str, e: &dyn std::fmt::Display) -> events::Error {
    events::Error::Projection {
        projection: projection.to_owned(),
        message: format!("corrupt row: {e}"),
    }
}

/// Reads a JSON row through the staged writes.
pub(crate) fn get_json<T: for<'de> Deserialize<'de>>(
    tx: &mut Tx,
    keyspace: &Keyspace,
    key: &[u8],
    projection: &str,
) -> events::Result<Option<T>> {
    tx.get(keyspace, key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| corrupt(projection, &e)))
        .transpose()
}

/// Reads a typed row (see `JsonRow`) through the staged writes: decoded once, then kept decoded
/// in `Tx` between the events that change it.
pub(crate) fn get_row<T: JsonRow>(
    tx: &mut Tx,
    keyspace: &Keyspace,
    key: &[u8],
) -> events::Result<Option<T>> {
    tx.get_row(keyspace, key, |bytes| {
        serde_json::from_slice(bytes).map_err(|e| corrupt(T::PROJECTION, &e))
    })
}

/// Stages a typed row, JSON-encoded when it is written (the same bytes `put_json` writes).
pub(crate) fn put_row<T: JsonRow>(tx: &mut Tx, keyspace: &Keyspace, key: Vec<u8>, row: T) {
    tx.put_row(keyspace, key, row);
}

/// A row kept decoded between events and written as its JSON. Only for rows of a fixed shape
/// (strings, numbers, enums, lists of strings): their depth is bounded by their type, so the
/// depth check `put_json` makes cannot refuse them, and their encoding cannot fail.
pub(crate) trait JsonRow:
    events::TypedRow + Serialize + for<'de> Deserialize<'de> + Clone
{
    /// The projection whose row it is (for error messages).
    const PROJECTION: &'static str;
    /// About how many bytes it holds (strings and the struct).
    fn footprint(&self) -> usize;
}

/// Every `JsonRow` is a `Tx` typed row.
macro_rules! json_rows {
    ($($row:ty),* $(,)?) => {$(
        impl events::TypedRow for $row {
            fn encode(&self) -> events::Result<Vec<u8>> {
                serde_json::to_vec(self).map_err(|e| corrupt(<$row as JsonRow>::PROJECTION, &e))
            }
            fn footprint(&self) -> usize {
                JsonRow::footprint(self)
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    )*};
}

json_rows!(tasks::TaskRow, executions::Head, executions::DayStats);

pub(crate) fn put_json<T: Serialize>(
    tx: &mut Tx,
    keyspace: &Keyspace,
    key: Vec<u8>,
    row: &T,
    projection: &str,
) -> events::Result<()> {
    let bytes = serde_json::to_vec(row).map_err(|e| corrupt(projection, &e))?;
    // A row this deep could not be read back by the next event of its stream: refuse it (the
    // command carrying the event is rejected) rather than write what no reader can read.
    let depth = events::bounds::json_depth(&bytes);
    if depth > events::bounds::READABLE_DEPTH {
        return Err(events::Error::Projection {
            projection: projection.to_owned(),
            message: format!(
                "a row would nest {depth} levels deep, more than readers parse ({})",
                events::bounds::READABLE_DEPTH
            ),
        });
    }
    tx.insert(keyspace, key, bytes);
    Ok(())
}
