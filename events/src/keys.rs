//! The byte layout of the log's keyspaces, in one place: the writer writes it, the reads and the
//! index rebuild read it.
//!
//! Keyspaces (all in the caller's fjall `Database`):
//! - `events`: ULID (16 big-endian bytes, so key order is time order) → stored value
//!   (hash || JSON body, see `envelope`);
//! - `streams`: stream id || 0x00 || sequence (8 bytes BE) → ULID;
//! - `idempotency`: key → first ULID (16) || event count (4 BE) || expires at (8 BE, 0 = never) ||
//!   stream of the first event.
//!
//! The two indexes are functions of the log (`rebuild_indexes` recomputes them).

use ulid::Ulid;

use crate::envelope::{self, Envelope, Header};
use crate::error::{Error, Result};

/// Decodes a stored value, naming the event on failure.
pub fn decode_at(id: Ulid, value: &[u8]) -> Result<Envelope> {
    envelope::decode(value).map_err(|source| Error::Decode {
        id: id.to_string(),
        source,
    })
}

pub fn decode_header_at(id: Ulid, value: &[u8]) -> Result<Header> {
    envelope::decode_header(value).map_err(|source| Error::Decode {
        id: id.to_string(),
        source,
    })
}

pub(crate) fn ulid_from_key(key: &[u8]) -> Result<Ulid> {
    let bytes: [u8; 16] = key
        .try_into()
        .map_err(|_| Error::Corrupt(format!("a ULID key has {} bytes", key.len())))?;
    Ok(Ulid::from_bytes(bytes))
}

pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

pub(crate) fn stream_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn seq_from_stream_key(key: &[u8]) -> Result<u64> {
    key.last_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .ok_or_else(|| Error::Corrupt("a stream index key is too short".into()))
}

/// An idempotency index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub first: Ulid,
    pub count: u32,
    pub expires_at: u64,
    pub stream: String,
}

impl IdempotencyRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.stream.len());
        out.extend_from_slice(&self.first.to_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt("an idempotency record is malformed".into());
        let (first, rest) = bytes.split_first_chunk::<16>().ok_or_else(corrupt)?;
        let (count, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (expires, stream) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        Ok(Self {
            first: Ulid::from_bytes(*first),
            count: u32::from_be_bytes(*count),
            expires_at: u64::from_be_bytes(*expires),
            stream: String::from_utf8(stream.to_vec()).map_err(|_| corrupt())?,
        })
    }
}
