//! The append-only event log: the only source of truth of the aggregator.
//!
//! Layout:
//! - `event`: the domain events (past-tense variants) with their type names and schema versions;
//! - `task`, `execution`, `user_op`: the domain data events carry (a task's definition, a run's
//!   steps, a signed user operation and its receipt);
//! - `envelope`: the metadata around each event, its exact stored bytes and the hash chain;
//! - `upcast`: rewriting older payload versions before typed decoding;
//! - `command`: what callers append (events per stream, expected versions, idempotency key);
//! - `log`: the shared handle; `options`: durability, group size and the projector hook;
//!   `backend`: where groups become durable (fjall alone, or a replicated log first) and where a
//!   replica's appends go;
//!   `keyspaces`: the log's keyspaces and the reads over them; `keys`: their byte layout;
//! - `writer`: the single writer thread with group commit; `tx`: projection rows staged in the
//!   same batch as their events;
//! - `verify`: integrity of the stored log; `indexes`: the indexes rebuilt from the events, and
//!   keyspace comparison;
//! - `stream`: the stream id of each kind of aggregate; `timeline`: every event of a task and of
//!   what it started, in log order;
//! - `wire`: a command and its outcome as bytes, for a replica that forwards to the writer;
//! - `bounds`: the depth and size every stored event and row keeps to, so that readers read it.

mod backend;
pub mod bounds;
mod command;
mod decoded;
mod envelope;
mod error;
pub mod event;
pub mod execution;
mod ids;
mod indexes;
mod key_order;
mod keys;
mod keyspaces;
mod log;
mod null_kept;
mod options;
pub mod samples;
pub mod stream;
pub mod task;
mod timeline;
mod tx;
pub mod upcast;
pub mod user_op;
mod verify;
pub mod wire;
mod writer;

#[cfg(test)]
mod tests;

pub use backend::{Backend, BoxFuture, Landed, Local, Records, Router};
pub use command::{Append, Command, Committed, EventRef, Expected, Idempotency};
pub use decoded::for_each_decoded;
pub use envelope::{
    Envelope, GENESIS_HASH, HASH_LEN, Hash, Header, IdempotencyMark, chain_hash, decode,
    decode_header, decode_payload, split_stored,
};
pub use error::{Error, Result};
pub use event::{DecodeError, EVENT_TYPES, Event};
pub use ids::now_ms;
pub use indexes::{Difference, first_difference, printable, rebuild_indexes};
pub use keys::{decode_at, decode_header_at};
pub use keyspaces::LogKeyspaces;
pub use log::{Log, flush_memtables, keyspace_options, open_database};
pub use options::{DEFAULT_MAX_EVENT_BYTES, Durability, LogOptions, Projector};
pub use tx::{Tx, TypedRow};
pub use verify::{VerifyFailure, VerifyReport, verify, verify_with};

pub use fjall;
pub use ulid::Ulid;
