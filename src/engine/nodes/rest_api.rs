//! REST API: one HTTP request through the guarded client (no private addresses). The output is
//! the original's `{ status, statusText, url, headers, data }`: `data` is the body, parsed when it
//! is JSON (`""` when empty), `headers` one value per name (repeated ones joined with `, `) under
//! the canonical name (`Content-Type`); a status of 400 or more fails the step ("HTTP 404: Not
//! Found"), keeping the output.

use serde_json::{Map, Value, json};

use events::task::RestApiConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::http::{HttpRequest, body_value, status_text};
use crate::pb::ErrorCode;

/// GET, HEAD and OPTIONS only read.
pub fn is_read(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "" | "GET" | "HEAD" | "OPTIONS"
    )
}

pub async fn run(tools: &Tools, config: &RestApiConfig) -> NodeResult {
    let method = if config.method.is_empty() {
        "GET".to_owned()
    } else {
        config.method.to_ascii_uppercase()
    };
    let request = HttpRequest {
        method: method.clone(),
        url: config.url.clone(),
        headers: config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: (!config.body.is_empty()).then(|| config.body.clone().into_bytes()),
    };
    let response = tools
        .http
        .send(request)
        .await
        .map_err(|e| NodeError::new(e.to_string()))?;
    let mut headers: Map<String, Value> = Map::new();
    for (name, value) in &response.headers {
        let name = canonical(name);
        match headers.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    let data = if response.body.is_empty() {
        Value::String(String::new())
    } else {
        body_value(&response)
    };
    let reason = status_text(response.status);
    let output = json!({
        "status": response.status,
        "statusText": reason,
        "url": config.url,
        "headers": headers,
        "data": data,
    });
    // Never the query string: keys often travel there.
    let log = vec![format!(
        "{method} {} → {}",
        without_query(&config.url),
        response.status
    )];
    if response.status >= 400 {
        return Err(NodeError {
            message: format!("HTTP {}: {reason}", response.status),
            code: ErrorCode::ExecutionEngineError,
            output: Some(output),
            log,
        });
    }
    Ok(NodeRun {
        output,
        log,
        taken: None,
    })
}

/// A header name as Go's `net/http` writes it: each dash-separated word capitalised
/// (`content-type` → `Content-Type`).
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `url` without its query string and fragment (`https://host/path?…`), for logs.
pub fn without_query(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(at) => format!("{}?…", url.get(..at).unwrap_or_default()),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn header_names_are_canonical_as_the_original_gives_them() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
        assert_eq!(canonical("etag"), "Etag");
    }
}
