//! SCAFFOLD (not committed): types only, so the engine compiles until the real module lands.
use std::time::Duration;
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub threads: usize,
    pub time_limit: Duration,
    pub memory_limit: usize,
    pub max_output_bytes: usize,
    pub max_log_bytes: usize,
}
impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            time_limit: Duration::from_secs(5),
            memory_limit: 64 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}
#[derive(Clone)]
pub struct Sandbox;
pub struct Script {
    pub kind: ScriptKind,
    pub source: String,
    pub globals: serde_json::Map<String, serde_json::Value>,
    pub time_limit: Option<Duration>,
}
pub enum ScriptKind {
    Body,
    Expression,
}
pub struct Outcome {
    pub value: serde_json::Value,
    pub logs: Vec<String>,
    pub elapsed: Duration,
}
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("closed")]
    Closed,
}
impl Sandbox {
    pub fn new(_config: SandboxConfig) -> Self {
        Self
    }
    pub async fn run(&self, _script: Script) -> Result<Outcome, SandboxError> {
        Err(SandboxError::Closed)
    }
}
