//! `Tx`: the projection rows of one group commit, staged beside the events they come from, with
//! the rows of the previous group and a cache of rows read recently.
//!
//! Projections read their own earlier rows while they apply events (a status change moves a task's
//! key, so it must know the old status). Reads look, in order, at:
//! 1. the writes staged in this group (not in fjall yet);
//! 2. the rows of the previous group (`landing`): the log writer stages a group while the one
//!    before it is still being committed, so those rows may not be in fjall yet either (the
//!    writer hands a group over only once the one before has landed, so one generation is enough);
//! 3. the read cache: rows read from fjall and kept fresh by later writes (bounded by bytes;
//!    emptying it is always safe, since what is in flight is in `landing`);
//! 4. fjall.
//!
//! At commit, the staged writes join the events in one fjall batch (a row written twice in a group
//! is written once). In a rebuild into empty keyspaces the cache is *complete*: every row written
//! is kept, so a row missing from it does not exist and no read reaches fjall (until the limit is
//! hit, which turns completeness off).
//!
//! While the writer stages one command, its writes can be undone as a whole (`savepoint`,
//! `rollback`): a command rejected half-way leaves no row behind.
//!
//! A rebuild from scratch uses the bulk mode (`Tx::bulk`): rows do not go through fjall's write
//! path (journal, memtable, flush, compaction, each row rewritten at every event that changes
//! it) but gather in memory (`pending`, read before the cache; staged straight into it outside
//! a savepoint, so no row is moved from map to map at each drain), and only the last version of
//! each row is written, sorted, through fjall's ingestion of sorted data, which writes tables
//! directly: when `pending` outgrows its bound (`spill`) and at the end (`finish_bulk`).
//! Ingested rows are newer than anything in the keyspace, so a spill over earlier ones is
//! correct; a delete of a spilled row is ingested as a tombstone, and one of a row never spilled
//! only drops it from `pending`. Each keyspace's rows are sorted by a radix sort on their keys'
//! bytes (`key_order`), which does not chase every key's pointer at every comparison. A spill
//! keeps what makes the next reads cheap: a fingerprint of every key it wrote (`spilled`, about
//! 10 bytes a row), so that a read of a row never written is still answered from memory,
//! without a read of fjall; and the rows read
//! since the last spill (`hot`: a task's row, its locator and its owner's counters, read and
//! rewritten at every run), copied into the read cache, so that the next runs find them
//! decoded in memory.
//! The write-once rows (an execution's steps and history) go to fjall and are not read again.
//! The cache, full, drops every other row (in hash order, so about at random) rather than all.
//!
//! Rows are `fjall::Slice`s (reference-counted): a read, the cache and the batch share one copy
//! instead of cloning the bytes at each hand-off. The maps hash with foldhash (fast, and seeded
//! per process, so keys chosen by users cannot be made to collide).
//!
//! Typed rows (`TypedRow`, `put_row` / `get_row`): a row rewritten by many events (a task's row
//! at every event of its executions) is kept decoded in the staged writes, the landing group, the
//! bulk rows and the cache, and encoded only when it is written to fjall (each group's batch; in
//! bulk mode once, when it is ingested): the next event reads it back without parsing it. The
//! bytes written are the row's encoding, as if it had been put as bytes; a plain `get` of a typed
//! row encodes it.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use fjall::{Keyspace, OwnedWriteBatch, Slice};

use crate::error::Result;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set = std::collections::HashSet<u64, foldhash::fast::RandomState>;

/// A projection row kept decoded between the events that change it, encoded when written.
pub trait TypedRow: Any + Send + Sync {
    /// The row's stored bytes.
    fn encode(&self) -> Result<Vec<u8>>;
    /// About how many bytes the row holds in memory (for the cache's and bulk mode's bounds).
    fn footprint(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
}

/// A row's value: its bytes, or the decoded row they are the encoding of.
#[derive(Clone)]
enum Value {
    Bytes(Slice),
    Row(Arc<dyn TypedRow>),
}

impl Value {
    fn bytes(&self) -> Result<Slice> {
        match self {
            Self::Bytes(b) => Ok(b.clone()),
            Self::Row(r) => Ok(Slice::from(r.encode()?)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Row(r) => r.footprint(),
        }
    }
}

#[derive(Clone)]
enum Write {
    Put(Value),
    Delete,
}

impl Write {
    fn put(&self) -> Option<&Value> {
        match self {
            Self::Put(v) => Some(v),
            Self::Delete => None,
        }
    }

