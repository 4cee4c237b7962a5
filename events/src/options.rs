//! How the log is opened and what it calls back: durability, group size, and the projector hook.

use ulid::Ulid;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::tx::Tx;

/// How an acknowledged command reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` before any command of a group is acknowledged; concurrent commands share one
    /// fsync (group commit). An acknowledged command survives a power loss.
    #[default]
    Sync,
    /// Written to the OS before acknowledging, without fsync: survives a crash of the process,
    /// not of the machine. For tests and throwaway deployments.
    Relaxed,
}

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub durability: Durability,
    /// The most commands one group commit takes from the queue.
    pub max_group: usize,
    /// The largest event body the log accepts, in bytes (the aggregator sets it from
    /// `limits.max_event_bytes`; every other size limit fits under it). A larger event rejects
    /// its command.
    pub max_event_bytes: usize,
}

/// `LogOptions::max_event_bytes` unless set.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 2 * 1024 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            max_group: 1024,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// The read side's hook into the writer: called for every appended event, inside the batch that
/// appends it, so events, projection rows and checkpoint commit together.
pub trait Projector: Send + 'static {
    /// Folds one event into the read keyspaces, through `tx` only (no state of its own: a
    /// command rejected half-way is undone by rolling back `tx`). Holds no business rule. An
    /// error rejects the command that carried the event (a storage error poisons the store).
    fn apply(&mut self, envelope: &Envelope, tx: &mut Tx) -> Result<()>;
    /// Records that every event up to `last` is applied; called once per group commit.
    fn checkpoint(&mut self, last: Ulid, tx: &mut Tx) -> Result<()>;
    /// Called once a command staged whole, for each of its events in log order, with the
    /// event's stored value (hash ‖ body): for a follower that keeps state of its own outside
    /// `tx` (the Merkle tree's right edge, `tlog`), which must never see an event of a rejected
    /// command. Such a follower stages its rows in `checkpoint`.
    fn staged(&mut self, _id: Ulid, _stored: &[u8]) {}
}
