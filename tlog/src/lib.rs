//! The event log as a transparency log, in the standard forms of certificate transparency, Go's
//! checksum database and Sigstore, so that their tools and witnesses can follow it.
//!
//! Every event is a leaf of an RFC 6962 / RFC 9162 Merkle tree (SHA-256, `H(0x00 ‖ leaf)`,
//! `H(0x01 ‖ left ‖ right)`), in log order; the leaf is the SHA-256 of the event's stored body
//! (the canonical envelope the hash chain covers), so the tree reveals nothing of any user's data.
//!
//! Layout:
//! - `tiles`: C2SP tlog-tiles coordinates (height 8, full and partial tiles) and their paths;
//! - `store`: the tiles, the tree's head, the position index and the checkpoints in the fjall
//!   keyspace `tlog`, beside the log and not in it; `TileSource` is what proofs read tiles from;
//! - `tree`: the right edge of the tree in memory, appended to leaf by leaf, handing out the
//!   tiles each append completes or changes (so start-up loads a few tiles, never rehashes);
//! - `follow`: bringing the stored tree up to the log's head (start-up, older data directories);
//! - `proof`: roots of any size, inclusion and consistency proofs, made and checked;
//! - `checkpoint`: C2SP tlog-checkpoint texts signed as C2SP signed notes with the aggregator's
//!   Ed25519 log key;
//! - `cosign`: the operators' BLS cosignature, one extra signature line on the note (its key id
//!   and bytes defined there), the auditor's operator set and the quorum, and the rule an
//!   operator follows before it cosigns;
//! - `issue`: signing checkpoints as the tree grows, and gathering the operators' signatures
//!   into the note's operators' line once they hold a quorum;
//! - `audit`: a log checked against a checkpoint an auditor kept (cut, or rewritten, and where);
//! - `bundle`: the proof bundle of one execution, made from a data directory and checked offline.
//!
//! The formats come from `tlog_tiles` and `signed_note` (Cloudflare's ports of Go's
//! `golang.org/x/mod/sumdb/{tlog,note}`): the Merkle math, tile geometry, checkpoint text, note
//! format, Ed25519 signing. Two things are ours because those crates do not do them: tile paths
//! without the height element (C2SP's `tile/<L>/<N>`, where Go's sumdb has `tile/<H>/<L>/<N>`),
//! checked before the crate's parser sees them since it panics on some malformed paths; and the
//! tile storage with its incremental writer (the crate reads tiles, it does not keep them).

pub mod audit;
pub mod bundle;
pub mod checkpoint;
pub mod cosign;
mod error;
pub mod follow;
pub mod issue;
pub mod proof;
pub mod store;
pub mod tiles;
pub mod tree;

pub use checkpoint::{LogKey, LogVerifier, SignedCheckpoint};
pub use cosign::{Cosignature, OperatorSet};
pub use error::{Error, Result};
pub use store::{Head, MemoryTiles, TileSource, TileStore};
pub use tiles::{TileId, TileRequest};
pub use tlog_tiles::{EMPTY_HASH, HASH_SIZE, Hash};
pub use tree::Tree;

use sha2::{Digest, Sha256};

/// The Merkle leaf hash of an event: `H(0x00 ‖ sha256(stored body))`.
pub fn leaf_hash(body: &[u8]) -> Hash {
    let digest: [u8; 32] = Sha256::digest(body).into();
    tlog_tiles::record_hash(&digest)
}
