//! Following the log: bringing the tree up to the log's head, from wherever its head is.
//!
//! On start-up this appends only the events the tree does not hold yet (none, normally: the
//! writer keeps the tree in step); on a data directory that predates the tree it builds the
//! whole tree once. A tree whose last event the log no longer holds means the log lost events
//! (a cut journal): that is reported, never papered over.

use events::fjall::Database;
use events::{LogKeyspaces, Ulid};

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
    appender.drain(|key, value| batch.insert(keyspace, key, value));
    if !batch.is_empty() {
        batch.commit()?;
    }
    Ok(())
}
