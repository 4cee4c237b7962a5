//! The admin part of the console: every owner's executions, so only for an admin API key.
//!
//! - Sessions: the page posts the key once (`POST /telemetry/session`); the key is checked as
//!   `GetKey` checks one (signature, chain, expiry, revocation) and must be an admin API key, not a
//!   read-only one nor a session token. The answer sets a cookie (`HttpOnly`, `SameSite=Strict`,
//!   path `/telemetry`, `Secure` behind an HTTPS proxy) holding a random session id; the server
//!   keeps only its hash, in memory (a restart signs everyone out). The session ends with the key
//!   (its expiry, or its revocation: checked on every request and every stream event), after
//!   `SESSION_LIFETIME`, or on sign-out.
//! - Executions: the latest across owners, or those of a task, an owner or one execution, with
//!   their trigger, steps, timings, skipped nodes and errors.
//! - Timeline: every event of a task and of what it started, as `replay timeline` prints it.
//!
//! No secret value leaves: the console never reads a secret to show it, and every value of the
//! owner's secrets (user-wide and the task's own) is masked wherever it appears in what is shown
//! (a step's output or log, an error, an event's payload), before anything is cut short.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use events::execution::{FiringSource, Step};
use projections::executions::{ExecutionRow, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Console, explorer::Explorer, peer, secure_headers};
use crate::app::App;
use crate::auth::Role;

const COOKIE: &str = "ava_console";
/// The longest a console session lasts (shorter when the key expires sooner).
const SESSION_LIFETIME_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Executions per page by default, and at most.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;
/// Characters of a payload, output or log shown (as `replay timeline` cuts payloads).
const PREVIEW_CHARS: usize = 300;
/// Events of a timeline shown at most (the latest).
const TIMELINE_EVENTS: usize = 1000;
/// Secret values shorter than this are not masked: they would mask every such fragment.
const MIN_MASKED_LEN: usize = 3;

// ---- Errors ----

/// Why a console request is refused; one place turns them into responses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    SignInRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("too many sign-in attempts from this address; wait a moment")]
    RateLimited,
    #[error("the store could not be read")]
    Storage(#[from] events::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::SignInRequired(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Storage(e) => {
                tracing::error!(error = %e, "a console read failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        json_response(status, &serde_json::json!({ "error": self.to_string() }))
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], text).into_response();
    secure_headers(response.headers_mut());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- Sessions ----

/// The hash of a session cookie's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    /// The API key's id (`jti`), for revocation.
    pub key_id: String,
    /// The key's subject.
    pub subject: String,
    pub opened_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<SessionId, Session>>,
}

impl Sessions {
    /// Opens a session; returns the cookie's value.
    fn open(&self, session: Session) -> Result<String, ConsoleError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ConsoleError::Forbidden(format!("no randomness for a session: {e}")))?;
        let token = hex::encode(bytes);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = events::now_ms();
        open.retain(|_, s| s.expires_ms > now);
        while open.len() >= MAX_SESSIONS {
            let oldest = open
                .iter()
                .min_by_key(|(_, s)| s.opened_ms)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => open.remove(&id),
                None => break,
            };
        }
        open.insert(SessionId::of(&token), session);
        Ok(token)
    }

    /// The session, if it is still valid: not expired, its key not revoked.
    pub fn check(&self, app: &App, id: &SessionId) -> Option<Session> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let session = open.get(id)?.clone();
        let revoked = app.store.views.is_revoked(&session.key_id).unwrap_or(true);
        if session.expires_ms <= events::now_ms() || revoked {
            open.remove(id);
            return None;
        }
        Some(session)
    }

    fn close(&self, id: &SessionId) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The value of the console's cookie in the request, if any.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The session id the request's cookie carries, if any.
pub fn session_of(headers: &HeaderMap) -> Option<SessionId> {
    cookie_value(headers).map(SessionId::of)
}

