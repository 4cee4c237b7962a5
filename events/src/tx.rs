//! `Tx`: the projection rows of one group commit, staged beside the events they come from, and a
//! read cache of the rows the projections touched recently.
//!
//! Projections read their own earlier rows while they apply events (a status change moves a task's
//! key, so it must know the old status). Rows written earlier in the same group are not in fjall
//! yet, so reads look at the staged writes first. At commit, the staged writes join the events in
//! one fjall batch (a row written twice in a group is written once) and stay in the cache.
//!
//! The cache is coherent because the writer (or a catch-up, before the writer starts) is the only
//! one writing the projection keyspaces. It is bounded: past its limit it is emptied and refills.
//! In a rebuild into empty keyspaces it is *complete*: a row not in it does not exist, so no read
//! reaches fjall at all (until the limit is hit, which turns completeness off).

use std::collections::HashMap;

use fjall::{Keyspace, OwnedWriteBatch};

use crate::error::Result;

#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>),
    Delete,
}

type Rows<V> = HashMap<u64, HashMap<Vec<u8>, V>>;

/// Staged projection writes and cached rows, by keyspace and key.
pub struct Tx {
    writes: Rows<Write>,
    cache: Rows<Option<Vec<u8>>>,
    cached: usize,
    cache_limit: usize,
    /// The writer's mode: every staged write stays cached whatever the limit, and only the owner
    /// empties the cache (`forget`), at a moment when nothing is in flight.
    write_through: bool,
    complete: bool,
    keyspaces: HashMap<u64, Keyspace>,
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
            .field("cached", &self.cached)
            .finish()
    }
}

impl Tx {
    /// Without a cache: reads see the staged writes, then fjall.
    pub fn new() -> Self {
        Self::with_cache(0)
    }

    /// Keeps up to `limit` rows read or written, across commits.
    pub fn with_cache(limit: usize) -> Self {
        Self {
            writes: HashMap::new(),
            cache: HashMap::new(),
            cached: 0,
            cache_limit: limit,
            write_through: false,
            complete: false,
            keyspaces: HashMap::new(),
        }
    }

    /// The log writer's cache: every row read or written stays until the writer calls `forget`.
    pub fn write_through() -> Self {
        Self {
            write_through: true,
            ..Self::with_cache(usize::MAX)
        }
    }

    /// Rows cached.
    pub fn cached(&self) -> usize {
        self.cached
    }

    /// For a rebuild into empty keyspaces: every existing row is in the cache, so a miss is an
    /// absent row, until the cache overflows `limit`.
    pub fn complete(limit: usize) -> Self {
        Self {
            complete: true,
            ..Self::with_cache(limit)
        }
    }

    /// The row as the staged writes leave it.
    pub fn get(&mut self, keyspace: &Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let id = keyspace.id();
        if let Some(write) = self.writes.get(&id).and_then(|rows| rows.get(key)) {
            return Ok(match write {
                Write::Put(value) => Some(value.clone()),
                Write::Delete => None,
            });
        }
        if let Some(cached) = self.cache.get(&id).and_then(|rows| rows.get(key)) {
            return Ok(cached.clone());
        }
        if self.complete {
            return Ok(None);
        }
        let value = keyspace.get(key)?.map(|v| v.to_vec());
        self.cache_row(id, key.to_vec(), value.clone());
        Ok(value)
    }

    pub fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) {
        self.stage(keyspace, key.into(), Write::Put(value.into()));
    }

    pub fn remove(&mut self, keyspace: &Keyspace, key: impl Into<Vec<u8>>) {
        self.stage(keyspace, key.into(), Write::Delete);
    }

    fn stage(&mut self, keyspace: &Keyspace, key: Vec<u8>, write: Write) {
        let id = keyspace.id();
        self.keyspaces.entry(id).or_insert_with(|| keyspace.clone());
        self.writes.entry(id).or_default().insert(key, write);
    }

    fn cache_row(&mut self, id: u64, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.cache_limit == 0 {
            return;
        }
        if self.cached >= self.cache_limit && !self.write_through {
            self.cache.clear();
            self.cached = 0;
            self.complete = false;
        }
        if self
            .cache
            .entry(id)
            .or_default()
            .insert(key, value)
            .is_none()
        {
            self.cached += 1;
        }
    }

    /// Number of staged rows.
    pub fn len(&self) -> usize {
        self.writes.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.values().all(HashMap::is_empty)
    }

    /// Moves the staged writes into `batch` (they stay cached).
    pub fn drain_into(&mut self, batch: &mut OwnedWriteBatch) {
        let writes = std::mem::take(&mut self.writes);
        for (id, rows) in writes {
            let Some(keyspace) = self.keyspaces.get(&id).cloned() else {
                continue;
            };
            for (key, write) in rows {
                match write {
                    Write::Put(value) if self.cache_limit == 0 => {
                        batch.insert(&keyspace, key, value)
                    }
                    Write::Delete if self.cache_limit == 0 => batch.remove(&keyspace, key),
                    Write::Put(value) => {
                        batch.insert(&keyspace, key.clone(), value.clone());
                        self.cache_row(id, key, Some(value));
                    }
                    Write::Delete => {
                        batch.remove(&keyspace, key.clone());
                        self.cache_row(id, key, None);
                    }
                }
            }
        }
    }

    /// Forgets the cache (after a failed commit, or when the keyspaces change under it).
    pub fn forget(&mut self) {
        self.writes.clear();
        self.cache.clear();
        self.cached = 0;
        self.complete = false;
    }
}
