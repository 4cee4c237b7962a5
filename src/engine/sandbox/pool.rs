//! The worker threads. Each owns one QuickJS runtime (which cannot leave its thread) and takes
//! scripts from one shared channel; a reply goes back on a oneshot channel (async callers) or a
//! std channel (blocking callers).
//!
//! The queue is unbounded: submitting never blocks the caller, and each queued script costs only
//! its own memory. A worker starts its runtime before taking its first script, and replaces it
//! after a run that left it unhealthy (after replying, so the caller does not wait for it). If a
//! run panics (a bug of ours), the runtime is in an unknown state: it is leaked, not freed, since
//! QuickJS aborts the process when it frees a heap it finds inconsistent.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::runtime::Runtime;
use super::{Outcome, Result, SandboxConfig, SandboxError, Script};

/// Native stack a worker thread gets beyond the interpreter's limit: QuickJS measures its limit
/// from where the runtime was created, and the Rust frames around it (the worker loop, `console`
/// callbacks, the conversions) need their share.
const THREAD_STACK_MARGIN: usize = 2 * 1024 * 1024;

/// Where a run's result goes.
pub(super) enum Reply {
    Async(oneshot::Sender<Result<Outcome>>),
    Blocking(SyncSender<Result<Outcome>>),
}

impl Reply {
    /// Whether nobody waits for the result any more (an async caller dropped its future).
    fn abandoned(&self) -> bool {
        match self {
            Reply::Async(tx) => tx.is_closed(),
            Reply::Blocking(_) => false,
        }
    }

    fn send(self, result: Result<Outcome>) {
        // A caller that went away in the meantime does not want the result: dropping it is right.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

struct Job {
    script: Script,
    reply: Reply,
}

pub(super) struct Pool {
    jobs: Sender<Job>,
    config: SandboxConfig,
}

impl Pool {
    pub(super) fn start(config: SandboxConfig) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        // The workers share the receiving end; the one holding the lock waits for the next job.
        // The receiver lives only in the workers, so if none could start, submitting fails with
        // `Closed` rather than queueing forever.
        let queue = Arc::new(Mutex::new(queue));
        let stack_size = config.stack_limit.saturating_add(THREAD_STACK_MARGIN);
        for i in 0..config.threads.max(1) {
            let queue = Arc::clone(&queue);
            let config = config.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("js-sandbox-{i}"))
                .stack_size(stack_size)
                .spawn(move || work(&queue, &config));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a JavaScript sandbox worker");
            }
        }
        Self { jobs, config }
    }

    pub(super) fn config(&self) -> &SandboxConfig {
        &self.config
    }

    pub(super) fn submit(&self, script: Script, reply: Reply) -> Result<()> {
        self.jobs
            .send(Job { script, reply })
            .map_err(|_| SandboxError::Closed)
    }
}

/// Takes the next job; `None` once every `Sandbox` is gone.
fn next(queue: &Mutex<Receiver<Job>>) -> Option<Job> {
    // Nothing panics while holding the lock, but a poisoned lock still guards a sound receiver.
    let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    queue.recv().ok()
}

fn work(queue: &Mutex<Receiver<Job>>, config: &SandboxConfig) {
    // Runtimes are created here, in the loop's frame, so that the stack QuickJS measures its limit
    // from is the same for every replacement.
    let mut runtime = start(config);
    while let Some(job) = next(queue) {
        if job.reply.abandoned() {
            continue;
        }
        if runtime.is_none() {
            runtime = start(config);
        }
        let Some(current) = runtime.as_ref() else {
            job.reply.send(Err(SandboxError::Internal(
                "the JavaScript runtime could not be started".to_owned(),
            )));
            continue;
        };
        let (result, retire) = match catch_unwind(AssertUnwindSafe(|| current.run(&job.script))) {
            Ok(Err(SandboxError::OutOfMemory { limit })) => (
                Err(SandboxError::OutOfMemory { limit }),
                Some("the run hit the memory limit"),
            ),
            Ok(result) => (result, None),
            Err(_) => {
                job.reply.send(Err(SandboxError::Internal(
                    "the worker panicked while running the script".to_owned(),
                )));
                // The runtime's state is unknown: neither collect nor free it.
                tracing::error!("a JavaScript run panicked; leaking its runtime");
                std::mem::forget(runtime.take());
                runtime = start(config);
                continue;
            }
        };
        job.reply.send(result);
        // The collection comes after the reply, and before the next job.
        let retire = retire.or_else(|| current.recycle());
        if let Some(reason) = retire {
            tracing::debug!(reason, "replacing a JavaScript runtime");
            // Free the old heap before allocating the new one.
            if let Some(old) = runtime.take() {
                old.dispose();
            }
            runtime = start(config);
        }
    }
    if let Some(runtime) = runtime {
        runtime.dispose();
    }
}

fn start(config: &SandboxConfig) -> Option<Runtime> {
    match Runtime::new(config) {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            tracing::error!(error = %e, "could not start a JavaScript runtime");
            None
        }
    }
}
