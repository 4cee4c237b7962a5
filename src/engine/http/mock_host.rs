//! The original's test host, `https://mock-api.ap-aggregator.local`, answered in process.
//!
//! The original aggregator never sends requests for this host to the network: it answers them
//! itself with an httpbin-like responder, and the official client's examples and test suites
//! (REST nodes, loops, GraphQL error cases) are written against it. Doing the same keeps those
//! workflows running here, without a DNS name that resolves nowhere.
//!
//! What counts as that host is decided on the parsed URL, never on the text: scheme `https`,
//! host exactly `mock-api.ap-aggregator.local`, no user-info and no explicit port. So
//! `https://mock-api.ap-aggregator.local.evil.example/`, `https://x@mock-api.ap-aggregator.local/`
//! and `https://mock-api.ap-aggregator.local:8443/` go to the network like any other URL, through
//! the address guard. The responder itself touches no socket, follows no redirect and reads
//! nothing but the request.
//!
//! Its answers, as the original gives them (the path is matched the original's way, by the
//! segments it contains):
//! - `/status/N` (100 to 599): that status, with `{"error"|"status": <reason>, "code", "url"}`
//!   (`error` from 400 on), no body for 204 and 304;
//! - `/delay/N` (1 to 10): waits N seconds, capped below the client's time limit so that the
//!   request never fails for it, then answers as below;
//! - `/headers`: `{"headers": <the request's headers>}`; `/ip`: `{"origin": "127.0.0.1"}`;
//! - anything else (`/get`, `/post`, `/anything/...`): the echo `{"args", "data", "headers",
//!   "method", "url"}`, `data` being the body parsed as JSON (or `null`).

use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value, json};

use super::{HttpRequest, HttpResponse};

/// The host the original answers itself.
pub const MOCK_HOST: &str = "mock-api.ap-aggregator.local";

/// The longest `/delay/N` the original honours, in seconds (a longer one is not waited for).
const MAX_DELAY_SECONDS: u64 = 10;

/// Whether `url` is the mock host: exactly `https://mock-api.ap-aggregator.local`, default port,
/// no user-info. (The URL parser has already lower-cased the host and dropped a `:443`.)
pub fn is_mock_host(url: &Url) -> bool {
    url.scheme() == "https"
        && url.host_str() == Some(MOCK_HOST)
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none()
}

/// The answer to `request`, already checked to be for the mock host. `method` is the request's
/// method as the node gave it (empty: `GET`). `time_limit` is the client's, which a `/delay/N`
/// stays below.
pub async fn answer(
    request: &HttpRequest,
    url: &Url,
    method: &str,
    time_limit: Duration,
) -> HttpResponse {
    let path = url.path();
    let url_text = request.url.as_str();
    let response = |status: u16, body: Option<Value>| {
        let body = body.map(|v| v.to_string().into_bytes()).unwrap_or_default();
        let mut headers = Vec::new();
        if !body.is_empty() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        headers.push(("content-length".to_owned(), body.len().to_string()));
        HttpResponse {
            status,
            headers,
            body: if method.eq_ignore_ascii_case("HEAD") {
                Vec::new()
            } else {
                body
            },
            final_url: url.to_string(),
        }
    };

    if let Some(code) = number_after(path, "/status/").filter(|c| (100..=599).contains(c)) {
        let status = u16::try_from(code).unwrap_or(500);
        if status == 204 || status == 304 {
            return response(status, None);
        }
        let reason = status_text(status);
        let body = if status >= 400 {
            json!({ "error": reason, "code": status, "url": url_text })
        } else {
            json!({ "status": reason, "code": status, "url": url_text })
        };
        return response(status, Some(body));
    }
    if let Some(seconds) = number_after(path, "/delay/")
        && (1..=MAX_DELAY_SECONDS).contains(&seconds)
    {
        let cap = time_limit.saturating_sub(time_limit / 10);
        tokio::time::sleep(Duration::from_secs(seconds).min(cap)).await;
    }
    let headers = headers_object(&request.headers);
    if path.contains("/headers") {
        return response(200, Some(json!({ "headers": headers })));
    }
    if path.contains("/ip") {
        return response(200, Some(json!({ "origin": "127.0.0.1" })));
    }
    let data = request
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .unwrap_or(Value::Null);
    let method = if method.trim().is_empty() {
        "GET"
    } else {
        method
    };
    response(
        200,
        Some(json!({
            "args": query_args(url),
            "data": data,
            "headers": headers,
            "method": method,
            "url": url_text,
        })),
    )
}

