//! The HTTP endpoints: `/up` (liveness), `/metrics` (Prometheus text), `/operators` (JSON), and
//! `/operator`, the original's list of operators in its shape (`{"data": [{address, remote_ip,
//! last_ping, version, metrics_port, block_number, event_count}]}`), for the dashboards and
//! scripts written against it.
//!
//! The transparency log's endpoints (`/checkpoint`, `/tile/...`, `/log-key`,
//! `/proof/execution/<id>`) are `transparency::http`'s.
//!
//! Gauges that describe the store (tasks by status, projection lag, size on disk) are computed
//! when `/metrics` is scraped, from the projections.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::app::SharedApp;

pub fn router(app: SharedApp) -> Router {
    Router::new()
        .route("/up", get(up))
        .route("/metrics", get(metrics))
        .route("/operators", get(operators))
        .route("/operator", get(operator_list))
        .merge(crate::transparency::http::routes())
        .with_state(app)
}

/// Serves the endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    app: SharedApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
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

async fn metrics(State(app): State<SharedApp>) -> impl IntoResponse {
    record_store_gauges(&app);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        super::metrics().render(),
    )
}

fn record_store_gauges(app: &SharedApp) {
    for (letter, name) in [
        ('a', "enabled"),
        ('i', "disabled"),
        ('c', "completed"),
        ('f', "failed"),
        ('l', "cancelled"),
        ('x', "executing"),
    ] {
        if let Ok(n) = app.store.views.tasks_with_letter(letter) {
            metrics::gauge!("tasks", "status" => name).set(n as f64);
        }
    }
    if let Ok(lag) = app.store.projection_lag() {
        metrics::gauge!("projection_lag_events").set(lag as f64);
    }
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
