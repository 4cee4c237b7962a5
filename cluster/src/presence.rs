//! The operators' presence, cluster-wide: which operators hold a `SyncMessages` stream on which
//! replica, so that the writer, which decides the assignments, chooses among every connected
//! operator and not only its own.
//!
//! One KV bucket beside the stream (`<stream>_presence`), one key per operator and replica
//! (`<operator>.<replica>`): a replica writes and deletes only its own keys, so an operator moving
//! from one replica to another never has its new entry deleted by the old one. The replica
//! holding a stream puts its key when the stream opens, again every third of `ttl` while it
//! lasts (`keep`), and deletes it when the stream ends. Every replica watches the bucket and
//! keeps what it receives, with when it received it (`watch`): an entry not refreshed within
//! `ttl` (its replica died without deleting it) counts as gone, on the receiving replica's own
//! clock, whatever the servers' clocks say. The bucket's `max_age` (`ttl`) clears such entries.
//!
//! Why a bucket and not events in the log: presence needs a heartbeat, since a replica that dies
//! cannot record that its operators left; in the log every heartbeat would be an event kept for
//! ever and replayed by every rebuild and audit, while a bucket keeps one value per key and
//! forgets it after `ttl`. What the writer decides from presence (the assignments) is in the log.
//!
//! The values are the caller's (the aggregator encodes an operator's capabilities); this
//! module only keeps them alive and tells whose they are.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::buckets::open_bucket;
use crate::error::{Error, Result};
use crate::stream::Replicated;

/// The bucket of a stream's operator presence.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_presence")
}

/// One operator connected to another replica, as this replica last heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// The operator (the key's first part, as the holder wrote it).
    pub operator: String,
    /// The replica holding its stream.
    pub replica: String,
    /// What the holder said of it.
    pub value: Vec<u8>,
}

/// What the keeper task is asked to do, in order.
enum Change {
    Hold(String, Vec<u8>),
    Release(String),
}

/// The entries this replica received, by key, with when it received each.
type Seen = BTreeMap<String, (Instant, Vec<u8>)>;

struct Inner {
    me: String,
    ttl: Duration,
    seen: Mutex<Seen>,
    changed: Notify,
    changes: mpsc::UnboundedSender<Change>,
    /// The watch of the bucket (the keeper ends by itself once the queue is dropped and done,
    /// so that a release asked just before is still sent).
    watching: Mutex<Option<JoinHandle<()>>>,
}

/// The operators' presence in the stream's KV bucket, for one replica.
#[derive(Clone)]
pub struct KvPresence {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KvPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvPresence")
            .field("replica", &self.inner.me)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl KvPresence {
    /// Opens (or creates) the bucket of `replicated`'s stream for replica `me` (a ULID, unique
    /// among the replicas), and starts keeping its entries alive and watching the others'.
    /// `ttl`: how long an entry holds without being refreshed.
    pub async fn open(
        replicated: &Replicated,
        replicas: usize,
        me: &str,
        ttl: Duration,
    ) -> Result<Self> {
        let bucket = bucket(replicated.name());
        let ttl = ttl.max(Duration::from_millis(300));
        let store = open_bucket(
            replicated,
            &bucket,
            replicas,
            ttl,
            "which operators hold a SyncMessages stream on which replica (aggregator.Node)",
        )
        .await?;
        let watching = store.watch_all().await.map_err(|e| Error::Stream {
            stream: bucket.clone(),
            message: format!("watching the operators' presence: {e}"),
        })?;
        let (changes, queued) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            me: me.to_owned(),
            ttl,
            seen: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            changes,
            watching: Mutex::new(None),
        });
        tokio::spawn(keep(store.clone(), me.to_owned(), ttl, queued));
        let watched = tokio::spawn(watch(store, Arc::downgrade(&inner), watching));
        *inner.watching.lock().unwrap_or_else(|p| p.into_inner()) = Some(watched);
        Ok(Self { inner })
    }

    /// This replica holds `operator`'s stream from now on (its key: letters and digits only),
    /// with `value`; kept alive until `release`.
    pub fn hold(&self, operator: &str, value: Vec<u8>) {
        let _ = self
            .inner
            .changes
            .send(Change::Hold(operator.to_owned(), value));
    }

    /// This replica no longer holds `operator`'s stream.
    pub fn release(&self, operator: &str) {
        let _ = self
            .inner
            .changes
            .send(Change::Release(operator.to_owned()));
    }

    /// The operators other replicas hold now: entries received within `ttl`, not this
    /// replica's.
    pub fn others(&self) -> Vec<Present> {
        let now = Instant::now();
        let seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter()
            .filter(|(_, (at, _))| now.saturating_duration_since(*at) < self.inner.ttl)
            .filter_map(|(key, (_, value))| {
                let (operator, replica) = key.split_once('.')?;
                (replica != self.inner.me).then(|| Present {
                    operator: operator.to_owned(),
                    replica: replica.to_owned(),
                    value: value.clone(),
                })
            })
            .collect()
    }

    /// Resolves when an operator appeared on another replica, left it, or changed what it says
    /// (refreshes alone do not wake it; an entry lapsing is seen by the next `others`).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .watching
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Puts and deletes this replica's keys in the order asked, and puts every held one again each
/// third of `ttl`. Ends when the presence is dropped, after what was asked before (the keys it
/// still holds then lapse).
async fn keep(
    store: kv::Store,
    me: String,
    ttl: Duration,
    mut queued: mpsc::UnboundedReceiver<Change>,
) {
    let key = |operator: &str| format!("{operator}.{me}");
    let mut held: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut refresh = tokio::time::interval(ttl / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = queued.recv() => match change {
                Some(Change::Hold(operator, value)) => {
                    if let Err(e) = store.put(key(&operator), value.clone().into()).await {
                        tracing::warn!(error = %e, operator, "recording an operator's presence failed; retried");
                    }
                    held.insert(operator, value);
                }
                Some(Change::Release(operator)) => {
                    if held.remove(&operator).is_some()
                        && let Err(e) = store.delete(key(&operator)).await
                    {
                        tracing::warn!(error = %e, operator, "deleting an operator's presence failed; it lapses");
                    }
                }
                None => return,
            },
            _ = refresh.tick() => {
                for (operator, value) in &held {
                    if let Err(e) = store.put(key(operator), value.clone().into()).await {
                        tracing::warn!(error = %e, operator, "refreshing an operator's presence failed");
                    }
                }
            }
        }
    }
}

/// Keeps what the bucket holds, as received; watches again after an error. Ends when the
/// presence is dropped.
async fn watch(store: kv::Store, inner: std::sync::Weak<Inner>, mut watching: kv::Watch) {
    loop {
        while let Some(entry) = watching.next().await {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the operators' presence");
                    break;
                }
            };
            let changed = {
                let mut seen = inner.seen.lock().unwrap_or_else(|p| p.into_inner());
                match entry.operation {
                    kv::Operation::Put => {
                        let value = entry.value.to_vec();
                        let now = Instant::now();
                        match seen.insert(entry.key, (now, value.clone())) {
                            Some((at, before)) => {
                                before != value || now.saturating_duration_since(at) >= inner.ttl
                            }
                            None => true,
                        }
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        seen.remove(&entry.key).is_some()
                    }
                }
            };
            if changed {
                inner.changed.notify_one();
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match store.watch_all().await {
            Ok(again) => watching = again,
            Err(e) => tracing::warn!(error = %e, "watching the operators' presence again"),
        }
    }
}