    fn value(&self) -> Option<Value> {
        match self {
            Self::Put(v) => Some(v.clone()),
            Self::Delete => None,
        }
    }
}

type Rows<V> = Map<u64, Map<Slice, V>>;

/// A write staged by the current command, with what it replaced (by keyspace id and key).
type Undo = (u64, Slice, Option<Write>);

/// Writes rows into an empty or older keyspace by sorted ingestion: the last version of each,
/// deletes as tombstones.
fn ingest(keyspace: &Keyspace, rows: Map<Slice, Write>) -> Result<()> {
    let sorted = crate::key_order::sort_by_key(rows.into_iter().collect(), |(key, _)| key);
    let mut ingestion = keyspace.start_ingestion()?;
    for (key, write) in sorted {
        match write {
            Write::Put(value) => ingestion.write(key, value.bytes()?)?,
            Write::Delete => ingestion.write_tombstone(key)?,
        }
    }
    ingestion.finish()?;
    Ok(())
}

/// Staged projection writes, the previous group's, and cached rows, by keyspace and key.
pub struct Tx {
    writes: Rows<Write>,
    /// Bulk mode: every drained row not yet ingested (`None` outside bulk mode).
    pending: Option<Rows<Write>>,
    pending_bytes: usize,
    /// Bulk mode: fingerprints of the keys spilled into fjall (keyspace id and key, hashed with
    /// `fingerprints`). A key not in it was never written there; a collision only costs a read.
    spilled: Set,
    /// Bulk mode: fingerprints of the keys read from `pending` since the last spill; at the next
    /// their rows stay in the cache.
    hot: Set,
    fingerprints: foldhash::fast::RandomState,
    /// While a command is staged: what each of its writes replaced, to undo them if the command
    /// is rejected (`rollback`).
    undo: Option<Vec<Undo>>,
    landing: Rows<Write>,
    cache: Rows<Option<Value>>,
    cached_bytes: usize,
    cache_limit: usize,
    complete: bool,
    keyspaces: Map<u64, Keyspace>,
}

impl Default for Tx {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("writes", &self.len())
            .field("cached_bytes", &self.cached_bytes)
            .finish()
    }
}

fn lookup<'a, V>(rows: &'a Rows<V>, id: u64, key: &[u8]) -> Option<&'a V> {
    rows.get(&id).and_then(|r| r.get(key))
}

/// What a cached row costs: its key, its value, and the map's own entry.
fn footprint(key: &[u8], value: Option<&Value>) -> usize {
    footprint_of(key.len(), value)
}

fn footprint_of(key_len: usize, value: Option<&Value>) -> usize {
    const ENTRY: usize = 64;
    key_len + value.map_or(0, Value::len) + ENTRY
}

impl Tx {
    /// Without a read cache.
    pub fn new() -> Self {
        Self::with_cache(0)
    }

    /// Keeps rows read from fjall, refreshed by later writes, up to `limit_bytes` (keys, values
    /// and bookkeeping); past it the cache starts again empty.
    pub fn with_cache(limit_bytes: usize) -> Self {
        Self {
            writes: Map::default(),
            pending: None,
            pending_bytes: 0,
            spilled: Set::default(),
            hot: Set::default(),
            fingerprints: foldhash::fast::RandomState::default(),
            undo: None,
            landing: Map::default(),
            cache: Map::default(),
            cached_bytes: 0,
            cache_limit: limit_bytes,
            complete: false,
            keyspaces: Map::default(),
        }
    }

    /// For a rebuild into empty keyspaces: every row written is cached, so a miss is an absent
    /// row, until the cache overflows `limit_bytes`.
    pub fn complete(limit_bytes: usize) -> Self {
        Self {
            complete: true,
            ..Self::with_cache(limit_bytes)
        }
    }

