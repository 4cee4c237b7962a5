//! The live console at `/telemetry` (the original's path): one page, every asset embedded in the
//! binary, updated by server-sent events.
//!
//! Layout:
//! - this file: the routes, the `Console` state and its worker thread (tails the log into the
//!   pulse once the pulse was first asked for, publishes the public snapshot while someone
//!   watches), the event stream;
//! - `snapshot`: the public part, counts only (operators, tasks per status, the pulse, the log's
//!   head and latest checkpoint, store health);
//! - `admin`: the admin part (sessions opened with an admin API key, recent executions with
//!   their steps, a task's timeline), with every secret value of the owner masked;
//! - `explorer`: block explorers of known public chains, for links;
//! - `index.html`, `console.css`, `console.js`, `favicon.svg`: the page.
//!
//! Routes: `GET /telemetry` (the page), `/telemetry/assets/*`, `GET /telemetry/state` (the public
//! snapshot, JSON), `GET /telemetry/stream` (server-sent events: `state`, and with an admin
//! session `executions` and `session`), `GET|POST|DELETE /telemetry/session`,
//! `GET /telemetry/admin/executions?q=&before=&limit=`, `GET /telemetry/admin/timeline?task=`.
//!
//! Reads go to the projections and the log, as the RPCs' do; the console writes nothing.

mod admin;
mod explorer;
mod snapshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;

use crate::app::SharedApp;
use crate::telemetry::pulse::{self, Pulse};

pub use admin::Sessions;
pub use snapshot::{Checkpoint, CheckpointSource, Snapshot};

/// How often the worker looks at the log.
const TICK: Duration = Duration::from_millis(250);
/// A published snapshot older than this is rebuilt (ages and pings move without events).
const REFRESH: Duration = Duration::from_secs(1);

/// The latest public snapshot, as the stream sends it.
#[derive(Debug, Clone)]
pub struct Update {
    /// The log's last event when it was built.
    pub head: Option<events::Ulid>,
    pub json: Arc<str>,
    pub built: Instant,
}

/// The console's state, shared by its routes, `/metrics` and the worker.
pub struct Console {
    pub app: SharedApp,
    pub pulse: Pulse,
    pub sessions: Sessions,
    updates: watch::Sender<Update>,
    /// One snapshot build at a time.
    building: Mutex<()>,
    /// Where the transparency log's checkpoints come from.
    checkpoints: Arc<dyn CheckpointSource>,
    /// Turns true when the server shuts down: the event streams end, so that the graceful
    /// shutdown does not wait on open pages.
    closing: watch::Receiver<bool>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// The worker thread; stopped (and joined) by `stop`.
#[derive(Debug)]
pub struct Worker {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Console {
    /// The console of `app`, and its worker. `closing` turns true at shutdown.
    pub fn start(
        app: SharedApp,
        checkpoints: Arc<dyn CheckpointSource>,
        closing: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Self>, Worker)> {
        let (updates, _) = watch::channel(Update {
            head: None,
            json: Arc::from("{}"),
            built: Instant::now()
                .checked_sub(REFRESH * 2)
                .unwrap_or_else(Instant::now),
        });
        let console = Arc::new(Self {
            app,
            pulse: Pulse::default(),
            sessions: Sessions::default(),
            updates,
            building: Mutex::new(()),
            checkpoints,
            closing,
        });
        let (stop, stopped) = std::sync::mpsc::channel();
        let worker = {
            let console = console.clone();
            std::thread::Builder::new()
                .name("console".into())
                .spawn(move || console.work(&stopped))?
        };
        Ok((
            console,
            Worker {
                stop,
                thread: Some(worker),
            },
        ))
    }

    /// Tails the log into the pulse every tick; publishes a snapshot when the log moved or the
    /// last one is old, while a page watches.
    fn work(&self, stopped: &std::sync::mpsc::Receiver<()>) {
        let mut backlog = false;
        loop {
            let wait = if backlog { Duration::ZERO } else { TICK };
            match stopped.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            // Until the pulse is first asked for, there is nothing to keep up to date.
            if !self.pulse.started() {
                continue;
            }
            backlog = match self.pulse.catch_up(&self.app.store) {
                Ok(read) => read >= pulse::EVENTS_PER_PASS,
                Err(e) => {
                    tracing::warn!(error = %e, "the console could not read the log");
                    false
                }
            };
            if self.updates.receiver_count() > 0 {
                self.refresh(REFRESH, true);
            }
        }
    }

    /// The latest snapshot, rebuilt first when it is older than `max_age`, or (with
    /// `follow_head`, the worker's way) when the log moved since. Requests do not follow the
    /// head: however often they come, a busy log costs one build per `max_age`.
    fn refresh(&self, max_age: Duration, follow_head: bool) -> Update {
        let _building = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.app.store.log.head().ok().flatten();
        let head_id = head.map(|(id, _)| id);
        let current = self.updates.borrow().clone();
        let moved = follow_head && current.head != head_id;
        if !moved && current.built.elapsed() < max_age {
            return current;
        }
        let snapshot = snapshot::build(self, head);
        let json = serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".to_owned());
        let update = Update {
            head: head_id,
            json: Arc::from(json),
            built: Instant::now(),
        };
        self.updates.send_replace(update.clone());
        update
    }

