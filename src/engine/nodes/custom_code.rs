//! Custom code: the node's JavaScript runs in the sandbox with the run's variables as globals;
//! its result is the output and `console.log` goes to the step log.
//!
//! As the original runs it: `{{ }}` templates in the source are rendered first (their values as
//! text); ES `import`s of the packages become `require`s; code that has a `return` (or a
//! `require`, an `import`, an `export`) runs as the body of a function, whose return value is the
//! output; other code runs as a script, and the value of its last expression is the output
//! (`const a = 2; a * 21` gives 42).

use serde_json::{Map, Value};

use events::task::CustomCodeConfig;

use super::{NodeError, NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::sandbox::{Script, ScriptKind, rewrite_imports};
use crate::engine::template::Templates;
use crate::pb::ErrorCode;

pub async fn run(
    tools: &Tools,
    config: &CustomCodeConfig,
    vars: &Map<String, Value>,
) -> NodeResult {
    if config.source.trim().is_empty() {
        return Err(NodeError::new("missing required field: source")
            .with_code(ErrorCode::MissingRequiredField));
    }
    let templates = Templates {
        vars,
        sandbox: &tools.sandbox,
    };
    let source = templates
        .text("source", &config.source)
        .await
        .map_err(|e| NodeError::new(e).with_code(ErrorCode::InvalidNodeConfig))?;
    let (kind, source) = match rewrite_imports(&source) {
        Some(rewritten) => (ScriptKind::Body, rewritten),
        None if is_function_body(&source) => (ScriptKind::Body, source),
        None => (ScriptKind::Program, source),
    };
    let outcome = tools
        .sandbox
        .run(Script {
            kind,
            source,
            globals: vars.clone(),
            time_limit: None,
        })
        .await?;
    Ok(NodeRun {
        output: outcome.value,
        log: outcome.logs,
        taken: None,
    })
}

/// Whether the original wraps the code in a function: a line (not a `//` or `/*` comment line)
/// with a `return`, `require(`, `import` or `export` word.
fn is_function_body(source: &str) -> bool {
    source.lines().any(|line| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") || trimmed.starts_with("/*") {
            return false;
        }
        has_word(line, "return")
            || has_word(line, "export")
            || has_word(line, "import")
            || has_word(line, "require")
    })
}

/// `word` in `line` with no identifier character on either side.
fn has_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_with_return_or_modules_is_a_function_body_as_in_the_original() {
        assert!(is_function_body("return 42;"));
        assert!(is_function_body("const x = 1;\nif (x) { return x; }"));
        assert!(is_function_body("const _ = require('lodash'); _.sum([1])"));
        assert!(!is_function_body("const a = 2; a * 21"));
        assert!(!is_function_body("// return 1\n1 + 1"));
        assert!(!is_function_body("const returned = 1; returned"));
    }
}
