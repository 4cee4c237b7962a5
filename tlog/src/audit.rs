//! Checking a log against a checkpoint an auditor kept (`replay verify --checkpoint`).
//!
//! The tree is recomputed from the log's stored bodies alone, never read from the stored tiles:
//! whoever rewrote the log could rewrite those too. A log shorter than the checkpoint was cut
//! (or rolled back); a log whose first `size` events do not hash to the checkpoint's root was
//! rewritten. To say which event changed, each recomputed leaf is compared with the leaf the
//! stored tree recorded when the event was appended: the first that differs is named (when the
//! stored tree was rewritten along with the log, only the root tells).

use events::{LogKeyspaces, Ulid};
use tlog_tiles::{HASH_SIZE, Hash};

use crate::error::Result;
use crate::store::{TileSource, TileStore};
use crate::tiles::{FULL_WIDTH, TileId};
use crate::tree::Tree;

/// What the log is, against the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The log's first `size` events hash to the checkpoint's root.
    Consistent { size: u64 },
    /// The log holds fewer events than the checkpoint covers.
    Truncated {
        events: u64,
        size: u64,
        last: Option<Ulid>,
    },
    /// The first `size` events do not hash to the root.
    Rewritten {
        size: u64,
        /// The first event whose leaf is not the one the stored tree recorded for it.
        first_changed: Option<(u64, Ulid)>,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Consistent { size } => write!(
                f,
                "the log's first {size} events hash to the checkpoint's root"
            ),
            Self::Truncated { events, size, last } => {
                write!(
                    f,
                    "the log holds {events} events and the checkpoint covers {size}: the log was cut (or rolled back)"
                )?;
                match last {
                    Some(last) => write!(f, " after event #{} ({last})", events - 1),
                    None => write!(f, " to nothing"),
                }
            }
            Self::Rewritten {
                size,
                first_changed,
            } => {
                write!(
                    f,
                    "the log's first {size} events do not hash to the checkpoint's root: history was rewritten"
                )?;
                match first_changed {
                    Some((index, id)) => write!(
                        f,
                        "; event #{index} ({id}) is not the event the tree recorded when it was appended"
                    ),
                    None => write!(
                        f,
                        "; the stored tree agrees with the rewritten log, so it was rewritten too"
                    ),
                }
            }
        }
    }
}

/// Recomputes the tree of the log's first `size` events and compares its root with `root`;
/// `store`, when given, serves to name the first changed event. `progress` gets the number of
/// events read so far, now and then.
pub fn against_checkpoint(
    log: &LogKeyspaces,
    store: Option<&TileStore>,
    size: u64,
    root: Hash,
    progress: &dyn Fn(u64),
) -> Result<Finding> {
    let mut tree = Tree::new();
    let mut last = None;
    let mut first_changed = None;
    let mut recorded: Option<Vec<u8>> = None;
    for item in log.scan(None) {
        if tree.size() == size {
            break;
        }
        let (id, value) = item?;
        let (_, body) = events::split_stored(&value).map_err(|source| events::Error::Decode {
            id: id.to_string(),
            source,
        })?;
        let index = tree.size();
        let leaf = crate::leaf_hash(body);
        if let Some(store) = store.filter(|_| first_changed.is_none()) {
            let slot = (index % u64::from(FULL_WIDTH)) as usize;
            if slot == 0 {
                recorded = store.tile(TileId::new(0, index / u64::from(FULL_WIDTH)))?;
            }
            let stored = recorded
                .as_deref()
                .and_then(|t| t.get(slot * HASH_SIZE..(slot + 1) * HASH_SIZE));
            if stored.is_some_and(|s| s != leaf.0) {
                first_changed = Some((index, id));
            }
        }
        tree.push(leaf);
        // Only the right edge is needed: full tiles are dropped as they complete.
        tree.take_completed();
        last = Some(id);
        if tree.size().is_multiple_of(1 << 20) {
            progress(tree.size());
        }
    }
    progress(tree.size());
    if tree.size() < size {
        return Ok(Finding::Truncated {
            events: tree.size(),
            size,
            last,
        });
    }
    if tree.root()? == root {
        Ok(Finding::Consistent { size })
    } else {
        Ok(Finding::Rewritten {
            size,
            first_changed,
        })
    }
}