/// The number that follows `prefix` in `path` (its leading digits, as the original's `%d`
/// reads them), if any.
fn number_after(path: &str, prefix: &str) -> Option<u64> {
    let at = path.find(prefix)?;
    let rest = &path[at + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The request's headers as an object, later values of a name replacing earlier ones.
fn headers_object(headers: &[(String, String)]) -> Value {
    let map: Map<String, Value> = headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    Value::Object(map)
}

/// The query's `key=value` pairs as given (not percent-decoded, as the original reads them).
fn query_args(url: &Url) -> Value {
    let mut args = Map::new();
    for pair in url.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Value::Object(args)
}

/// The standard reason phrase of a status ("Not Found"), empty for codes without one.
pub fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn get(text: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: text.into(),
            headers: vec![("X-Test".into(), "1".into())],
            body: None,
        }
    }

    async fn run(request: &HttpRequest) -> (u16, Value) {
        let u = url(&request.url);
        let r = answer(request, &u, &request.method, Duration::from_secs(10)).await;
        let body = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        (r.status, body)
    }

    #[test]
    fn only_the_exact_host_is_the_mock_host() {
        assert!(is_mock_host(&url(
            "https://mock-api.ap-aggregator.local/get"
        )));
        assert!(is_mock_host(&url("https://MOCK-API.ap-aggregator.local")));
        assert!(is_mock_host(&url(
            "https://mock-api.ap-aggregator.local:443/x"
        )));
        for other in [
            "http://mock-api.ap-aggregator.local/get",
            "https://mock-api.ap-aggregator.local:8443/get",
            "https://user@mock-api.ap-aggregator.local/get",
            "https://u:p@mock-api.ap-aggregator.local/get",
            "https://mock-api.ap-aggregator.local.evil.example/get",
            "https://evil.example/mock-api.ap-aggregator.local/get",
            "https://x.mock-api.ap-aggregator.local/get",
            "https://mock-api.ap-aggregator.local./get",
        ] {
            assert!(!is_mock_host(&url(other)), "{other}");
        }
    }

    #[tokio::test]
    async fn get_echoes_the_request() {
        let (status, body) = run(&get(
            "https://mock-api.ap-aggregator.local/get?deployed=true&x",
        ))
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["args"], json!({"deployed": "true", "x": ""}));
        assert_eq!(body["headers"], json!({"X-Test": "1"}));
        assert_eq!(body["method"], "GET");
        assert_eq!(body["data"], Value::Null);
        assert_eq!(
            body["url"],
            "https://mock-api.ap-aggregator.local/get?deployed=true&x"
        );
    }

    #[tokio::test]
    async fn post_echoes_the_json_body_as_data() {
        let mut request = get("https://mock-api.ap-aggregator.local/post");
        request.method = "POST".into();
        request.body = Some(br#"{"a":[1,2]}"#.to_vec());
        let (_, body) = run(&request).await;
        assert_eq!(body["data"], json!({"a": [1, 2]}));
        assert_eq!(body["method"], "POST");
        request.body = Some(b"test=data".to_vec());
        assert_eq!(run(&request).await.1["data"], Value::Null);
    }

    #[tokio::test]
    async fn status_paths_answer_that_status() {
        let (status, body) = run(&get("https://mock-api.ap-aggregator.local/status/404")).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "Not Found");
        assert_eq!(body["code"], 404);
        let (status, body) = run(&get("https://mock-api.ap-aggregator.local/status/500")).await;
        assert_eq!(
            (status, body["error"].clone()),
            (500, json!("Internal Server Error"))
        );
        let (status, body) = run(&get("https://mock-api.ap-aggregator.local/status/201")).await;
        assert_eq!((status, body["status"].clone()), (201, json!("Created")));
        let (status, body) = run(&get("https://mock-api.ap-aggregator.local/status/204")).await;
        assert_eq!((status, body), (204, Value::Null));
        // Out of range: the echo.
        let (status, body) = run(&get("https://mock-api.ap-aggregator.local/status/999")).await;
        assert_eq!((status, body["method"].clone()), (200, json!("GET")));
    }

    #[tokio::test]
    async fn headers_and_ip() {
        let (_, body) = run(&get("https://mock-api.ap-aggregator.local/headers")).await;
        assert_eq!(body, json!({"headers": {"X-Test": "1"}}));
        let (_, body) = run(&get("https://mock-api.ap-aggregator.local/ip")).await;
        assert_eq!(body, json!({"origin": "127.0.0.1"}));
    }

    #[tokio::test(start_paused = true)]
    async fn delays_wait_but_stay_below_the_time_limit() {
        let request = get("https://mock-api.ap-aggregator.local/delay/3");
        let u = url(&request.url);
        let started = tokio::time::Instant::now();
        let r = answer(&request, &u, "GET", Duration::from_secs(10)).await;
        assert_eq!(r.status, 200);
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        let started = tokio::time::Instant::now();
        answer(&request, &u, "GET", Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(2));

        // Past the original's 10 s, no wait at all.
        let request = get("https://mock-api.ap-aggregator.local/delay/60");
        let started = tokio::time::Instant::now();
        answer(&request, &url(&request.url), "GET", Duration::from_secs(30)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