    fn explorer(&self) -> Option<explorer::Explorer> {
        explorer::for_chain(self.app.config.chain_id)
    }
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/telemetry", get(page))
        .route("/telemetry/", get(page))
        .route("/telemetry/assets/{name}", get(asset))
        .route("/telemetry/state", get(state))
        .route("/telemetry/stream", get(events_stream))
        .route(
            "/telemetry/session",
            get(admin::session_status)
                .post(admin::sign_in)
                .delete(admin::sign_out),
        )
        .route("/telemetry/admin/executions", get(admin::executions))
        .route("/telemetry/admin/timeline", get(admin::timeline))
        .with_state(console)
}

/// What every console response carries: nothing from elsewhere may load or frame the page.
fn secure_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn with_headers(mut response: Response, cache: &'static str) -> Response {
    secure_headers(response.headers_mut());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

const INDEX: &str = include_str!("console/index.html");

async fn page() -> Response {
    with_headers(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response(),
        "no-cache",
    )
}

/// The embedded assets: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("console/favicon.svg"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => with_headers(
            ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
            "no-cache",
        ),
        None => with_headers(
            (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
            "no-store",
        ),
    }
}

async fn state(State(console): State<Arc<Console>>) -> Response {
    let update = {
        let console = console.clone();
        tokio::task::spawn_blocking(move || console.refresh(REFRESH, false)).await
    };
    match update {
        Ok(update) => with_headers(
            (
                [(header::CONTENT_TYPE, "application/json")],
                update.json.to_string(),
            )
                .into_response(),
            "no-store",
        ),
        Err(_) => with_headers(
            (StatusCode::INTERNAL_SERVER_ERROR, "the snapshot failed\n").into_response(),
            "no-store",
        ),
    }
}

/// What one open stream remembers.
struct Watching {
    console: Arc<Console>,
    updates: watch::Receiver<Update>,
    closing: watch::Receiver<bool>,
    session: Option<admin::SessionId>,
    /// The head the last `executions` event was built at.
    sent_head: Option<Option<events::Ulid>>,
}

/// Server-sent events: `state` (the public snapshot) whenever it changes, and for an admin
/// session `executions` (the latest runs) when the log moved, and `session` when it ends.
async fn events_stream(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = admin::session_of(&headers);
    let mut updates = console.updates.subscribe();
    updates.mark_changed();
    let watching = Watching {
        closing: console.closing.clone(),
        console,
        updates,
        session,
        sent_head: None,
    };
    let events = stream::unfold(watching, |mut w| async move {
        tokio::select! {
            changed = w.updates.changed() => changed.ok()?,
            _ = w.closing.wait_for(|c| *c) => return None,
        }
        let update = w.updates.borrow_and_update().clone();
        // The first event at once: the worker publishes only while someone watches.
        let update = if update.built.elapsed() >= REFRESH {
            let console = w.console.clone();
            let fresh = tokio::task::spawn_blocking(move || console.refresh(REFRESH, false))
                .await
                .unwrap_or(update);
            // This stream sends it now: the rebuild is not news to it.
            w.updates.mark_unchanged();
            fresh
        } else {
            update
        };
        let mut out = vec![Event::default().event("state").data(&*update.json)];
        if let Some(id) = &w.session {
            match w.console.sessions.check(&w.console.app, id) {
                Some(session) => {
                    if w.sent_head != Some(update.head) {
                        w.sent_head = Some(update.head);
                        let json = admin::latest_json(&w.console, &session).await;
                        out.push(Event::default().event("executions").data(json));
                    }
                }
                None => {
                    w.session = None;
                    out.push(Event::default().event("session").data(r#"{"admin":false}"#));
                }
            }
        }
        Some((stream::iter(out.into_iter().map(Ok::<_, Infallible>)), w))
    })
    .flatten();
    with_headers(
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response(),
        "no-store",
    )
}

/// The peer's address, for the sign-in rate limit.
fn peer(connect: &ConnectInfo<SocketAddr>) -> String {
    connect.0.ip().to_string()
}

/// Checkpoints looked through for the latest cosigned one, when none of the most recent is.
const COSIGNED_LOOKBACK: usize = 1000;

/// `/metrics` gauges the console's view provides: the operators' liveness, the firings that
/// wait on a quorum, and how far the operators' cosignatures follow the checkpoints (blocking
/// reads).
pub fn record_gauges(console: &Console) {
    let view = console.pulse.view_of(&console.app.store);
    metrics::gauge!("firings_awaiting_quorum").set(view.awaiting_quorum as f64);
    let mut recent = console.checkpoints.recent(snapshot::RECENT_CHECKPOINTS);
    if !recent.is_empty() && recent.iter().all(|c| c.cosigners.is_empty()) {
        recent = console.checkpoints.recent(COSIGNED_LOOKBACK);
    }
    metrics::gauge!("tlog_checkpoint_size").set(recent.first().map_or(0, |c| c.size) as f64);
    let cosigned = recent.iter().find(|c| !c.cosigners.is_empty());
    metrics::gauge!("tlog_checkpoint_cosigned_size").set(cosigned.map_or(0, |c| c.size) as f64);
    let now = events::now_ms();
    for operator in console.app.pool.snapshot() {
        let last = match operator.liveness.last_ping_ms {
            0 => console.app.started_ms,
            at => at,
        };
        metrics::gauge!("operator_connected", "operator" => operator.address.clone())
            .set(if operator.connected { 1.0 } else { 0.0 });
        metrics::gauge!("operator_ping_age_seconds", "operator" => operator.address)
            .set(now.saturating_sub(last) as f64 / 1000.0);
    }
}
