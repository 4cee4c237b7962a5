//! The tree on disk: one fjall keyspace, `tlog`, in the same database as the log.
//!
//! Keys:
//! - `t` ‖ level (1 byte) ‖ index (8 bytes BE) → the tile's hashes: 32 bytes each, 1 to 256 of
//!   them. A partial tile is rewritten as it grows and only ever grows, so the widest version
//!   serves every narrower request (a prefix). Level 0's partial tile is the exception: it would
//!   be rewritten (up to 8 KiB) by every commit, so its leaves are kept one by one instead;
//! - `l` ‖ leaf index (8 BE) → a run of leaf hashes from that leaf on (one key per group
//!   commit), for the leaves of the partial level-0 tile only (removed when their tile is full
//!   and written whole); the tile's hashes are its runs in key order;
//! - `h` → the head: tree size (8 BE) ‖ ULID of the last event in the tree (16), written in the
//!   same batch as the tiles, so that they always agree;
//! - `i` ‖ ULID (16) → index (8 BE) of the level-0 tile that event starts (one key per 256
//!   events): an event's leaf index is found from the nearest key at or before its ULID plus a
//!   count of at most 255 events;
//! - `c` ‖ size (8 BE) → the signed checkpoint of that size, with the signatures it has.
//!
//! Checkpoints and cosignatures describe the log and live beside it, never in it: recording them
//! as events would grow the tree they sign.

use std::collections::HashMap;

use events::fjall::{Database, Keyspace, PersistMode, Readable};
use events::{LogKeyspaces, Ulid};

use crate::error::{Error, Result};
use crate::tiles::TileId;

/// The name of the keyspace.
pub const KEYSPACE: &str = "tlog";
pub const HEAD_KEY: &[u8] = b"h";
const TILE: u8 = b't';
const LEAF: u8 = b'l';
const MARK: u8 = b'i';
const CHECKPOINT: u8 = b'c';

/// Where proofs read tiles from: the stored widest version of a tile, if it exists.
pub trait TileSource {
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>>;
}

/// How far the tree follows the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Leaves in the tree: the events from the first up to `last`.
    pub size: u64,
    pub last: Ulid,
}

impl Head {
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.size.to_be_bytes());
        out[8..].copy_from_slice(&self.last.to_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (size, last) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::Tree("the head record is too short".into()))?;
        let last: [u8; 16] = last
            .try_into()
            .map_err(|_| Error::Tree("the head record is malformed".into()))?;
        Ok(Self {
            size: u64::from_be_bytes(*size),
            last: Ulid::from_bytes(last),
        })
    }
}

pub fn tile_key(id: TileId) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = TILE;
    key[1] = id.level;
    key[2..].copy_from_slice(&id.index.to_be_bytes());
    key
}

pub fn leaf_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = LEAF;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

pub fn mark_key(id: Ulid) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = MARK;
    key[1..].copy_from_slice(&id.to_bytes());
    key
}

pub fn checkpoint_key(size: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHECKPOINT;
    key[1..].copy_from_slice(&size.to_be_bytes());
    key
}

fn u64_value(bytes: &[u8], what: &str) -> Result<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Tree(format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The `tlog` keyspace.
#[derive(Clone)]
pub struct TileStore {
    db: Database,
    keyspace: Keyspace,
}

impl std::fmt::Debug for TileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TileStore")
    }
}

