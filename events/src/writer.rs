//! The single writer: one thread drains the queue of pending commands, checks their expected
//! versions and idempotency keys, assigns ULIDs, sequences and hashes, lets the projector stage the
//! rows the events change, and hands the group's batch to the committer thread, which commits it
//! with one fsync and only then acknowledges each command.
//!
//! Two stages so that the CPU work of the next group overlaps the fsync of the current one. The
//! hand-off is a rendezvous: the writer gives group N+1 to the committer only once group N is on
//! disk. While N+1 is staged, N may still be in flight, so everything N wrote must be readable from
//! memory: stream heads (emptied only behind a barrier that waits for the committer to be idle),
//! idempotency keys of the last two groups, and projection rows (`Tx` keeps the previous group's).
//!
//! A command is staged whole or not at all: an error while staging it (a conflict, an event over
//! the log's size or depth bound, a projection refusing a row) rejects that command alone, with its
//! projection rows rolled back (`Tx::savepoint`); the rest of the group commits. Only a failure of
//! the disk poisons the store.
//!
//! Ordering hazard: a command is acknowledged only after the batch holding it is committed (and
//! fsync'd in `Durability::Sync`). A failed commit poisons the store: every command of that group,
//! of the group staged behind it, and every later one gets `Error::Poisoned`; the in-memory state
//! is then meaningless, which is fine because nothing is written again until the store reopens.
//!
//! The commit itself goes through the log's `Backend` (`backend`): fjall alone commits the batch;
//! a replicated log publishes the group first. When it answers `Landed::Deposed` (another replica
//! appended first), the commands not durable and every group staged behind get
//! `Error::NotWriter`, and the writer resets its in-memory state from the local database before it
//! stages anything else (`resync`). A replica that follows another's writes stages the stored
//! events it is given (`follow`) through the same state, so that it can lead next.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use fjall::{Database, OwnedWriteBatch, PersistMode, Slice};
use tokio::sync::oneshot;
use ulid::Ulid;

use crate::backend::{Backend, Landed, Records};
use crate::bounds::{MAX_EVENT_DEPTH, json_depth};
use crate::command::{Command, Committed, EventRef, Expected};
use crate::envelope::{Envelope, Hash, IdempotencyMark, NewEnvelope};
use crate::error::{Error, Result};
use crate::event::closes_stream;
use crate::ids::MonotonicUlids;
use crate::keys::{
    IdempotencyRecord, decode_header_at, seq_from_stream_key, stream_key, stream_prefix,
    ulid_from_key,
};
use crate::keyspaces::LogKeyspaces;
use crate::options::{Durability, LogOptions, Projector};
use crate::tx::Tx;

mod follow;

pub(crate) use follow::Followed;

pub(crate) enum Request {
    Append {
        command: Command,
        reply: oneshot::Sender<Result<Committed>>,
    },
    /// Stored events another replica appended, which bring the log to position `through` of
    /// the replicated log (`follow`).
    Follow(Followed),
    /// Answered once every earlier request has landed (and the writer has reset, after a
    /// deposed commit) with the replicated log's position the local database holds.
    Sync {
        done: oneshot::Sender<u64>,
    },
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// Set once, when a commit fails.
#[derive(Debug, Default)]
pub(crate) struct Poison(Mutex<Option<String>>);

impl Poison {
    pub fn reason(&self) -> Option<String> {
        match self.0.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => Some("the poison flag's lock is poisoned".into()),
        }
    }

    fn set(&self, reason: String) {
        tracing::error!(%reason, "event store poisoned: refusing further writes");
        if let Ok(mut guard) = self.0.lock()
            && guard.is_none()
        {
            *guard = Some(reason);
        }
    }
}

/// What the writer knows about a stream's end.
#[derive(Debug, Clone, Copy)]
struct Head {
    seq: u64,
    closed: bool,
}

/// Streams whose heads stay cached; past this the cache is cleared (it refills from `streams`).
const HEAD_CACHE_LIMIT: usize = 200_000;

