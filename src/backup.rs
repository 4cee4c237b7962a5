//! `aggregator backup DIR`: a consistent copy of a running single-node (fjall) store.
//!
//! The running aggregator holds its database's lock, so no second process can open it; the copy
//! is taken by the aggregator itself, from one fjall snapshot (`Database::snapshot`: a
//! cross-keyspace view at one sequence number). The log's writer commits each group's events,
//! index entries, projection rows, tree tiles and checkpoints in one batch, so a snapshot holds
//! each group whole or not at all: the copy is a store as it was between two commits.
//!
//! How the copy leaves the process: `POST /admin/backup` on the HTTP listener, for an admin API
//! key only, streams every keyspace of the snapshot (`frame` below); the command writes them
//! into a new data directory and verifies it. The command mints itself a short-lived admin key
//! with the JWT secret of the keys directory (as `create-api-key` does), so it runs where the
//! aggregator's keys are. The server never writes to a path it is told: the copy is written by
//! the command, with its own user's rights. (A signal would need a path agreed in advance; a
//! second process reading fjall's files under a live writer would not be consistent.)
//!
//! The stream: per keyspace `K`, name length (u16), name; per entry `E`, key length (u32), key,
//! value length (u32), value; at the end `Z`, the number of entries (u64) and the SHA-256 of
//! every byte before `Z`. A copy cut short, or damaged on the way, is refused.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::fjall::Readable;
use sha2::{Digest, Sha256};

use crate::app::SharedApp;
use crate::auth::keys::Keys;
use crate::auth::{Role, TokenIssuer};
use crate::config::{Config, LogBackend};

/// The endpoint's path.
pub const PATH: &str = "/admin/backup";
/// Bytes sent per chunk of the response.
const CHUNK: usize = 256 * 1024;
/// How long the key `aggregator backup` mints for itself is valid.
const KEY_LIFETIME: Duration = Duration::from_secs(300);

