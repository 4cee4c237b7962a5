//! The log's two indexes (`streams`, `idempotency`) recomputed from the events alone, and the
//! comparison of keyspaces that `replay diff` and the tests use.

use fjall::{Database, Keyspace};

use crate::error::Result;
use crate::keys::{IdempotencyRecord, decode_header_at, stream_key};
use crate::keyspaces::LogKeyspaces;

/// Events per batch while rebuilding (no fsync until the end).
const REBUILD_BATCH: usize = 20_000;

/// Writes the indexes of `from`'s events into `into` (which should be empty). Returns the number
/// of events read.
pub fn rebuild_indexes(
    from: &LogKeyspaces,
    db: &Database,
    into: &LogKeyspaces,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    let mut batch = db.batch();
    let mut count = 0u64;
    for item in from.scan(None) {
        let (id, value) = item?;
        let header = decode_header_at(id, &value)?;
        batch.insert(
            &into.streams,
            stream_key(&header.stream, header.seq),
            id.to_bytes(),
        );
        if let Some(mark) = header.idempotency {
            let record = IdempotencyRecord {
                first: id,
                count: mark.events,
                expires_at: mark.expires_at.unwrap_or(0),
                stream: header.stream,
            };
            batch.insert(&into.idempotency, mark.key.into_bytes(), record.encode());
        }
        count += 1;
        if batch.len() >= REBUILD_BATCH {
            std::mem::replace(&mut batch, db.batch()).commit()?;
            progress(count);
        }
    }
    batch.commit()?;
    db.persist(fjall::PersistMode::SyncAll)?;
    progress(count);
    Ok(count)
}

/// Where two keyspaces first differ, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The key exists only on the left.
    OnlyLeft(Vec<u8>),
    /// The key exists only on the right.
    OnlyRight(Vec<u8>),
    /// Same key, different values.
    Value(Vec<u8>),
}

impl Difference {
    pub fn key(&self) -> &[u8] {
        match self {
            Self::OnlyLeft(k) | Self::OnlyRight(k) | Self::Value(k) => k,
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = printable(self.key());
        match self {
            Self::OnlyLeft(_) => write!(f, "key {key} exists only in the live keyspace"),
            Self::OnlyRight(_) => write!(f, "key {key} exists only in the rebuilt keyspace"),
            Self::Value(_) => write!(f, "key {key} has different values"),
        }
    }
}

/// A key as text when it is text, as hex otherwise.
pub fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control() || c == '\0') => s.replace('\0', "␀"),
        _ => format!("0x{}", hex::encode(key)),
    }
}

/// The first difference between two keyspaces, comparing keys and values byte for byte.
pub fn first_difference(left: &Keyspace, right: &Keyspace) -> Result<Option<Difference>> {
    let mut a = left.iter();
    let mut b = right.iter();
    let mut next_a = a.next().map(|g| g.into_inner()).transpose()?;
    let mut next_b = b.next().map(|g| g.into_inner()).transpose()?;
    loop {
        match (&next_a, &next_b) {
            (None, None) => return Ok(None),
            (Some((ka, _)), None) => return Ok(Some(Difference::OnlyLeft(ka.to_vec()))),
            (None, Some((kb, _))) => return Ok(Some(Difference::OnlyRight(kb.to_vec()))),
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => return Ok(Some(Difference::OnlyLeft(ka.to_vec()))),
                std::cmp::Ordering::Greater => return Ok(Some(Difference::OnlyRight(kb.to_vec()))),
                std::cmp::Ordering::Equal if va != vb => {
                    return Ok(Some(Difference::Value(ka.to_vec())));
                }
                std::cmp::Ordering::Equal => {
                    next_a = a.next().map(|g| g.into_inner()).transpose()?;
                    next_b = b.next().map(|g| g.into_inner()).transpose()?;
                }
            },
        }
    }
}
