//! One QuickJS runtime a worker owns ([`Runtime`]), and one run on it in a fresh context.
//!
//! A run: check the script (global names, NUL characters); arm the deadline; take the context
//! prepared for it (a new one with the ECMAScript built-ins, never used) and give it `console`
//! and `require`; define the globals from one `JSON.parse` of their values; evaluate the wrapped
//! source; run the queued promise jobs; unwrap a settled promise; `JSON.stringify` the result
//! (BigInts as strings) and parse that with serde_json; drop the context. Then, after the worker
//! has replied, [`Runtime::recycle`] collects the garbage once enough of it has piled up, says
//! whether the runtime is still fit for the next run, and prepares the next run's context;
//! [`Runtime::dispose`] frees a runtime that is not fit (if that is safe).
//!
//! Why contexts are prepared rather than kept: a context's built-ins are the script's to change
//! (`Object.prototype.x = 1`, `Array.prototype.map = ...` are legal JavaScript, and a script may
//! rely on them within its run), and QuickJS can neither snapshot nor reset them; a context
//! reused across runs would carry one run's changes into the next, another owner's. So every run
//! still gets a context no script has touched; only the moment it is made moves, from the
//! caller's clock to the worker's idle time after the previous reply. Collections move the same
//! way: each one, and each measure of the heap, walks every live object of the runtime (the
//! resident built-ins included), so the garbage of a few short runs is collected at once
//! ([`RUNS_PER_COLLECTION`]) rather than after each; a run that took longer (and so may have
//! left much garbage) is collected after at once.
//!
//! Pitfalls of rquickjs 0.14 (QuickJS-ng 0.16) this module works around:
//! - a dropped context is not freed until the cycle collector runs (its built-ins reference one
//!   another); and QuickJS triggers collections only when it creates objects, at 1.5 times the
//!   live heap of the last collection, which after a big run can lie above the memory limit: the
//!   next run then finds the previous one's garbage in its way, and may not even get a context.
//!   Every run is followed by a collection, and the threshold is reset;
//! - creating a context with too little memory left corrupts the heap (quickjs-ng issue #1181),
//!   and the next collection fails an assertion, which aborts the process: runs start only on a
//!   collected heap, the memory limit has a floor ([`MIN_MEMORY_LIMIT`]), and a runtime that
//!   failed to create a context is never touched again;
//! - `JS_FreeRuntime` aborts the process if any object survives (an `assert`, compiled in): a
//!   runtime is freed only once it is seen to hold nothing ([`Runtime::dispose`]);
//! - rquickjs caches the prototype of its Rust functions per runtime, from the first context that
//!   made one: see [`super::js::rust_function`];
//! - when QuickJS cannot even allocate the "out of memory" error it throws `null`, so a thrown
//!   `null` is taken for exhausted memory (a script that throws `null` itself is reported so too);
//! - `Runtime` methods (`memory_usage`, `run_gc`...) panic ("RefCell already borrowed") when
//!   called inside `Context::with`, the interrupt handler included: the handler only reads a
//!   deadline;
//! - a Rust closure that holds a JS value owned by a JS object is a cycle the collector cannot
//!   see: the `console` closures hold only Rust data.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::{EvalOptions, intrinsic};
use rquickjs::{Context, Ctx, Error as JsError, Runtime as QuickJs, Value};
use serde_json::{Map, Value as Json};

use super::console::{self, Logs};
use super::js::{Failure, fatal, property, stringify};
use super::modules::{self, JsModules};
use super::{Outcome, Result, SandboxConfig, SandboxError, Script, ScriptKind};

/// The built-ins of a context: ECMAScript's, without `WeakRef`/`FinalizationRegistry` (they make
/// the collector's timing observable and serve nothing in a run of seconds) and without the web
/// extras of `Context::full` (`performance`, `atob`/`btoa`, `DOMException`). `Eval` is what lets a
/// context compile source at all, ours included.
type Intrinsics = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Proxy,
    intrinsic::Promise,
);

/// The least headroom QuickJS's automatic collector gets above the collected heap (its own rule
/// is half the heap), at most a quarter of the memory limit: set after every collection, so that
/// neither a big run's threshold (which may lie above the memory limit) nor a tiny one (a
/// collection during the next contexts' set-up) carries over. Room for the prepared contexts of
/// a few short runs and what they allocate.
const GC_HEADROOM: usize = 1024 * 1024;

