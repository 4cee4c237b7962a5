//! The JavaScript sandbox: QuickJS (through rquickjs) for the task engine's custom-code nodes,
//! the `{{ expression }}` templates of node configs, branch conditions, filters and loops.
//!
//! It runs untrusted user code, so the limits are the point:
//!
//! - **time**: a wall-time limit per run ([`SandboxConfig::time_limit`], or a script's own tighter
//!   [`Script::time_limit`]). QuickJS's interrupt handler checks the deadline every few thousand
//!   bytecodes and inside regular-expression matching, so an infinite loop, a catastrophic regex
//!   or a `toJSON` that never returns is stopped and reported as [`SandboxError::TimedOut`];
//! - **memory**: a byte limit per runtime (each runtime runs one script at a time, and the garbage
//!   of the previous run is collected first, so it is a limit per run);
//! - **stack**: a limit on the native stack the interpreter may use (deep recursion is a
//!   `RangeError` the script can catch, not a crash);
//! - **output**: caps on the size of the returned value (as JSON) and of the captured logs;
//! - **no host**: a context has the ECMAScript built-ins, a `console` that captures lines and a
//!   `require` of the npm packages the original offers (lodash, dayjs, uuid, read at start-up; see
//!   `modules`), and nothing else: no `std`/`os` modules, no other module (`import()` rejects), no
//!   timers, no file system or network. `console`, `require` and the `crypto.getRandomValues`
//!   that `require` defines are the only Rust callbacks a script can reach (the result's
//!   conversion uses one it cannot).
//!
//! Every run gets a fresh context (no state survives from one run, or one user, to the next:
//! not its globals, not its changes to the built-ins' prototypes, not its queued jobs); the
//! runtime under it (the heap, interned atoms and shapes, the limits) is reused. Creating the
//! context is most of a run's work (30 to 40 µs with these built-ins), so each worker makes the
//! next run's context after replying to the previous one, off the caller's clock, and collects
//! the garbage of several small runs at once (a collection walks every live object of the
//! runtime). Starting a QuickJS-ng runtime takes under 10 µs, so reuse saves little time, but the
//! memory accounting and the replacement policy are built on it. A runtime that hit its memory
//! limit, or kept garbage or queued jobs after a run, is replaced by a new one.
//! `cargo bench --bench sandbox` measures all this.
//!
//! Layout:
//! - this file: the API ([`Sandbox`], [`Script`], [`Outcome`], [`SandboxError`], [`SandboxConfig`]);
//! - `pool`: the worker threads, each owning one runtime, fed by a queue, so that the async
//!   API never blocks the tokio runtime;
//! - `fairness`: owners served in turn, and each owner's budget of worker time per minute;
//! - `runtime`: one QuickJS runtime (`Runtime`) and one run on it in a fresh context (prepared
//!   after the previous run): globals, the wrapper, errors, conversion of the result;
//! - `js`: the JavaScript value helpers `runtime`, `console` and `modules` share;
//! - `console`: the captured `console.log`/`info`/`debug`/`warn`/`error`;
//! - `modules`: `require()` of lodash, dayjs and uuid, and ES `import` rewritten into it.

mod console;
mod fairness;
mod js;
mod modules;
mod pool;
mod runtime;

pub use fairness::{BUDGET_WINDOW, as_owner};
pub use modules::{JsModules, default_dir as default_modules_dir, rewrite_imports};

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

/// Default wall-time limit of a run.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);
/// Default memory limit of a runtime (one run at a time), in bytes.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;
/// Default limit on the native stack the interpreter may use, in bytes (QuickJS's own default).
pub const DEFAULT_STACK_LIMIT: usize = 1024 * 1024;
/// Default cap on the returned value, as JSON text, in bytes.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Default cap on the captured log lines of a run, in bytes (each line counts one more byte).
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 * 1024;

/// The sandbox's limits and size. `Default` gives the named defaults above and one worker thread
/// per core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Worker threads, each running one script at a time (at least one is started).
    pub threads: usize,
    /// Wall-time limit of a run, counted from when a worker picks the script up.
    pub time_limit: Duration,
    /// Memory limit of a runtime, in bytes; at least 2 MiB (a smaller one is raised to that, as
    /// QuickJS cannot be trusted to fail cleanly when a context does not fit).
    pub memory_limit: usize,
    /// Limit on the native stack the interpreter may use, in bytes.
    pub stack_limit: usize,
    /// Cap on the returned value, as JSON text, in bytes.
    pub max_output_bytes: usize,
    /// Cap on the captured log lines of a run, in bytes.
    pub max_log_bytes: usize,
    /// The packages `require` gives (none by default: `require` then says how to install them).
    pub modules: Arc<JsModules>,
    /// Worker time one owner's scripts may use per [`BUDGET_WINDOW`] (`None`: no budget).
    pub owner_budget: Option<Duration>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            time_limit: DEFAULT_TIME_LIMIT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            stack_limit: DEFAULT_STACK_LIMIT,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            modules: Arc::new(JsModules::default()),
            owner_budget: None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub kind: ScriptKind,
    pub source: String,
    /// Globals of the run, defined from their JSON values (never spliced into code). Names must be
    /// identifiers; another name fails the run with [`SandboxError::Input`].
    pub globals: Map<String, Value>,
    /// A limit tighter than the configured one (a loop iteration's, say); a longer one is ignored.
    pub time_limit: Option<Duration>,
}