    /// For a rebuild from scratch into empty keyspaces: rows gather in memory and are ingested
    /// sorted (`spill`, `finish_bulk`); a miss is an absent row unless its key was spilled. The
    /// read cache (the hot rows of the spills, and spilled rows read again) keeps up to half of
    /// `limit_bytes`; the caller spills when `pending_bytes`, `cached_bytes` and
    /// `spilled_bytes` pass its budget.
    pub fn bulk(limit_bytes: usize) -> Self {
        Self {
            pending: Some(Map::default()),
            ..Self::complete(limit_bytes / 2)
        }
    }

    /// Bytes of rows gathered in bulk mode and not yet ingested.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Bulk mode: writes the gathered rows into their keyspaces by sorted ingestion (the last
    /// version of each row; deletes as tombstones). Their keys are fingerprinted, so that reads
    /// of them go to fjall and reads of others do not; the hot ones stay readable from the
    /// cache.
    pub fn spill(&mut self) -> Result<()> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        let hot = std::mem::take(&mut self.hot);
        for (id, rows) in &pending {
            for (key, write) in rows {
                let fingerprint = self.fingerprint(*id, key);
                if write.put().is_some() {
                    self.spilled.insert(fingerprint);
                }
                if hot.contains(&fingerprint) {
                    self.cache_row(*id, key.clone(), write.value());
                }
            }
        }
        let jobs: Vec<(Keyspace, Map<Slice, Write>)> = pending
            .drain()
            .filter_map(|(id, rows)| Some((self.keyspaces.get(&id)?.clone(), rows)))
            .collect();
        self.pending = Some(pending);
        // One thread per keyspace: sorting one overlaps ingesting another.
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(keyspace, rows)| scope.spawn(move || ingest(&keyspace, rows)))
                .collect();
            handles.into_iter().try_for_each(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(crate::Error::Corrupt(
                        "a thread ingesting rebuilt rows panicked".into(),
                    ))
                })
            })
        })?;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Ends bulk mode: ingests what is gathered; later groups drain into batches again, and
    /// reads go to fjall.
    pub fn finish_bulk(&mut self) -> Result<()> {
        self.spill()?;
        self.pending = None;
        self.complete = false;
        self.spilled = Set::default();
        self.hot = Set::default();
        Ok(())
    }

    /// A key's fingerprint in `spilled` and `hot`.
    fn fingerprint(&self, id: u64, key: &[u8]) -> u64 {
        self.fingerprints.hash_one((id, key))
    }

    /// Bytes the spilled keys' fingerprints hold (about; bulk mode).
    pub fn spilled_bytes(&self) -> usize {
        self.spilled.capacity() * (std::mem::size_of::<u64>() + 1)
    }

    /// Bytes the read cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    /// The row as the staged writes leave it.
    pub fn get(&mut self, keyspace: &Keyspace, key: &[u8]) -> Result<Option<Slice>> {
        self.value(keyspace, key)?
            .map(|value| value.bytes())
            .transpose()
    }

    /// The row as the staged writes leave it, decoded: a typed row of type `T` is cloned, bytes
    /// (a row read from fjall, or put as bytes) are decoded with `decode`.
    pub fn get_row<T: TypedRow + Clone>(
        &mut self,
        keyspace: &Keyspace,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.value(keyspace, key)? {
            None => Ok(None),
            Some(Value::Row(row)) => match row.as_any().downcast_ref::<T>() {
                Some(row) => Ok(Some(row.clone())),
                None => decode(&row.encode()?).map(Some),
            },
            Some(Value::Bytes(bytes)) => decode(&bytes).map(Some),
        }
    }

    fn value(&mut self, keyspace: &Keyspace, key: &[u8]) -> Result<Option<Value>> {
        let id = keyspace.id();
        if let Some(write) =
            lookup(&self.writes, id, key).or_else(|| lookup(&self.landing, id, key))
        {
            return Ok(write.value());
        }
        if let Some(write) = self.pending.as_ref().and_then(|p| lookup(p, id, key)) {
            let value = write.value();
            self.hot.insert(self.fingerprint(id, key));
            return Ok(value);
        }
        if let Some(cached) = lookup(&self.cache, id, key) {
            return Ok(cached.clone());
        }
        if self.complete
            && (self.pending.is_none() || !self.spilled.contains(&self.fingerprint(id, key)))
        {
            return Ok(None);
        }
        let value = keyspace.get(key)?.map(Value::Bytes);
        self.cache_row(id, Slice::from(key), value.clone());
        Ok(value)
    }

    pub fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) {
        self.stage(
            keyspace,
            Slice::from(key.into()),
            Write::Put(Value::Bytes(Slice::from(value.into()))),
        );
    }

    /// Stages a typed row, kept decoded until it is written (encoded then, with
    /// `TypedRow::encode`). A row whose encoding could be refused (too deep for readers, say)
    /// must be checked by the caller before it is put: encoding happens at the batch.
    pub fn put_row<T: TypedRow>(&mut self, keyspace: &Keyspace, key: impl Into<Vec<u8>>, row: T) {
        self.stage(
            keyspace,
            Slice::from(key.into()),
            Write::Put(Value::Row(Arc::new(row))),
        );
    }

    pub fn remove(&mut self, keyspace: &Keyspace, key: impl Into<Vec<u8>>) {
        self.stage(keyspace, Slice::from(key.into()), Write::Delete);
    }

    fn stage(&mut self, keyspace: &Keyspace, key: Slice, write: Write) {
        let id = keyspace.id();
        self.keyspaces.entry(id).or_insert_with(|| keyspace.clone());
        if self.undo.is_none() && self.pending.is_some() {
            // Bulk mode: straight into the gathered rows, which are read after the staged
            // writes (empty here) and the landing group (empty in bulk mode): no second map to
            // move every row into at the drain.
            self.gather(id, key, write);
            return;
        }
        let rows = self.writes.entry(id).or_default();
        match &mut self.undo {
            Some(undo) => {
                let replaced = rows.insert(key.clone(), write);
                undo.push((id, key, replaced));
            }
            None => {
                rows.insert(key, write);
            }
        }
    }

    /// Bulk mode: adds a row to `pending`, dropping a cached copy (`pending` is read first, but
    /// a cached copy would be stale once `pending` is ingested and emptied).
    fn gather(&mut self, id: u64, key: Slice, write: Write) {
        // A delete of a row never ingested (the keyspaces were empty) has nothing to shadow, so
        // it leaves no tombstone (an execution's queue entry and claim, say, are gone by its end).
        let drop_only =
            write.put().is_none() && !self.spilled.contains(&self.fingerprint(id, &key));
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if let Some(cached) = self.cache.get_mut(&id)
            && let Some(old) = cached.remove(&key)
        {
            self.cached_bytes = self
                .cached_bytes
                .saturating_sub(footprint(&key, old.as_ref()));
        }
        let rows = pending.entry(id).or_default();
        let key_len = key.len();
        let replaced = if drop_only {
            rows.remove(&key)
        } else {
            self.pending_bytes += footprint(&key, write.put());
            rows.insert(key, write)
        };
        if let Some(old) = replaced {
            self.pending_bytes = self
                .pending_bytes
                .saturating_sub(footprint_of(key_len, old.put()));
        }
    }

    /// Starts staging one command: its writes can be undone as a whole (`rollback`) until
    /// `release`. The writer uses it so that a command rejected half-way leaves nothing behind.
    pub fn savepoint(&mut self) {
        self.undo = Some(Vec::new());
    }

    /// Keeps the writes staged since `savepoint`.
    pub fn release(&mut self) {
        self.undo = None;
    }

    /// Undoes the writes staged since `savepoint`, newest first.
    pub fn rollback(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        for (id, key, replaced) in undo.into_iter().rev() {
            let Some(rows) = self.writes.get_mut(&id) else {
                continue;
            };
            match replaced {
                Some(write) => {
                    rows.insert(key, write);
                }
                None => {
                    rows.remove(&key);
                }
            }
        }
    }

    fn cache_row(&mut self, id: u64, key: Slice, value: Option<Value>) {
        if self.cache_limit == 0 {
            return;
        }
        let cost = footprint(&key, value.as_ref());
        if self.cached_bytes + cost > self.cache_limit {
            self.evict_half();
        }
        if let Some(old) = self.cache.entry(id).or_default().insert(key.clone(), value) {
            self.cached_bytes = self
                .cached_bytes
                .saturating_sub(footprint(&key, old.as_ref()));
        }
        self.cached_bytes += cost;
    }

    /// Drops every other cached row of each keyspace, in hash order (so about at random): about
    /// half of each keyspace's rows stay. Safe at any time: what may still be in flight is in
    /// `landing`. In bulk mode the cache holds only copies of spilled rows, so the rest stays
    /// complete; otherwise a miss may now be a dropped row.
    fn evict_half(&mut self) {
        let mut bytes = self.cached_bytes;
        let mut dropping = false;
        for rows in self.cache.values_mut() {
            rows.retain(|key, value| {
                dropping = !dropping;
                if dropping {
                    bytes = bytes.saturating_sub(footprint(key, value.as_ref()));
                }
                !dropping
            });
        }
        self.cache.retain(|_, rows| !rows.is_empty());
        self.cached_bytes = bytes;
        if self.pending.is_none() {
            self.complete = false;
        }
    }

    /// Number of staged rows.
    pub fn len(&self) -> usize {
        self.writes.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.values().all(HashMap::is_empty)
    }

    /// Moves the staged writes into `batch` (typed rows encoded); they become the landing group,
    /// and refresh the rows the cache holds (all of them, when it is complete). In bulk mode they
    /// join `pending` instead, and `batch` gets none. Fails only when a typed row cannot be
    /// encoded; `batch` is then incomplete and must not be committed.
    pub fn drain_into(&mut self, batch: &mut OwnedWriteBatch) -> Result<()> {
        let writes = std::mem::take(&mut self.writes);
        if self.pending.is_some() {
            for (id, rows) in writes {
                for (key, write) in rows {
                    self.gather(id, key, write);
                }
            }
            return Ok(());
        }
        for (id, rows) in &writes {
            let Some(keyspace) = self.keyspaces.get(id).cloned() else {
                continue;
            };
            for (key, write) in rows {
                match write {
                    Write::Put(value) => batch.insert(&keyspace, key.clone(), value.bytes()?),
                    Write::Delete => batch.remove(&keyspace, key.clone()),
                }
                let cached = lookup(&self.cache, *id, key).is_some();
                if self.complete || cached {
                    self.cache_row(*id, key.clone(), write.value());
                }
            }
        }
        self.landing = writes;
        Ok(())
    }

    /// Forgets everything (after a failed commit).
    pub fn forget(&mut self) {
        self.writes.clear();
        if let Some(pending) = self.pending.as_mut() {
            pending.clear();
        }
        self.pending_bytes = 0;
        self.undo = None;
        self.landing.clear();
        self.cache.clear();
        self.cached_bytes = 0;
        self.complete = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keyspace: &Keyspace) -> Vec<(Vec<u8>, Vec<u8>)> {
        keyspace
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner().unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    /// A fresh database with one keyspace, `rows`.
    fn scratch() -> (tempfile::TempDir, fjall::Database, Keyspace) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_database(dir.path()).unwrap();
        let ks = db
            .keyspace("rows", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        (dir, db, ks)
    }

    #[test]
    fn bulk_mode_keeps_the_last_version_of_each_row_across_spills() {
        // Given a bulk Tx over an empty keyspace.
        let (_dir, db, ks) = scratch();
        let mut tx = Tx::bulk(1 << 20);
        // When rows are written over several groups, with a spill in the middle, some
        // rewritten and one deleted after it had been ingested.
        tx.insert(&ks, b"b".to_vec(), b"1".to_vec());
        tx.insert(&ks, b"a".to_vec(), b"1".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        assert_eq!(tx.get(&ks, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(tx.get(&ks, b"zz").unwrap(), None);
        tx.insert(&ks, b"a".to_vec(), b"2".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        assert!(ks.is_empty().unwrap(), "nothing is written before a spill");
        assert!(tx.pending_bytes() > 0);
        tx.spill().unwrap();
        assert_eq!(
            rows(&ks),
            vec![
                (b"a".to_vec(), b"2".to_vec()),
                (b"b".to_vec(), b"1".to_vec())
            ]
        );
        // After the spill a read finds the ingested row in fjall.
        assert_eq!(tx.get(&ks, b"b").unwrap().as_deref(), Some(&b"1"[..]));
        tx.remove(&ks, b"b".to_vec());
        tx.insert(&ks, b"c".to_vec(), b"3".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        assert_eq!(tx.get(&ks, b"b").unwrap(), None);
        tx.finish_bulk().unwrap();
        // Then the keyspace holds the last version of each row, and the delete took.
        assert_eq!(
            rows(&ks),
            vec![
                (b"a".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        // And later groups go through batches again.
        tx.insert(&ks, b"d".to_vec(), b"4".to_vec());
        let mut batch = db.batch();
        tx.drain_into(&mut batch).unwrap();
        batch.commit().unwrap();
        assert_eq!(ks.get(b"d").unwrap().as_deref(), Some(&b"4"[..]));
    }

    #[test]
    fn in_bulk_mode_a_row_deleted_before_any_spill_leaves_nothing_to_ingest() {
        // Given a bulk Tx over an empty keyspace, with a row put and spilled.
        let (_dir, db, ks) = scratch();
        let mut tx = Tx::bulk(1 << 20);
        tx.insert(&ks, b"spilled".to_vec(), b"1".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        tx.spill().unwrap();
        // When a row is put and deleted before the next spill, and a delete comes for a row
        // never put.
        tx.insert(&ks, b"queued".to_vec(), b"2".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        assert!(tx.pending_bytes() > 0);
        tx.remove(&ks, b"queued".to_vec());
        tx.remove(&ks, b"never".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        // Then nothing is left to ingest for them (no tombstone), and reads see them gone.
        assert_eq!(tx.pending_bytes(), 0);
        assert_eq!(tx.get(&ks, b"queued").unwrap(), None);
        // And a delete of the spilled row is still ingested, as a tombstone over it.
        tx.remove(&ks, b"spilled".to_vec());
        tx.drain_into(&mut db.batch()).unwrap();
        assert!(tx.pending_bytes() > 0);
        tx.finish_bulk().unwrap();
        assert!(rows(&ks).is_empty());
    }

    #[test]
    fn after_a_spill_only_spilled_keys_are_read_from_fjall_and_hot_rows_stay_decoded() {
        // Given a bulk Tx that spilled a byte row and two typed rows, one of them read since
        // it was written (hot), the other not.
        let (_dir, db, ks) = scratch();
        let mut tx = Tx::bulk(1 << 20);
        tx.insert(&ks, b"bytes".to_vec(), b"1".to_vec());
        tx.put_row(&ks, b"hot".to_vec(), Counter(5));
        tx.put_row(&ks, b"cold".to_vec(), Counter(6));
        tx.drain_into(&mut db.batch()).unwrap();
        assert_eq!(tx.get_row(&ks, b"hot", decode).unwrap(), Some(Counter(5)));
        tx.spill().unwrap();
        // When a row the Tx never wrote appears in fjall behind its back (a rebuild's keyspace
        // is empty, so a read of it could only be a wasted read)
        ks.insert(b"never", b"x").unwrap();
        // Then a read of it is answered from memory, spilled rows are read from fjall, and the
        // hot row comes back decoded, without going through its bytes.
        assert_eq!(tx.get(&ks, b"never").unwrap(), None);
        assert_eq!(tx.get(&ks, b"bytes").unwrap().as_deref(), Some(&b"1"[..]));
        let undecodable = |_: &[u8]| -> Result<Counter> {
            Err(crate::Error::Corrupt("read from its bytes".into()))
        };
        assert_eq!(
            tx.get_row(&ks, b"hot", undecodable).unwrap(),
            Some(Counter(5))
        );
        assert!(tx.get_row(&ks, b"cold", undecodable).is_err());
        assert_eq!(tx.get_row(&ks, b"cold", decode).unwrap(), Some(Counter(6)));
        // And once bulk mode ends, reads go to fjall for every key.
        tx.finish_bulk().unwrap();
        assert_eq!(tx.get(&ks, b"never").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn a_full_cache_drops_about_half_its_rows_and_reads_stay_right() {
        // Given a cache over a keyspace of 1 000 rows, small enough to overflow
        let (_dir, _db, ks) = scratch();
        for i in 0..1000u32 {
            ks.insert(i.to_be_bytes(), i.to_le_bytes()).unwrap();
        }
        let limit = 100 * footprint_of(4, Some(&Value::Bytes(Slice::from(vec![0; 4]))));
        let mut tx = Tx::with_cache(limit);
        // When every row is read, twice
        for _ in 0..2 {
            for i in 0..1000u32 {
                let got = tx.get(&ks, &i.to_be_bytes()).unwrap();
                assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]));
            }
        }
        // Then the cache never held more than its limit, and kept rows after overflowing
        assert!(tx.cached_bytes() <= limit, "{}", tx.cached_bytes());
        assert!(tx.cached_bytes() >= limit / 2, "{}", tx.cached_bytes());
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Counter(u64);

    impl TypedRow for Counter {
        fn encode(&self) -> Result<Vec<u8>> {
            Ok(self.0.to_string().into_bytes())
        }
        fn footprint(&self) -> usize {
            8
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn decode(bytes: &[u8]) -> Result<Counter> {
        let text = std::str::from_utf8(bytes).map_err(|e| crate::Error::Corrupt(e.to_string()))?;
        text.parse()
            .map(Counter)
            .map_err(|e: std::num::ParseIntError| crate::Error::Corrupt(e.to_string()))
    }

    #[test]
    fn a_typed_row_is_written_as_its_encoding_and_read_back_decoded() {
        for bulk in [false, true] {
            // Given a keyspace with a row stored as bytes.
            let (_dir, db, ks) = scratch();
            ks.insert(b"a", b"41").unwrap();
            let mut tx = if bulk {
                Tx::bulk(1 << 20)
            } else {
                Tx::with_cache(1 << 20)
            };
            // When it is read as a typed row, changed and put back over two groups.
            let read = |tx: &mut Tx| tx.get_row(&ks, b"a", decode).unwrap();
            let a = if bulk {
                Counter(41)
            } else {
                read(&mut tx).unwrap()
            };
            assert_eq!(a, Counter(41));
            tx.put_row(&ks, b"a".to_vec(), Counter(a.0 + 1));
            // Then a plain read sees its encoding, a typed read the row.
            assert_eq!(tx.get(&ks, b"a").unwrap().as_deref(), Some(&b"42"[..]));
            let mut batch = db.batch();
            tx.drain_into(&mut batch).unwrap();
            batch.commit().unwrap();
            let a = read(&mut tx).unwrap();
            assert_eq!(a, Counter(42));
            tx.put_row(&ks, b"a".to_vec(), Counter(a.0 + 1));
            tx.put_row(&ks, b"b".to_vec(), Counter(7));
            let mut batch = db.batch();
            tx.drain_into(&mut batch).unwrap();
            batch.commit().unwrap();
            tx.finish_bulk().unwrap();
            // And fjall holds the encodings of the last versions.
            assert_eq!(
                rows(&ks),
                vec![
                    (b"a".to_vec(), b"43".to_vec()),
                    (b"b".to_vec(), b"7".to_vec())
                ],
                "bulk: {bulk}"
            );
        }
    }

    #[test]
    fn a_rolled_back_command_leaves_the_typed_row_it_replaced() {
        let (_dir, _db, ks) = scratch();
        let mut tx = Tx::with_cache(1 << 20);
        tx.put_row(&ks, b"a".to_vec(), Counter(1));
        tx.savepoint();
        tx.put_row(&ks, b"a".to_vec(), Counter(2));
        tx.rollback();
        assert_eq!(tx.get_row(&ks, b"a", decode).unwrap(), Some(Counter(1)));
    }
}
