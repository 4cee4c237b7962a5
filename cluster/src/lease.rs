//! The writer's lease: which replica takes commands, held in a JetStream KV bucket.
//!
//! The bucket (`<stream>-writer`, one key, history 1) keeps each value for the lease's TTL
//! (`max_age`): the holder renews it (`update` with the revision it holds: compare-and-set)
//! three times per TTL; a holder that dies stops renewing and the value lapses, and a follower
//! takes it (`create`: only when there is none). A replica that takes the lease first catches up
//! with the stream, and only then leads (`JetStream::set_leading`); one that loses it (a renewal
//! refused, or none acknowledged for two thirds of the TTL) or whose publish the stream refused
//! (`Landed::Deposed`) stops leading at once and follows. Two thirds of the TTL after its last
//! acknowledged renewal was sent, it stops leading by its own clock (`JetStream::hold_until`),
//! before its campaign looks: a holder paused past its lease (SIGSTOP, a stall) resumes not
//! leading.
//!
//! The lease decides who *should* write; it is not what keeps the log whole. Two replicas that
//! both believe they lead (a holder paused past its TTL) cannot both append: each publish
//! expects the stream's last sequence its writer decided on, and the second is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use events::Log;
use tokio::sync::watch;

use crate::backend::JetStream;
use crate::buckets::open_bucket;
use crate::error::Result;
use crate::follow::catch_up;

/// The key of the bucket that names the writer.
const KEY: &str = "writer";

/// Who writes, as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// Nobody holds the lease (it lapsed, or was given up): a follower takes it soon.
    None,
    /// This replica, which takes commands.
    Me,
    /// Another replica, by its id (its forwarding subject derives from it, see `forward`).
    Other(String),
}

/// The lease's campaign of one replica.
pub struct Lease {
    kv: kv::Store,
    me: String,
    ttl: Duration,
    backend: Arc<JetStream>,
    log: Log,
    writer: watch::Sender<Writer>,
    /// The revision this replica holds, while it leads.
    held: tokio::sync::Mutex<Option<u64>>,
    renewed: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("me", &self.me)
            .field("writer", &*self.writer.borrow())
            .finish_non_exhaustive()
    }
}

/// The bucket's name for a stream (KV bucket names take letters, digits, '-' and '_').
pub fn bucket(stream: &str) -> String {
    format!("{stream}-writer")
}

