//! Custom code: the node's JavaScript runs in the sandbox as a function body, with the run's
//! variables as globals; its return value is the output and `console.log` goes to the step log.
//! `require('lodash' | 'dayjs' | 'uuid')` works, and ES `import`s of them are rewritten into it.

use serde_json::{Map, Value};

use events::task::CustomCodeConfig;

use super::{NodeResult, NodeRun};
use crate::engine::Tools;
use crate::engine::sandbox::{Script, ScriptKind, rewrite_imports};

pub async fn run(
    tools: &Tools,
    config: &CustomCodeConfig,
    vars: &Map<String, Value>,
) -> NodeResult {
    let outcome = tools
        .sandbox
        .run(Script {
            kind: ScriptKind::Body,
            source: rewrite_imports(&config.source).unwrap_or_else(|| config.source.clone()),
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
