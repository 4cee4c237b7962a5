//! Branch: the first `if` condition that holds (JavaScript truthiness), else the `else`; the run
//! follows the edges from `<branch id>.<condition id>`, which is also the `conditionId` of the
//! output (the engine names it: a node does not know its own id). When nothing holds and there
//! is no `else`, no path is taken.
//!
//! As in the original, `{{ }}` templates in a condition are rendered first (so
//! `{{ trigger.data.x > 0 }}` and `{{ a.data.n }} > 3` work, as does plain JavaScript), and an
//! empty `if` condition is false.

use serde_json::{Map, Value, json};

use events::task::BranchConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::sandbox::{Script, ScriptKind};
use crate::engine::template::Templates;

pub async fn run(tools: &Tools, config: &BranchConfig, vars: &Map<String, Value>) -> NodeResult {
    let templates = Templates {
        vars,
        sandbox: &tools.sandbox,
    };
    let mut log = Vec::new();
    for condition in &config.conditions {
        let holds = if condition.condition_type == "else" {
            true
        } else {
            let field = format!("condition {}", condition.id);
            let expression = templates
                .text(&field, &condition.expression)
                .await
                .map_err(NodeError::new)?;
            if expression.trim().is_empty() {
                log.push(format!(
                    "condition {}: false (empty expression)",
                    condition.id
                ));
                false
            } else {
                let outcome = tools
                    .sandbox
                    .run(Script {
                        kind: ScriptKind::Expression,
                        source: format!("!!({expression})"),
                        globals: vars.clone(),
                        time_limit: None,
                    })
                    .await
                    .map_err(|e| NodeError::new(format!("condition {}: {e}", condition.id)))?;
                log.extend(outcome.logs);
                outcome.value == Value::Bool(true)
            }
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