impl Lease {
    /// Opens (or creates) the lease's bucket. `me` names this replica (unique among them).
    /// The backend starts following: it leads once the campaign wins.
    pub async fn open(
        backend: Arc<JetStream>,
        log: Log,
        me: String,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self> {
        let kv = open_bucket(
            backend.replicated(),
            &bucket(backend.replicated().name()),
            replicas,
            ttl,
            "the aggregator's writer lease",
        )
        .await?;
        backend.set_leading(false);
        Ok(Self {
            kv,
            me,
            ttl,
            backend,
            log,
            writer: watch::Sender::new(Writer::None),
            held: tokio::sync::Mutex::new(None),
            renewed: std::sync::Mutex::new(None),
        })
    }

    /// This replica's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Who writes, as last seen.
    pub fn writer(&self) -> Writer {
        self.writer.borrow().clone()
    }

    /// Follows each change of who writes.
    pub fn watch(&self) -> watch::Receiver<Writer> {
        self.writer.subscribe()
    }

    /// Campaigns until `stop` turns true, then gives the lease up if it holds it.
    pub async fn campaign(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut deposed = self.backend.deposed();
        deposed.mark_unchanged();
        loop {
            let leading = self.held.lock().await.is_some();
            let pause = if leading { self.ttl / 3 } else { self.ttl / 4 };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = deposed.changed() => {
                    if self.held.lock().await.is_some() {
                        tracing::warn!("the stream refused this writer's publish: stepping down");
                        self.step_down(true).await;
                    }
                    continue;
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            }
            if leading {
                self.renew().await;
            } else {
                self.look().await;
            }
        }
        self.step_down(true).await;
    }

    /// Renews the lease held; steps down when that is refused, or when no renewal was
    /// acknowledged for two thirds of the TTL (the lease may lapse any moment after).
    async fn renew(&self) {
        let mut held = self.held.lock().await;
        let Some(revision) = *held else { return };
        let sent = Instant::now();
        match tokio::time::timeout(
            self.ttl / 3,
            self.kv.update(KEY, self.me.clone().into(), revision),
        )
        .await
        {
            Ok(Ok(next)) => {
                *held = Some(next);
                self.renewed_at(sent);
            }
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                drop(held);
                tracing::warn!("another replica holds the writer's lease: stepping down");
                self.step_down(false).await;
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".into(),
                };
                if self.since_renewal() > self.ttl * 2 / 3 {
                    drop(held);
                    tracing::warn!(%error, "the writer's lease could not be renewed in time: stepping down");
                    self.step_down(false).await;
                } else {
                    tracing::warn!(%error, "renewing the writer's lease failed; trying again");
                }
            }
        }
    }

    /// Reads who holds the lease; takes it when nobody does.
    async fn look(&self) {
        let entry = match self.kv.entry(KEY).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "reading the writer's lease failed");
                return;
            }
        };
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let holder = String::from_utf8_lossy(&entry.value).into_owned();
                let writer = if holder == self.me {
                    // Ours from before a restart of this process, not yet lapsed: it lapses
                    // (this process holds no revision of it) and is taken again.
                    Writer::None
                } else {
                    Writer::Other(holder)
                };
                self.writer.send_if_modified(|w| {
                    let changed = *w != writer;
                    *w = writer;
                    changed
                });
            }
            _ => self.take().await,
        }
    }

    /// Takes the free lease, catches up with the stream (renewing meanwhile), then leads.
    async fn take(&self) {
        let sent = Instant::now();
        let Ok(revision) = self.kv.create(KEY, self.me.clone().into()).await else {
            return; // another replica took it first: the next look sees which
        };
        *self.held.lock().await = Some(revision);
        self.renewed_at(sent);
        self.writer.send_replace(Writer::Me);
        let replicated = self.backend.replicated().clone();
        let caught_up = catch_up(&self.log, &replicated);
        tokio::pin!(caught_up);
        loop {
            tokio::select! {
                outcome = &mut caught_up => {
                    match outcome {
                        Ok(position) => {
                            if self.held.lock().await.is_some() {
                                self.backend.set_leading(true);
                                tracing::info!(replica = %self.me, position, "this replica writes the log now");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "catching up before writing failed");
                            self.step_down(true).await;
                        }
                    }
                    return;
                }
                _ = tokio::time::sleep(self.ttl / 3) => {
                    self.renew().await;
                    if self.held.lock().await.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Stops leading; `give_up` also deletes the lease (when still ours) so that another replica
    /// takes it without waiting for it to lapse.
    async fn step_down(&self, give_up: bool) {
        self.backend.set_leading(false);
        let held = self.held.lock().await.take();
        self.writer.send_replace(Writer::None);
        if let (true, Some(revision)) = (give_up, held) {
            let _ = self.kv.delete_expect_revision(KEY, Some(revision)).await;
        }
    }

    /// A renewal sent at `at` was acknowledged: the server keeps the lease until `at + ttl` at
    /// the earliest, and this replica leads until two thirds of that, by its own clock.
    fn renewed_at(&self, at: Instant) {
        if let Ok(mut last) = self.renewed.lock() {
            *last = Some(at);
        }
        self.backend.hold_until(at + self.ttl * 2 / 3);
    }

    /// Since the last renewal acknowledged, counted from when it was sent (a slow
    /// acknowledgement must not stretch the lease past what the server grants).
    fn since_renewal(&self) -> Duration {
        self.renewed
            .lock()
            .ok()
            .and_then(|last| last.map(|at| at.elapsed()))
            .unwrap_or(Duration::MAX)
    }
}
