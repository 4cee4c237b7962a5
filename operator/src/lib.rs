//! The operator process: connects to the aggregator (and reconnects with backoff), receives the
//! tasks assigned to it, watches their triggers on the chain and the clock (`watch`), and reports
//! each firing signed with its BLS and ECDSA keys (`client`). It serves its own `/metrics` and
//! `/up`, and stops cleanly on SIGINT / SIGTERM. It cosigns the aggregator's log checkpoints that
//! are consistent with the last one it cosigned (`cosign`).
//!
//! Layout: `config` (YAML), `client` (signed calls), `watch` (the firing rules), `cosign` (the
//! checkpoint cosigning rule and its state file);
//! this file: `run` in its phases (connect, serve the metrics, spawn the loops, follow the task
//! stream) and the loops themselves.

pub mod client;
pub mod config;
pub mod cosign;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch as signal};

use client::Client;
use config::OperatorConfig;
use watch::{Report, Watches};

use protocol::pb;

/// Milliseconds since the epoch, as the rules and the wire count time.
fn now_ms_i64() -> i64 {
    i64::try_from(events::now_ms()).unwrap_or(i64::MAX)
}

/// Runs the operator until `stop` turns true: connects ([`connect_with_backoff`]), serves its
/// HTTP endpoints ([`serve_metrics`]), starts the loops that report, tick, follow the chain and
/// ping ([`spawn_loops`]), and follows the stream of tasks until it stops ([`follow_tasks`]).
pub async fn run(config: OperatorConfig, mut stop: signal::Receiver<bool>) -> anyhow::Result<()> {
    protocol::process::metrics();
    let ecdsa = config.ecdsa()?;
    let bls = config.bls()?;
    let address = ecdsa.address();
    tracing::info!(operator = %address, aggregator = %config.aggregator, "operator starting");
    let provider: DynProvider = ProviderBuilder::new()
        .connect_http(config.ethereum.http_url.parse()?)
        .erased();
    let client = connect_with_backoff(&config, ecdsa, bls, &mut stop).await?;
    let watches = Arc::new(Watches::default());
    let head = Arc::new(AtomicU64::new(provider.get_block_number().await?));
    serve_metrics(&config, stop.clone()).await?;
    let (mut jobs, reports) = spawn_loops(&config, &provider, &client, &watches, &head, &stop);
    follow_tasks(&config, &client, &watches, &head, &mut stop).await;
    drop(reports);
    jobs.abort_all();
    tracing::info!("operator stopped");
    Ok(())
}

