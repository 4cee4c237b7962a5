//! `Log`: the handle every part of the system shares. Appends go through the single writer
//! (`writer`); reads go straight to fjall.
//!
//! Keyspaces (all in the caller's fjall `Database`):
//! - `events`: ULID (16 big-endian bytes, so key order is time order) → stored value
//!   (hash || JSON body, see `envelope`);
//! - `streams`: stream id || 0x00 || sequence (8 bytes BE) → ULID;
//! - `idempotency`: key → first ULID (16) || event count (4 BE) || expires at (8 BE, 0 = never) ||
//!   stream of the first event.
//!
//! The two indexes are functions of the log (`rebuild_indexes` recomputes them).

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, Slice};
use ulid::Ulid;

use crate::command::{Command, Committed, EventRef};
use crate::envelope::{self, Envelope, GENESIS_HASH, Hash, Header};
use crate::error::{Error, Result};
use crate::tx::Tx;
use crate::writer::{Poison, Request, Writer};

/// Opens (or creates) the fjall database that holds the log and the projections.
pub fn open_database(path: &Path) -> Result<Database> {
    Ok(Database::builder(path).open()?)
}

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
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            max_group: 1024,
        }
    }
}

/// The read side's hook into the writer: called for every appended event, inside the batch that
/// appends it, so events, projection rows and checkpoint commit together.
pub trait Projector: Send + 'static {
    /// Folds one event into the read keyspaces. Holds no business rule; fails only on storage
    /// errors or corrupt rows, which poison the store.
    fn apply(&mut self, envelope: &Envelope, tx: &mut Tx) -> Result<()>;
    /// Records that every event up to `last` is applied; called once per group commit.
    fn checkpoint(&mut self, last: Ulid, tx: &mut Tx) -> Result<()>;
}

/// The log's own keyspaces.
#[derive(Clone)]
pub struct LogKeyspaces {
    pub events: Keyspace,
    pub streams: Keyspace,
    pub idempotency: Keyspace,
}

impl std::fmt::Debug for LogKeyspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKeyspaces")
    }
}

impl LogKeyspaces {
    pub fn open(db: &Database) -> Result<Self> {
        Ok(Self {
            events: db.keyspace("events", KeyspaceCreateOptions::default)?,
            streams: db.keyspace("streams", KeyspaceCreateOptions::default)?,
            idempotency: db.keyspace("idempotency", KeyspaceCreateOptions::default)?,
        })
    }

    /// The last event's ULID and hash, if any.
    pub fn head(&self) -> Result<Option<(Ulid, Hash)>> {
        let Some(guard) = self.events.last_key_value() else {
            return Ok(None);
        };
        let (key, value) = guard.into_inner()?;
        let id = ulid_from_key(&key)?;
        let (hash, _) = envelope::split_stored(&value).map_err(|source| Error::Decode {
            id: id.to_string(),
            source,
        })?;
        Ok(Some((id, hash)))
    }

    pub fn get(&self, id: Ulid) -> Result<Option<Envelope>> {
        self.events
            .get(id.to_bytes())?
            .map(|value| decode_at(id, &value))
            .transpose()
    }

