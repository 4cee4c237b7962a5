//! The backend seam: where the writer's group commits become durable, and how a replica's writer
//! takes in the events another replica wrote.
//!
//! - `Local` (fjall alone, the default): a group is durable once its one fjall batch is committed
//!   (fsync'd in `Durability::Sync`). Nothing else happens: this is the log as it always was.
//! - A replicated log (the `cluster` crate: a NATS JetStream stream) publishes each group's events
//!   to the stream before it commits the local batch (`Backend::commit`), and its replicas apply
//!   the events others published, in stream order, through the same writer (`Log::follow`,
//!   `Backend::commit_followed`).
//!
//! The writer thread stays the one owner of the in-memory state (ULIDs, the hash chain, stream
//! heads, projection rows, the tree's edge) in both roles, leading (staging commands) and
//! following (staging stored events read from the stream). A backend that finds the log moved
//! under it (another replica appended first) answers `Landed::Deposed`: the writer then refuses
//! what it staged on top and resets from what its local database holds (`Log::sync`).

use fjall::{OwnedWriteBatch, Slice};
use ulid::Ulid;

use crate::error::Result;

/// One command's events as stored (hash ‖ body), in log order: what a replicated backend
/// publishes. A command is never split across two publishes.
pub type Records = Vec<(Ulid, Slice)>;

/// How a group of the writer's commands ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// Every command is durable.
    Durable,
    /// The first `durable` commands (of those that appended events) are durable in the log; the
    /// others are not, because another replica writes the log now (`reason`). The local batch
    /// was not committed: the writer resets from its local database and the replica follows the
    /// log again (what it did publish comes back to it that way).
    Deposed { durable: usize, reason: String },
}

/// Where the writer commits. Calls come from the log's writer and committer threads, one at a
/// time and in log order, so implementations may block (a replicated one waits for its
/// publish's acknowledgement).
pub trait Backend: Send + Sync + 'static {
    /// Whether this process writes the log now. One that does not refuses commands with
    /// `Error::NotWriter` (a `Router` sends them to the replica that does).
    fn leading(&self) -> bool {
        true
    }

    /// Whether `commit` wants each command's stored events.
    fn publishes(&self) -> bool {
        false
    }

    /// Makes a group of this writer's commands durable. `batch` holds their events, index
    /// entries, projection rows and checkpoints; `commands` each command's stored events when
    /// `publishes` (empty otherwise). An `Err` poisons the store: the local disk failed.
    fn commit(&self, batch: OwnedWriteBatch, commands: &[Records]) -> Result<Landed>;

    /// Commits a batch of events followed from the replicated log, which brings the local
    /// database to position `through` of it. An `Err` poisons the store.
    fn commit_followed(&self, batch: OwnedWriteBatch, through: u64) -> Result<()> {
        let _ = through;
        batch.commit()?;
        Ok(())
    }

    /// The replicated log's position the local database holds (0: none, or not replicated).
    fn position(&self) -> u64 {
        0
    }
}

/// fjall alone: the group's batch is the commit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Backend for Local {
    fn commit(&self, batch: OwnedWriteBatch, _: &[Records]) -> Result<Landed> {
        batch.commit()?;
        Ok(Landed::Durable)
    }
}

/// A boxed future, for `Router`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where a replica's appends go (set with `Log::route_through`): to its own writer while it
/// leads (`Log::append_local`), to the leading replica's otherwise. Without one, every append
/// goes to the local writer.
pub trait Router: Send + Sync + 'static {
    fn append<'a>(
        &'a self,
        log: &'a crate::Log,
        command: crate::Command,
    ) -> BoxFuture<'a, Result<crate::Committed>>;
}