pub(crate) struct Writer {
    db: Database,
    keyspaces: LogKeyspaces,
    projector: Box<dyn Projector>,
    options: LogOptions,
    ids: MonotonicUlids,
    prev_hash: Hash,
    heads: HashMap<String, Head>,
    /// Projection rows staged for the current group, and the rows read or written recently.
    tx: Tx,
    /// Idempotency keys of the previous group, which may still be in flight.
    previous_keys: HashMap<String, Committed>,
    poison: Arc<Poison>,
    backend: Arc<dyn Backend>,
    /// Set by a deposed commit: what was staged on top of it is refused until the writer resets.
    resync: Arc<AtomicBool>,
    /// The replicated log's position staged so far while following.
    position: u64,
}

/// What the writer hands to the committer.
enum Flight {
    Group {
        batch: OwnedWriteBatch,
        pending: Vec<Pending>,
        /// Each command's stored events, when the backend publishes them.
        records: Vec<Records>,
    },
    /// Events followed from the replicated log, through its position `through`.
    Followed {
        batch: OwnedWriteBatch,
        through: u64,
    },
    /// Received only when the committer is idle: every earlier group is on disk.
    Barrier,
}

/// Bytes of projection rows read from fjall that the writer keeps cached.
const ROW_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Which of the log's keyspaces a staged write goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Events,
    Streams,
    Idempotency,
}

/// One command staged: what it appended, and what the batch, the heads and the idempotency keys
/// get once the whole command has staged.
struct Staged {
    committed: Committed,
    writes: Vec<(Kind, Vec<u8>, Vec<u8>)>,
    heads: Vec<(String, Head)>,
    idempotency_key: Option<String>,
}

/// A command that passed its checks in the current group, waiting for the commit.
struct Pending {
    reply: oneshot::Sender<Result<Committed>>,
    committed: Committed,
    /// How many commands of the group's `records` must be durable for this one to be: its own
    /// and those before it (a deduplicated one waits for the command it repeats).
    needs: usize,
}

impl Writer {
    pub fn new(
        db: Database,
        keyspaces: LogKeyspaces,
        projector: Box<dyn Projector>,
        options: LogOptions,
        (last, prev_hash): (Ulid, Hash),
        poison: Arc<Poison>,
        backend: Arc<dyn Backend>,
    ) -> Self {
        let position = backend.position();
        Self {
            db,
            keyspaces,
            projector,
            options,
            ids: MonotonicUlids::after(last),
            prev_hash,
            heads: HashMap::new(),
            tx: Tx::with_cache(ROW_CACHE_BYTES),
            previous_keys: HashMap::new(),
            poison,
            backend,
            resync: Arc::new(AtomicBool::new(false)),
            position,
        }
    }

