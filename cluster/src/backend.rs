//! `JetStream`: the log writer's backend on a replicated stream.
//!
//! A group of commands is published first, as few messages as fit under the server's
//! `max_payload` (`message::split`), each with `Nats-Expected-Last-Sequence` set to the position
//! the local database holds and `Nats-Msg-Id` set to the message's first ULID. Only when every
//! message is acknowledged is the local batch committed, with the new position in the same
//! batch: so the local database never holds an event the stream does not, and its position
//! always names the last message it applied.
//!
//! A refused publish (another replica appended) deposes the writer (`Landed::Deposed`): the
//! commands in messages already acknowledged are durable and reach the local database again by
//! following the stream; the others are refused with `Error::NotWriter`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use events::fjall::{Database, Keyspace, OwnedWriteBatch};
use events::{Backend, Landed, LogKeyspaces, Records};

use crate::error::{Error, Result};
use crate::message::split;
use crate::stream::{Refused, Replicated};

/// The keyspace of the local database that records what it holds of the stream.
const KEYSPACE: &str = "replication";
/// The last stream sequence applied (8 bytes, big-endian).
const POSITION: &[u8] = b"position";
/// The stream the local database was taken from.
const STREAM: &[u8] = b"stream";

pub struct JetStream {
    replicated: Replicated,
    runtime: tokio::runtime::Handle,
    keyspace: Keyspace,
    position: AtomicU64,
    /// The position, for those waiting until the local database holds a given one.
    reached: tokio::sync::watch::Sender<u64>,
    /// Whether this replica takes commands (holds the writer's lease, see `lease`). A backend
    /// opened alone leads; a `Replica` starts it following.
    leading: AtomicBool,
    /// The same, for those who act on each change (the engine, the timers).
    leadership: tokio::sync::watch::Sender<bool>,
    /// Counts deposed commits: the lease's campaign steps down when it moves.
    deposed: tokio::sync::watch::Sender<u64>,
    /// Until when this replica may lead by its own clock, in nanoseconds after `opened`
    /// (`hold_until`; `u64::MAX` for a backend opened alone). Past it, `leading` is false even
    /// before the lease's campaign notices: a writer paused past its lease and resumed decides
    /// and publishes nothing on what it held before the pause.
    held_until: AtomicU64,
    opened: Instant,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("stream", &self.replicated.name())
            .field("position", &self.position.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl JetStream {
    /// The backend for the local database `db`, which must hold nothing but what it took from
    /// this stream. `runtime` drives the publishes (the writer's threads block on them).
    pub async fn open(
        db: &Database,
        replicated: Replicated,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self> {
        let keyspace = db.keyspace(KEYSPACE, events::keyspace_options)?;
        let position = match keyspace.get(POSITION)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::Local("a damaged replication position".into()))?,
            ),
            None => 0,
        };
        let stream = keyspace.get(STREAM)?;
        match &stream {
            Some(name) if name.as_ref() != replicated.name().as_bytes() => {
                return Err(Error::Local(format!(
                    "it was taken from stream {:?}, not {:?}: use another data directory",
                    String::from_utf8_lossy(name),
                    replicated.name()
                )));
            }
            Some(_) => {}
            None => {
                if LogKeyspaces::open(db)?.head()?.is_some() {
                    return Err(Error::Local(format!(
                        "it holds a log of its own (event_log.backend fjall): move it into the stream with `aggregator log import`, or start this replica on an empty data directory to take stream {:?}",
                        replicated.name()
                    )));
                }
                keyspace.insert(STREAM, replicated.name().as_bytes())?;
            }
        }
        let head = replicated.head_patiently().await?;
        if position > head {
            return Err(Error::Local(format!(
                "it holds stream {:?} up to position {position}, but the stream ends at {head}: the stream was recreated; start this replica on an empty data directory",
                replicated.name()
            )));
        }
        Ok(Self {
            replicated,
            runtime,
            keyspace,
            position: AtomicU64::new(position),
            reached: tokio::sync::watch::Sender::new(position),
            leading: AtomicBool::new(true),
            leadership: tokio::sync::watch::Sender::new(true),
            deposed: tokio::sync::watch::Sender::new(0),
            held_until: AtomicU64::new(u64::MAX),
            opened: Instant::now(),
        })
    }

    /// Whether this replica takes commands now (`Backend::leading`).
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
        self.leadership
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
    }

    /// This replica may lead until `until` at most, by its own clock: the lease sets it at each
    /// renewal acknowledged.
    pub fn hold_until(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.opened).as_nanos();
        self.held_until
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn within_hold(&self) -> bool {
        let now = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now < self.held_until.load(Ordering::Acquire)
    }

    /// Follows whether this replica leads.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leadership.subscribe()
    }

    /// Moves each time a commit is deposed (the stream refused a publish, or did not answer).
    pub fn deposed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.deposed.subscribe()
    }

    /// Waits until the local database holds the stream through `position` (someone must be
    /// following it, see `follow`).
    pub async fn reached(&self, position: u64) {
        let mut at = self.reached.subscribe();
        let _ = at.wait_for(|p| *p >= position).await;
    }

    /// Follows the position the local database holds: it moves with every commit, this
    /// replica's own and those it followed (the engine looks for executions to claim then).
    pub fn positions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reached.subscribe()
    }

    /// The replicated log this backend publishes to.
    pub fn replicated(&self) -> &Replicated {
        &self.replicated
    }

    fn advance(&self, position: u64) {
        self.position.store(position, Ordering::Release);
        self.reached.send_replace(position);
    }

    fn record(&self, batch: &mut OwnedWriteBatch, position: u64) {
        batch.insert(&self.keyspace, POSITION, position.to_be_bytes());
    }
}

impl Backend for JetStream {
    fn publishes(&self) -> bool {
        true
    }

    fn commit(&self, mut batch: OwnedWriteBatch, commands: &[Records]) -> events::Result<Landed> {
        let max_payload = self.replicated.max_payload();
        let messages = match split(commands, max_payload) {
            Ok(messages) => messages,
            Err(i) => {
                // Nothing of the group is published: the writer resets and refuses it (the
                // command is retried the same way; the configured limits should prevent it).
                return Ok(Landed::Deposed {
                    durable: 0,
                    reason: format!(
                        "command {i} of the group is larger than the NATS server's max_payload ({max_payload} bytes): raise max_payload or lower limits.max_event_bytes"
                    ),
                });
            }
        };
        let mut position = self.position.load(Ordering::Acquire);
        let mut durable = 0;
        for message in &messages {
            match self
                .runtime
                .block_on(self.replicated.publish(message, position))
            {
                Ok(sequence) => {
                    position = sequence;
                    durable = message.through;
                }
                Err(Refused::Moved(reason) | Refused::Unreachable(reason)) => {
                    self.deposed.send_modify(|n| *n += 1);
                    return Ok(Landed::Deposed { durable, reason });
                }
            }
        }
        self.record(&mut batch, position);
        batch.commit()?;
        self.advance(position);
        Ok(Landed::Durable)
    }

    fn commit_followed(&self, mut batch: OwnedWriteBatch, through: u64) -> events::Result<()> {
        self.record(&mut batch, through);
        batch.commit()?;
        self.advance(through);
        Ok(())
    }

    fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire) && self.within_hold()
    }

    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }
}