/// Short runs whose garbage (their contexts, mostly: about 100 KiB each for a trivial script) is
/// collected at once. A run so starts with the garbage of at most this many short predecessors
/// on the heap, which QuickJS's own collector frees as soon as the heap passes its threshold
/// (`GC_HEADROOM` above the collected heap): the memory limit stays a limit per run, short of
/// that headroom. With a memory limit below [`BATCH_FLOOR`], every run is collected after.
const RUNS_PER_COLLECTION: u32 = 4;

/// A run at least this long is collected after at once: it may have left much garbage.
const SHORT_RUN: Duration = Duration::from_millis(1);

/// The smallest memory limit at which short runs are collected in batches.
const BATCH_FLOOR: usize = 16 * 1024 * 1024;

/// Heap a runtime may keep after a run and a collection, beyond what it held when new, before it
/// is replaced (atoms and shapes that stay interned, a leak we do not know of); at most a quarter
/// of the memory limit, so that a context always fits.
const RETIRE_SLACK: usize = 1024 * 1024;

/// The smallest memory limit a runtime gets. QuickJS-ng corrupts its heap when the limit leaves no
/// room to create a context (quickjs-ng issue #1181: `JS_NewContextRaw` frees a context it already
/// put on the collector's list), so runs never start near the limit: the previous run's garbage is
/// collected first, and this floor leaves room for the built-ins (about 100 KiB) above the idle
/// heap and the slack.
pub(super) const MIN_MEMORY_LIMIT: usize = 2 * 1024 * 1024;

/// The file name of the user's code in stack traces.
const FILE_NAME: &str = "code";

/// Cap on an error's message and on its stack trace, in bytes: both go back to the client and
/// into the execution's history.
const MAX_ERROR_BYTES: usize = 4096;

/// The deadline the interrupt handler checks.
#[derive(Default)]
struct Watchdog {
    deadline: Cell<Option<Instant>>,
    tripped: Cell<bool>,
}

impl Watchdog {
    /// Starts a run; `None` (a limit too far to represent) means no deadline.
    fn arm(&self, deadline: Option<Instant>) {
        self.deadline.set(deadline);
        self.tripped.set(false);
    }

    fn disarm(&self) {
        self.deadline.set(None);
    }

    /// Whether the deadline has passed; once it has, every later check says so too, so that
    /// nothing of the script runs any more.
    fn expired(&self) -> bool {
        match self.deadline.get() {
            Some(deadline) if Instant::now() >= deadline => {
                self.tripped.set(true);
                true
            }
            _ => false,
        }
    }

    fn tripped(&self) -> bool {
        self.tripped.get()
    }
}

/// One QuickJS runtime and the limits of the runs on it. Lives on one worker thread.
pub(super) struct Runtime {
    rt: QuickJs,
    watchdog: Rc<Watchdog>,
    /// Heap held by the runtime between runs when it was new.
    baseline: usize,
    /// Objects that live as long as the runtime: the built-ins of the first context, kept by
    /// rquickjs's prototype cache (see [`super::js::rust_function`]), which it frees before the runtime.
    resident_objects: i64,
    /// Set when QuickJS failed to create a context: its heap may be corrupt.
    poisoned: Cell<bool>,
    /// The next run's context: created after the previous run, never used by a script (see the
    /// module docs). `None` if creating it failed (the run then tries again, and reports it).
    prepared: RefCell<Option<Context>>,
    /// Runs since the last collection, and whether the last one was not short.
    uncollected: Cell<u32>,
    long_run: Cell<bool>,
    time_limit: Duration,
    memory_limit: usize,
    max_output_bytes: usize,
    max_log_bytes: usize,
    modules: Arc<JsModules>,
}

