//! Start-up and shutdown, in the order of the system overview: configuration (already loaded),
//! the Ethereum connection when configured, the store (projections brought up to date, rebuilt
//! when their schema version changed), the task engine, the gRPC server, the HTTP server.
//!
//! Graceful shutdown (SIGINT / SIGTERM, or `Running::stop`): both servers stop accepting and
//! finish the calls in flight; then the log writer finishes the queued commands and the store
//! is flushed.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, SharedApp};
use crate::auth::TokenIssuer;
use crate::auth::keys::Keys;
use crate::chain::Chain;
use crate::config::Config;
use crate::limits::Limiter;
use crate::secret_box::SecretBox;
use crate::store::Store;
use crate::wallet::WalletFactory;

/// A started aggregator.
pub struct Running {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub app: SharedApp,
    stop: watch::Sender<bool>,
    /// The operator pool's loop and the registry's refresh: they hold the store.
    background: Vec<JoinHandle<()>>,
    servers: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("grpc", &self.grpc)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// Builds the shared state: keys, chain, store.
pub async fn open(config: Config) -> anyhow::Result<SharedApp> {
    let started_ms = events::now_ms();
    let keys = Keys::load_or_create(&config.keys_dir)?;
    let chain = match &config.ethereum.rpc_url {
        Some(url) => {
            let chain = Chain::connect(url, config.chain_id).await?;
            tracing::info!(url = %crate::chain::redact_url(url), chain_id = chain.chain_id, "connected to the chain");
            Some(chain)
        }
        None => None,
    };
    let log_options = events::LogOptions {
        durability: config.durability.into(),
        max_event_bytes: config.limits.max_event_bytes,
        ..events::LogOptions::default()
    };
    let (store, catch_up, replica) = open_store(&config, log_options).await?;
    if !catch_up.rebuilt.is_empty() || catch_up.applied > 0 {
        tracing::info!(rebuilt = ?catch_up.rebuilt, applied = catch_up.applied, "projections brought up to date");
    }
    tracing::info!(
        data = %config.data_dir.display(),
        keys = %config.keys_dir.display(),
        durability = ?config.durability,
        events = store.views.event_count().unwrap_or(0),
        head = %store.log.head().ok().flatten().map_or_else(|| "none".to_owned(), |(id, _)| id.to_string()),
        "store open"
    );
    let wallets = WalletFactory::from_config(&config.wallet)?;
    let writes = match &chain {
        Some(chain) => Some(crate::engine::nodes::write::Writes {
            wallets: Arc::new(crate::wallet::open(&config, chain.clone())?),
            default_factory: wallets.clone(),
        }),
        None => None,
    };
    let secret_box = SecretBox::new(&keys.secrets_key);
    let token_directory = Arc::new(crate::token_metadata::TokenDirectory::load(
        config.chain_id,
        config.engine.token_whitelist.as_deref(),
    )?);
    let leads = match &replica {
        Some(replica) => replica.leadership(),
        // One process writes the log for good: a receiver that never changes.
        None => tokio::sync::watch::channel(true).1,
    };
    let engine = crate::engine::Engine::start(
        store.clone(),
        config.engine.clone(),
        &config.limits,
        secret_box.clone(),
        chain.clone(),
        config.chain_id,
        token_directory.clone(),
        writes.clone(),
        leads,
        replica
            .as_ref()
            .map(|replica| crate::engine::claims::ClaimSettings {
                replica: replica.id().to_owned(),
                ttl: config.event_log.claim_ttl,
                wake: replica.backend().positions(),
            }),
    )
    .await?;
    let members = crate::operators::registry::load(&config, chain.as_ref()).await?;
    crate::operators::registry::record(&store, &members).await?;
    let pool = match &replica {
        None => crate::operators::Pool::new(store.clone(), config.operators.clone())?,
        // A request replayed to another replica within its freshness window is refused too.
        Some(replica) => {
            let nonces = cluster::KvNonces::open(
                replica.backend().replicated(),
                config.event_log.replicas,
                config.operators.freshness,
            )
            .await?;
            // The writer assigns tasks among the operators connected to any replica.
            let presence = cluster::KvPresence::open(
                replica.backend().replicated(),
                config.event_log.replicas,
                replica.id(),
                config.event_log.lease_ttl,
            )
            .await?;
            crate::operators::Pool::replicated(
                store.clone(),
                config.operators.clone(),
                crate::operators::pool::Replicated {
                    nonces: Arc::new(nonces),
                    presence: Arc::new(presence),
                    leads: replica.leadership(),
                },
            )?
        }
    };
    let transparency = crate::transparency::open(&config, &store)?;
    Ok(Arc::new(App {
        transparency,
        token_issuer: TokenIssuer::new(&keys.jwt_secret, config.chain_id),
        secret_box,
        engine,
        token_directory,
        pool,
        limiter: Limiter::new(&config.limits),
        owner_slots: crate::quota::OwnerSlots::default(),
        wallets,
        chain,
        store,
        config,
        repeats: crate::rpc::repeats::CallRepeats::default(),
        started_ms,
        replica,
    }))
}

/// The store on the configured backend: fjall alone, or a replica of the JetStream stream (its
/// local database brought up to the stream's head, the writer's lease campaigning, commands
/// forwarded to the writer).
async fn open_store(
    config: &Config,
    log_options: events::LogOptions,
) -> anyhow::Result<(Store, projections::CatchUp, Option<Arc<cluster::Replica>>)> {
    let opening = || format!("opening the store in {}", config.data_dir.display());
    let settings = &config.event_log;
    if settings.backend == crate::config::LogBackend::Fjall {
        let (store, catch_up) =
            Store::open_with(&config.data_dir, log_options).with_context(opening)?;
        return Ok((store, catch_up, None));
    }
    let replicated = cluster::Replicated::connect(&cluster::StreamSettings {
        urls: settings.nats_urls.clone(),
        stream: settings.stream.clone(),
        replicas: settings.replicas,
    })
    .await?;
    // Every replica must hold the same keys: the log key is made now if absent (as
    // `transparency::open` would), so that a replica never signs with a key of its own, and
    // a replica whose keys differ from the recorded ones stops here, before it campaigns.
    crate::transparency::key::load_or_create(
        &config.keys_dir,
        config.event_log.origin(config.chain_id),
    )?;
    let checked =
        cluster::fingerprints::check(&replicated, settings.replicas, &config.keys_dir).await?;
    tracing::info!(recorded = ?checked.recorded, matched = ?checked.matched, "the keys' fingerprints checked against the stream's");
    let db = Store::database_in(&config.data_dir).with_context(opening)?;
    let backend = Arc::new(
        cluster::JetStream::open(&db, replicated, tokio::runtime::Handle::current())
            .await
            .with_context(opening)?,
    );
    let (store, catch_up) =
        Store::open_in(db, log_options, backend.clone()).with_context(opening)?;
    let me = events::Ulid::generate().to_string();
    let replica = cluster::Replica::start(
        store.log.clone(),
        backend,
        me.clone(),
        settings.lease_ttl,
        settings.replicas,
    )
    .await?;
    tracing::info!(
        replica = %me,
        stream = %settings.stream,
        position = events::Backend::position(replica.backend().as_ref()),
        "a replica of the replicated log"
    );
    Ok((store, catch_up, Some(Arc::new(replica))))
}

/// Starts everything and returns once both listeners are bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    crate::telemetry::metrics();
    crate::telemetry::catalog::register();
    let grpc_listener = TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.grpc.listen))?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http.listen))?;
    let app = open(config).await?;
    app.limiter.spawn_pruner();
    if let Some(writes) = app.engine.tools().writes.clone() {
        on_becoming_writer(&app, move |app| {
            let writes = writes.clone();
            async move {
                match crate::withdrawals::resume(&app.store, &writes.wallets).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(count = n, "withdrawals left open by a restart settled")
                    }
                    Err(e) => tracing::warn!(error = %e, "open withdrawals could not be read"),
                }
            }
        });
    }
    if let Some(replica) = &app.replica {
        // The calls that send user operations, from the replicas that do not write.
        replica.serve_calls(crate::rpc::client::on_writer::handler(app.clone()));
    }
    on_becoming_writer(&app, |app| async move {
        if let Err(e) = crate::operators::attestations::refire_pending(&app).await {
            tracing::warn!(error = %e, "attested firings could not be handed to the engine again");
        }
    });
    match app.replica.as_ref().map(|r| r.leadership()) {
        None => metrics::gauge!("log_writer").set(1.0),
        Some(mut leads) => {
            tokio::spawn(async move {
                loop {
                    let leading = *leads.borrow_and_update();
                    metrics::gauge!("log_writer").set(if leading { 1.0 } else { 0.0 });
                    if leads.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    let grpc = grpc_listener.local_addr()?;
    let http = http_listener.local_addr()?;

    let (stop, stopped) = watch::channel(false);
    let mut background = vec![
        app.pool.spawn(stopped.clone()),
        crate::transparency::spawn(app.clone(), stopped.clone()),
    ];
    background.extend(crate::operators::registry::spawn_refresh(
        app.clone(),
        stopped.clone(),
    ));
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let servers = vec![
        tokio::spawn(crate::rpc::serve(
            app.clone(),
            grpc_listener,
            until(stopped.clone()),
        )),
        tokio::spawn(crate::telemetry::http::serve(
            app.clone(),
            http_listener,
            until(stopped),
        )),
    ];
    tracing::info!(
        %grpc,
        tls = app.config.grpc.tls.is_some(),
        chain_id = app.config.chain_id,
        operators = app.pool.weights().len(),
        "gRPC listening: the client API (aggregator.Aggregator) and the operators' (aggregator.Node)"
    );
    tracing::info!(
        %http,
        console = %format!("http://{http}/telemetry"),
        log_key = %app.transparency.verifier_key,
        "HTTP listening: /up, /metrics, /operators, the transparency log's /checkpoint, /tile/ and /log-key, and the console"
    );
    Ok(Running {
        grpc,
        http,
        app,
        stop,
        background,
        servers,
    })
}

impl Running {
    /// Stops accepting, finishes the calls in flight, then the queued commands, and flushes.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        // The operators' streams end first (the pool closes them): a graceful shutdown waits
        // for every open call.
        for task in self.background {
            task.await?;
        }
        for server in self.servers {
            server.await??;
        }
        // Runs still going after the grace period stay pending and resume at the next start;
        // on a replicated log they are stopped and their claims released, so that the other
        // replicas take them at once. The engine stops while this replica still follows and
        // reaches the writer (itself, or the one it forwards to): a replica that has given the
        // lease up and stopped following can record nothing.
        self.app
            .engine
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        // Then the lease is given up: another replica writes at once.
        if let Some(replica) = &self.app.replica {
            replica.stop().await;
        }
        let store = self.app.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await??;
        tracing::info!("aggregator stopped");
        Ok(())
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await
}

pub use protocol::process::shutdown_signal;

/// Runs `duty` once now (fjall), or each time this replica becomes the log's writer: what a
/// previous process or writer left unfinished is taken up by the one that writes now.
fn on_becoming_writer<F, Fut>(app: &SharedApp, duty: F)
where
    F: Fn(SharedApp) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let app = app.clone();
    let Some(mut leads) = app.replica.as_ref().map(|r| r.leadership()) else {
        tokio::spawn(async move { duty(app).await });
        return;
    };
    tokio::spawn(async move {
        loop {
            if leads.wait_for(|l| *l).await.is_err() {
                return;
            }
            duty(app.clone()).await;
            if leads.wait_for(|l| !*l).await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jetstream_log_whose_servers_cannot_be_reached_stops_start_up_naming_them() {
        // A port nobody listens on (bound, then freed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            keys_dir: dir.path().join("keys"),
            ..Config::default()
        };
        config.event_log.backend = crate::config::LogBackend::Jetstream;
        config.event_log.nats_urls = vec![format!("nats://127.0.0.1:{port}")];
        let err = format!("{:#}", open(config).await.unwrap_err());
        assert!(
            err.contains("connecting to NATS") && err.contains(&port.to_string()),
            "{err}"
        );
        // No data directory was made for a log that is not there.
        assert!(!dir.path().join("data").exists());
    }
}
