//! The worker threads. Each owns one QuickJS runtime (which cannot leave its thread) and takes
//! scripts from one shared queue that serves owners in turn (`fairness`); a reply goes back on a
//! oneshot channel (async callers) or a std channel (blocking callers). A script whose owner has
//! spent their budget of worker time is answered at once, without running.
//!
//! The queue is unbounded: submitting never blocks the caller, and each queued script costs only
//! its own memory. A worker starts its runtime before taking its first script, and replaces it
//! after a run that left it unhealthy (after replying, so the caller does not wait for it). If a
//! run panics (a bug of ours), the runtime is in an unknown state: it is leaked, not freed, since
//! QuickJS aborts the process when it frees a heap it finds inconsistent.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::fairness::{self, Budgets, FairQueue};
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

/// What the workers share: the queue, the owners' budgets, and whether the pool is closed.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
}

struct State {
    queue: FairQueue<Job>,
    budgets: Budgets,
    /// No more jobs: every `Sandbox` is gone, or no worker could start.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but a poisoned lock still guards sound state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct Pool {
    shared: Arc<Shared>,
    config: SandboxConfig,
}

impl Pool {
    pub(super) fn start(config: SandboxConfig) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: FairQueue::default(),
                budgets: Budgets::new(config.owner_budget),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let stack_size = config.stack_limit.saturating_add(THREAD_STACK_MARGIN);
        let mut started = 0;
        for i in 0..config.threads.max(1) {
            let shared = Arc::clone(&shared);
            let config = config.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("js-sandbox-{i}"))
                .stack_size(stack_size)
                .spawn(move || work(&shared, &config));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    tracing::error!(error = %e, "could not start a JavaScript sandbox worker")
                }
            }
        }
        // With no worker, submitting fails with `Closed` rather than queueing forever.
        shared.lock().closed = started == 0;
        Self { shared, config }
    }

    pub(super) fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Queues `script` for the owner of the calling task (`fairness::as_owner`).
    pub(super) fn submit(&self, script: Script, reply: Reply) -> Result<()> {
        let owner = fairness::current_owner();
        let mut state = self.shared.lock();
        if state.closed {
            return Err(SandboxError::Closed);
        }
        state.queue.push(owner, Job { script, reply });
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// Takes the next job that may run, answering those whose owner spent their budget; `None` once
/// the pool is closed and nothing is left to run.
fn next(shared: &Shared) -> Option<(Arc<str>, Job)> {
    let mut state = shared.lock();
    loop {
        match state.queue.pop() {
            Some((owner, job)) => match state.budgets.spent(&owner, Instant::now()) {
                Some(budget) => job.reply.send(Err(SandboxError::OverBudget {
                    budget,
                    window: fairness::BUDGET_WINDOW,
                })),
                None => return Some((owner, job)),
            },
            None if state.closed => return None,
            None => {
                state = shared
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

fn work(shared: &Shared, config: &SandboxConfig) {
    // Runtimes are created here, in the loop's frame, so that the stack QuickJS measures its limit
    // from is the same for every replacement.
    let mut runtime = start(config);
    while let Some((owner, job)) = next(shared) {
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
        let began = Instant::now();
        let ran = catch_unwind(AssertUnwindSafe(|| current.run(&job.script)));
        let now = Instant::now();
        shared
            .lock()
            .budgets
            .charge(&owner, now.duration_since(began), now);
        let (result, retire) = match ran {
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
