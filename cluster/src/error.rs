//! The replicated log's failures (one enum for the layer).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("connecting to NATS at {urls}: {message}")]
    Connect { urls: String, message: String },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    /// The local database does not belong to the stream (a fjall-only log, another stream, or
    /// a stream that was recreated behind it).
    #[error("the local database in the data directory: {0}")]
    Local(String),
    /// This replica's keys directory differs from the other replicas' (`fingerprints`).
    #[error("the keys directory: {0}")]
    Keys(String),
    #[error("the event log: {0}")]
    Log(#[from] events::Error),
}

impl From<events::fjall::Error> for Error {
    fn from(e: events::fjall::Error) -> Self {
        Self::Log(events::Error::Storage(e))
    }
}
