//! The tree's right edge in memory, appended to leaf by leaf.
//!
//! At each level the rightmost tile is partial (fewer than 256 hashes) or empty; every tile left
//! of it is full and never changes again. So the whole state of an append-only tree of any size
//! is the partial tile of each level: at most 8 KiB per level, 4 levels for 16 M leaves.
//! Appending a leaf adds its hash to level 0; a tile that fills is handed out as full and its
//! root (a `tlog_tiles` subtree hash) becomes the next hash one level up. The root of the tree is
//! computed from the edge alone.
//!
//! `Tree` is the pure part; `Appender` adds what the log's writer needs around it: leaf hashes
//! from stored bodies, the position marks (one per 256 events) and the head, all handed out as
//! key/value writes for the same batch as the events.

use events::Ulid;
use tlog_tiles::{Hash, HashReader, Tile};

use crate::error::{Error, Result};
use crate::store::{self, Head, TileSource, TileStore};
use crate::tiles::{FULL_BYTES, FULL_WIDTH, HEIGHT, TileId};

/// An append-only RFC 6962 tree kept as its right edge.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    size: u64,
    /// `edge[l]`: the hashes of the rightmost tile of level `l` (fewer than 256).
    edge: Vec<Vec<u8>>,
    /// Levels whose partial tile changed since the last `take_tiles`.
    touched: u64,
    /// Tiles that filled since the last `take_tiles`.
    completed: Vec<(TileId, Vec<u8>)>,
}

fn shift(size: u64, level: usize) -> u64 {
    u32::try_from(level * usize::from(HEIGHT))
        .ok()
        .and_then(|bits| size.checked_shr(bits))
        .unwrap_or(0)
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of `size` leaves whose tiles `source` holds: reads the partial tile of each
    /// level (a handful of reads, whatever the size).
    pub fn load(source: &dyn TileSource, size: u64) -> Result<Self> {
        let mut edge = Vec::new();
        let mut level = 0usize;
        while shift(size, level) > 0 {
            let at_level = shift(size, level);
            let width = (at_level % u64::from(FULL_WIDTH)) as usize;
            let id = TileId::new(level as u8, at_level / u64::from(FULL_WIDTH));
            let mut hashes = Vec::with_capacity(FULL_BYTES);
            if width > 0 {
                let stored = source.tile(id)?.ok_or_else(|| {
                    Error::Tree(format!(
                        "tile {}/{} of a tree of {size} leaves is missing",
                        id.level, id.index
                    ))
                })?;
                let bytes = stored.get(..width * 32).ok_or_else(|| {
                    Error::Tree(format!(
                        "tile {}/{} holds {} hashes, a tree of {size} leaves needs {width}",
                        id.level,
                        id.index,
                        stored.len() / 32
                    ))
                })?;
                hashes.extend_from_slice(bytes);
            }
            edge.push(hashes);
            level += 1;
        }
        Ok(Self {
            size,
            edge,
            touched: 0,
            completed: Vec::new(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a Merkle leaf hash (`H(0x00 ‖ data)`, see `crate::leaf_hash`).
    pub fn push(&mut self, leaf: Hash) {
        self.size += 1;
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.edge.len() <= level {
                self.edge.push(Vec::with_capacity(FULL_BYTES));
            }
            let Some(tile) = self.edge.get_mut(level) else {
                return;
            };
            tile.extend_from_slice(&hash.0);
            self.touched |= 1 << level;
            if tile.len() < FULL_BYTES {
                return;
            }
            let full = std::mem::replace(tile, Vec::with_capacity(FULL_BYTES));
            hash = Tile::subtree_hash(&full);
            let index = shift(self.size, level) / u64::from(FULL_WIDTH) - 1;
            self.completed.push((TileId::new(level as u8, index), full));
            level += 1;
        }
    }

    /// The tiles that changed since the last call: each tile that filled, then the partial tile
    /// of each level that changed (its current hashes).
    pub fn take_tiles(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.completed);
        for (level, hashes) in self.edge.iter().enumerate() {
            if self.touched & (1 << level) != 0 && !hashes.is_empty() {
                let id = TileId::new(level as u8, shift(self.size, level) / u64::from(FULL_WIDTH));
                out.push((id, hashes.clone()));
            }
        }
        self.touched = 0;
        out
    }

    /// The tiles that filled since the last call, without the partial ones (a reader that only
    /// needs the root drops them).
    pub fn take_completed(&mut self) -> Vec<(TileId, Vec<u8>)> {
        std::mem::take(&mut self.completed)
    }

    /// The root hash (RFC 6962 `MTH`) of the whole tree.
    pub fn root(&self) -> Result<Hash> {
        // tree_hash asks only for hashes on the right edge, all in the partial tiles.
        tlog_tiles::tree_hash(self.size, &EdgeReader(self))
            .map_err(|e| Error::Tree(format!("the root of {} leaves: {e}", self.size)))
    }
}

/// Reads stored-hash indexes from the partial tiles of a `Tree`.
struct EdgeReader<'a>(&'a Tree);

impl HashReader for EdgeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&index| {
                let wanted = Tile::from_index(HEIGHT, index);
                let level = usize::from(wanted.level());
                let on_edge = shift(self.0.size, level) / u64::from(FULL_WIDTH);
                let data = self
                    .0
                    .edge
                    .get(level)
                    .filter(|_| wanted.level_index() == on_edge)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                let width = u32::try_from(data.len() / 32)
                    .ok()
                    .filter(|w| (1..=FULL_WIDTH).contains(w))
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                Tile::new(HEIGHT, wanted.level(), on_edge, width, false).hash_at_index(data, index)
            })
            .collect()
    }
}

