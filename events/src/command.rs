//! What a caller asks the log to append: one command, its events per stream, each stream with the
//! version the caller expects, and an optional idempotency key.

use crate::event::Event;

/// One command's events, committed atomically or not at all.
#[derive(Debug, Clone)]
pub struct Command {
    /// Owner or operator address (lower-case), or `system`.
    pub actor: String,
    /// Milliseconds since the epoch, taken once per command by the caller.
    pub recorded_at: u64,
    pub idempotency: Option<Idempotency>,
    pub appends: Vec<Append>,
}

impl Command {
    pub fn new(actor: impl Into<String>, recorded_at: u64) -> Self {
        Self {
            actor: actor.into(),
            recorded_at,
            idempotency: None,
            appends: Vec::new(),
        }
    }

    /// Adds events for one stream.
    pub fn append(
        mut self,
        stream: impl Into<String>,
        expected: Expected,
        events: impl IntoIterator<Item = Event>,
    ) -> Self {
        self.appends.push(Append {
            stream: stream.into(),
            expected,
            events: events.into_iter().collect(),
        });
        self
    }

    /// A retried command with the same key appends nothing and returns the first result.
    pub fn idempotent(mut self, key: impl Into<String>, window_ms: Option<u64>) -> Self {
        self.idempotency = Some(Idempotency {
            key: key.into(),
            window_ms,
        });
        self
    }

    pub fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Append {
    pub stream: String,
    pub expected: Expected,
    pub events: Vec<Event>,
}

/// The stream version a command was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last sequence number must be this one (0 = empty).
    Exactly(u64),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exactly(v) => write!(f, "version {v}"),
        }
    }
}

/// A key that makes a command idempotent: within `window_ms` (or forever when `None`), and as
/// long as the stream its first event went to is not closed, the same key returns the same result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub window_ms: Option<u64>,
}

/// Where an appended event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub id: ulid::Ulid,
    pub stream: String,
    pub seq: u64,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub events: Vec<EventRef>,
    /// True when the idempotency key matched an earlier command: `events` are that command's.
    pub deduplicated: bool,
}
