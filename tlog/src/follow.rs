//! Following the log: the tree derived in log order, like a projection.
//!
//! - `WithTree` wraps the log's projector: the log's writer hands it each event of a command that
//!   staged whole (`Projector::staged`, with the stored bytes), and the changed tiles, position
//!   marks and head join the group's batch with the events (`Projector::checkpoint`). So the
//!   tree on disk always matches the events on disk, and every replica that replays the log
//!   derives the same tree.
//! - `catch_up` brings the stored tree up to the log's head before the writer starts: none to do
//!   normally; on a data directory that predates the tree, the whole tree once. A tree whose last
//!   event the log no longer holds means the log lost events (a cut journal): that is reported,
//!   never papered over.

use events::fjall::{Database, Keyspace};
use events::{Envelope, LogKeyspaces, Projector, Tx, Ulid};

use crate::error::{Error, Result};
use crate::store::TileStore;
use crate::tree::Appender;

/// Events per batch while catching up.
const BATCH: u64 = 65_536;

/// Appends to the stored tree every event of `log` after the tree's head, committing every
/// `BATCH` events, and returns the appender at the log's head. `progress` gets the number of
/// events appended so far, now and then.
pub fn catch_up(
    db: &Database,
    log: &LogKeyspaces,
    store: &TileStore,
    progress: &dyn Fn(u64),
) -> Result<Appender> {
    let mut appender = Appender::open(store)?;
    let after = appender.last();
    if let Some(last) = after
        && log.events.get(last.to_bytes())?.is_none()
    {
        return Err(Error::Tree(format!(
            "the tree's last leaf ({} leaves) is event {last}, which the log no longer holds: events were removed from the log",
            appender.tree().size()
        )));
    }
    let mut appended = 0u64;
    for item in log.scan(after) {
        let (id, value) = item?;
        if after.is_some_and(|a| id <= a) {
            continue;
        }
        push_stored(&mut appender, id, &value)?;
        appended += 1;
        if appended.is_multiple_of(BATCH) {
            commit(db, store, &mut appender)?;
            progress(appended);
        }
    }
    commit(db, store, &mut appender)?;
    progress(appended);
    Ok(appender)
}

/// Appends one stored event (hash ‖ body) to the tree.
pub fn push_stored(appender: &mut Appender, id: Ulid, value: &[u8]) -> Result<()> {
    let (_, body) = events::split_stored(value).map_err(|source| events::Error::Decode {
        id: id.to_string(),
        source,
    })?;
    appender.push(id, body);
    Ok(())
}

fn commit(db: &Database, store: &TileStore, appender: &mut Appender) -> Result<()> {
    let mut batch = db.batch();
    let keyspace = store.keyspace();
    let mut removed = Vec::new();
    appender.drain(
        |key, value| batch.insert(keyspace, key, value),
        |key| removed.push(key),
    );
    for key in removed {
        batch.remove(keyspace, key);
    }
    if !batch.is_empty() {
        batch.commit()?;
    }
    Ok(())
}

/// The log's projector with the tree alongside.
pub struct WithTree<P> {
    inner: P,
    appender: Appender,
    keyspace: Keyspace,
}

impl<P: Projector> WithTree<P> {
    /// `appender` must be at the log's head (see `catch_up`).
    pub fn new(inner: P, appender: Appender, store: &TileStore) -> Self {
        Self {
            inner,
            appender,
            keyspace: store.keyspace().clone(),
        }
    }
}

impl<P: Projector> Projector for WithTree<P> {
    fn apply(&mut self, envelope: &Envelope, tx: &mut Tx) -> events::Result<()> {
        self.inner.apply(envelope, tx)
    }

    fn checkpoint(&mut self, last: Ulid, tx: &mut Tx) -> events::Result<()> {
        self.inner.checkpoint(last, tx)?;
        let mut removed = Vec::new();
        let keyspace = &self.keyspace;
        self.appender.drain(
            |key, value| tx.insert(keyspace, key, value),
            |key| removed.push(key),
        );
        for key in removed {
            tx.remove(keyspace, key);
        }
        Ok(())
    }

    fn staged(&mut self, id: Ulid, stored: &[u8]) {
        self.inner.staged(id, stored);
        if let Ok((_, body)) = events::split_stored(stored) {
            self.appender.push(id, body);
        }
    }
}
