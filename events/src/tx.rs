//! `Tx`: the projection rows of one group commit, staged beside the events they come from.
//!
//! Projections read their own earlier rows while they apply events (a status change moves a task's
//! key, so it must know the old status). Rows written earlier in the same group are not in fjall
//! yet, so reads look at the staged writes first and fall back to the keyspace. At commit, the
//! staged writes join the events in one fjall batch: a row written twice in a group is written once.

use std::collections::HashMap;

use fjall::{Keyspace, OwnedWriteBatch};

use crate::error::Result;

#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>),
    Delete,
}

/// Staged projection writes, keyed by keyspace and key.
#[derive(Default)]
pub struct Tx {
    writes: HashMap<(u64, Vec<u8>), Write>,
    keyspaces: HashMap<u64, Keyspace>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl Tx {
    pub fn new() -> Self {
        Self::default()
    }

    /// The row as this group leaves it so far.
    pub fn get(&self, keyspace: &Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(&(keyspace.id(), key.to_vec())) {
            Some(Write::Put(value)) => Ok(Some(value.clone())),
            Some(Write::Delete) => Ok(None),
            None => Ok(keyspace.get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) {
        self.remember(keyspace);
        self.writes
            .insert((keyspace.id(), key.into()), Write::Put(value.into()));
    }

    pub fn remove(&mut self, keyspace: &Keyspace, key: impl Into<Vec<u8>>) {
        self.remember(keyspace);
        self.writes
            .insert((keyspace.id(), key.into()), Write::Delete);
    }

    /// Number of staged rows.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn remember(&mut self, keyspace: &Keyspace) {
        self.keyspaces
            .entry(keyspace.id())
            .or_insert_with(|| keyspace.clone());
    }

    /// Moves the staged writes into `batch`, leaving this `Tx` empty.
    pub fn drain_into(&mut self, batch: &mut OwnedWriteBatch) {
        for ((id, key), write) in self.writes.drain() {
            let Some(keyspace) = self.keyspaces.get(&id) else {
                continue;
            };
            match write {
                Write::Put(value) => batch.insert(keyspace, key, value),
                Write::Delete => batch.remove(keyspace, key),
            }
        }
    }
}
