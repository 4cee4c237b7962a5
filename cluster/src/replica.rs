//! `Replica`: one aggregator process on the replicated log, put together in the order that
//! keeps it consistent: follow the stream and catch up with it, open the lease, route appends
//! (`forward::Forwarder`), take forwarded commands (`forward::serve`), then campaign
//! (`lease::Lease::campaign`). What the process runs on the writer only (timers, the engine, the
//! ERC-4337 sender) follows `leadership`.

use std::sync::Arc;
use std::time::Duration;

use events::Log;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::JetStream;
use crate::error::{Error, Result};
use crate::follow::{catch_up, follow};
use crate::forward::{Forwarder, serve};
use crate::lease::{Lease, Writer};

/// How long a linearizable read waits for this replica to hold the stream's head.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// A running replica.
pub struct Replica {
    backend: Arc<JetStream>,
    lease: Arc<Lease>,
    log: Log,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Starts replica `me` (unique among the replicas) of the log opened on `backend`: returns
    /// once the local database holds the stream as of now. `lease_ttl`: how long a dead
    /// writer's lease holds; `replicas`: the copies of the lease's bucket.
    pub async fn start(
        log: Log,
        backend: Arc<JetStream>,
        me: String,
        lease_ttl: Duration,
        replicas: usize,
    ) -> Result<Self> {
        let replicated = backend.replicated().clone();
        let position = events::Backend::position(backend.as_ref());
        let following = {
            let log = log.clone();
            let replicated = replicated.clone();
            tokio::spawn(async move {
                if let Err(e) = follow(log, replicated, position).await {
                    tracing::error!(error = %e, "following the replicated log stopped");
                }
            })
        };
        let lease = Arc::new(
            Lease::open(
                backend.clone(),
                log.clone(),
                me.clone(),
                lease_ttl,
                replicas,
            )
            .await?,
        );
        let started = std::time::Instant::now();
        let at = catch_up(&log, &replicated).await?;
        tracing::info!(
            position = at,
            took_ms = started.elapsed().as_millis() as u64,
            "caught up with the replicated log"
        );
        let client = replicated.client();
        log.route_through(Arc::new(Forwarder::new(
            client.clone(),
            lease.clone(),
            backend.clone(),
        )));
        let serving = tokio::spawn(serve(client, log.clone(), backend.clone(), me));
        let (stop, stopped) = watch::channel(false);
        let campaign = tokio::spawn(lease.clone().campaign(stopped));
        Ok(Self {
            backend,
            lease,
            log,
            stop,
            tasks: std::sync::Mutex::new(vec![following, serving, campaign]),
        })
    }

    /// Whether this replica writes the log now.
    pub fn leading(&self) -> bool {
        events::Backend::leading(self.backend.as_ref())
    }

    /// Follows whether this replica writes the log.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.backend.leadership()
    }

    /// Who writes, as this replica knows it.
    pub fn writer(&self) -> Writer {
        self.lease.writer()
    }

    pub fn id(&self) -> &str {
        self.lease.me()
    }

    pub fn backend(&self) -> &Arc<JetStream> {
        &self.backend
    }

    /// Hands calls that must run on the writer to it (`forward::Calls`).
    pub fn calls(&self) -> crate::forward::Calls {
        crate::forward::Calls::new(
            self.backend.replicated().client(),
            self.lease.clone(),
            self.backend.clone(),
        )
    }

    /// Runs the calls the other replicas hand to this one while it writes, until stopped.
    pub fn serve_calls(&self, handler: crate::forward::CallHandler) {
        let serving = tokio::spawn(crate::forward::serve_calls(
            self.backend.replicated().client(),
            self.backend.clone(),
            self.lease.me().to_owned(),
            handler,
        ));
        if let Ok(mut tasks) = self.tasks.lock() {
            // Before the campaign, which `stop` takes last.
            let at = tasks.len().saturating_sub(1);
            tasks.insert(at, serving);
        }
    }

    /// Waits until this replica holds the stream as of now (its last sequence when asked): a
    /// read answered after it sees every command acknowledged before it arrived, on any replica.
    pub async fn caught_up(&self) -> Result<u64> {
        let head = self.backend.replicated().head().await?;
        tokio::time::timeout(READ_PATIENCE, self.backend.reached(head))
            .await
            .map_err(|_| Error::Stream {
                stream: self.backend.replicated().name().to_owned(),
                message: format!(
                    "this replica did not reach position {head} within {READ_PATIENCE:?}"
                ),
            })?;
        if let Some(reason) = self.log.poisoned() {
            return Err(Error::Log(events::Error::Poisoned(reason)));
        }
        Ok(head)
    }

    /// Gives the lease up (another replica takes over at once) and stops following.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return,
        };
        if let Some(campaign) = tasks.pop() {
            let _ = tokio::time::timeout(Duration::from_secs(5), campaign).await;
        }
        for task in tasks {
            task.abort();
        }
    }
}