/// The tree as the log's writer drives it: leaves from stored event bodies, the writes that
/// keep the `tlog` keyspace in step.
///
/// The leaves of the partial level-0 tile are stored as runs, one key per drain (a group
/// commit) holding that drain's leaves, rather than one key per leaf: a group of many events
/// writes one key, and the tile that fills removes a few keys, not 256. Readers concatenate the
/// runs in key order (`TileStore::tile`), so a store written leaf by leaf reads the same.
#[derive(Debug, Clone)]
pub struct Appender {
    tree: Tree,
    last: Option<Ulid>,
    marks: Vec<(Ulid, u64)>,
    /// The leaf hashes appended since the last drain; the first is leaf `pending_from`.
    pending: Vec<u8>,
    pending_from: u64,
    /// The first leaf index of each run stored for the partial level-0 tile.
    runs: Vec<u64>,
}

impl Appender {
    /// Resumes from the stored head (an empty tree when there is none).
    pub fn open(store: &TileStore) -> Result<Self> {
        match store.head()? {
            None => Ok(Self::empty()),
            Some(head) => {
                let partial = head.size / u64::from(FULL_WIDTH);
                Ok(Self {
                    tree: Tree::load(store, head.size)?,
                    last: Some(head.last),
                    marks: Vec::new(),
                    pending: Vec::new(),
                    pending_from: head.size,
                    runs: store.leaf_runs(partial)?,
                })
            }
        }
    }

