//! The event log on a replicated NATS JetStream stream.
//!
//! With `event_log.backend: jetstream`, the stream is the only source of truth. Each replica keeps
//! the log, its index entries, projections and tree in a local fjall database, derived from the
//! stream and applied in stream order through the log's one writer (`events::backend`).
//!
//! - `message`: how a group of commands becomes stream messages (whole commands, under the
//!   server's `max_payload`) and back;
//! - `stream`: connecting, creating the stream (with its genesis message) and reading its head;
//! - `backend`: `JetStream`, the writer's backend: publishes each message with
//!   `Nats-Expected-Last-Sequence` (the position the local database holds) and `Nats-Msg-Id`
//!   (the message's first ULID), then commits the local batch with the new position;
//! - `follow`: reads the stream from the local position on and hands each message to the writer
//!   (`Log::follow`); `catch_up` waits until the local database holds the stream's head;
//! - `lease`: the writer's lease in a KV bucket: one replica takes commands at a time, a dead
//!   one's lease lapses and another takes it;
//! - `forward`: a replica that does not write sends each command to the one that does
//!   (request/reply), retried safely while the writer changes;
//! - `replica`: `Replica`, one aggregator process put together (follow, lease, forwarding);
//! - `buckets`: the streams and KV buckets every replica creates when missing, safe when
//!   replicas start at the same moment (a failed create falls back to what exists, retried);
//! - `fingerprints`: the keys every replica shares, recorded by fingerprint beside the stream;
//!   a replica whose keys differ refuses to start;
//! - `nonces`: the operators' request nonces in a KV bucket, so that a request replayed to
//!   another replica is refused;
//! - `presence`: which operators hold a stream on which replica, in a KV bucket kept alive by
//!   the replica holding each, so that the writer assigns tasks among all of them;
//! - `transfer`: the stream's events read in order, copied into a local database, and a local
//!   log imported into an empty stream (the tools: `aggregator log export|import`, `replay --nats`);
//! - `error`: this layer's failures.

mod backend;
mod buckets;
mod error;
pub mod fingerprints;
mod follow;
pub mod forward;
pub mod lease;
pub mod message;
mod nonces;
pub mod presence;
mod replica;
mod stream;
pub mod transfer;

pub use backend::JetStream;
pub use error::{Error, Result};
pub use follow::{catch_up, follow};
pub use lease::Writer;
pub use nonces::KvNonces;
pub use presence::KvPresence;
pub use replica::Replica;
pub use stream::{Refused, Replicated, StreamSettings};
