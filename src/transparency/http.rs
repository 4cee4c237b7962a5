//! The transparency log over HTTP, on the HTTP listener beside `/up` and `/metrics`:
//!
//! - `GET /checkpoint`: the latest checkpoint, a C2SP signed note with the aggregator's
//!   signature and the operators' cosignature line when they gave it (`text/plain`, not cached);
//! - `GET /tile/<L>/<N>[.p/<W>]`: C2SP hash tiles (immutable, cached for good); entry bundles are
//!   not served, the entries being the users' data;
//! - `GET /log-key`: the log's verifier key (what `aggregator log-key` prints);
//! - `GET /proof/execution/<id>`: the execution's proof bundle (JSON, `tlog::bundle`), only with
//!   the `authkey` header of the task's owner or of an admin key, since it holds the user's
//!   data. Another owner's execution answers 404 as a missing one does.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/log-key", get(log_key))
        .route("/tile/{*path}", get(tile))
        .route("/proof/execution/{id}", get(execution_proof))
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A refusal or a failure, made a response in one place.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

/// Internal failures are logged, not sent.
fn internal(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "transparency endpoint");
    Refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the checkpoint store failed\n".into(),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refused> + Send + 'static,
) -> Result<T, Refused> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

async fn checkpoint(State(app): State<SharedApp>) -> Response {
    let found = blocking(move || {
        app.transparency
            .store()
            .latest_checkpoint()
            .map_err(internal)
    });
    match found.await {
        Err(refused) => refused.into_response(),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            "no checkpoint yet: the log is empty or the first is being signed\n".into(),
        ),
        Ok(Some((_, note))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            note,
        )
            .into_response(),
    }
}

async fn log_key(State(app): State<SharedApp>) -> Response {
    text(
        StatusCode::OK,
        format!("{}\n", app.transparency.verifier_key),
    )
}

async fn tile(State(app): State<SharedApp>, Path(path): Path<String>) -> Response {
    let request = match tlog::TileRequest::parse(&format!("tile/{path}")) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let found = blocking(move || {
        tlog::TileSource::tile(app.transparency.store(), request.id).map_err(internal)
    });
    match found.await {
        Err(refused) => refused.into_response(),
        Ok(stored) => match stored.and_then(|t| request.serve(&t)) {
            None => text(
                StatusCode::NOT_FOUND,
                format!("tile {} is not in the tree\n", request.path()),
            ),
            Some(bytes) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                ],
                bytes,
            )
                .into_response(),
        },
    }
}

async fn execution_proof(
    State(app): State<SharedApp>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = headers.get("authkey").and_then(|v| v.to_str().ok()) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "the authkey header is needed: the task owner's, or an admin key\n".into(),
        );
    };
    let verified = match app.tokens.verify(token.trim()) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::UNAUTHORIZED, format!("{e}\n")),
    };
    if ulid::Ulid::from_string(&id).is_err() {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "{:?} is not an execution id",
                id.chars().take(64).collect::<String>()
            ),
        );
    }
    let admin = verified.role == crate::auth::Role::Admin;
    let caller = crate::address::lower(verified.subject);
    let key_id = verified.key_id;
    let made = blocking(move || {
        if let Some(key) = &key_id
            && app.store.views.is_revoked(key).map_err(internal)?
        {
            return Err(Refused(
                StatusCode::UNAUTHORIZED,
                "this API key has been revoked\n".into(),
            ));
        }
        let stream = events::stream::execution(&id);
        let first = app.store.log.first_event(&stream).map_err(internal)?;
        let owner = match first.map(|e| e.event) {
            Some(events::Event::ExecutionQueued(q)) => q.owner,
            _ => String::new(),
        };
        if owner.is_empty() || (!admin && owner != caller) {
            return Err(Refused(
                StatusCode::NOT_FOUND,
                format!("no execution {id} of yours\n"),
            ));
        }
        tlog::bundle::prove(app.store.log.keyspaces(), app.transparency.store(), &id).map_err(|e| {
            match e {
                tlog::Error::Bundle(m) => {
                    Refused(StatusCode::SERVICE_UNAVAILABLE, format!("{m}\n"))
                }
                other => internal(other),
            }
        })
    });
    match made.await {
        Err(refused) => refused.into_response(),
        Ok(bundle) => match serde_json::to_vec_pretty(&bundle) {
            Ok(body) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "private, no-store"),
                ],
                body,
            )
                .into_response(),
            Err(e) => internal(e).into_response(),
        },
    }
}