    pub fn run(mut self, queue: Receiver<Request>) {
        let (flights, landing) = sync_channel::<Flight>(0);
        let lander = Lander {
            poison: self.poison.clone(),
            backend: self.backend.clone(),
            resync: self.resync.clone(),
        };
        let committer_lander = lander.clone();
        // Flights sent to the committer and not landed yet. A lone command is landed on this
        // thread only when it is 0: with one still queued behind the one landing, landing here
        // would commit out of order (two publishes against one expected position, or a later
        // group durable before an earlier one).
        let busy = Arc::new(AtomicUsize::new(0));
        let committer_busy = busy.clone();
        let committer = std::thread::Builder::new()
            .name("log-committer".into())
            .spawn(move || commit_flights(landing, &committer_lander, &committer_busy));
        let Ok(committer) = committer else {
            self.poison
                .set("cannot start the log committer thread".into());
            return;
        };
        let max_group = self.options.max_group.max(1);
        let mut stop = None;
        while stop.is_none() {
            let Ok(first) = queue.recv() else { break };
            let mut group = Vec::with_capacity(64);
            let mut followed = Vec::new();
            let mut sync = None;
            match first {
                Request::Append { command, reply } => group.push((command, reply)),
                Request::Follow(f) => followed.push(f),
                Request::Sync { done } => sync = Some(done),
                Request::Stop { done } => stop = Some(done),
            }
            while stop.is_none() && sync.is_none() && group.len() + followed.len() < max_group {
                match queue.try_recv() {
                    Ok(Request::Append { command, reply }) => group.push((command, reply)),
                    Ok(Request::Follow(f)) => followed.push(f),
                    Ok(Request::Sync { done }) => sync = Some(done),
                    Ok(Request::Stop { done }) => stop = Some(done),
                    Err(_) => break,
                }
            }
            if self.resync.load(Ordering::Acquire) {
                self.reset(&flights);
            }
            if !followed.is_empty() {
                // This writer's own groups come back from the stream too: once what is in
                // flight has landed, the backend's position says which of them it holds.
                let _ = flights.send(Flight::Barrier);
                if self.resync.load(Ordering::Acquire) {
                    // A group was deposed while it landed: what was staged on top of it is not
                    // the log's, and the followed events chain onto what landed.
                    self.reset(&flights);
                }
                self.position = self.position.max(self.backend.position());
                self.trim_caches(&flights);
                if let Some(flight) = self.stage_followed(followed) {
                    busy.fetch_add(1, Ordering::AcqRel);
                    let _ = flights.send(flight);
                }
            }
            if !group.is_empty() {
                self.trim_caches(&flights);
                if let Some(flight) = self.stage_group(group) {
                    // A lone command with nothing in flight gains nothing from the pipeline:
                    // committing it here saves a thread hop of latency. Otherwise the committer
                    // takes it (once the group in flight has landed) while the next is staged.
                    let lone =
                        matches!(&flight, Flight::Group { pending, .. } if pending.len() == 1);
                    if lone && busy.load(Ordering::Acquire) == 0 {
                        lander.land(flight);
                    } else {
                        busy.fetch_add(1, Ordering::AcqRel);
                        let _ = flights.send(flight);
                    }
                }
            }
            if let Some(done) = sync {
                // Received only once the committer is idle: everything before has landed.
                let _ = flights.send(Flight::Barrier);
                if self.resync.load(Ordering::Acquire) {
                    self.reset(&flights);
                }
                let _ = done.send(self.backend.position());
            }
        }
        drop(flights);
        let _ = committer.join();
        if let Some(done) = stop {
            let _ = done.send(());
        }
    }

    /// Forgets what was staged on top of a deposed commit, once nothing is in flight: the chain,
    /// ULIDs, stream heads, rows and the projector's own state are read again from the local
    /// database, which holds exactly what landed.
    fn reset(&mut self, flights: &SyncSender<Flight>) {
        let _ = flights.send(Flight::Barrier);
        let reloaded = self.keyspaces.head().and_then(|head| {
            let (last, prev_hash) = head.unwrap_or((Ulid::nil(), crate::envelope::GENESIS_HASH));
            self.projector.reset()?;
            Ok((last, prev_hash))
        });
        match reloaded {
            Ok((last, prev_hash)) => {
                self.ids = MonotonicUlids::after(last);
                self.prev_hash = prev_hash;
            }
            Err(e) => self.poison.set(format!(
                "reloading the writer's state after it was deposed failed: {e}"
            )),
        }
        self.heads.clear();
        self.tx.forget();
        self.previous_keys.clear();
        self.position = self.backend.position();
        self.resync.store(false, Ordering::Release);
    }

    /// Empties the stream heads once past their limit, after waiting for the group in flight
    /// (whose heads are only in memory until it lands). The row cache trims itself (`Tx`).
    fn trim_caches(&mut self, flights: &SyncSender<Flight>) {
        if self.heads.len() < HEAD_CACHE_LIMIT {
            return;
        }
        let _ = flights.send(Flight::Barrier);
        self.heads.clear();
    }

