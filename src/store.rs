//! The store: one fjall database holding the event log and the projections, opened in the order
//! that keeps them consistent (projections catch up with the log before the writer starts), and
//! the one decide-and-append loop every command decided on state goes through
//! (`Store::decide_and_append`).

use std::path::Path;

use events::{Command, Committed, Durability, Expected, Log, LogKeyspaces, LogOptions};
use projections::{CatchUp, Projections, Views};

/// The write handle (`log`), the read handle (`views`), and the log's Merkle tree (`tiles`,
/// kept by the log's writer in the same batches as the events: `tlog::follow::WithTree`).
#[derive(Clone)]
pub struct Store {
    pub log: Log,
    pub views: Views,
    pub tiles: tlog::TileStore,
    db: events::fjall::Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, bringing every projection up to date with the log
    /// (rebuilding those whose schema version changed).
    pub fn open(dir: &Path, durability: Durability) -> events::Result<(Self, CatchUp)> {
        Self::open_with(
            dir,
            LogOptions {
                durability,
                ..LogOptions::default()
            },
        )
    }

    /// `open` with every option of the log (the aggregator sets the largest event from
    /// `limits.max_event_bytes`).
    pub fn open_with(dir: &Path, options: LogOptions) -> events::Result<(Self, CatchUp)> {
        Self::open_in(
            Self::database_in(dir)?,
            options,
            std::sync::Arc::new(events::Local),
        )
    }

    /// The database in `dir` (created private), for `open_in`.
    pub fn database_in(dir: &Path) -> events::Result<events::fjall::Database> {
        private_dir(dir).map_err(|e| events::Error::Storage(e.into()))?;
        events::open_database(dir)
    }

    /// `open_with` on a database already open, committing through `backend` (a replica of a
    /// replicated log: `cluster::JetStream`).
    pub fn open_in(
        db: events::fjall::Database,
        options: LogOptions,
        backend: std::sync::Arc<dyn events::Backend>,
    ) -> events::Result<(Self, CatchUp)> {
        let mut projections = Projections::open(&db)?;
        let keyspaces = LogKeyspaces::open(&db)?;
        let catch_up = projections.catch_up(&keyspaces, &|_| {})?;
        let views = projections.views();
        // The tree follows the log like a projection: brought up to its head first (nothing to
        // do normally, the whole tree once on a data directory older than it).
        let tiles = tlog::TileStore::open(&db).map_err(tree_error)?;
        let appender =
            tlog::follow::catch_up(&db, &keyspaces, &tiles, &|_| {}).map_err(tree_error)?;
        let projector = tlog::follow::WithTree::new(projections, appender, &tiles);
        let log = Log::open_on(&db, options, Box::new(projector), backend)?;
        Ok((
            Self {
                log,
                views,
                tiles,
                db,
            },
            catch_up,
        ))
    }

    pub fn database(&self) -> &events::fjall::Database {
        &self.db
    }

    /// Finishes queued commands, stops the writer and flushes everything to disk: the journal,
    /// and the memtables into tables, so that the next start has no journal to replay
    /// (`events::flush_memtables`; if fjall's worker is busy longer than `CLOSE_FLUSH_PATIENCE`,
    /// the rest stays in the journal).
    pub fn close(&self) -> events::Result<()> {
        self.log.shutdown();
        self.db.persist(events::fjall::PersistMode::SyncAll)?;
        if !events::flush_memtables(&self.db, CLOSE_FLUSH_PATIENCE)? {
            tracing::info!(
                "closing: fjall is still busy; the unflushed writes stay in its journal"
            );
        }
        Ok(())
    }

    /// Events not yet folded into every projection (0 in steady state).
    pub fn projection_lag(&self) -> events::Result<u64> {
        projections::lag(&self.db, self.log.keyspaces())
    }

    /// Bytes on disk, for telemetry.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// How long a close waits for the memtables' flush.
const CLOSE_FLUSH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn tree_error(e: tlog::Error) -> events::Error {
    match e {
        tlog::Error::Storage(e) => events::Error::Storage(e),
        tlog::Error::Log(e) => e,
        other => events::Error::Corrupt(other.to_string()),
    }
}

/// The data directory holds every user's data: only its owner may read it. It is created (or
/// set) 0700, the files already in it 0600, and the files fjall creates later are 0600 too: the
/// process's umask becomes 077 (the aggregator writes nothing meant for other users).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700))?;
                    pending.push(entry.path());
                } else if kind.is_file() {
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
                }
            }
        }
    }
    Ok(())
}

/// How many times a decision is made again when its stream moved before the append landed (a
/// concurrent command won the race). Past it the caller answers "changed concurrently, retry".
pub const DECIDE_ATTEMPTS: usize = 8;

