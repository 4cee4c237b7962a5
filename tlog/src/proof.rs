//! Roots, inclusion proofs (RFC 6962 §2.1.1 audit paths) and consistency proofs (§2.1.2), made
//! from stored tiles and checked with nothing but hashes. The Merkle math is `tlog_tiles`'s;
//! this module reads tiles for it and keeps untrusted input away from its assertions.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::{Hash, HashReader, Tile};

use crate::error::{Error, Result};
use crate::store::TileSource;
use crate::tiles::{FULL_WIDTH, HEIGHT, TileId};

/// Longer than any proof in a tree of 2^64 leaves: a longer one is refused unread.
const MAX_PROOF: usize = 130;

/// Serves stored-hash indexes from tiles, reading each tile once.
struct Hashes<'a> {
    source: &'a dyn TileSource,
    tiles: RefCell<HashMap<TileId, Vec<u8>>>,
    failure: RefCell<Option<Error>>,
}

impl<'a> Hashes<'a> {
    fn new(source: &'a dyn TileSource) -> Self {
        Self {
            source,
            tiles: RefCell::new(HashMap::new()),
            failure: RefCell::new(None),
        }
    }

    fn hash(&self, index: u64) -> Result<Hash, tlog_tiles::Error> {
        let wanted = Tile::from_index(HEIGHT, index);
        let id = TileId::new(wanted.level(), wanted.level_index());
        let mut tiles = self.tiles.borrow_mut();
        let data = match tiles.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match self.source.tile(id) {
                Ok(Some(data)) => e.insert(data),
                Ok(None) => return Err(tlog_tiles::Error::IndexesNotInTree),
                Err(failure) => {
                    *self.failure.borrow_mut() = Some(failure);
                    return Err(tlog_tiles::Error::IndexesNotInTree);
                }
            },
        };
        let width = u32::try_from(data.len() / 32)
            .ok()
            .filter(|w| (1..=FULL_WIDTH).contains(w))
            .ok_or(tlog_tiles::Error::InvalidTile)?;
        if width < wanted.width() {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        Tile::new(HEIGHT, id.level, id.index, width, false).hash_at_index(data, index)
    }

    /// A storage failure wins over the Merkle error it caused.
    fn error(&self, what: String, e: tlog_tiles::Error) -> Error {
        match self.failure.borrow_mut().take() {
            Some(failure) => failure,
            None => Error::Tree(format!("{what}: {e}")),
        }
    }
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes.iter().map(|&i| self.hash(i)).collect()
    }
}

/// The root of the tree's first `size` leaves (any size up to the stored tree's).
pub fn root(source: &dyn TileSource, size: u64) -> Result<Hash> {
    let hashes = Hashes::new(source);
    tlog_tiles::tree_hash(size, &hashes).map_err(|e| hashes.error(format!("the root of {size}"), e))
}

/// The audit path of leaf `index` in the tree of `size` leaves.
pub fn inclusion(source: &dyn TileSource, size: u64, index: u64) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(Error::Proof(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let hashes = Hashes::new(source);
    tlog_tiles::prove_record(size, index, &hashes)
        .map_err(|e| hashes.error(format!("the inclusion proof of leaf {index} in {size}"), e))
}

/// The proof that the tree of `old_size` leaves is a prefix of the one of `new_size`.
pub fn consistency(source: &dyn TileSource, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
    if old_size > new_size {
        return Err(Error::Proof(format!(
            "a tree of {old_size} leaves is not a prefix of one of {new_size}"
        )));
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let hashes = Hashes::new(source);
    tlog_tiles::prove_tree(new_size, old_size, &hashes).map_err(|e| {
        hashes.error(
            format!("the consistency proof from {old_size} to {new_size}"),
            e,
        )
    })
}

/// Checks that `leaf` (a Merkle leaf hash) is leaf `index` of the tree of `size` leaves whose
/// root is `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<()> {
    if index >= size {
        return Err(Error::Proof(format!(
            "leaf {index} cannot be in a tree of {size} leaves"
        )));
    }
    if proof.len() > MAX_PROOF {
        return Err(Error::Proof(format!("a proof of {} hashes", proof.len())));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf).map_err(|_| {
        Error::Proof(format!(
            "the inclusion proof of leaf {index} does not lead to the root of the tree of {size} leaves"
        ))
    })
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    old_root: Hash,
    new_size: u64,
    new_root: Hash,
) -> Result<()> {
    if old_size > new_size {
        return Err(Error::Proof(format!(
            "the tree of {old_size} leaves is larger than the one of {new_size}: the log shrank"
        )));
    }
    if proof.len() > MAX_PROOF {
        return Err(Error::Proof(format!("a proof of {} hashes", proof.len())));
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(Error::Proof(
                "a consistency proof from the empty tree is empty".into(),
            ))
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root).map_err(|_| {
        Error::Proof(format!(
            "the tree of {old_size} leaves is not a prefix of the tree of {new_size} leaves: the two views of the log are inconsistent"
        ))
    })
}

/// Hashes as the standard base64 text (checkpoints, bundles).
pub fn to_base64(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(ToString::to_string).collect()
}

pub fn from_base64(proof: &[String]) -> Result<Vec<Hash>> {
    if proof.len() > MAX_PROOF {
        return Err(Error::Proof(format!("a proof of {} hashes", proof.len())));
    }
    proof
        .iter()
        .map(|h| {
            Hash::parse_hash(h).map_err(|_| Error::Proof(format!("{h:?} is not a base64 hash")))
        })
        .collect()
}