    /// Stages a group of commands: rejections are answered at once; the rest wait in the returned
    /// flight for their commit.
    fn stage_group(
        &mut self,
        group: Vec<(Command, oneshot::Sender<Result<Committed>>)>,
    ) -> Option<Flight> {
        let mut batch = self.db.batch().durability(match self.options.durability {
            Durability::Sync => Some(PersistMode::SyncData),
            Durability::Relaxed => None,
        });
        let mut tx = std::mem::take(&mut self.tx);
        let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
        let mut staged_keys: HashMap<String, Committed> = HashMap::new();
        let mut last_staged = None;
        let mut records: Vec<Records> = Vec::new();
        let publishes = self.backend.publishes();

        for (command, reply) in group {
            if let Some(reason) = self.poison.reason() {
                let _ = reply.send(Err(Error::Poisoned(reason)));
                continue;
            }
            if !self.backend.leading() {
                let _ = reply.send(Err(Error::NotWriter(
                    "this replica does not write the log now".into(),
                )));
                continue;
            }
            let published = publishes.then_some(&mut records);
            match self.stage(command, &mut batch, &mut tx, &mut staged_keys, published) {
                Ok(committed) => {
                    if !committed.deduplicated {
                        last_staged = committed.events.last().map(|e| e.id);
                    }
                    pending.push(Pending {
                        reply,
                        committed,
                        needs: records.len(),
                    });
                }
                Err(e) if is_io_failure(&e) => {
                    // The disk failed under a read: what it holds is uncertain.
                    self.poison.set(format!("staging a command failed: {e}"));
                    let _ = reply.send(Err(e));
                }
                Err(rejected) => {
                    // Deterministic (a conflict, a refused event or row): the command staged
                    // nothing, the group goes on without it.
                    if !is_expected_rejection(&rejected) {
                        tracing::warn!(error = %rejected, "a command was rejected while staging");
                    }
                    let _ = reply.send(Err(rejected));
                }
            }
        }
        self.previous_keys = staged_keys;

        let prepared = match last_staged {
            Some(last) => self
                .projector
                .checkpoint(last, &mut tx)
                .and_then(|()| tx.drain_into(&mut batch)),
            None => Ok(()), // only rejections and deduplications: nothing to write
        };
        self.tx = tx;
        if let Err(e) = prepared {
            self.poison
                .set(format!("staging the checkpoint failed: {e}"));
        }
        if let Some(reason) = self.poison.reason() {
            self.tx.forget();
            for p in pending {
                let _ = p.reply.send(Err(Error::Poisoned(reason.clone())));
            }
            return None;
        }
        if pending.is_empty() {
            return None;
        }
        Some(Flight::Group {
            batch,
            pending,
            records,
        })
    }

    /// Checks one command and stages its events, in three phases: a repeat of an idempotency
    /// key answers what the first command appended (`dedup`); the streams' heads must match the
    /// expected versions (`check_heads`); then the events are encoded, chained and projected
    /// (`stage_events`). Nothing reaches `batch`, the stream heads or the hash chain unless the
    /// whole command staged: an error in any phase leaves the group as it was, so a command that
    /// cannot be staged (a conflict, an event too large or too deep, a projection refusing a row)
    /// is rejected alone.
    fn stage(
        &mut self,
        command: Command,
        batch: &mut OwnedWriteBatch,
        tx: &mut Tx,
        staged_keys: &mut HashMap<String, Committed>,
        published: Option<&mut Vec<Records>>,
    ) -> Result<Committed> {
        let event_count = validate_shape(&command)?;
        if let Some(earlier) = self.dedup(&command, staged_keys)? {
            return Ok(earlier);
        }
        let heads = self.check_heads(&command)?;
        let prev_hash = self.prev_hash;
        tx.savepoint();
        match self.stage_events(command, heads, event_count, tx) {
            Ok(staged) => {
                tx.release();
                let mut records = published;
                if let Some(all) = records.as_mut() {
                    all.push(Vec::with_capacity(event_count));
                }
                for (keyspace, key, value) in staged.writes {
                    // The whole command staged: followers with state of their own see it now.
                    if matches!(keyspace, Kind::Events)
                        && let Ok(id) = <[u8; 16]>::try_from(key.as_slice())
                    {
                        let id = Ulid::from_bytes(id);
                        self.projector.staged(id, &value);
                        if let Some(command) = records.as_mut().and_then(|all| all.last_mut()) {
                            let value = Slice::from(value);
                            command.push((id, value.clone()));
                            batch.insert(self.keyspaces.by_kind(keyspace), key, value);
                            continue;
                        }
                    }
                    batch.insert(self.keyspaces.by_kind(keyspace), key, value);
                }
                for (stream, head) in staged.heads {
                    self.remember(stream, head);
                }
                if let Some(key) = staged.idempotency_key {
                    staged_keys.insert(key, staged.committed.clone());
                }
                Ok(staged.committed)
            }
            Err(e) => {
                tx.rollback();
                self.prev_hash = prev_hash;
                Err(e)
            }
        }
    }