impl Runtime {
    pub(super) fn new(config: &SandboxConfig) -> Result<Self> {
        let rt = QuickJs::new().map_err(|e| SandboxError::Internal(e.to_string()))?;
        let memory_limit = config.memory_limit.max(MIN_MEMORY_LIMIT);
        rt.set_memory_limit(memory_limit);
        rt.set_max_stack_size(config.stack_limit);
        let watchdog = Rc::new(Watchdog::default());
        let check = Rc::clone(&watchdog);
        rt.set_interrupt_handler(Some(Box::new(move || check.expired())));
        let mut runtime = Self {
            rt,
            watchdog,
            baseline: 0,
            resident_objects: 0,
            poisoned: Cell::new(false),
            prepared: RefCell::new(None),
            uncollected: Cell::new(0),
            long_run: Cell::new(false),
            time_limit: config.time_limit,
            memory_limit,
            max_output_bytes: config.max_output_bytes,
            max_log_bytes: config.max_log_bytes,
            modules: Arc::clone(&config.modules),
        };
        // One run first, so that what every run leaves interned for good (the class of Rust
        // functions, atoms) is part of the baseline, and a runtime that cannot run fails here.
        if let Err(e) = runtime.run(&Script::expression("0")) {
            runtime.dispose();
            return Err(e);
        }
        let heap = runtime.collect();
        let usage = runtime.rt.memory_usage();
        runtime.baseline = heap;
        runtime.resident_objects = usage.obj_count;
        runtime.prepare();
        Ok(runtime)
    }

    /// Collects all garbage now and returns the heap left; QuickJS's own collector then starts
    /// once the heap grew by half (as QuickJS sets it after a collection), or `GC_HEADROOM`.
    fn collect(&self) -> usize {
        self.rt.run_gc();
        self.uncollected.set(0);
        let heap = self.heap();
        let headroom = (heap / 2).max(GC_HEADROOM).min(self.memory_limit / 4);
        self.rt.set_gc_threshold(heap.saturating_add(headroom));
        heap
    }

    /// Creates the next run's context, unless there is one; a failure poisons the runtime.
    fn prepare(&self) {
        let mut prepared = self.prepared.borrow_mut();
        if prepared.is_none() && !self.poisoned.get() {
            match Context::custom::<Intrinsics>(&self.rt) {
                Ok(context) => *prepared = Some(context),
                Err(_) => self.poisoned.set(true),
            }
        }
    }

    fn heap(&self) -> usize {
        usize::try_from(self.rt.memory_usage().malloc_size).unwrap_or(usize::MAX)
    }

    /// Runs `script` in a fresh context (the prepared one). Never panics on the script's account.
    /// The context is gone when this returns, but its garbage is not: call [`Runtime::recycle`]
    /// before the next run (after replying, so that the caller does not wait for it).
    pub(super) fn run(&self, script: &Script) -> Result<Outcome> {
        let started = Instant::now();
        let limit = script
            .time_limit
            .map_or(self.time_limit, |limit| limit.min(self.time_limit));
        check(script)?;
        let wrapper = Wrapper::of(script.kind, &script.source);
        let source = wrapper.wrap(&script.source);
        let logs = Rc::new(RefCell::new(Logs::new(self.max_log_bytes)));

        if self.poisoned.get() {
            return Err(self.error(Failure::NoContext, limit));
        }
        self.watchdog.arm(started.checked_add(limit));
        // Taken, never put back: a context serves one run.
        let fresh = self.prepared.borrow_mut().take();
        let context = match fresh {
            Some(context) => Ok(context),
            None => Context::custom::<Intrinsics>(&self.rt),
        };
        let ran = match context {
            Ok(context) => {
                context.with(|ctx| self.in_context(&ctx, script, &source, wrapper, &logs))
            }
            Err(_) => {
                self.poisoned.set(true);
                Err(Failure::NoContext)
            }
        };
        self.watchdog.disarm();
        self.long_run.set(started.elapsed() >= SHORT_RUN);
        if self.watchdog.tripped() {
            return Err(SandboxError::TimedOut { limit });
        }
        let json = ran.map_err(|failure| self.error(failure, limit))?;
        let value = json_value(json.as_deref())?;
        Ok(Outcome {
            value,
            logs: logs.borrow_mut().take_lines(),
            elapsed: started.elapsed(),
        })
    }

