//! GraphQL query: a POST of `{query, variables}` through the guarded client. The output is the
//! response's `data`, unwrapped as the original gives it (`{{gql.data.pairs}}`); `errors` in the
//! response fail the step, keeping the whole response as the output.

use serde_json::{Map, Value, json};

use events::task::GraphqlQueryConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::http::{HttpRequest, body_value};

/// A document that starts with `query` or `{` reads; a mutation (or anything else) may not.
pub fn is_read(query: &str) -> bool {
    let q = query.trim_start();
    q.starts_with('{') || q.starts_with("query")
}

pub async fn run(tools: &Tools, config: &GraphqlQueryConfig) -> NodeResult {
    let variables: Map<String, Value> = config
        .variables
        .iter()
        .map(|(k, v)| {
            // A variable's text may hold JSON (numbers, objects); otherwise it is a string.
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
            (k.clone(), value)
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "query": config.query, "variables": variables }))
        .map_err(|e| NodeError::new(format!("encoding the query: {e}")))?;
    let response = tools
        .http
        .send(HttpRequest {
            method: "POST".into(),
            url: config.url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: Some(body),
        })
        .await
        .map_err(|e| NodeError::new(e.to_string()))?;
    let output = body_value(&response);
    let log = vec![format!(
        "POST {} → {}",
        super::rest_api::without_query(&config.url),
        response.status
    )];
    let first_error = output
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned)
        });
    if response.status >= 400 || first_error.is_some() {
        return Err(NodeError {
            message: first_error.map_or_else(
                || format!("the server answered HTTP {}", response.status),
                |m| format!("the GraphQL server returned an error: {m}"),
            ),
            code: crate::pb::ErrorCode::ExecutionEngineError,
            output: Some(output),
            log,
        });
    }
    let data = match output {
        Value::Object(mut body) if body.contains_key("data") => {
            body.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    };
    Ok(NodeRun {
        output: data,
        log,
        taken: None,
    })
}
