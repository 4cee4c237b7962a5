//! REST API: one HTTP request through the guarded client (no private addresses). The output is
//! `{ status, headers, body }`, the body parsed when it is JSON; a status of 400 or more fails the
//! step, keeping the output.

use serde_json::{Map, Value, json};

use events::task::RestApiConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::http::{HttpRequest, body_value};
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
    let headers: Map<String, Value> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let output = json!({
        "status": response.status,
        "headers": headers,
        "body": body_value(&response),
    });
    let log = vec![format!("{method} {} → {}", config.url, response.status)];
    if response.status >= 400 {
        return Err(NodeError {
            message: format!("the server answered HTTP {}", response.status),
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