impl Script {
    /// A function body (`return a + 1;`) with no globals and the configured time limit.
    pub fn body(source: impl Into<String>) -> Self {
        Self::new(ScriptKind::Body, source)
    }

    /// A single expression (`a.b > 3 && c`) with no globals and the configured time limit.
    pub fn expression(source: impl Into<String>) -> Self {
        Self::new(ScriptKind::Expression, source)
    }

    fn new(kind: ScriptKind, source: impl Into<String>) -> Self {
        Self {
            kind,
            source: source.into(),
            globals: Map::new(),
            time_limit: None,
        }
    }
}

/// How [`Script::source`] is run. Both run in sloppy mode, as a browser runs a classic script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// The body of a function: run as `(function(){ <body> })()`, so `return` gives the result
    /// (none gives `undefined`, so `null`). Synchronous: `await` is a syntax error.
    Body,
    /// A single expression, run as `(<expression>)`.
    Expression,
    /// A classic script, run as it is: its result is the value of the last expression statement
    /// it ran (`1 + 2;` gives 3), as the original runs custom code without a `return`.
    Program,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The result as `JSON.stringify` gives it: `undefined`, functions and symbols are `null`,
    /// as are NaN and the infinities; a `Date` is its ISO string; a BigInt is its decimal string.
    /// A returned promise that settled (its jobs run before the result is taken) is unwrapped.
    pub value: Value,
    /// The captured console lines, in order; `warn` and `error` lines start with `[warn] ` and
    /// `[error] `.
    pub logs: Vec<String>,
    /// Wall time of the run on the worker, from the fresh context to the converted result.
    pub elapsed: Duration,
}

/// Why a run failed. No message contains the word "timeout": the official client retries any
/// error whose message does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The run passed its wall-time limit and was stopped.
    #[error("the script ran longer than its {limit:?} limit and was stopped")]
    TimedOut { limit: Duration },
    /// The run passed the memory limit and was stopped.
    #[error("the script used more than its {} memory limit and was stopped", mib(*.limit))]
    OutOfMemory { limit: usize },
    /// The script threw (a syntax error included). `message` is `Name: message` with the line and
    /// column in the script when QuickJS knows them; `stack` is QuickJS's stack trace.
    #[error("{message}")]
    Exception {
        message: String,
        stack: Option<String>,
    },
    /// The result could not be converted to JSON, or was larger than the cap.
    #[error("the script's result {0}")]
    Output(String),
    /// The script was refused before running: a global's name is not an identifier, or the source
    /// holds a NUL character.
    #[error("invalid script: {0}")]
    Input(String),
    /// The worker failed in a way that is not the script's doing (QuickJS could not start, or a
    /// bug); the worker replaced its runtime.
    #[error("the sandbox failed: {0}")]
    Internal(String),
    /// The script's owner spent their budget of worker time for this window; it did not run.
    #[error(
        "your scripts used their {budget:?} of JavaScript time per {window:?}; this one did not run (the budget renews within {window:?} of its first use)"
    )]
    OverBudget { budget: Duration, window: Duration },
    /// The pool has shut down.
    #[error("the sandbox is shut down")]
    Closed,
}

/// The sandbox's result type.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

fn mib(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// A pool of JavaScript workers. Cheap to clone: clones share the pool. The workers stop when the
/// last clone is dropped (a run in progress finishes first).
#[derive(Clone)]
pub struct Sandbox {
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", self.pool.config())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts `config.threads` worker threads (at least one). The runtimes start on the workers,
    /// in parallel, so this returns at once.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            pool: Arc::new(pool::Pool::start(config)),
        }
    }

    /// The configuration the pool was started with.
    pub fn config(&self) -> &SandboxConfig {
        self.pool.config()
    }

    /// Runs `script` on a worker and waits for it without blocking the async runtime. Dropping
    /// the future before a worker picks the script up withdraws it.
    pub async fn run(&self, script: Script) -> Result<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.pool.submit(script, pool::Reply::Async(tx))?;
        rx.await.unwrap_or(Err(SandboxError::Closed))
    }

    /// Runs `script` on a worker and blocks the calling thread until it is done: for callers
    /// outside async code (in async code, use [`Sandbox::run`]).
    pub fn run_blocking(&self, script: Script) -> Result<Outcome> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.pool.submit(script, pool::Reply::Blocking(tx))?;
        rx.recv().unwrap_or(Err(SandboxError::Closed))
    }
}
