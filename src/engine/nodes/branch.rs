//! Branch: the first `if` condition that holds (JavaScript truthiness), else the `else`; the run
//! follows the edges from `<branch id>.<condition id>`. When nothing holds and there is no
//! `else`, no path is taken.

use serde_json::{Map, Value, json};

use events::task::BranchConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::sandbox::{Script, ScriptKind};

pub async fn run(tools: &Tools, config: &BranchConfig, vars: &Map<String, Value>) -> NodeResult {
    let mut log = Vec::new();
    for condition in &config.conditions {
        let holds = if condition.condition_type == "else" {
            true
        } else {
            let outcome = tools
                .sandbox
                .run(Script {
                    kind: ScriptKind::Expression,
                    source: format!("!!({})", condition.expression),
                    globals: vars.clone(),
                    time_limit: None,
                })
                .await
                .map_err(|e| NodeError::new(format!("condition {}: {e}", condition.id)))?;
            log.extend(outcome.logs);
            outcome.value == Value::Bool(true)
        };
        if holds {
            log.push(format!(
                "took condition {} ({})",
                condition.id, condition.condition_type
            ));
            return Ok(NodeRun {
                output: json!({ "conditionId": condition.id }),
                log,
                taken: Some(condition.id.clone()),
            });
        }
    }
    log.push("no condition held and there is no else: no path taken".into());
    Ok(NodeRun {
        output: json!({ "conditionId": null }),
        log,
        taken: None,
    })
}
