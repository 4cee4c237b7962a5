//! The HTTP endpoints: `/up` (liveness), `/metrics` (Prometheus text), `/operators` (JSON), and
//! `/operator`, the original's list of operators in its shape (`{"data": [{address, remote_ip,
//! last_ping, version, metrics_port, block_number, event_count}]}`), for the dashboards and
//! scripts written against it, and the console (`/telemetry`, see `console`).
//!
//! The transparency log's endpoints (`/checkpoint`, `/tile/...`, `/log-key`,
//! `/proof/execution/<id>`) are `transparency::http`'s.
//!
//! Gauges that describe the store (tasks by status, projection lag, size on disk) and the
//! operators' liveness are computed when `/metrics` is scraped, from the projections, the pool
//! and the console's pulse.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;

use super::console::{self, Console};
use crate::app::SharedApp;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub app: SharedApp,
    pub console: Arc<Console>,
}

impl FromRef<HttpState> for SharedApp {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

impl FromRef<HttpState> for Arc<Console> {
    fn from_ref(state: &HttpState) -> Self {
        state.console.clone()
    }
}

pub fn router(console: Arc<Console>) -> Router {
    let state = HttpState {
        app: console.app.clone(),
        console: console.clone(),
    };
    Router::new()
        .route("/up", get(up))
        .route("/metrics", get(metrics))
        .route("/operators", get(operators))
        .route("/operator", get(operator_list))
        .with_state(state)
        .merge(crate::transparency::http::routes().with_state(console.app.clone()))
        .merge(crate::backup::routes().with_state(console.app.clone()))
        .merge(console::router(console))
}

/// Serves the endpoints on `listener` until `shutdown` completes; the console's event streams
/// end then, so that the graceful shutdown does not wait on open pages.
pub async fn serve(
    app: SharedApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let checkpoints = app.transparency.clone();
    let (console, worker) = Console::start(app, checkpoints, closed)?;
    let shutdown = async move {
        shutdown.await;
        let _ = closing.send(true);
    };
    let served = axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    tokio::task::spawn_blocking(move || worker.stop()).await?;
    served?;
    Ok(())
}

async fn up(State(app): State<SharedApp>) -> impl IntoResponse {
    match app.store.log.poisoned() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store refuses writes: {reason}\n"),
        ),
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let console = state.console.clone();
    // Reads of the store: off the async runtime.
    let _ = tokio::task::spawn_blocking(move || {
        record_store_gauges(&console.app);
        console::record_gauges(&console);
    })
    .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        super::metrics().render(),
    )
}

fn record_store_gauges(app: &SharedApp) {
    for (letter, name) in super::catalog::TASK_STATUSES {
        if let Ok(n) = app.store.views.tasks_with_letter(letter) {
            metrics::gauge!("tasks", "status" => name).set(n as f64);
        }
    }
    if let Ok(lag) = app.store.projection_lag() {
        metrics::gauge!("projection_lag_events").set(lag as f64);
    }
    if let Ok(n) = app.store.views.event_count() {
        metrics::gauge!("log_events").set(n as f64);
    }
    metrics::gauge!("store_poisoned").set(if app.store.log.poisoned().is_some() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("store_disk_bytes").set(app.store.disk_space() as f64);
}

async fn operators(State(app): State<SharedApp>) -> impl IntoResponse {
    Json(serde_json::json!({ "operators": app.pool.snapshot() }))
}

/// The operators that have pinged, as the original lists them (`last_ping` in seconds).
async fn operator_list(State(app): State<SharedApp>) -> impl IntoResponse {
    let data: Vec<serde_json::Value> = app
        .pool
        .snapshot()
        .into_iter()
        .filter(|o| o.liveness.last_ping_ms > 0)
        .map(|o| {
            serde_json::json!({
                "address": o.address,
                "remote_ip": o.liveness.remote_ip,
                "last_ping": o.liveness.last_ping_ms / 1000,
                "version": o.liveness.version,
                "metrics_port": o.liveness.metrics_port,
                "block_number": o.liveness.block_number,
                "event_count": o.liveness.event_count,
            })
        })
        .collect();
    Json(serde_json::json!({ "data": data }))
}