    pub fn empty() -> Self {
        Self {
            tree: Tree::new(),
            last: None,
            marks: Vec::new(),
            pending: Vec::new(),
            pending_from: 0,
            runs: Vec::new(),
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The last event in the tree.
    pub fn last(&self) -> Option<Ulid> {
        self.last
    }

    /// Appends the event `id` whose stored body is `body`. Events must come in log order.
    pub fn push(&mut self, id: Ulid, body: &[u8]) {
        let size = self.tree.size();
        if size.is_multiple_of(u64::from(FULL_WIDTH)) {
            self.marks.push((id, size / u64::from(FULL_WIDTH)));
        }
        let leaf = crate::leaf_hash(body);
        self.tree.push(leaf);
        self.pending.extend_from_slice(&leaf.0);
        self.last = Some(id);
    }

    /// Hands out the writes (keyspace `tlog`) for everything appended since the last call:
    /// changed tiles, the new leaves of the partial level-0 tile as one run (and the removal of
    /// the runs of a tile that filled), position marks and the head. Nothing when nothing was
    /// appended.
    pub fn drain(
        &mut self,
        mut put: impl FnMut(Vec<u8>, Vec<u8>),
        mut remove: impl FnMut(Vec<u8>),
    ) {
        let Some(last) = self.last else {
            return;
        };
        let tiles = self.tree.take_tiles();
        if tiles.is_empty() && self.marks.is_empty() && self.pending.is_empty() {
            return;
        }
        let width = u64::from(FULL_WIDTH);
        let size = self.tree.size();
        let mut filled = false;
        for (id, data) in tiles {
            if id.level == 0 && data.len() < FULL_BYTES {
                continue; // kept as runs of leaves, below
            }
            if id.level == 0 {
                filled = true;
            }
            put(store::tile_key(id).to_vec(), data);
        }
        if filled {
            // Every stored run belongs to a tile that is now full and written whole.
            for first in self.runs.drain(..) {
                remove(store::leaf_key(first).to_vec());
            }
        }
        // The new leaves of the partial tile (those of tiles that filled are in the tiles).
        let partial_from = (size / width) * width;
        let first = self.pending_from.max(partial_from);
        if first < size {
            let skip = usize::try_from(first - self.pending_from).unwrap_or(usize::MAX);
            if let Some(run) = skip
                .checked_mul(crate::HASH_SIZE)
                .and_then(|at| self.pending.get(at..))
            {
                put(store::leaf_key(first).to_vec(), run.to_vec());
                self.runs.push(first);
            }
        }
        self.pending.clear();
        self.pending_from = size;
        for (id, tile) in self.marks.drain(..) {
            put(store::mark_key(id).to_vec(), tile.to_be_bytes().to_vec());
        }
        let head = Head { size, last };
        put(store::HEAD_KEY.to_vec(), head.encode().to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryTiles;

    fn leaf(i: u64) -> Hash {
        tlog_tiles::record_hash(&i.to_be_bytes())
    }

    fn apply(tiles: &mut MemoryTiles, tree: &mut Tree) {
        for (id, data) in tree.take_tiles() {
            tiles.put(id, data);
        }
    }

    #[test]
    fn a_tree_loaded_from_its_tiles_continues_where_it_stopped() {
        let mut tiles = MemoryTiles::default();
        let mut tree = Tree::new();
        let mut reference = Tree::new();
        for i in 0..70_000u64 {
            tree.push(leaf(i));
            reference.push(leaf(i));
            if i % 977 == 0 {
                apply(&mut tiles, &mut tree);
                let loaded = Tree::load(&tiles, tree.size()).unwrap();
                assert_eq!(
                    loaded.root().unwrap(),
                    tree.root().unwrap(),
                    "size {}",
                    tree.size()
                );
                tree = loaded;
            }
        }
        apply(&mut tiles, &mut tree);
        assert_eq!(tree.root().unwrap(), reference.root().unwrap());
        // C2SP's example: 70 000 leaves are 273 full level-0 tiles and one of width 112, one
        // full level-1 tile and one of width 17, one level-2 tile of width 1.
        let widths = |level: u8| {
            let mut w: Vec<(u64, usize)> = tiles
                .tiles
                .iter()
                .filter(|(id, _)| id.level == level)
                .map(|(id, d)| (id.index, d.len() / 32))
                .collect();
            w.sort_unstable();
            w
        };
        let level0 = widths(0);
        assert_eq!(level0.len(), 274);
        assert!(level0[..273].iter().all(|(_, w)| *w == 256));
        assert_eq!(level0[273], (273, 112));
        assert_eq!(widths(1), vec![(0, 256), (1, 17)]);
        assert_eq!(widths(2), vec![(0, 1)]);
        assert!(widths(3).is_empty());
    }

    #[test]
    fn leaves_stored_in_runs_read_as_the_tiles_and_leave_no_run_behind_a_full_tile() {
        // Given a tree fed through the Appender in groups of 1 to 300 events, committed to fjall
        // after each group, and reopened from the store now and then.
        let dir = tempfile::tempdir().unwrap();
        let db = events::open_database(dir.path()).unwrap();
        let store = TileStore::open(&db).unwrap();
        let mut appender = Appender::empty();
        let mut reference = Tree::new();
        let mut n = 0u64;
        for group in 0..120u64 {
            let len = [1, 3, 17, 255, 256, 300, 1, 64][(group % 8) as usize];
            for _ in 0..len {
                let body = n.to_be_bytes();
                appender.push(Ulid::from_parts(n, 1), &body);
                reference.push(crate::leaf_hash(&body));
                n += 1;
            }
            let mut batch = db.batch();
            let mut removed = Vec::new();
            appender.drain(
                |k, v| batch.insert(store.keyspace(), k, v),
                |k| removed.push(k),
            );
            for k in removed {
                batch.remove(store.keyspace(), k);
            }
            batch.commit().unwrap();
            // Then the stored tiles give the tree's root, and the only runs are the partial
            // tile's.
            assert_eq!(
                crate::proof::root(&store, n).unwrap(),
                reference.root().unwrap(),
                "{n} leaves"
            );
            let partial = n / 256;
            let all_runs = store.keyspace().prefix([b'l']).count();
            assert_eq!(
                all_runs,
                store.leaf_runs(partial).unwrap().len(),
                "{n} leaves"
            );
            if group % 7 == 3 {
                appender = Appender::open(&store).unwrap();
            }
        }
        assert_eq!(appender.tree().root().unwrap(), reference.root().unwrap());
    }

    #[test]
    fn a_missing_edge_tile_is_reported() {
        let tiles = MemoryTiles::default();
        let err = Tree::load(&tiles, 300).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
