//! A web server on loopback for the engine's REST and GraphQL nodes: JSON answers, a GraphQL
//! endpoint, a redirect, a slow answer, and a counter of the requests each path received (to
//! check that no side effect runs twice).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    pub fn get(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    pub fn all(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }

    fn hit(&self, key: &str) -> usize {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }
}

pub struct Web {
    pub addr: SocketAddr,
    pub hits: Hits,
}

impl Web {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Everything the request carried back: headers, query string and body (as an API that echoes
/// its input does, which is how a secret used in a request reaches a node's output).
async fn echo_request(
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: String,
) -> Json<Value> {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    Json(json!({ "headers": headers, "query": query, "body": body }))
}

async fn echo_json(headers: HeaderMap, body: String) -> Json<Value> {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Json(json!({ "received": parsed, "contentType": content_type }))
}

async fn count(State(hits): State<Hits>, Path(key): Path<String>) -> Json<Value> {
    let n = hits.hit(&key);
    Json(json!({ "key": key, "count": n }))
}

async fn graphql(body: String) -> Json<Value> {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or_default();
    if query.contains("broken") {
        return Json(json!({ "errors": [{ "message": "Cannot query field broken" }] }));
    }
    let id = request["variables"]["id"].clone();
    Json(json!({ "data": { "item": { "id": id, "name": format!("item {id}") } } }))
}

/// Starts the server; `redirect_to` is where `/redirect` sends.
pub async fn start(redirect_to: Option<String>) -> anyhow::Result<Web> {
    let hits = Hits::default();
    let target = redirect_to.unwrap_or_else(|| "http://127.0.0.1:9/".into());
    let app = axum::Router::new()
        .route(
            "/json",
            get(|| async { Json(json!({ "price": 42.5, "tags": ["a", "b"], "ok": true })) }),
        )
        .route("/echo", post(echo_json))
        .route("/echo-request", any(echo_request))
        .route(
            "/deep/{levels}",
            get(|Path(levels): Path<usize>| async move {
                // JSON nested `levels` deep, written as text (building it as a Value would not
                // be any deeper, but serde_json's own limit would refuse to parse it back).
                format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
            }),
        )
        .route("/count/{key}", any(count))
        .route("/graphql", post(graphql))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "late"
            }),
        )
        .route(
            "/redirect",
            get(move || {
                let target = target.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, target)]).into_response() }
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Web { addr, hits })
}
