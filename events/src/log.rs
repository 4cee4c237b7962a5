//! `Log`: the handle every part of the system shares. Appends go through the single writer
//! (`writer`), or through a `Router` on a replica of a replicated log; reads go straight to the
//! local fjall database (`keyspaces`).

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use fjall::Database;
use ulid::Ulid;

use crate::backend::{Backend, Local, Router};
use crate::command::{Command, Committed, EventRef};
use crate::envelope::{Envelope, GENESIS_HASH, Hash};
use crate::error::{Error, Result};
use crate::keyspaces::LogKeyspaces;
use crate::options::{LogOptions, Projector};
use crate::writer::{Followed, Poison, Request, Writer};

/// Opens (or creates) the fjall database that holds the log and the projections. A journal fjall
/// cannot recover (damage before its last batch: a torn last batch it drops by itself) is
/// reported as corruption, naming the journal files that hold the writes not yet in tables.
///
/// One fjall worker thread, not fjall's default (one per core, at most 4): in fjall 3.1.13 the
/// first worker of a pool of several never compacts, and when it takes a compaction job while
/// the others are busy it puts the job back on the queue and takes it again at once, a busy
/// loop that holds a core for as long as the other workers compact (half of a 1 M-task store's
/// start-up CPU, profiled). A single worker flushes and compacts in turn: a flush may wait for
/// a compaction to finish, which the memtables absorb (fjall stalls writers only at four
/// sealed memtables), and the commits' durability comes from the journal, not from flushes.
pub fn open_database(path: &Path) -> Result<Database> {
    Database::builder(path).worker_threads(FJALL_WORKERS).open().map_err(|e| match e {
        fjall::Error::JournalRecovery(kind) => Error::Corrupt(format!(
            "the journal cannot be recovered ({kind:?}): a batch before its last is damaged; it is in {} under {}, which hold the writes not yet flushed into tables (the tables themselves opened). Keep a copy of the directory before anything else",
            journal_files(path),
            path.display()
        )),
        fjall::Error::InvalidTrailer | fjall::Error::InvalidTag(_) => Error::Corrupt(format!(
            "a journal file under {} is malformed ({e}): {}",
            path.display(),
            journal_files(path)
        )),
        other => Error::Storage(other),
    })
}

/// The options every keyspace of ours is created with (fjall keeps a keyspace's options from
/// its creation): fjall's defaults, but with the filter and the index of every table below the
/// first level partitioned (fjall's default partitions them from the fourth level on). A table
/// whose filter and index are each one block loads them whole through the 32 MiB block cache
/// at a point read when they are not pinned, and tables written by sorted ingestion (a rebuild)
/// are never pinned: on a rebuilt store of a few GB, 64 MiB tables each with a filter and an
/// index of several hundred KiB, the cache could not hold them, and every read re-read and
/// re-checksummed about a MiB (three quarters of a 1 M-task rebuild's time, profiled).
/// Partitioned, a read loads one small partition of each, and only the partitions' own index
/// (a few KiB a table) stays in memory.
pub fn keyspace_options() -> fjall::KeyspaceCreateOptions {
    use fjall::config::PartitioningPolicy;
    fjall::KeyspaceCreateOptions::default()
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

/// fjall's background threads (flushes and compactions); see `open_database`.
const FJALL_WORKERS: usize = 1;

/// Writes every keyspace's memtables into tables, waiting at most `patience` for fjall's worker
/// to finish (it may be in a compaction first); returns whether it did. On a graceful close
/// this leaves the journal nothing to replay: fjall replays at open every journal file not yet
/// flushed past, re-inserting its writes into memtables and resolving each write's keyspace by
/// a lookup (after writing a 1 M-task store: 600 MB of journal, half the next start-up's CPU),
/// whereas the flush is due anyway. What is not flushed in time is still in the journal.
pub fn flush_memtables(db: &Database, patience: std::time::Duration) -> Result<bool> {
    let keyspaces = db
        .list_keyspace_names()
        .iter()
        .map(|name| db.keyspace(name, keyspace_options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for keyspace in &keyspaces {
        keyspace.rotate_memtable()?;
    }
    let deadline = std::time::Instant::now() + patience;
    // Flushed, and the journal files flushed past deleted (fjall's maintenance after a flush):
    // the active file is all that the next open reads.
    while keyspaces.iter().any(|k| k.sealed_memtable_count() > 0) || db.journal_count() > 1 {
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(true)
}

/// The journal files of a database directory, newest last, with their sizes.
fn journal_files(path: &Path) -> String {
    let mut files: Vec<(u64, String, u64)> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id: u64 = name.strip_suffix(".jnl")?.parse().ok()?;
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            Some((id, name, size))
        })
        .collect();
    files.sort_unstable();
    if files.is_empty() {
        return "no journal file".into();
    }
    files
        .iter()
        .map(|(_, name, size)| format!("{name} ({size} bytes)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shared handle.
#[derive(Clone)]
pub struct Log {
    keyspaces: LogKeyspaces,
    db: Database,
    sender: Sender<Request>,
    poison: Arc<Poison>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    router: Arc<OnceLock<Arc<dyn Router>>>,
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
        Self::open_on(db, options, projector, Arc::new(Local))
    }

    /// `open` committing through `backend` (a replicated log's, see `backend`).
    pub fn open_on(
        db: &Database,
        options: LogOptions,
        projector: Box<dyn Projector>,
        backend: Arc<dyn Backend>,
    ) -> Result<Self> {
        let keyspaces = LogKeyspaces::open(db)?;
        let (last, prev_hash) = keyspaces.head()?.unwrap_or((Ulid::nil(), GENESIS_HASH));
        let poison = Arc::new(Poison::default());
        let (sender, receiver) = mpsc::channel();
        let writer = Writer::new(
            db.clone(),
            keyspaces.clone(),
            projector,
            options,
            (last, prev_hash),
            poison.clone(),
            backend,
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
            router: Arc::new(OnceLock::new()),
        })
    }

    /// Sends every later `append` through `router` (once; a second router is ignored).
    pub fn route_through(&self, router: Arc<dyn Router>) {
        let _ = self.router.set(router);
    }

    pub fn keyspaces(&self) -> &LogKeyspaces {
        &self.keyspaces
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Appends a command and waits for it to be committed (and fsync'd, in `Durability::Sync`;
    /// on a replicated log, acknowledged by it).
    pub async fn append(&self, command: Command) -> Result<Committed> {
        match self.router.get() {
            Some(router) => router.append(self, command).await,
            None => self.append_local(command).await,
        }
    }

    /// Appends through this process's own writer, whatever the router.
    pub async fn append_local(&self, command: Command) -> Result<Committed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(command, reply)?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// `append_local` for threads outside an async runtime.
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

    /// Hands the writer the stored events (hash ‖ body) of one message of the replicated log, the
    /// one at position `through`; they are checked and applied in order (see `writer::follow`).
    pub fn follow(&self, through: u64, events: Vec<crate::fjall::Slice>) -> Result<()> {
        if let Some(reason) = self.poison.reason() {
            return Err(Error::Poisoned(reason));
        }
        self.sender
            .send(Request::Follow(Followed { through, events }))
            .map_err(|_| self.stopped())
    }

    /// Waits until every earlier request has landed (and the writer has reset, after a deposed
    /// commit), and answers the replicated log's position the local database holds.
    pub async fn sync(&self) -> Result<u64> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.sender
            .send(Request::Sync { done })
            .map_err(|_| self.stopped())?;
        let position = wait.await.map_err(|_| self.stopped())?;
        match self.poison.reason() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(position),
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
