//! Loop: runs its runner node once per element of an array, with `iter_val` / `iter_key` bound,
//! sequentially or in parallel (bounded), each iteration within its time limit. The output is the
//! array of the iterations' outputs; one failed iteration fails the node, naming it.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use events::task::LoopConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::template::Templates;

/// The array a loop or filter works on: `input_variable` names a variable path, possibly as a
/// template (`{{ code.data }}` or `code.data`).
pub async fn input_array(
    tools: &Tools,
    input_variable: &str,
    vars: &Map<String, Value>,
) -> Result<Vec<Value>, NodeError> {
    let expr = input_variable.trim();
    let expr = expr
        .strip_prefix("{{")
        .and_then(|e| e.strip_suffix("}}"))
        .unwrap_or(expr)
        .trim();
    let templates = Templates {
        vars,
        sandbox: &tools.sandbox,
    };
    match templates
        .value(expr)
        .await
        .map_err(|e| NodeError::new(format!("input_variable {expr}: {e}")))?
    {
        Value::Array(items) => Ok(items),
        other => Err(NodeError::new(format!(
            "input_variable {expr} is not an array but {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Object(_) => "an object",
                Value::Array(_) => "an array",
            }
        ))),
    }
}

pub async fn run(tools: &Tools, config: &LoopConfig, vars: &Map<String, Value>) -> NodeResult {
    let Some(runner) = &config.runner else {
        return Err(NodeError::new("the loop has no runner node"));
    };
    let items = input_array(tools, &config.input_variable, vars).await?;
    let limit = tools.config.max_loop_iterations;
    if items.len() > limit {
        return Err(NodeError::new(format!(
            "the loop's input has {} elements, more than the limit of {limit}",
            items.len()
        )));
    }
    // In seconds, as the contract says and the original reads it (the official client's default
    // is 30).
    let per_iteration = if config.iteration_timeout > 0 {
        Duration::from_secs(u64::from(config.iteration_timeout))
    } else {
        tools.config.node_limit
    };
    let iteration = |index: usize, item: Value| {
        let mut vars = vars.clone();
        vars.insert(config.iter_val.clone(), item);
        if !config.iter_key.is_empty() {
            vars.insert(config.iter_key.clone(), Value::from(index));
        }
        async move {
            let templates = Templates {
                vars: &vars,
                sandbox: &tools.sandbox,
            };
            let runner = templates
                .runner(runner)
                .await
                .map_err(|e| NodeError::new(format!("iteration {index}: {e}")))?;
            match tokio::time::timeout(per_iteration, super::run_runner(tools, &runner, &vars))
                .await
            {
                Ok(Ok(run)) => Ok(run),
                Ok(Err(e)) => Err(NodeError::new(format!("iteration {index}: {}", e.message))),
                Err(_) => Err(NodeError::new(format!(
                    "iteration {index} ran longer than its {} ms limit",
                    per_iteration.as_millis()
                ))),
            }
        }
    };
    let parallel = config.execution_mode == 1;
    let concurrency = if parallel {
        tools.config.loop_parallelism.max(1)
    } else {
        1
    };
    let results: Vec<Result<NodeRun, NodeError>> =
        futures_util::stream::iter(items.into_iter().enumerate())
            .map(|(i, item)| iteration(i, item))
            .buffered(concurrency)
            .collect()
            .await;
    let mut outputs = Vec::with_capacity(results.len());
    let mut log = Vec::new();
    for result in results {
        let run = result?;
        log.extend(run.log);
        outputs.push(run.output);
    }
    log.push(format!(
        "{} iterations, {}",
        outputs.len(),
        if parallel {
            "in parallel"
        } else {
            "in sequence"
        }
    ));
    Ok(NodeRun {
        output: Value::Array(outputs),
        log,
        taken: None,
    })
}