impl TileStore {
    pub fn open(db: &Database) -> Result<Self> {
        Ok(Self {
            db: db.clone(),
            keyspace: db.keyspace(KEYSPACE, events::keyspace_options)?,
        })
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn head(&self) -> Result<Option<Head>> {
        self.keyspace
            .get(HEAD_KEY)?
            .map(|v| Head::decode(&v))
            .transpose()
    }

    /// The leaf index of event `id`, if the tree holds it. The event must be in `log`.
    pub fn leaf_index(&self, log: &LogKeyspaces, id: Ulid) -> Result<Option<u64>> {
        let Some(head) = self.head()? else {
            return Ok(None);
        };
        if id > head.last || log.events.get(id.to_bytes())?.is_none() {
            return Ok(None);
        }
        let Some(guard) = self
            .keyspace
            .range(mark_key(Ulid::nil())..=mark_key(id))
            .next_back()
        else {
            return Err(Error::Tree(format!(
                "no position mark at or before event {id}"
            )));
        };
        let (key, value) = guard.into_inner()?;
        let first: [u8; 16] = key
            .get(1..)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Tree("a position mark is malformed".into()))?;
        let tile = u64_value(&value, "a position mark")?;
        let mut offset = 0u64;
        for guard in log.events.range(first..id.to_bytes()) {
            guard.key()?;
            offset += 1;
        }
        let index = tile
            .checked_mul(256)
            .and_then(|i| i.checked_add(offset))
            .ok_or_else(|| Error::Tree("a leaf index overflows".into()))?;
        if index >= head.size {
            return Err(Error::Tree(format!(
                "event {id} counts as leaf {index}, past the tree's {} leaves",
                head.size
            )));
        }
        Ok(Some(index))
    }

    /// The first leaf index of each stored run of leaves of level-0 tile `index`.
    pub fn leaf_runs(&self, index: u64) -> Result<Vec<u64>> {
        let first = index.saturating_mul(256);
        let mut runs = Vec::new();
        for guard in self
            .keyspace
            .range(leaf_key(first)..=leaf_key(first.saturating_add(255)))
        {
            let key = guard.key()?;
            runs.push(u64_value(key.get(1..).unwrap_or_default(), "a leaf key")?);
        }
        Ok(runs)
    }

    /// The stored checkpoint of `size`.
    pub fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.keyspace.get(checkpoint_key(size))?.map(|v| v.to_vec()))
    }

    /// Checkpoints from the newest back: (size, signed note).
    pub fn checkpoints_newest_first(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + use<> {
        self.keyspace
            .range(checkpoint_key(0)..=checkpoint_key(u64::MAX))
            .rev()
            .map(|guard| {
                let (key, value) = guard.into_inner()?;
                let size = u64_value(key.get(1..).unwrap_or_default(), "a checkpoint key")?;
                Ok((size, value.to_vec()))
            })
    }

    pub fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.checkpoints_newest_first().next().transpose()
    }

    /// Stores a checkpoint (or a newer version of it, with more signatures), fsync'd: it is
    /// what the aggregator has shown the world.
    pub fn put_checkpoint(&self, db: &Database, size: u64, note: &[u8]) -> Result<()> {
        let mut batch = db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(&self.keyspace, checkpoint_key(size), note);
        batch.commit()?;
        Ok(())
    }
}

impl TileSource for TileStore {
    /// Both reads in one snapshot: the commit that fills a level-0 tile writes it whole and
    /// removes its leaves, and a read of the tile before that commit followed by a read of the
    /// leaves after it would find neither.
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>> {
        let snapshot = self.db.snapshot();
        if let Some(tile) = snapshot.get(&self.keyspace, tile_key(id))? {
            return Ok(Some(tile.to_vec()));
        }
        if id.level != 0 {
            return Ok(None);
        }
        // The partial level-0 tile, from its leaves.
        let first = id.index.saturating_mul(256);
        let mut hashes = Vec::new();
        for guard in snapshot.range(
            &self.keyspace,
            leaf_key(first)..=leaf_key(first.saturating_add(255)),
        ) {
            let (_, value) = guard.into_inner()?;
            hashes.extend_from_slice(&value);
        }
        Ok((!hashes.is_empty()).then_some(hashes))
    }
}

/// Tiles in memory: what an auditor's recomputation and the tests keep.
#[derive(Debug, Default, Clone)]
pub struct MemoryTiles {
    pub tiles: HashMap<TileId, Vec<u8>>,
}

impl MemoryTiles {
    pub fn put(&mut self, id: TileId, data: Vec<u8>) {
        self.tiles.insert(id, data);
    }
}

impl TileSource for MemoryTiles {
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>> {
        Ok(self.tiles.get(&id).cloned())
    }
}
