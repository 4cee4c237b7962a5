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
//! Rows are `fjall::Slice`s (reference-counted): a read, the cache and the batch share one copy
//! instead of cloning the bytes at each hand-off. The maps hash with foldhash (fast, and seeded
//! per process, so keys chosen by users cannot be made to collide).

use std::collections::HashMap;

use fjall::{Keyspace, OwnedWriteBatch, Slice};

use crate::error::Result;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone)]
enum Write {
    Put(Slice),
    Delete,
}

impl Write {
    fn value(&self) -> Option<Slice> {
        match self {
            Self::Put(v) => Some(v.clone()),
            Self::Delete => None,
        }
    }
}

type Rows<V> = Map<u64, Map<Slice, V>>;

/// A write staged by the current command, with what it replaced (by keyspace id and key).
type Undo = (u64, Slice, Option<Write>);

/// Staged projection writes, the previous group's, and cached rows, by keyspace and key.
pub struct Tx {
    writes: Rows<Write>,
    /// While a command is staged: what each of its writes replaced, to undo them if the command
    /// is rejected (`rollback`).
    undo: Option<Vec<Undo>>,
    landing: Rows<Write>,
    cache: Rows<Option<Slice>>,
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
fn footprint(key: &[u8], value: Option<&Slice>) -> usize {
    const ENTRY: usize = 64;
    key.len() + value.map_or(0, |v| v.len()) + ENTRY
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

    /// Bytes the read cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    /// The row as the staged writes leave it.
    pub fn get(&mut self, keyspace: &Keyspace, key: &[u8]) -> Result<Option<Slice>> {
        let id = keyspace.id();
        if let Some(write) =
            lookup(&self.writes, id, key).or_else(|| lookup(&self.landing, id, key))
        {
            return Ok(write.value());
        }
        if let Some(cached) = lookup(&self.cache, id, key) {
            return Ok(cached.clone());
        }
        if self.complete {
            return Ok(None);
        }
        let value = keyspace.get(key)?;
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
            Write::Put(Slice::from(value.into())),
        );
    }

    pub fn remove(&mut self, keyspace: &Keyspace, key: impl Into<Vec<u8>>) {
        self.stage(keyspace, Slice::from(key.into()), Write::Delete);
    }

    fn stage(&mut self, keyspace: &Keyspace, key: Slice, write: Write) {
        let id = keyspace.id();
        self.keyspaces.entry(id).or_insert_with(|| keyspace.clone());
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

    fn cache_row(&mut self, id: u64, key: Slice, value: Option<Slice>) {
        if self.cache_limit == 0 {
            return;
        }
        let cost = footprint(&key, value.as_ref());
        if self.cached_bytes + cost > self.cache_limit {
            // Safe at any time: what may still be in flight is in `landing`.
            self.cache.clear();
            self.cached_bytes = 0;
            self.complete = false;
        }
        if let Some(old) = self.cache.entry(id).or_default().insert(key.clone(), value) {
            self.cached_bytes = self
                .cached_bytes
                .saturating_sub(footprint(&key, old.as_ref()));
        }
        self.cached_bytes += cost;
    }

    /// Number of staged rows.
    pub fn len(&self) -> usize {
        self.writes.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.values().all(HashMap::is_empty)
    }

    /// Moves the staged writes into `batch`; they become the landing group, and refresh the rows
    /// the cache holds (all of them, when it is complete).
    pub fn drain_into(&mut self, batch: &mut OwnedWriteBatch) {
        let writes = std::mem::take(&mut self.writes);
        for (id, rows) in &writes {
            let Some(keyspace) = self.keyspaces.get(id).cloned() else {
                continue;
            };
            for (key, write) in rows {
                match write {
                    Write::Put(value) => batch.insert(&keyspace, key.clone(), value.clone()),
                    Write::Delete => batch.remove(&keyspace, key.clone()),
                }
                let cached = lookup(&self.cache, *id, key).is_some();
                if self.complete || cached {
                    self.cache_row(*id, key.clone(), write.value());
                }
            }
        }
        self.landing = writes;
    }

    /// Forgets everything (after a failed commit).
    pub fn forget(&mut self) {
        self.writes.clear();
        self.undo = None;
        self.landing.clear();
        self.cache.clear();
        self.cached_bytes = 0;
        self.complete = false;
    }
}