    /// What an earlier command with the same idempotency key appended, if the key still holds.
    fn dedup(
        &mut self,
        command: &Command,
        staged_keys: &HashMap<String, Committed>,
    ) -> Result<Option<Committed>> {
        let Some(idem) = &command.idempotency else {
            return Ok(None);
        };
        if let Some(earlier) = staged_keys
            .get(&idem.key)
            .or_else(|| self.previous_keys.get(&idem.key))
        {
            return Ok(Some(Committed {
                events: earlier.events.clone(),
                deduplicated: true,
            }));
        }
        if let Some(record) = self.keyspaces.idempotency.get(idem.key.as_bytes())? {
            let record = IdempotencyRecord::decode(&record)?;
            if self.is_live(&record, command.recorded_at)? {
                return Ok(Some(Committed {
                    events: self.keyspaces.refs_of(&record)?,
                    deduplicated: true,
                }));
            }
        }
        Ok(None)
    }

    /// The head of each stream the command appends to, checked against its expected version.
    fn check_heads(&mut self, command: &Command) -> Result<Vec<Head>> {
        let mut heads = Vec::with_capacity(command.appends.len());
        for append in &command.appends {
            let head = self.head(&append.stream)?;
            if head.closed {
                return Err(Error::StreamClosed {
                    stream: append.stream.clone(),
                });
            }
            let ok = match append.expected {
                Expected::Any => true,
                Expected::NoStream => head.seq == 0,
                Expected::Exactly(v) => head.seq == v,
            };
            if !ok {
                return Err(Error::Conflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: head.seq,
                });
            }
            heads.push(head);
        }
        Ok(heads)
    }

    /// Encodes, chains and projects the command's events. The log's own writes are returned,
    /// not put in the batch, so that the caller can drop them if a later event fails.
    fn stage_events(
        &mut self,
        command: Command,
        heads: Vec<Head>,
        event_count: usize,
        tx: &mut Tx,
    ) -> Result<Staged> {
        let idem_mark = command.idempotency.as_ref().map(|idem| IdempotencyMark {
            key: idem.key.clone(),
            expires_at: idem
                .window_ms
                .map(|w| command.recorded_at.saturating_add(w)),
            events: u32::try_from(event_count).unwrap_or(u32::MAX),
        });
        let mut staged = Staged {
            committed: Committed {
                events: Vec::with_capacity(event_count),
                deduplicated: false,
            },
            writes: Vec::with_capacity(event_count * 2 + 1),
            heads: Vec::with_capacity(heads.len()),
            idempotency_key: None,
        };
        let Command {
            actor,
            recorded_at,
            appends,
            ..
        } = command;
        for (append, mut head) in appends.into_iter().zip(heads) {
            for event in append.events {
                head.seq += 1;
                let id = self.ids.next();
                let idempotency = if staged.committed.events.is_empty() {
                    idem_mark.as_ref()
                } else {
                    None
                };
                let new = NewEnvelope {
                    id,
                    stream: &append.stream,
                    seq: head.seq,
                    recorded_at,
                    actor: &actor,
                    idempotency,
                    event: &event,
                };
                let (value, hash) = new.encode(&self.prev_hash)?;
                self.check_bounds(&event, &value)?;
                staged
                    .writes
                    .push((Kind::Events, id.to_bytes().to_vec(), value));
                staged.writes.push((
                    Kind::Streams,
                    stream_key(&append.stream, head.seq),
                    id.to_bytes().to_vec(),
                ));
                if let Some(mark) = idempotency {
                    let record = IdempotencyRecord {
                        first: id,
                        count: mark.events,
                        expires_at: mark.expires_at.unwrap_or(0),
                        stream: append.stream.clone(),
                    };
                    staged.writes.push((
                        Kind::Idempotency,
                        mark.key.as_bytes().to_vec(),
                        record.encode(),
                    ));
                }
                head.closed = event.closes_stream();
                let envelope = Envelope {
                    id,
                    stream: append.stream.clone(),
                    seq: head.seq,
                    recorded_at,
                    actor: actor.clone(),
                    idempotency: idempotency.cloned(),
                    stored_version: event.schema_version(),
                    event,
                    hash,
                };
                self.projector.apply(&envelope, tx)?;
                self.prev_hash = hash;
                staged.committed.events.push(EventRef {
                    id,
                    stream: append.stream.clone(),
                    seq: head.seq,
                });
            }
            staged.heads.push((append.stream, head));
        }
        staged.idempotency_key = idem_mark.map(|mark| mark.key);
        Ok(staged)
    }

    /// An event the log stores must be readable back and fit the log's size limit.
    fn check_bounds(&self, event: &crate::event::Event, stored: &[u8]) -> Result<()> {
        let body = stored.get(crate::envelope::HASH_LEN..).unwrap_or_default();
        if body.len() > self.options.max_event_bytes {
            return Err(Error::TooLarge(format!(
                "a {} event is {} bytes encoded, more than the log's limit of {}",
                event.type_name(),
                body.len(),
                self.options.max_event_bytes
            )));
        }
        let depth = json_depth(body);
        if depth > MAX_EVENT_DEPTH {
            return Err(Error::TooLarge(format!(
                "a {} event nests {depth} levels deep, more than the log's limit of {MAX_EVENT_DEPTH}",
                event.type_name()
            )));
        }
        Ok(())
    }

    /// Whether an earlier command's key still holds: inside its window and its stream not closed.
    fn is_live(&mut self, record: &IdempotencyRecord, now: u64) -> Result<bool> {
        if record.expires_at != 0 && now >= record.expires_at {
            return Ok(false);
        }
        Ok(!self.head(&record.stream)?.closed)
    }

    fn head(&mut self, stream: &str) -> Result<Head> {
        if let Some(head) = self.heads.get(stream) {
            return Ok(*head);
        }
        // Most uncached streams are new (an execution's): a point read of sequence 1, which
        // bloom filters answer cheaply, settles those without a range scan.
        if self.keyspaces.streams.get(stream_key(stream, 1))?.is_none() {
            let head = Head {
                seq: 0,
                closed: false,
            };
            self.remember(stream.to_owned(), head);
            return Ok(head);
        }
        let head = match self
            .keyspaces
            .streams
            .prefix(stream_prefix(stream))
            .next_back()
        {
            None => Head {
                seq: 0,
                closed: false,
            },
            Some(guard) => {
                let (key, value) = guard.into_inner()?;
                let id = ulid_from_key(&value)?;
                let stored = self.keyspaces.events.get(id.to_bytes())?.ok_or_else(|| {
                    Error::Corrupt(format!("stream {stream} points to missing event {id}"))
                })?;
                Head {
                    seq: seq_from_stream_key(&key)?,
                    closed: closes_stream(&decode_header_at(id, &stored)?.event_type),
                }
            }
        };
        self.remember(stream.to_owned(), head);
        Ok(head)
    }

    fn remember(&mut self, stream: String, head: Head) {
        if self.heads.len() >= HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        self.heads.insert(stream, head);
    }
}