    /// Readies the runtime for the next run, or says why it should be replaced: the run left
    /// promise jobs queued (the deadline cut them short), or the heap kept more than a little
    /// after a collection. The garbage is collected after a run that was not short, or after
    /// [`RUNS_PER_COLLECTION`] short ones; then the next run's context is prepared.
    pub(super) fn recycle(&self) -> Option<&'static str> {
        if self.poisoned.get() {
            return Some("QuickJS could not create a context");
        }
        if self.rt.is_job_pending() {
            return Some("promise jobs were left queued");
        }
        let runs = self.uncollected.get().saturating_add(1);
        self.uncollected.set(runs);
        if runs >= RUNS_PER_COLLECTION || self.long_run.get() || self.memory_limit < BATCH_FLOOR {
            let heap = self.collect();
            let slack = RETIRE_SLACK.min(self.memory_limit / 4);
            if heap > self.baseline.saturating_add(slack) {
                return Some("the heap kept garbage after the run");
            }
        }
        self.prepare();
        if self.poisoned.get() {
            return Some("QuickJS could not create a context");
        }
        None
    }

    /// Frees the runtime if that is safe, and leaks it otherwise; says which.
    ///
    /// Freeing a runtime that still holds objects once its contexts and jobs are gone (a leak on
    /// one of QuickJS's out-of-memory paths, say) fails an assertion in `JS_FreeRuntime`, which
    /// aborts the whole process; so does collecting a heap that failed to create a context. Such a
    /// runtime is leaked instead, loudly: its memory is lost, the aggregator is not.
    pub(super) fn dispose(self) -> bool {
        // The prepared context is garbage like any other.
        drop(self.prepared.borrow_mut().take());
        let safe = !self.poisoned.get() && {
            self.rt.run_gc();
            let usage = self.rt.memory_usage();
            // Queued jobs are freed by `JS_FreeRuntime` before it checks, and so are what only
            // they hold.
            self.rt.is_job_pending()
                || (usage.obj_count <= self.resident_objects && usage.js_func_count == 0)
        };
        if safe {
            drop(self);
        } else {
            tracing::error!(
                "leaking a JavaScript runtime that QuickJS could not free without aborting"
            );
            std::mem::forget(self);
        }
        safe
    }

    fn error(&self, failure: Failure, limit: Duration) -> SandboxError {
        match failure {
            Failure::Thrown { message, stack } => SandboxError::Exception { message, stack },
            Failure::OutOfMemory => SandboxError::OutOfMemory {
                limit: self.memory_limit,
            },
            Failure::Interrupted => SandboxError::TimedOut { limit },
            Failure::Output(why) => SandboxError::Output(why),
            Failure::NoContext => {
                SandboxError::Internal("QuickJS could not create a context".to_owned())
            }
        }
    }

    /// Everything that touches JS values; returns the result's JSON text (`None`: `undefined`).
    fn in_context<'js>(
        &self,
        ctx: &Ctx<'js>,
        script: &Script,
        source: &str,
        wrapper: Wrapper,
        logs: &Rc<RefCell<Logs>>,
    ) -> std::result::Result<Option<String>, Failure> {
        let setup = |e| caught(ctx, e, wrapper);
        console::install(ctx, logs).map_err(setup)?;
        modules::install(ctx, &self.modules).map_err(setup)?;
        define_globals(ctx, &script.globals).map_err(setup)?;

        let mut options = EvalOptions::default();
        // Sloppy mode, as a browser runs a classic script:
        // `x = 1` without a declaration works. A body may still say "use strict".
        options.strict = false;
        options.filename = Some(FILE_NAME.to_owned());
        let value: Value = ctx
            .eval_with_options(source, options)
            .map_err(|e| caught(ctx, e, wrapper))?;

        // Jobs queued by the script (`.then` callbacks, `queueMicrotask`) run now, within the
        // deadline, as they would before a browser's next task.
        while ctx.execute_pending_job() {
            if self.watchdog.expired() {
                return Err(Failure::Interrupted);
            }
        }
        let value = match value.as_promise() {
            None => value,
            Some(promise) => match promise.result::<Value>() {
                None => {
                    return Err(Failure::Output(
                        "is a promise that never settled (scripts run synchronously)".to_owned(),
                    ));
                }
                Some(settled) => settled.map_err(|e| caught(ctx, e, wrapper))?,
            },
        };
        to_json(ctx, value, self.max_output_bytes)
    }
}