pub fn routes() -> Router<SharedApp> {
    Router::new().route(PATH, post(backup))
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn denied(status: StatusCode, message: impl Into<String>) -> (StatusCode, String) {
    (status, message.into())
}

/// The admin API key in `authkey`, checked as the console checks one.
fn admin(app: &SharedApp, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let Some(key) = headers.get("authkey").and_then(|v| v.to_str().ok()) else {
        return Err(denied(
            StatusCode::UNAUTHORIZED,
            "an admin API key is required in the authkey header",
        ));
    };
    let verified = app
        .token_issuer
        .verify(key)
        .map_err(|e| denied(StatusCode::UNAUTHORIZED, format!("the key is refused: {e}")))?;
    let Some(key_id) = verified.api_key_id else {
        return Err(denied(
            StatusCode::UNAUTHORIZED,
            "a session token is not an API key",
        ));
    };
    match app.store.views.is_revoked(&key_id) {
        Ok(false) => {}
        Ok(true) => {
            return Err(denied(
                StatusCode::UNAUTHORIZED,
                "this API key has been revoked",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "reading revocations");
            return Err(denied(StatusCode::SERVICE_UNAVAILABLE, "the store failed"));
        }
    }
    if verified.role != Role::Admin {
        return Err(denied(
            StatusCode::FORBIDDEN,
            "a backup holds every owner's data: an admin API key is required",
        ));
    }
    Ok(())
}

async fn backup(State(app): State<SharedApp>, headers: HeaderMap) -> Response {
    if let Err(response) = admin(&app, &headers) {
        return response.into_response();
    }
    if app.config.event_log.backend != LogBackend::Fjall {
        return refused(
            StatusCode::CONFLICT,
            "the log is a replicated stream: back it up with `aggregator log export DIR` (or NATS's own stream backups)",
        );
    }
    let (chunks, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let db = app.store.database().clone();
    tracing::info!("backup: streaming a snapshot of the store");
    // Reading the whole store is blocking work: off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut writer = Framer::new(chunks);
        if let Err(e) = writer.snapshot(&db) {
            tracing::warn!(error = %e, "backup: stopped");
            let _ = writer
                .chunks
                .blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body)).into_response()
}

/// Writes the frames into chunks of the response, hashing them.
struct Framer {
    chunks: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
    hash: Sha256,
}

impl Framer {
    fn new(chunks: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Self {
        Self {
            chunks,
            buffer: Vec::with_capacity(CHUNK),
            hash: Sha256::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.hash.update(bytes);
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.chunks
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| anyhow::anyhow!("the caller went away"))
    }

    fn snapshot(&mut self, db: &events::fjall::Database) -> anyhow::Result<()> {
        let snapshot = db.snapshot();
        let mut names: Vec<String> = db
            .list_keyspace_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        let mut entries = 0u64;
        for name in names {
            let keyspace = db.keyspace(&name, events::keyspace_options)?;
            let len = u16::try_from(name.len())?;
            self.put(b"K")?;
            self.put(&len.to_be_bytes())?;
            self.put(name.as_bytes())?;
            for guard in snapshot.iter(&keyspace) {
                let (key, value) = guard.into_inner()?;
                self.put(b"E")?;
                self.put(&u32::try_from(key.len())?.to_be_bytes())?;
                self.put(&key)?;
                self.put(&u32::try_from(value.len())?.to_be_bytes())?;
                self.put(&value)?;
                entries += 1;
            }
        }
        let digest = std::mem::take(&mut self.hash).finalize();
        self.buffer.extend_from_slice(b"Z");
        self.buffer.extend_from_slice(&entries.to_be_bytes());
        self.buffer.extend_from_slice(&digest);
        self.flush()?;
        tracing::info!(entries, "backup: snapshot sent");
        Ok(())
    }
}

/// What `take` copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub keyspaces: usize,
    pub entries: u64,
    pub events: u64,
}

/// Takes a backup of the aggregator running with `config` (its HTTP listener, its keys
/// directory) into `dir` (absent or empty), and verifies the copy's log.
pub async fn take(config: &Config, dir: &Path) -> anyhow::Result<Taken> {
    if config.event_log.backend != LogBackend::Fjall {
        bail!(
            "event_log.backend is jetstream: the stream is the log; copy it with `aggregator log export DIR`"
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: back up into a new directory",
            dir.display()
        );
    }
    let keys = Keys::load(&config.keys_dir).with_context(|| {
        format!(
            "the backup is asked for with an admin key signed by the JWT secret in {}: pass the aggregator's --keys-dir",
            config.keys_dir.display()
        )
    })?;
    let (_, key) = TokenIssuer::new(&keys.jwt_secret, config.chain_id).api_key(
        alloy::primitives::Address::ZERO,
        Role::Admin,
        KEY_LIFETIME,
    )?;
    let mut at = config.http.listen;
    if at.ip().is_unspecified() {
        at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{at}{PATH}");
    let mut response = reqwest::Client::new()
        .post(&url)
        .header("authkey", key)
        .send()
        .await
        .with_context(|| format!("asking the aggregator at {url} (is it running?)"))?;
    if !response.status().is_success() {
        let status = response.status();
        bail!("{url} answered {status}: {}", response.text().await?);
    }
    // The store's own opening makes the directory private (0700, files 0600) first.
    // (Closing a store waits for its writer: off the async workers, as every blocking step
    // here; `take` runs on a multi-threaded runtime.)
    tokio::task::block_in_place(|| {
        crate::store::Store::open(dir, events::Durability::Sync)?
            .0
            .close()
    })?;
    let taken = {
        let db = events::open_database(dir)?;
        let mut reader = Reader::new(db.clone());
        while let Some(chunk) = response
            .chunk()
            .await
            .context("the backup stream broke off")?
        {
            reader.feed(&chunk)?;
        }
        let taken = reader.finish()?;
        db.persist(events::fjall::PersistMode::SyncAll)?;
        taken
    };
    let (store, _) =
        tokio::task::block_in_place(|| crate::store::Store::open(dir, events::Durability::Sync))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let verified =
        tokio::task::block_in_place(|| events::verify(store.log.keyspaces(), threads, &|_| {}))?;
    let events = match verified {
        Ok(report) => report.events,
        Err(failure) => bail!(
            "the copy in {} does not verify: the first bad event is {failure}",
            dir.display()
        ),
    };
    tokio::task::block_in_place(|| store.close())?;
    Ok(Taken { events, ..taken })
}

/// Parses the frames as they arrive and writes them into the copy's keyspaces.
struct Reader {
    db: events::fjall::Database,
    pending: Vec<u8>,
    hash: Sha256,
    keyspace: Option<(events::fjall::Keyspace, Option<Vec<u8>>)>,
    batch: events::fjall::OwnedWriteBatch,
    keyspaces: usize,
    entries: u64,
    done: bool,
}

impl Reader {
    fn new(db: events::fjall::Database) -> Self {
        Self {
            batch: db.batch(),
            db,
            pending: Vec::new(),
            hash: Sha256::new(),
            keyspace: None,
            keyspaces: 0,
            entries: 0,
            done: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let mut at = 0;
        while let Some(used) = self.frame(&pending[at..])? {
            at += used;
        }
        pending.drain(..at);
        self.pending = pending;
        Ok(())
    }

    /// Takes one whole frame from `bytes`, answering its length; `None`: not whole yet.
    fn frame(&mut self, bytes: &[u8]) -> anyhow::Result<Option<usize>> {
        let Some((&tag, rest)) = bytes.split_first() else {
            return Ok(None);
        };
        if self.done {
            bail!("the backup stream goes on after its end");
        }
        let used = match tag {
            b'K' => {
                let Some(len) = rest.get(..2) else {
                    return Ok(None);
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(name) = rest.get(2..2 + len) else {
                    return Ok(None);
                };
                let name = std::str::from_utf8(name).context("a keyspace name is not text")?;
                let keyspace = self.db.keyspace(name, events::keyspace_options)?;
                self.keyspace = Some((keyspace, None));
                self.keyspaces += 1;
                1 + 2 + len
            }
            b'E' => {
                let Some((key, after_key)) = field(rest) else {
                    return Ok(None);
                };
                let Some((value, _)) = field(&rest[after_key..]) else {
                    return Ok(None);
                };
                let Some((keyspace, last)) = &mut self.keyspace else {
                    bail!("the backup stream has an entry before any keyspace");
                };
                if last.as_deref().is_some_and(|last| last >= key) {
                    bail!("the backup stream's keys are out of order");
                }
                self.batch.insert(keyspace, key, value);
                *last = Some(key.to_vec());
                self.entries += 1;
                if self.batch.len() >= 20_000 {
                    std::mem::replace(&mut self.batch, self.db.batch()).commit()?;
                }
                1 + after_key + 4 + value.len()
            }
            b'Z' => {
                let Some(trailer) = rest.get(..8 + 32) else {
                    return Ok(None);
                };
                let mut count = [0u8; 8];
                count.copy_from_slice(&trailer[..8]);
                if u64::from_be_bytes(count) != self.entries {
                    bail!("the backup stream lost entries on the way");
                }
                let digest = std::mem::take(&mut self.hash).finalize();
                if digest.as_slice() != &trailer[8..] {
                    bail!("the backup stream was damaged on the way (its SHA-256 differs)");
                }
                self.done = true;
                return Ok(Some(1 + 8 + 32));
            }
            other => bail!("the backup stream holds an unknown frame {other:#x}"),
        };
        self.hash.update(&bytes[..used]);
        Ok(Some(used))
    }

    fn finish(self) -> anyhow::Result<Taken> {
        if !self.done || !self.pending.is_empty() {
            bail!("the backup stream was cut short: nothing usable was written");
        }
        self.batch.commit()?;
        Ok(Taken {
            keyspaces: self.keyspaces,
            entries: self.entries,
            events: 0,
        })
    }
}

/// A length-prefixed field: its bytes and where the rest starts.
fn field(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = bytes.get(..4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    Some((bytes.get(4..4 + len)?, 4 + len))
}