    /// Every event of a stream, in order.
    pub fn read_stream(&self, stream: &str) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for guard in self.streams.prefix(stream_prefix(stream)) {
            let (_, value) = guard.into_inner()?;
            let id = ulid_from_key(&value)?;
            let stored = self.events.get(id.to_bytes())?.ok_or_else(|| {
                Error::Corrupt(format!("stream {stream} points to missing event {id}"))
            })?;
            out.push(decode_at(id, &stored)?);
        }
        Ok(out)
    }

    /// The first event of a stream (a task's `TaskCreated`, an execution's `ExecutionQueued`).
    pub fn first_event(&self, stream: &str) -> Result<Option<Envelope>> {
        let Some(id) = self.streams.get(stream_key(stream, 1))? else {
            return Ok(None);
        };
        let id = ulid_from_key(&id)?;
        self.get(id)
    }

    /// The stream's last sequence number (0 when it does not exist).
    pub fn stream_version(&self, stream: &str) -> Result<u64> {
        match self.streams.prefix(stream_prefix(stream)).next_back() {
            None => Ok(0),
            Some(guard) => seq_from_stream_key(&guard.key()?),
        }
    }

    /// The events an earlier command with this idempotency key appended, if the key still holds
    /// at `now` (inside its window, and its stream not closed since). Lets a caller answer a
    /// repeat before it decides anything (the writer checks again when appending).
    pub fn idempotent_result(&self, key: &str, now: u64) -> Result<Option<Vec<EventRef>>> {
        let Some(record) = self.idempotency.get(key.as_bytes())? else {
            return Ok(None);
        };
        let record = IdempotencyRecord::decode(&record)?;
        if record.expires_at != 0 && now >= record.expires_at {
            return Ok(None);
        }
        if self.stream_closed(&record.stream)? {
            return Ok(None);
        }
        self.refs_of(&record).map(Some)
    }

    /// Whether the stream's last event closes it.
    pub fn stream_closed(&self, stream: &str) -> Result<bool> {
        let Some(guard) = self.streams.prefix(stream_prefix(stream)).next_back() else {
            return Ok(false);
        };
        let (_, value) = guard.into_inner()?;
        let id = ulid_from_key(&value)?;
        let stored = self.events.get(id.to_bytes())?.ok_or_else(|| {
            Error::Corrupt(format!("stream {stream} points to missing event {id}"))
        })?;
        Ok(crate::event::closes_stream(
            &decode_header_at(id, &stored)?.event_type,
        ))
    }

    /// The events an idempotency record names.
    pub(crate) fn refs_of(&self, record: &IdempotencyRecord) -> Result<Vec<EventRef>> {
        let mut refs = Vec::with_capacity(record.count as usize);
        for guard in self
            .events
            .range(record.first.to_bytes()..)
            .take(record.count as usize)
        {
            let (key, value) = guard.into_inner()?;
            let id = ulid_from_key(&key)?;
            let header = decode_header_at(id, &value)?;
            refs.push(EventRef {
                id,
                stream: header.stream,
                seq: header.seq,
            });
        }
        Ok(refs)
    }

    /// Raw stored events in log order, from `from` (inclusive) on.
    pub fn scan(&self, from: Option<Ulid>) -> impl Iterator<Item = Result<(Ulid, Slice)>> + use<> {
        let start = from.unwrap_or(Ulid::nil()).to_bytes();
        self.events.range(start..).map(|guard| {
            let (key, value) = guard.into_inner()?;
            Ok((ulid_from_key(&key)?, value))
        })
    }
}