/// How a script's source is wrapped: how far that moves the columns of its first line, and the
/// last line that is the user's.
#[derive(Debug, Clone, Copy)]
struct Wrapper {
    prefix: &'static str,
    suffix: &'static str,
    last_line: usize,
}

impl Wrapper {
    fn of(kind: ScriptKind, source: &str) -> Self {
        let last_line = source.matches('\n').count() + 1;
        // The suffix starts on a new line so that a trailing `// comment` cannot swallow it.
        // Source that closes the wrapper early gains nothing: it runs in the same fresh context.
        match kind {
            ScriptKind::Body => Self {
                prefix: "(function(){",
                suffix: "\n})()",
                last_line,
            },
            ScriptKind::Program => Self {
                prefix: "",
                suffix: "\n",
                last_line,
            },
            ScriptKind::Expression => Self {
                prefix: "(",
                suffix: "\n)",
                last_line,
            },
        }
    }

    fn wrap(self, source: &str) -> String {
        let mut wrapped =
            String::with_capacity(self.prefix.len() + source.len() + self.suffix.len());
        wrapped.push_str(self.prefix);
        wrapped.push_str(source);
        wrapped.push_str(self.suffix);
        wrapped
    }
}

fn check(script: &Script) -> Result<()> {
    if script.source.contains('\0') {
        return Err(SandboxError::Input(
            "the source holds a NUL character".to_owned(),
        ));
    }
    match script.globals.keys().find(|name| !is_identifier(name)) {
        Some(name) => Err(SandboxError::Input(format!(
            "the global {name:?} is not an identifier that can be defined"
        ))),
        None => Ok(()),
    }
}

/// Words that cannot name a global: reserved words, the non-writable globals, and `__proto__`
/// (setting it on the global object would replace the global object's prototype).
const NOT_NAMES: &[&str] = &[
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "undefined",
    "NaN",
    "Infinity",
    "__proto__",
];

/// Whether `name` can be used as a global variable in code (`Unicode letters, digits, `_`, `$`).
pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_' || first == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        && !NOT_NAMES.contains(&name)
}

/// Defines the globals from a single `JSON.parse` of their values: data, never code.
fn define_globals(ctx: &Ctx<'_>, globals: &Map<String, Json>) -> rquickjs::Result<()> {
    if globals.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(globals)
        .map_err(|e| JsError::new_from_js_message("globals", "JSON", e.to_string()))?;
    let parsed = ctx.json_parse(json)?;
    let Some(values) = parsed.as_object() else {
        return Err(JsError::new_from_js("globals", "object"));
    };
    let global = ctx.globals();
    for name in globals.keys() {
        let value: Value = values.get(name.as_str())?;
        global.set(name.as_str(), value)?;
    }
    Ok(())
}

/// `JSON.stringify` with BigInts as their decimal strings, capped at `max_bytes`.
fn to_json<'js>(
    ctx: &Ctx<'js>,
    value: Value<'js>,
    max_bytes: usize,
) -> std::result::Result<Option<String>, Failure> {
    let text = match stringify(ctx, value) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        Err(JsError::Exception) => {
            return Err(match thrown(ctx, ctx.catch(), None) {
                Failure::Thrown { message, .. } => {
                    Failure::Output(format!("cannot be converted to JSON: {message}"))
                }
                other => other,
            });
        }
        Err(JsError::Allocation) => return Err(Failure::OutOfMemory),
        Err(e) => return Err(Failure::Output(format!("cannot be read: {e}"))),
    };
    if text.len() > max_bytes {
        return Err(Failure::Output(format!(
            "is {} bytes of JSON, more than the {max_bytes} allowed",
            text.len()
        )));
    }
    Ok(Some(text))
}

/// The serde_json value of the result's JSON text (`None`, i.e. `undefined`, is `null`).
fn json_value(text: Option<&str>) -> Result<Json> {
    match text {
        None => Ok(Json::Null),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| SandboxError::Output(format!("cannot be read as JSON: {e}"))),
    }
}

