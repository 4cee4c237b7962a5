//! The envelope every stored event travels in, and its exact stored bytes.
//!
//! Stored value = `hash (32 bytes) || body`, where body is the JSON object
//! `{"id","stream","seq","at","actor","idem"?,"type","v","data"}` and
//! `hash = sha256(previous event's hash || body)` (32 zero bytes before the first event).
//!
//! sha-256 rather than blake3: this machine's CPU has the SHA extensions, which make sha-256 the
//! faster of the two on 400-byte inputs, and it is the hash every auditor already has.
//!
//! JSON rather than a binary format: an auditor can read the log with standard tools, the type
//! name and version sit beside a self-describing payload that upcasters can rewrite as a tree,
//! and encoding a 400-byte event costs about a microsecond, far below an fsync.
//! Upcasting happens on the decoded tree, never on the stored bytes, so the chain verifies
//! across schema versions.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::event::{DecodeError, Event, Payload};
use crate::upcast;

pub const HASH_LEN: usize = 32;
pub type Hash = [u8; HASH_LEN];
pub const GENESIS_HASH: Hash = [0; HASH_LEN];

/// The idempotency key a command carried, on its first event. The key is taken until
/// `expires_at` (ms; absent = never) or until the stream of this event is closed; `events` is the
/// number of events the command appended (they follow this one in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyMark {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub events: u32,
}

/// A decoded event with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Ulid,
    pub stream: String,
    /// 1-based position in the stream.
    pub seq: u64,
    /// Milliseconds since the epoch, taken once per command.
    pub recorded_at: u64,
    /// Owner or operator address, or `system`.
    pub actor: String,
    pub idempotency: Option<IdempotencyMark>,
    /// The schema version the event was stored with (before upcasting).
    pub stored_version: u16,
    pub event: Event,
    pub hash: Hash,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    id: Ulid,
    stream: &'a str,
    seq: u64,
    at: u64,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    idem: Option<&'a IdempotencyMark>,
    #[serde(rename = "type")]
    event_type: &'static str,
    v: u16,
    data: Payload<'a>,
}

#[derive(Deserialize)]
struct BodyIn<'a> {
    id: Ulid,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    seq: u64,
    at: u64,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    #[serde(default)]
    idem: Option<IdempotencyMark>,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    v: u16,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The fields of an event the writer decides, before its bytes exist.
#[derive(Debug)]
pub(crate) struct NewEnvelope<'a> {
    pub id: Ulid,
    pub stream: &'a str,
    pub seq: u64,
    pub recorded_at: u64,
    pub actor: &'a str,
    pub idempotency: Option<&'a IdempotencyMark>,
    pub event: &'a Event,
}

impl NewEnvelope<'_> {
    /// The stored value (hash || body) chained onto `prev`, and the new hash.
    pub fn encode(&self, prev: &Hash) -> Result<(Vec<u8>, Hash), serde_json::Error> {
        let mut value = Vec::with_capacity(512);
        value.extend_from_slice(&GENESIS_HASH);
        serde_json::to_writer(
            &mut value,
            &BodyOut {
                id: self.id,
                stream: self.stream,
                seq: self.seq,
                at: self.recorded_at,
                actor: self.actor,
                idem: self.idempotency,
                event_type: self.event.type_name(),
                v: self.event.schema_version(),
                data: Payload(self.event),
            },
        )?;
        let hash = chain_hash(prev, value.get(HASH_LEN..).unwrap_or_default());
        if let Some(head) = value.get_mut(..HASH_LEN) {
            head.copy_from_slice(&hash);
        }
        Ok((value, hash))
    }
}

/// `sha256(prev || body)`.
pub fn chain_hash(prev: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

/// Splits a stored value into its recorded hash and its body.
pub fn split_stored(value: &[u8]) -> Result<(Hash, &[u8]), DecodeError> {
    let (hash, body) = value
        .split_first_chunk::<HASH_LEN>()
        .ok_or(DecodeError::Truncated(value.len()))?;
    Ok((*hash, body))
}

/// Decodes a stored value (hash || body), upcasting older payloads before typed decoding.
pub fn decode(value: &[u8]) -> Result<Envelope, DecodeError> {
    let (hash, body) = split_stored(value)?;
    let raw: BodyIn<'_> = serde_json::from_slice(body).map_err(DecodeError::Envelope)?;
    let event = decode_payload(&raw.event_type, raw.v, raw.data.get())?;
    Ok(Envelope {
        id: raw.id,
        stream: raw.stream.into_owned(),
        seq: raw.seq,
        recorded_at: raw.at,
        actor: raw.actor.into_owned(),
        idempotency: raw.idem,
        stored_version: raw.v,
        event,
        hash,
    })
}

/// The envelope fields without decoding the payload: enough for integrity checks and indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: Ulid,
    pub stream: String,
    pub seq: u64,
    pub recorded_at: u64,
    pub event_type: String,
    pub version: u16,
    pub idempotency: Option<IdempotencyMark>,
}

pub fn decode_header(value: &[u8]) -> Result<Header, DecodeError> {
    let (_, body) = split_stored(value)?;
    let raw: BodyIn<'_> = serde_json::from_slice(body).map_err(DecodeError::Envelope)?;
    Ok(Header {
        id: raw.id,
        stream: raw.stream.into_owned(),
        seq: raw.seq,
        recorded_at: raw.at,
        event_type: raw.event_type.into_owned(),
        version: raw.v,
        idempotency: raw.idem,
    })
}

/// Decodes a payload stored at `version` of `type_name`.
pub fn decode_payload(type_name: &str, version: u16, json: &str) -> Result<Event, DecodeError> {
    let current = Event::current_version(type_name)
        .ok_or_else(|| DecodeError::UnknownType(type_name.to_owned()))?;
    if version == current {
        return Event::decode_current(type_name, json);
    }
    if version > current {
        return Err(DecodeError::FutureVersion {
            type_name: type_name.to_owned(),
            version,
            current,
        });
    }
    let tree: serde_json::Value = serde_json::from_str(json).map_err(DecodeError::Payload)?;
    let tree = upcast::to_current(upcast::UPCASTERS, type_name, version, current, tree)?;
    Event::decode_value(type_name, tree)
}