/// The shared handle.
#[derive(Clone)]
pub struct Log {
    keyspaces: LogKeyspaces,
    db: Database,
    sender: Sender<Request>,
    poison: Arc<Poison>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log in `db` and starts its writer. `projector` must already be up to date with
    /// the log (projections catch up before the writer starts).
    pub fn open(db: &Database, options: LogOptions, projector: Box<dyn Projector>) -> Result<Self> {
        let keyspaces = LogKeyspaces::open(db)?;
        let (last, prev_hash) = keyspaces.head()?.unwrap_or((Ulid::nil(), GENESIS_HASH));
        let poison = Arc::new(Poison::default());
        let (sender, receiver) = mpsc::channel();
        let writer = Writer::new(
            db.clone(),
            keyspaces.clone(),
            projector,
            options,
            last,
            prev_hash,
            poison.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::Corrupt(format!("cannot start the log writer thread: {e}")))?;
        Ok(Self {
            keyspaces,
            db: db.clone(),
            sender,
            poison,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    pub fn keyspaces(&self) -> &LogKeyspaces {
        &self.keyspaces
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Appends a command and waits for it to be committed (and fsync'd, in `Durability::Sync`).
    pub async fn append(&self, command: Command) -> Result<Committed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(command, reply)?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// `append` for threads outside an async runtime.
    pub fn append_blocking(&self, command: Command) -> Result<Committed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(command, reply)?;
        answer.blocking_recv().map_err(|_| self.stopped())?
    }

    fn submit(
        &self,
        command: Command,
        reply: tokio::sync::oneshot::Sender<Result<Committed>>,
    ) -> Result<()> {
        if let Some(reason) = self.poison.reason() {
            return Err(Error::Poisoned(reason));
        }
        self.sender
            .send(Request::Append { command, reply })
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        match self.poison.reason() {
            Some(reason) => Error::Poisoned(reason),
            None => Error::WriterStopped,
        }
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.poison.reason()
    }

    /// Finishes the commands already queued, stops the writer and waits for it.
    pub fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.sender.send(Request::Stop { done }).is_ok() {
            let _ = wait.blocking_recv();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    pub fn get(&self, id: Ulid) -> Result<Option<Envelope>> {
        self.keyspaces.get(id)
    }

    pub fn read_stream(&self, stream: &str) -> Result<Vec<Envelope>> {
        self.keyspaces.read_stream(stream)
    }

    pub fn stream_version(&self, stream: &str) -> Result<u64> {
        self.keyspaces.stream_version(stream)
    }

    pub fn first_event(&self, stream: &str) -> Result<Option<Envelope>> {
        self.keyspaces.first_event(stream)
    }

    pub fn head(&self) -> Result<Option<(Ulid, Hash)>> {
        self.keyspaces.head()
    }

    /// See `LogKeyspaces::idempotent_result`.
    pub fn idempotent_result(&self, key: &str, now: u64) -> Result<Option<Vec<EventRef>>> {
        self.keyspaces.idempotent_result(key, now)
    }

    /// The events a commit produced, read back (for callers that need more than the refs).
    pub fn read_refs(&self, refs: &[EventRef]) -> Result<Vec<Envelope>> {
        refs.iter()
            .map(|r| {
                self.get(r.id)?
                    .ok_or_else(|| Error::Corrupt(format!("committed event {} is missing", r.id)))
            })
            .collect()
    }
}

/// Decodes a stored value, naming the event on failure.
pub fn decode_at(id: Ulid, value: &[u8]) -> Result<Envelope> {
    envelope::decode(value).map_err(|source| Error::Decode {
        id: id.to_string(),
        source,
    })
}

pub fn decode_header_at(id: Ulid, value: &[u8]) -> Result<Header> {
    envelope::decode_header(value).map_err(|source| Error::Decode {
        id: id.to_string(),
        source,
    })
}

pub(crate) fn ulid_from_key(key: &[u8]) -> Result<Ulid> {
    let bytes: [u8; 16] = key
        .try_into()
        .map_err(|_| Error::Corrupt(format!("a ULID key has {} bytes", key.len())))?;
    Ok(Ulid::from_bytes(bytes))
}

pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

pub(crate) fn stream_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn seq_from_stream_key(key: &[u8]) -> Result<u64> {
    key.last_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .ok_or_else(|| Error::Corrupt("a stream index key is too short".into()))
}

/// An idempotency index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub first: Ulid,
    pub count: u32,
    pub expires_at: u64,
    pub stream: String,
}

impl IdempotencyRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.stream.len());
        out.extend_from_slice(&self.first.to_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt("an idempotency record is malformed".into());
        let (first, rest) = bytes.split_first_chunk::<16>().ok_or_else(corrupt)?;
        let (count, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (expires, stream) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        Ok(Self {
            first: Ulid::from_bytes(*first),
            count: u32::from_be_bytes(*count),
            expires_at: u64::from_be_bytes(*expires),
            stream: String::from_utf8(stream.to_vec()).map_err(|_| corrupt())?,
        })
    }
}
