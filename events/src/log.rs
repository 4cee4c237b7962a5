//! `Log`: the handle every part of the system shares. Appends go through the single writer
//! (`writer`); reads go straight to fjall (`keyspaces`).

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fjall::Database;
use ulid::Ulid;

use crate::command::{Command, Committed, EventRef};
use crate::envelope::{Envelope, GENESIS_HASH, Hash};
use crate::error::{Error, Result};
use crate::keyspaces::LogKeyspaces;
use crate::options::{LogOptions, Projector};
use crate::writer::{Poison, Request, Writer};

/// Opens (or creates) the fjall database that holds the log and the projections. A journal fjall
/// cannot recover (damage before its last batch: a torn last batch it drops by itself) is
/// reported as corruption, naming the journal files that hold the writes not yet in tables.
pub fn open_database(path: &Path) -> Result<Database> {
    Database::builder(path).open().map_err(|e| match e {
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