/// `/up` and `/metrics` on `metrics_listen`, until `stop` turns true.
async fn serve_metrics(
    config: &OperatorConfig,
    mut stop: signal::Receiver<bool>,
) -> anyhow::Result<()> {
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen).await?;
    describe_metrics();
    let metrics_app = axum::Router::new()
        .route("/up", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/metrics",
            axum::routing::get(|| async { protocol::process::metrics().render() }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(metrics_listener, metrics_app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(())
}

/// What each of the operator's metrics means, on its `/metrics` (`# HELP` lines).
fn describe_metrics() {
    // The recorder must exist before the descriptions are given to it.
    let _ = protocol::process::metrics();
    metrics::describe_gauge!(
        "operator_tasks_watched",
        "Tasks this operator watches the triggers of."
    );
    metrics::describe_counter!(
        "operator_reports_total",
        "Firings reported to the aggregator, by the aggregator's answer (status)."
    );
    metrics::describe_gauge!(
        "operator_block_number",
        "The latest block this operator has followed."
    );
    metrics::describe_counter!(
        "operator_cosign_refusals_total",
        "Log checkpoints this operator refused to cosign (inconsistent with the last one it cosigned, or unverifiable)."
    );
}

/// The loops that run beside the task stream: reports sent in order, the clock's ticks, the
/// chain followed block by block, the pings. Returns them with the sender of the reports' queue.
fn spawn_loops(
    config: &OperatorConfig,
    provider: &DynProvider,
    client: &Client,
    watches: &Arc<Watches>,
    head: &Arc<AtomicU64>,
    stop: &signal::Receiver<bool>,
) -> (tokio::task::JoinSet<()>, mpsc::UnboundedSender<Report>) {
    let started = Instant::now();
    let (reports, report_queue) = mpsc::unbounded_channel::<Report>();
    let mut jobs = tokio::task::JoinSet::new();
    jobs.spawn(report_loop(client.clone(), report_queue));
    jobs.spawn(time_loop(watches.clone(), reports.clone(), stop.clone()));
    jobs.spawn(chain_loop(
        config.clone(),
        provider.clone(),
        watches.clone(),
        head.clone(),
        reports.clone(),
        client.clone(),
        stop.clone(),
    ));
    jobs.spawn(ping_loop(
        client.clone(),
        config.clone(),
        head.clone(),
        watches.clone(),
        started,
        stop.clone(),
    ));
    (jobs, reports)
}

/// The stream of tasks: each message handled ([`handle`]), the stream reopened with backoff
/// whenever it ends, until `stop` turns true.
async fn follow_tasks(
    config: &OperatorConfig,
    client: &Client,
    watches: &Watches,
    head: &AtomicU64,
    stop: &mut signal::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        let mut sync_client = client.clone();
        let capabilities = pb::sync_messages_req::Capabilities {
            event_monitoring: config.capabilities.events,
            block_monitoring: config.capabilities.blocks,
            time_monitoring: config.capabilities.time,
        };
        match sync_client.sync(capabilities).await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(200);
                tracing::info!("task stream open");
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    match message {
                        Ok(Some(message)) => {
                            handle(config, watches, head, &mut sync_client, message).await
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "task stream failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the task stream"),
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn connect_with_backoff(
    config: &OperatorConfig,
    ecdsa: alloy::signers::local::PrivateKeySigner,
    bls: blst::min_pk::SecretKey,
    stop: &mut signal::Receiver<bool>,
) -> anyhow::Result<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match Client::connect(
            &config.aggregator,
            ecdsa.clone(),
            bls.clone(),
            config.chain_id,
        )
        .await
        {
            Ok(client) => return Ok(client),
            Err(e) => tracing::warn!(error = %e, "cannot reach the aggregator yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => anyhow::bail!("stopped before connecting"),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One pushed message: act on it, then acknowledge it.
async fn handle(
    config: &OperatorConfig,
    watches: &Watches,
    head: &AtomicU64,
    client: &mut Client,
    message: pb::SyncMessagesResp,
) {
    if message.op == pb::MessageOp::CosignCheckpoint as i32 {
        if let Some(checkpoint) = &message.checkpoint {
            cosign::checkpoint(config, client, checkpoint).await;
        }
        if let Err(e) = client.ack(&message.id).await {
            tracing::warn!(error = %e, "acknowledging a checkpoint failed; it will come again");
        }
        return;
    }
    let Some(metadata) = &message.task_metadata else {
        return;
    };
    match pb::MessageOp::try_from(message.op) {
        Ok(pb::MessageOp::MonitorTaskTrigger) => {
            let head = head
                .load(Ordering::Relaxed)
                .saturating_sub(config.confirmations);
            let cooldown = u64::try_from(config.event_cooldown.as_millis()).unwrap_or(u64::MAX);
            match watches.monitor(
                metadata,
                head,
                now_ms_i64(),
                cooldown,
                config.max_events_per_block,
            ) {
                Ok(()) => tracing::info!(task = %metadata.task_id, "watching"),
                Err(e) => {
                    tracing::warn!(task = %metadata.task_id, error = %e, "cannot watch this task")
                }
            }
        }
        Ok(
            pb::MessageOp::DisableTask | pb::MessageOp::DeleteTask | pb::MessageOp::CompletedTask,
        ) => {
            watches.stop(&metadata.task_id);
            tracing::info!(task = %metadata.task_id, op = message.op, "no longer watching");
        }
        _ => {}
    }
    metrics::gauge!("operator_tasks_watched").set(watches.len() as f64);
    if let Err(e) = client.ack(&message.id).await {
        tracing::warn!(error = %e, "acknowledging a message failed; it will come again");
    }
}

/// Sends reports in order. One the aggregator could not take (it is restarting, or unreachable)
/// is sent again until it is taken, however long that takes: a firing is never dropped for an
/// outage. One it refused (a bad request, a task no longer assigned) is not sent again.
async fn report_loop(mut client: Client, mut queue: mpsc::UnboundedReceiver<Report>) {
    while let Some(report) = queue.recv().await {
        let mut backoff = Duration::from_millis(100);
        let mut refused = 0;
        loop {
            match client
                .report(
                    &report.task_id,
                    &report.trigger_request_id,
                    report.kind,
                    report.output.clone(),
                )
                .await
            {
                Ok(resp) => {
                    metrics::counter!("operator_reports_total", "status" => resp.status.clone())
                        .increment(1);
                    tracing::info!(task = %report.task_id, request = %report.trigger_request_id, status = %resp.status, "reported");
                    break;
                }
                Err(e) => {
                    let code = e.downcast_ref::<tonic::Status>().map(tonic::Status::code);
                    tracing::warn!(task = %report.task_id, error = %e, "report failed");
                    match code {
                        // Not taken: the aggregator stopped, restarts, is unreachable, is busy, or
                        // closed the connection with the call in flight (reports are idempotent).
                        Some(
                            tonic::Code::Unavailable
                            | tonic::Code::Cancelled
                            | tonic::Code::Aborted
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown,
                        ) => {}
                        // Each attempt is signed afresh: one refused for its time (clocks
                        // apart, an aggregator that just started) may pass next time; an internal
                        // error may be passing too.
                        Some(tonic::Code::Unauthenticated | tonic::Code::Internal)
                            if refused < 3 =>
                        {
                            refused += 1;
                        }
                        _ => break,
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

async fn time_loop(
    watches: Arc<Watches>,
    reports: mpsc::UnboundedSender<Report>,
    mut stop: signal::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for report in watches.tick(now_ms_i64()) {
            let _ = reports.send(report);
        }
    }
}

/// Follows the chain block by block (never skipping one, also after a reconnect): new heads by
/// subscription when a WebSocket endpoint is configured, by polling otherwise.
async fn chain_loop(
    config: OperatorConfig,
    provider: DynProvider,
    watches: Arc<Watches>,
    head: Arc<AtomicU64>,
    reports: mpsc::UnboundedSender<Report>,
    client: Client,
    mut stop: signal::Receiver<bool>,
) {
    let mut next = head
        .load(Ordering::Relaxed)
        .saturating_sub(config.confirmations)
        + 1;
    let mut heads: Option<std::pin::Pin<Box<dyn futures_util::Stream<Item = u64> + Send>>> = None;
    let mut overload_client = client;
    loop {
        if *stop.borrow() {
            return;
        }
        // Wait for the next head (subscription), or for the poll period.
        if heads.is_none()
            && let Some(ws) = &config.ethereum.ws_url
        {
            match ProviderBuilder::new()
                .connect_ws(alloy::providers::WsConnect::new(ws.clone()))
                .await
            {
                Ok(ws_provider) => match ws_provider.subscribe_blocks().await {
                    Ok(subscription) => {
                        // Keep the provider alive as long as the stream.
                        let stream = subscription.into_stream().map(move |h| {
                            let _ = &ws_provider;
                            h.number
                        });
                        heads = Some(Box::pin(stream));
                    }
                    Err(e) => tracing::warn!(error = %e, "new-head subscription failed; polling"),
                },
                Err(e) => tracing::warn!(error = %e, "WebSocket connection failed; polling"),
            }
        }
        let latest = match heads.as_mut() {
            Some(stream) => tokio::select! {
                h = stream.next() => match h {
                    Some(number) => Some(number),
                    None => { heads = None; None }
                },
                () = tokio::time::sleep(config.poll_every * 4) => None,
                _ = stop.wait_for(|s| *s) => return,
            },
            None => {
                tokio::select! {
                    () = tokio::time::sleep(config.poll_every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                None
            }
        };
        let latest = match latest {
            Some(n) => n,
            None => match provider.get_block_number().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the head failed");
                    continue;
                }
            },
        };
        head.store(latest, Ordering::Relaxed);
        let confirmed = latest.saturating_sub(config.confirmations);
        while next <= confirmed {
            if let Err(e) = block(&provider, &watches, &reports, &mut overload_client, next).await {
                tracing::warn!(block = next, error = %e, "processing a block failed; trying again");
                break;
            }
            metrics::gauge!("operator_block_number").set(next as f64);
            next += 1;
        }
    }
}

/// One confirmed block: block triggers, then each event task's logs.
async fn block(
    provider: &DynProvider,
    watches: &Watches,
    reports: &mpsc::UnboundedSender<Report>,
    client: &mut Client,
    number: u64,
) -> anyhow::Result<()> {
    let tasks = watches.chain_tasks();
    if tasks.is_empty() {
        return Ok(());
    }
    let header = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
        .await?
        .ok_or_else(|| anyhow::anyhow!("block {number} is not there"))?
        .header;
    let facts = protocol::trigger_output::BlockFacts {
        number,
        hash: header.hash,
        parent_hash: header.parent_hash,
        timestamp: header.timestamp,
        difficulty: header.difficulty,
        gas_limit: header.gas_limit,
        gas_used: header.gas_used,
    };
    for report in watches.block(&facts) {
        let _ = reports.send(report);
    }
    for (task_id, interval, filters) in tasks {
        if interval.is_some() || filters.is_empty() {
            continue;
        }
        let mut logs = Vec::with_capacity(filters.len());
        for filter in filters {
            logs.push(
                provider
                    .get_logs(&filter.from_block(number).to_block(number))
                    .await?,
            );
        }
        let outcome = watches.event_block(
            &task_id,
            number,
            header.hash,
            header.timestamp * 1000,
            &logs,
        );
        for report in outcome.reports {
            let _ = reports.send(report);
        }
        if let Some((query, found, cap)) = outcome.overload {
            let alert = pb::EventOverloadAlert {
                task_id: task_id.clone(),
                operator_address: format!("{:#x}", client.address()),
                block_number: number,
                events_detected: u32::try_from(found).unwrap_or(u32::MAX),
                safety_limit: cap,
                query_index: query.to_string(),
                timestamp: events::now_ms(),
                details: format!("{found} matching events in block {number}, cap {cap}"),
            };
            match client.overload(alert).await {
                Ok(resp) if resp.task_cancelled => {
                    watches.stop(&task_id);
                    tracing::warn!(task = %task_id, "the task was disabled for matching too many events");
                }
                Ok(_) => tracing::warn!(task = %task_id, block = number, "overload reported"),
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e, "reporting an overload failed")
                }
            }
        }
    }
    Ok(())
}

async fn ping_loop(
    mut client: Client,
    config: OperatorConfig,
    head: Arc<AtomicU64>,
    watches: Arc<Watches>,
    started: Instant,
    mut stop: signal::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.ping_every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = events::now_ms();
        let checkin = pb::Checkin {
            id: format!("{:#x}", client.address()),
            address: format!("{:#x}", client.address()),
            signature: String::new(),
            status: Some(pb::checkin::Status {
                uptime: i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX),
                queue_depth: i64::try_from(watches.len()).unwrap_or(i64::MAX),
                last_heartbeat: Some(prost_types::Timestamp {
                    seconds: i64::try_from(now / 1000).unwrap_or(0),
                    nanos: 0,
                }),
            }),
            version: env!("CARGO_PKG_VERSION").into(),
            metrics_port: i32::from(config.metrics_listen.port()),
            remote_ip: String::new(),
            block_number: i64::try_from(head.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            event_count: 0,
        };
        if let Err(e) = client.ping(checkin).await {
            tracing::warn!(error = %e, "ping failed");
        }
    }
}