/// State read at a stream's version. `Store::at_version` reads the version first: a state that
/// moved on after it makes the append conflict and the decision be made again, never overwrite.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    pub version: u64,
}

impl<S> Loaded<S> {
    /// What a command decided on this state expects of its stream.
    pub fn expected(&self) -> Expected {
        Expected::Exactly(self.version)
    }
}

/// What a decision comes to.
#[derive(Debug)]
pub enum Decision<T> {
    /// Nothing to append; `T` is the answer.
    Unchanged(T),
    /// Append the command (built against the loaded version), then answer `T`.
    Append(Command, T),
}

/// How a decide-and-append ended.
#[derive(Debug)]
pub enum Settled<T> {
    Unchanged(T),
    Appended(T, Committed),
    /// Every one of the `DECIDE_ATTEMPTS` decisions was overtaken by another command.
    Contended,
}

impl Store {
    /// Appends a command, counting its events in the metrics.
    pub async fn append(&self, command: Command) -> events::Result<Committed> {
        let committed = self.log.append(command).await?;
        if !committed.deduplicated {
            metrics::counter!("events_appended_total").increment(committed.events.len() as u64);
        }
        Ok(committed)
    }

    /// `read`'s state at `stream`'s version, the version read first (see `Loaded`).
    pub fn at_version<S>(
        &self,
        stream: &str,
        read: impl FnOnce(&Views) -> events::Result<S>,
    ) -> events::Result<Loaded<S>> {
        let version = self.log.stream_version(stream)?;
        let state = read(&self.views)?;
        Ok(Loaded { state, version })
    }

    /// The one write path of a command decided on state: `load` the state with its version,
    /// `decide` (pure: the domain's rules), append against that version; when another command
    /// landed meanwhile (a conflict), load and decide again, up to `DECIDE_ATTEMPTS` times. As
    /// cqrs-es's `load → handle → commit`, written once.
    pub async fn decide_and_append<S, T, E: From<events::Error>>(
        &self,
        mut load: impl FnMut(&Self) -> Result<Loaded<S>, E>,
        mut decide: impl FnMut(Loaded<S>) -> Result<Decision<T>, E>,
    ) -> Result<Settled<T>, E> {
        for _ in 0..DECIDE_ATTEMPTS {
            let loaded = load(self)?;
            match decide(loaded)? {
                Decision::Unchanged(answer) => return Ok(Settled::Unchanged(answer)),
                Decision::Append(command, answer) => match self.append(command).await {
                    Ok(committed) => return Ok(Settled::Appended(answer, committed)),
                    Err(events::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Ok(Settled::Contended)
    }
}

#[cfg(test)]
mod tests {
    use events::event::WalletHidden;

    use super::*;

    fn hidden(n: usize) -> Command {
        Command::new("0xo", 1).append(
            "wallet:0xo:0xw",
            Expected::Any,
            (0..n).map(|_| {
                WalletHidden {
                    owner: "0xo".into(),
                    address: "0xw".into(),
                }
                .into()
            }),
        )
    }

    /// Given a stream at version 1; when a command lands while the state is read; then a command
    /// decided on that state conflicts: the version was read before the state, not after.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_change_landing_while_the_state_is_read_makes_the_append_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Durability::Relaxed).unwrap();
        store.append(hidden(1)).await.unwrap();
        let loaded = store
            .at_version("wallet:0xo:0xw", |_| {
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(store.append(hidden(1)))
                })
            })
            .unwrap();
        assert_eq!(loaded.version, 1);
        let mut decided = hidden(1);
        decided.appends[0].expected = loaded.expected();
        assert!(matches!(
            store.append(decided).await,
            Err(events::Error::Conflict { .. })
        ));
        tokio::task::block_in_place(|| store.close()).unwrap();
    }

    /// Given a decision that is overtaken every time; then it is made `DECIDE_ATTEMPTS` times and
    /// ends `Contended`, never appending.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_decision_overtaken_every_time_ends_contended() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Durability::Relaxed).unwrap();
        let mut decisions = 0;
        let settled = store
            .decide_and_append(
                |store| store.at_version("wallet:0xo:0xw", |_| Ok(())),
                |loaded| {
                    decisions += 1;
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(store.append(hidden(1)))
                    })?;
                    let mut command = hidden(1);
                    command.appends[0].expected = loaded.expected();
                    Ok::<_, events::Error>(Decision::Append(command, ()))
                },
            )
            .await
            .unwrap();
        assert!(matches!(settled, Settled::Contended));
        assert_eq!(decisions, DECIDE_ATTEMPTS);
        assert_eq!(
            store.log.stream_version("wallet:0xo:0xw").unwrap(),
            DECIDE_ATTEMPTS as u64
        );
        tokio::task::block_in_place(|| store.close()).unwrap();
    }
}
