//! Filter: keeps the elements of an array for which the expression holds, with `value` and
//! `index` bound to each element.
//!
//! As in the original, the expression may be written as a template (`{{ value.age >= 18 }}`),
//! mixed (`{{ value.age }} >= 18`) or as plain JavaScript: each `{{ e }}` stands for `(e)`,
//! evaluated for each element.

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
                unwrap_templates(&config.expression)
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

/// The expression with each `{{ e }}` replaced by `(e)`; an unclosed `{{` is left as it is (and
/// fails as JavaScript, saying where).
fn unwrap_templates(expression: &str) -> String {
    let mut out = String::with_capacity(expression.len());
    let mut rest = expression;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('(');
        out.push_str(rest[start + 2..start + 2 + end].trim());
        out.push(')');
        rest = &rest[start + 2 + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::unwrap_templates;

    #[test]
    fn templates_stand_for_their_expression() {
        assert_eq!(
            unwrap_templates("{{ value.age >= 18 }}"),
            "(value.age >= 18)"
        );
        assert_eq!(
            unwrap_templates("{{ value.age }} >= {{ settings.min }}"),
            "(value.age) >= (settings.min)"
        );
        assert_eq!(unwrap_templates("value % 2 === 1"), "value % 2 === 1");
    }
}