/// The request's valid admin session, or why there is none.
fn require(console: &Console, headers: &HeaderMap) -> Result<Session, ConsoleError> {
    let id = session_of(headers).ok_or_else(|| {
        ConsoleError::SignInRequired("sign in with an admin API key to see executions".into())
    })?;
    console.sessions.check(&console.app, &id).ok_or_else(|| {
        ConsoleError::SignInRequired(
            "the session has ended (expired, revoked or signed out): sign in again".into(),
        )
    })
}

/// State changes come from the page itself: a request from another origin is refused (the
/// cookie is `SameSite=Strict` besides).
fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!(
            "a request from {origin} may not change the console's session"
        )))
    }
}

fn cookie(headers: &HeaderMap, value: &str, max_age_s: u64) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!(
        "{COOKIE}={value}; Path=/telemetry; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[derive(Debug, Deserialize)]
struct SignIn {
    #[serde(default)]
    key: String,
}

#[derive(Debug, Serialize)]
struct SessionStatus {
    admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
}

impl SessionStatus {
    fn of(session: Option<&Session>) -> Self {
        Self {
            admin: session.is_some(),
            subject: session.map(|s| s.subject.clone()),
            expires_at_ms: session.map(|s| s.expires_ms),
        }
    }
}

/// `POST /telemetry/session` with `{"key": "<admin API key>"}`.
pub async fn sign_in(
    State(console): State<Arc<Console>>,
    connect: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json {
        return Err(ConsoleError::UnsupportedMedia(
            "send the key as JSON: {\"key\": \"...\"}".into(),
        ));
    }
    if !console
        .app
        .limiter
        .allow_call(&format!("console:{}", peer(&connect)))
    {
        return Err(ConsoleError::RateLimited);
    }
    let request: SignIn = serde_json::from_slice(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("the body is not {{\"key\": ...}}: {e}")))?;
    let key = request.key.trim();
    if key.is_empty() {
        return Err(ConsoleError::SignInRequired(
            "an admin API key is required (aggregator create-api-key --role admin)".into(),
        ));
    }
    let verified = console
        .app
        .token_issuer
        .verify(key)
        .map_err(|e| ConsoleError::SignInRequired(format!("the key is refused: {e}")))?;
    let Some(key_id) = verified.api_key_id.clone() else {
        return Err(ConsoleError::SignInRequired(
            "this is a session token, not an API key: sign in with an admin API key".into(),
        ));
    };
    if console.app.store.views.is_revoked(&key_id)? {
        return Err(ConsoleError::SignInRequired(
            "this API key has been revoked".into(),
        ));
    }
    if verified.role != Role::Admin {
        return Err(ConsoleError::Forbidden(
            "a read-only API key cannot open the admin part: it shows every owner's executions"
                .into(),
        ));
    }
    let now = events::now_ms();
    let expires_ms = verified
        .expires_at
        .saturating_mul(1000)
        .min(now + SESSION_LIFETIME_MS);
    let session = Session {
        key_id,
        subject: format!("{:#x}", verified.subject),
        opened_ms: now,
        expires_ms,
    };
    let status = SessionStatus::of(Some(&session));
    let token = console.sessions.open(session)?;
    tracing::info!(subject = ?status.subject, "console: an admin session opened");
    let mut response = json_response(StatusCode::OK, &status);
    if let Ok(value) = HeaderValue::from_str(&cookie(
        &headers,
        &token,
        expires_ms.saturating_sub(now) / 1000,
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /telemetry/session`: whether the request carries a valid admin session.
pub async fn session_status(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = session_of(&headers).and_then(|id| console.sessions.check(&console.app, &id));
    json_response(StatusCode::OK, &SessionStatus::of(session.as_ref()))
}

/// `DELETE /telemetry/session`: signs out.
pub async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    if let Some(id) = session_of(&headers) {
        console.sessions.close(&id);
    }
    let mut response = json_response(StatusCode::OK, &SessionStatus::of(None));
    if let Ok(value) = HeaderValue::from_str(&cookie(&headers, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

// ---- Masking ----

/// Replaces every value of an owner's secrets with its name.
#[derive(Debug, Default)]
pub struct Masker {
    /// (what to find, what to put), longest first so that a value inside another is not
    /// half-masked.
    replacements: Vec<(String, String)>,
}

impl Masker {
    pub fn new(secrets: &serde_json::Map<String, Value>) -> Self {
        let mut replacements = Vec::new();
        for (name, value) in secrets {
            let Some(text) = value.as_str() else { continue };
            if text.chars().count() < MIN_MASKED_LEN {
                continue;
            }
            let label = format!("[secret {name}]");
            // As it appears in raw text, and inside JSON text (escaped).
            let escaped = serde_json::to_string(text).unwrap_or_default();
            let escaped = escaped
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .unwrap_or_default()
                .to_owned();
            if escaped != text {
                replacements.push((escaped, label.clone()));
            }
            // Encoded as a request would carry it (a header, a query): what the engine masks in
            // the runs it records now, masked here in the records made before.
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                replacements.push((engine.encode(text), label.clone()));
            }
            let encoded =
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            replacements.push((encoded.replace("%20", "+"), label.clone()));
            replacements.push((encoded, label.clone()));
            replacements.push((text.to_owned(), label));
        }
        // Longest first; one spelling that two forms share is kept once.
        replacements.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        replacements.dedup_by(|a, b| a.0 == b.0);
        Self { replacements }
    }

    /// The owner's secrets visible to the task's runs, decrypted to be masked (never shown).
    fn of(app: &App, owner: &str, task_id: &str) -> Result<Self, String> {
        crate::engine::vars::secrets(&app.store, &app.secret_box, owner, Some(task_id))
            .map(|secrets| Self::new(&secrets))
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (find, label) in &self.replacements {
            if out.contains(find.as_str()) {
                out = out.replace(find.as_str(), label);
            }
        }
        out
    }

    /// A value as JSON text, masked, then cut to `PREVIEW_CHARS`.
    fn preview(&self, value: &Value) -> String {
        cut(&self.text(&serde_json::to_string(value).unwrap_or_default()))
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() > PREVIEW_CHARS {
        format!("{}…", text.chars().take(PREVIEW_CHARS).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// Maskers by (owner, task), for one response. A masker that cannot be built (a secret that
/// does not decrypt) hides the previews instead.
#[derive(Default)]
struct Maskers(HashMap<(String, String), Option<Arc<Masker>>>);

impl Maskers {
    fn get(&mut self, app: &App, owner: &str, task_id: &str) -> Option<Arc<Masker>> {
        self.0
            .entry((owner.to_owned(), task_id.to_owned()))
            .or_insert_with(|| match Masker::of(app, owner, task_id) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!(owner, task_id, error = %e, "console: secrets could not be read to mask them; previews hidden");
                    None
                }
            })
            .clone()
    }
}

const HIDDEN: &str = "(hidden: the owner's secrets could not be read to mask them)";

// ---- Executions ----

#[derive(Debug, Deserialize)]
pub struct ExecutionsQuery {
    #[serde(default)]
    q: String,
    before: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Listing {
    /// What `q` was read as: `latest`, `owner`, `task` or `execution`.
    kind: &'static str,
    query: String,
    executions: Vec<ExecutionView>,
    /// Pass as `before` for the next page, when there may be one.
    next_before: Option<String>,
}

#[derive(Debug, Serialize)]
struct ExecutionView {
    id: String,
    task_id: String,
    task_name: String,
    owner: String,
    owner_url: Option<String>,
    index: i64,
    status: RunStatus,
    queued_at: i64,
    start_at: i64,
    end_at: i64,
    duration_ms: Option<i64>,
    error: String,
    trigger: Option<TriggerView>,
    steps: Vec<StepView>,
}

#[derive(Debug, Serialize)]
struct TriggerView {
    kind: String,
    /// `client` or `operators`.
    source: &'static str,
    /// The `TriggerAttested` event of an operator firing.
    attestation: Option<String>,
    dedup_key: String,
    output: String,
    block_number: Option<u64>,
    block_url: Option<String>,
    transaction_hash: Option<String>,
    transaction_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct StepView {
    id: String,
    name: String,
    step_type: String,
    /// `success`, `failed` or `skipped`.
    status: &'static str,
    start_at: i64,
    end_at: i64,
    duration_ms: Option<i64>,
    error: String,
    error_code: i32,
    output: String,
    log: String,
}

fn step_view(step: &Step, masker: Option<&Masker>) -> StepView {
    let status = if step.skipped {
        "skipped"
    } else if step.success {
        "success"
    } else {
        "failed"
    };
    let shown = |text: &str| match masker {
        Some(m) => cut(&m.text(text)),
        None => HIDDEN.to_owned(),
    };
    StepView {
        id: step.id.clone(),
        name: step.name.clone(),
        step_type: step.step_type.clone(),
        status,
        start_at: step.start_at,
        end_at: step.end_at,
        duration_ms: (step.end_at >= step.start_at && step.start_at > 0)
            .then(|| step.end_at - step.start_at),
        error: if step.error.is_empty() {
            String::new()
        } else {
            shown(&step.error)
        },
        error_code: step.error_code,
        output: match (&step.output, masker) {
            (None, _) => String::new(),
            (Some(output), Some(m)) => m.preview(output.data.as_ref().unwrap_or(&Value::Null)),
            (Some(_), None) => HIDDEN.to_owned(),
        },
        log: if step.log.is_empty() {
            String::new()
        } else {
            shown(&step.log)
        },
    }
}

fn execution_view(
    app: &App,
    explorer: Option<Explorer>,
    maskers: &mut Maskers,
    row: ExecutionRow,
) -> Result<ExecutionView, ConsoleError> {
    let views = &app.store.views;
    let masker = maskers.get(app, &row.owner, &row.task_id);
    let masker = masker.as_deref();
    let task_name = views
        .task(&row.task_id)?
        .map(|t| masker.map_or_else(|| HIDDEN.to_owned(), |m| m.text(&t.name)))
        .unwrap_or_default();
    let trigger = views.trigger(&row.task_id, &row.id)?.map(|t| {
        let output = t.firing.output.clone().unwrap_or(Value::Null);
        let block_number = output.get("blockNumber").and_then(Value::as_u64);
        let transaction_hash = output
            .get("transactionHash")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (source, attestation) = match &t.firing.source {
            FiringSource::Client => ("client", None),
            FiringSource::Operators { attestation } => ("operators", Some(attestation.clone())),
        };
        TriggerView {
            kind: serde_json::to_value(t.firing.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            source,
            attestation,
            dedup_key: t.firing.dedup_key.clone(),
            output: masker.map_or_else(|| HIDDEN.to_owned(), |m| m.preview(&output)),
            block_url: explorer.zip(block_number).map(|(e, n)| e.block(n)),
            block_number,
            transaction_url: explorer
                .zip(transaction_hash.as_deref())
                .map(|(e, h)| e.transaction(h)),
            transaction_hash,
        }
    });
    Ok(ExecutionView {
        steps: row.steps.iter().map(|s| step_view(s, masker)).collect(),
        owner_url: explorer.map(|e| e.address(&row.owner)),
        duration_ms: (row.end_at >= row.start_at && row.start_at > 0)
            .then(|| row.end_at - row.start_at),
        error: match masker {
            Some(m) => cut(&m.text(&row.error)),
            None if row.error.is_empty() => String::new(),
            None => HIDDEN.to_owned(),
        },
        id: row.id,
        task_id: row.task_id,
        task_name,
        owner: row.owner,
        index: row.index,
        status: row.status,
        queued_at: row.queued_at,
        start_at: row.start_at,
        end_at: row.end_at,
        trigger,
    })
}

fn is_ulid(text: &str) -> bool {
    text.len() == 26 && events::Ulid::from_string(text).is_ok()
}

/// The executions `q` names (newest first), `limit` of them older than `before`.
fn find(
    console: &Console,
    q: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Listing, ConsoleError> {
    let app = &console.app;
    let views = &app.store.views;
    let q = q.trim();
    if let Some(before) = before
        && !is_ulid(before)
    {
        return Err(ConsoleError::BadRequest(format!(
            "before {before:?} is not an execution id"
        )));
    }
    let (kind, refs) = if q.is_empty() {
        ("latest", views.latest_executions(before, limit)?)
    } else if let Ok(owner) = q.parse::<alloy::primitives::Address>() {
        (
            "owner",
            views.latest_executions_of(&crate::address::lower(owner), before, limit)?,
        )
    } else if is_ulid(q) {
        let q = q.to_ascii_uppercase();
        if views.task(&q)?.is_some() || app.store.log.stream_version(&events::stream::task(&q))? > 0
        {
            ("task", views.latest_executions_of_task(&q, before, limit)?)
        } else {
            let one =
                views
                    .execution_task(&q)?
                    .map(|task_id| projections::activity::ExecutionRef {
                        execution_id: q.clone(),
                        task_id,
                    });
            ("execution", one.into_iter().collect())
        }
    } else {
        return Err(ConsoleError::BadRequest(format!(
            "search by a task id, an execution id or an owner address; {q:?} is none of them"
        )));
    };
    let mut maskers = Maskers::default();
    let explorer = console.explorer();
    let mut executions = Vec::with_capacity(refs.len());
    for r in &refs {
        if let Some(row) = views.execution(&r.task_id, &r.execution_id)? {
            executions.push(execution_view(app, explorer, &mut maskers, row)?);
        }
    }
    Ok(Listing {
        kind,
        query: q.to_owned(),
        next_before: (refs.len() == limit)
            .then(|| refs.last().map(|r| r.execution_id.clone()))
            .flatten(),
        executions,
    })
}

/// `GET /telemetry/admin/executions?q=&before=&limit=`.
pub async fn executions(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ExecutionsQuery>,
) -> Result<Response, ConsoleError> {
    require(&console, &headers)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let listing = tokio::task::spawn_blocking(move || {
        find(&console, &query.q, query.before.as_deref(), limit)
    })
    .await
    .map_err(|e| ConsoleError::BadRequest(format!("the search failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &listing))
}

/// The latest executions as the stream's `executions` event carries them.
pub async fn latest_json(console: &Arc<Console>, _session: &Session) -> String {
    let console = console.clone();
    let listing = tokio::task::spawn_blocking(move || find(&console, "", None, DEFAULT_LIMIT))
        .await
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))
        .and_then(|r| r);
    match listing {
        Ok(listing) => serde_json::to_string(&listing).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    }
}

// ---- Timeline ----

#[derive(Debug, Deserialize)]
pub struct TimelineQuery {
    #[serde(default)]
    task: String,
}

#[derive(Debug, Serialize)]
struct Timeline {
    task_id: String,
    task_name: String,
    owner: String,
    /// Events in the timeline; the latest `TIMELINE_EVENTS` are shown.
    total: usize,
    events: Vec<TimelineEvent>,
}

#[derive(Debug, Serialize)]
struct TimelineEvent {
    at_ms: u64,
    id: String,
    stream: String,
    seq: u64,
    #[serde(rename = "type")]
    event_type: &'static str,
    actor: String,
    payload: String,
}

struct EventJson<'a>(&'a events::Event);

impl Serialize for EventJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        events::event::serialize_payload(self.0, s)
    }
}

fn timeline_of(console: &Console, task: &str) -> Result<Timeline, ConsoleError> {
    let app = &console.app;
    let task = task.trim().to_ascii_uppercase();
    if !is_ulid(&task) {
        return Err(ConsoleError::BadRequest(format!(
            "task {task:?} is not a task id"
        )));
    }
    let all = app.store.log.keyspaces().task_timeline(&task)?;
    let created = all.iter().find_map(|e| match &e.event {
        events::Event::TaskCreated(c) => Some(c),
        _ => None,
    });
    let Some(created) = created else {
        return Err(ConsoleError::NotFound(format!("no task {task} in the log")));
    };
    let owner = created.owner.clone();
    let masker = match Masker::of(app, &owner, &task) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(task, error = %e, "console: secrets could not be read to mask them; payloads hidden");
            None
        }
    };
    let task_name = masker
        .as_ref()
        .map_or_else(|| HIDDEN.to_owned(), |m| m.text(&created.definition.name));
    let total = all.len();
    let events = all
        .iter()
        .skip(total.saturating_sub(TIMELINE_EVENTS))
        .map(|e| TimelineEvent {
            at_ms: e.recorded_at,
            id: e.id.to_string(),
            stream: e.stream.clone(),
            seq: e.seq,
            event_type: e.event.type_name(),
            actor: e.actor.clone(),
            payload: match &masker {
                Some(m) => {
                    cut(&m.text(&serde_json::to_string(&EventJson(&e.event)).unwrap_or_default()))
                }
                None => HIDDEN.to_owned(),
            },
        })
        .collect();
    Ok(Timeline {
        task_id: task,
        task_name,
        owner,
        total,
        events,
    })
}

/// `GET /telemetry/admin/timeline?task=`.
pub async fn timeline(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<TimelineQuery>,
) -> Result<Response, ConsoleError> {
    require(&console, &headers)?;
    let timeline = tokio::task::spawn_blocking(move || timeline_of(&console, &query.task))
        .await
        .map_err(|e| ConsoleError::BadRequest(format!("the timeline failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &timeline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(pairs: &[(&str, &str)]) -> Masker {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        Masker::new(&map)
    }

    #[test]
    fn every_occurrence_of_a_secret_value_is_masked_raw_and_inside_json() {
        let m = masker(&[("token", "s3cr3t\"value"), ("pin", "ab")]);
        assert_eq!(
            m.text("a s3cr3t\"value and s3cr3t\"value"),
            "a [secret token] and [secret token]"
        );
        let json = serde_json::to_string(&serde_json::json!({"x": "s3cr3t\"value"})).unwrap();
        assert_eq!(m.text(&json), r#"{"x":"[secret token]"}"#);
        // Too short to mask without masking everything.
        assert_eq!(m.text("ab"), "ab");
    }

    #[test]
    fn a_secret_in_base64_or_url_encoded_is_masked_too() {
        let m = masker(&[("token", "sk live/99?")]);
        for encoded in [
            "c2sgbGl2ZS85OT8=",
            "c2sgbGl2ZS85OT8",
            "c2sgbGl2ZS85OT8=",
            "sk%20live%2F99%3F",
            "sk+live%2F99%3F",
        ] {
            assert_eq!(
                m.text(&format!("Authorization: Basic {encoded}")),
                "Authorization: Basic [secret token]",
                "{encoded}"
            );
        }
        let m = masker(&[("token", "ab>?~")]);
        assert_eq!(m.text("q=YWI-P34"), "q=[secret token]");
    }

    #[test]
    fn a_value_inside_another_does_not_leave_part_of_the_longer_one() {
        let m = masker(&[("short", "abcd"), ("long", "xxabcdyy")]);
        assert_eq!(m.text("xxabcdyy abcd"), "[secret long] [secret short]");
    }

    #[test]
    fn previews_are_masked_before_they_are_cut() {
        let secret = "0123456789";
        let m = masker(&[("k", secret)]);
        let long = format!("{}{secret}", "a".repeat(PREVIEW_CHARS - 3));
        let shown = m.preview(&Value::String(long));
        assert!(!shown.contains("012"), "{shown}");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ava_console=abc ; b=2"),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
        assert_eq!(session_of(&HeaderMap::new()), None);
    }

    #[test]
    fn a_cross_origin_request_may_not_sign_in_or_out() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:1323"));
        assert!(same_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:1323"),
        );
        assert!(same_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let headers = HeaderMap::new();
        let text = cookie(&headers, "v", 60);
        assert!(text.contains("HttpOnly"));
        assert!(text.contains("SameSite=Strict"));
        assert!(text.contains("Path=/telemetry"));
        assert!(!text.contains("Secure"));
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(cookie(&proxied, "v", 60).ends_with("; Secure"));
    }
}
