//! Issuing checkpoints, and gathering the operators' cosignatures onto them.
//!
//! - `Issuer::issue` signs the tree's committed head when it grew past the latest checkpoint,
//!   after checking that the stored tree still has the root of the checkpoint before it (a log
//!   must never sign a checkpoint inconsistent with one it signed: a tree that shrank or whose
//!   tiles were rewritten is refused, loudly);
//! - `Issuer::cosign` takes one operator's signature of a checkpoint, checks it against the
//!   operator's key, keeps it (`s` ‖ size ‖ address → signature, in the `tlog` keyspace), and once
//!   the signers hold the quorum's weight writes their aggregate as the note's operators' line,
//!   rewriting it as more arrive.

use std::collections::BTreeMap;
use std::sync::Mutex;

use alloy_primitives::Address;
use blst::min_pk::PublicKey;
use events::fjall::{Database, PersistMode};
use tlog_tiles::Hash;

use crate::checkpoint::{self, LogKey};
use crate::cosign::{self, Cosignature};
use crate::error::{Error, Result};
use crate::store::TileStore;

const COSIGNATURE: u8 = b's';

fn cosignature_prefix(size: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = COSIGNATURE;
    key[1..].copy_from_slice(&size.to_be_bytes());
    key
}

fn cosignature_key(size: u64, operator: &Address) -> [u8; 29] {
    let mut key = [0u8; 29];
    key[..9].copy_from_slice(&cosignature_prefix(size));
    key[9..].copy_from_slice(operator.as_slice());
    key
}

/// A checkpoint just issued, with the size of the one before (0: none) for consistency proofs.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub size: u64,
    pub root: Hash,
    pub note: Vec<u8>,
    pub previous: u64,
}

/// What became of a cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cosigned {
    /// Kept; the signers so far hold `weight`, below the `required` weight.
    Kept { weight: u64, required: u64 },
    /// The note now carries the aggregate of `signers` operators holding `weight`.
    Aggregated { signers: usize, weight: u64 },
}

pub struct Issuer {
    db: Database,
    store: TileStore,
    key: LogKey,
    /// Issuing and cosigning read, change and write the stored note: one at a time.
    lock: Mutex<()>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("key", &self.key).finish()
    }
}

impl Issuer {
    pub fn new(db: Database, store: TileStore, key: LogKey) -> Self {
        Self {
            db,
            store,
            key,
            lock: Mutex::new(()),
        }
    }

    pub fn key(&self) -> &LogKey {
        &self.key
    }

    pub fn store(&self) -> &TileStore {
        &self.store
    }

    /// Signs and stores a checkpoint of the committed tree when it grew since the latest one.
    pub fn issue(&self) -> Result<Option<Issued>> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(head) = self.store.head()? else {
            return Ok(None);
        };
        let previous = match self.store.latest_checkpoint()? {
            None => 0,
            Some((size, note)) => {
                if head.size < size {
                    return Err(Error::Tree(format!(
                        "the tree has {} leaves, fewer than the {size} of the last checkpoint: the log lost events; refusing to sign a smaller tree",
                        head.size
                    )));
                }
                if head.size == size {
                    return Ok(None);
                }
                let signed = self.key.verifier().open(&note)?;
                let stored = crate::proof::root(&self.store, size)?;
                if stored != signed.root {
                    return Err(Error::Tree(format!(
                        "the stored tree's root at {size} leaves is not the one checkpoint {size} signed: the tree was changed; refusing to sign an inconsistent checkpoint"
                    )));
                }
                size
            }
        };
        let root = crate::proof::root(&self.store, head.size)?;
        let note = self.key.sign(head.size, root)?;
        self.store.put_checkpoint(&self.db, head.size, &note)?;
        Ok(Some(Issued {
            size: head.size,
            root,
            note,
            previous,
        }))
    }

    /// The proof an operator that cosigned `from` needs to cosign `to`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        crate::proof::consistency(&self.store, from, to)
    }

    /// Takes `operator`'s cosignature of the checkpoint of `size`. `weights` are the operators'
    /// weights now (an operator not in it counts for nothing); `required` the weight of a quorum.
    pub fn cosign(
        &self,
        size: u64,
        operator: Address,
        key: &PublicKey,
        signature: &[u8],
        weights: &BTreeMap<Address, u64>,
        required: u64,
    ) -> Result<Cosigned> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let note = self.store.checkpoint(size)?.ok_or_else(|| {
            Error::Cosignature(format!("no checkpoint of size {size} was issued"))
        })?;
        let text = checkpoint::note_text(&note)?;
        cosign::verify_one(key, &text, signature)?;
        self.store
            .keyspace()
            .insert(cosignature_key(size, &operator), signature)?;
        let mut parts = Vec::new();
        for guard in self.store.keyspace().prefix(cosignature_prefix(size)) {
            let (k, v) = guard.into_inner()?;
            let Some(address) = k.get(9..).filter(|a| a.len() == 20) else {
                continue;
            };
            let address = Address::from_slice(address);
            if weights.get(&address).is_some_and(|w| *w > 0) {
                parts.push((address, v.to_vec()));
            }
        }
        let weight: u64 = parts.iter().filter_map(|(a, _)| weights.get(a)).sum();
        if weight < required || parts.is_empty() {
            return Ok(Cosigned::Kept { weight, required });
        }
        let signers = parts.len();
        let aggregate = Cosignature::aggregate(parts)?;
        let updated = checkpoint::with_cosignature(&note, self.key.origin(), &aggregate)?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(
            self.store.keyspace(),
            crate::store::checkpoint_key(size),
            updated,
        );
        batch.commit()?;
        Ok(Cosigned::Aggregated { signers, weight })
    }
}