/// What an error from rquickjs means, taking the pending exception if it is one.
fn caught(ctx: &Ctx<'_>, error: JsError, wrapper: Wrapper) -> Failure {
    match error {
        JsError::Exception => thrown(ctx, ctx.catch(), Some(wrapper)),
        JsError::Allocation => Failure::OutOfMemory,
        other => Failure::Thrown {
            message: other.to_string(),
            stack: None,
        },
    }
}

/// What a thrown value means. `wrapper` is given when the stack's positions are in the user's
/// code (and so need the wrapper's offset taken off).
fn thrown<'js>(ctx: &Ctx<'js>, value: Value<'js>, wrapper: Option<Wrapper>) -> Failure {
    if let Some(failure) = fatal(&value) {
        return failure;
    }
    let Some(error) = value.as_object().filter(|object| object.is_error()) else {
        return Failure::Thrown {
            message: truncated(console::text(ctx, value).unwrap_or_default()),
            stack: None,
        };
    };
    let name = property(error, "name");
    let message = property(error, "message").unwrap_or_default();
    let stack = property(error, "stack")
        .filter(|stack| !stack.is_empty())
        .map(|stack| match wrapper {
            Some(wrapper) => user_positions(&stack, wrapper),
            None => stack,
        });
    let mut text = match name {
        Some(name) if !name.is_empty() => format!("{name}: {message}"),
        _ => message,
    };
    if let Some((line, column)) = stack.as_deref().and_then(first_position) {
        text = format!("{text} (line {line}, column {column})");
    }
    Failure::Thrown {
        message: truncated(text),
        stack: stack.map(truncated),
    }
}

/// The first `code:LINE:COLUMN` of a stack trace.
fn first_position(stack: &str) -> Option<(usize, usize)> {
    stack
        .lines()
        .find_map(position)
        .map(|(_, line, column)| (line, column))
}

/// The stack in the user's terms: the columns of line 1 moved back by the wrapper's prefix, and
/// without the frame of the wrapper's own call (on the line after the user's last).
fn user_positions(stack: &str, wrapper: Wrapper) -> String {
    let mut out = String::with_capacity(stack.len());
    for frame in stack.lines() {
        let Some((at, line, column)) = position(frame) else {
            out.push_str(frame);
            out.push('\n');
            continue;
        };
        if line > wrapper.last_line && frame.trim_start().starts_with("at <eval>") {
            continue;
        }
        if line == 1 {
            let column = column.saturating_sub(wrapper.prefix.len()).max(1);
            let rest = &frame[at..];
            let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
            // `code:1:` then the column's digits.
            let skip = FILE_NAME.len() + 3;
            let tail = &rest[skip + digits(&rest[skip..])..];
            out.push_str(&frame[..at]);
            out.push_str(&format!("{FILE_NAME}:1:{column}"));
            out.push_str(tail);
        } else {
            out.push_str(frame);
        }
        out.push('\n');
    }
    out
}

/// Where `code:LINE:COLUMN` starts in a stack frame, and its numbers.
fn position(frame: &str) -> Option<(usize, usize, usize)> {
    let at = frame.find(&format!("{FILE_NAME}:"))?;
    let rest = &frame[at + FILE_NAME.len() + 1..];
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let line = numbers.next()?.parse().ok()?;
    let column = numbers.next()?.parse().ok()?;
    Some((at, line, column))
}

fn truncated(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use rquickjs::{Object, Persistent};

    use super::*;

    #[test]
    fn a_runtime_holding_objects_is_leaked_not_freed() {
        // Freeing it would fail QuickJS's `list_empty(&rt->gc_obj_list)` assertion and abort.
        let runtime = Runtime::new(&SandboxConfig::default()).unwrap();
        let context = Context::custom::<Intrinsics>(&runtime.rt).unwrap();
        let kept = context.with(|ctx| {
            let object = Object::new(ctx.clone()).unwrap();
            Persistent::save(&ctx, object)
        });
        drop(context);
        assert!(!runtime.dispose());
        // The runtime is leaked, so the value it holds stays valid and may be dropped.
        drop(kept);
    }

    #[test]
    fn a_clean_runtime_is_freed() {
        let runtime = Runtime::new(&SandboxConfig::default()).unwrap();
        assert!(runtime.run(&Script::body("return [1, {}];")).is_ok());
        assert!(runtime.dispose());
    }
}
