//! Filter: keeps the elements of an array for which the expression holds, with `value` and
//! `index` bound to each element.

use serde_json::{Map, Value};

use events::task::FilterConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::sandbox::{Script, ScriptKind};

pub async fn run(tools: &Tools, config: &FilterConfig, vars: &Map<String, Value>) -> NodeResult {
    let input = super::loop_node::input_array(tools, &config.input_variable, vars).await?;
    let mut globals = vars.clone();
    globals.insert("__input".into(), Value::Array(input));
    let outcome = tools
        .sandbox
        .run(Script {
            kind: ScriptKind::Body,
            source: format!(
                "return __input.filter((value, index) => {{ return ({}); }});",
                config.expression
            ),
            globals,
            time_limit: None,
        })
        .await
        .map_err(|e| NodeError::new(format!("filter expression: {e}")))?;
    Ok(NodeRun {
        output: outcome.value,
        log: outcome.logs,
        taken: None,
    })
}
