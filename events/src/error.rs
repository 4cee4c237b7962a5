//! The log's error type.

use crate::command::Expected;
use crate::event::DecodeError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Optimistic concurrency: the stream moved since the command read it.
    #[error("version conflict on stream {stream}: expected {expected}, found version {actual}")]
    Conflict {
        stream: String,
        expected: Expected,
        actual: u64,
    },
    /// The stream ended with an event that closes it (a deleted task).
    #[error("stream {stream} is closed")]
    StreamClosed { stream: String },
    /// A commit or fsync failed earlier: the state on disk is uncertain, so the store refuses
    /// every further write until it is reopened.
    #[error("the event store refuses writes after a failed commit: {0}")]
    Poisoned(String),
    #[error("storage: {0}")]
    Storage(#[from] fjall::Error),
    #[error("event {id}: {source}")]
    Decode { id: String, source: DecodeError },
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// An event over the log's size or depth bound (see `bounds`): the command is rejected.
    #[error("{0}")]
    TooLarge(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("the log writer has stopped")]
    WriterStopped,
    #[error("projection {projection}: {message}")]
    Projection { projection: String, message: String },
}