/// The committer thread: lands each flight; after a failure it commits nothing more.
fn commit_flights(landing: Receiver<Flight>, lander: &Lander, busy: &AtomicUsize) {
    for flight in landing {
        let counted = !matches!(flight, Flight::Barrier);
        lander.land(flight);
        if counted {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What landing a flight needs, shared by the writer (a lone command) and the committer.
#[derive(Clone)]
struct Lander {
    poison: Arc<Poison>,
    backend: Arc<dyn Backend>,
    resync: Arc<AtomicBool>,
}

impl Lander {
    /// Commits a flight's batch through the backend (one fsync), then acknowledges its commands.
    fn land(&self, flight: Flight) {
        let (batch, pending, records) = match flight {
            Flight::Barrier => return, // receiving it was the point
            Flight::Followed { batch, through } => {
                if self.poison.reason().is_none()
                    && let Err(e) = self.backend.commit_followed(batch, through)
                {
                    self.poison.set(format!(
                        "committing the events followed up to position {through} failed: {e}"
                    ));
                }
                return;
            }
            Flight::Group {
                batch,
                pending,
                records,
            } => (batch, pending, records),
        };
        if self.resync.load(Ordering::Acquire) {
            // Staged on top of a group that did not land: it is not the log's.
            for p in pending {
                let _ = p.reply.send(Err(Error::NotWriter(
                    "this replica stopped writing the log before the command landed".into(),
                )));
            }
            return;
        }
        let outcome = match self.poison.reason() {
            Some(reason) => Err(reason),
            None => self.backend.commit(batch, &records).map_err(|e| {
                self.poison.set(format!(
                    "committing a group of {} commands failed: {e}",
                    pending.len()
                ));
                self.poison.reason().unwrap_or_default()
            }),
        };
        match outcome {
            Ok(Landed::Durable) => {
                for p in pending {
                    let _ = p.reply.send(Ok(p.committed));
                }
            }
            Ok(Landed::Deposed { durable, reason }) => {
                self.resync.store(true, Ordering::Release);
                tracing::warn!(%reason, durable, of = records.len(), "the log's writer was deposed");
                for p in pending {
                    let _ = p.reply.send(if p.needs <= durable {
                        Ok(p.committed)
                    } else {
                        Err(Error::NotWriter(reason.clone()))
                    });
                }
            }
            Err(reason) => {
                for p in pending {
                    let _ = p.reply.send(Err(Error::Poisoned(reason.clone())));
                }
            }
        }
    }
}

/// Only a failure of the disk poisons the store; every other error while staging is the
/// command's own and rejects it alone (poison is for I/O failures).
fn is_io_failure(e: &Error) -> bool {
    matches!(e, Error::Storage(_))
}

/// The rejections that are part of normal operation (optimistic concurrency, deleted tasks).
fn is_expected_rejection(e: &Error) -> bool {
    matches!(e, Error::Conflict { .. } | Error::StreamClosed { .. })
}

/// A command must append at least one event, to each stream once, and nothing after an event
/// that closes its stream. Returns the number of events.
fn validate_shape(command: &Command) -> Result<usize> {
    if command.appends.is_empty() {
        return Err(Error::InvalidCommand(
            "a command must append at least one event".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for append in &command.appends {
        if append.stream.is_empty() || append.stream.as_bytes().contains(&0) {
            return Err(Error::InvalidCommand(format!(
                "invalid stream id {:?}",
                append.stream
            )));
        }
        if !seen.insert(append.stream.as_str()) {
            return Err(Error::InvalidCommand(format!(
                "stream {} appears twice in one command",
                append.stream
            )));
        }
        if append.events.is_empty() {
            return Err(Error::InvalidCommand(format!(
                "no events for stream {}",
                append.stream
            )));
        }
        let closing = append.events.iter().position(|e| e.closes_stream());
        if closing.is_some_and(|at| at + 1 != append.events.len()) {
            return Err(Error::InvalidCommand(format!(
                "events follow the closing event of stream {}",
                append.stream
            )));
        }
    }
    Ok(command.event_count())
}
