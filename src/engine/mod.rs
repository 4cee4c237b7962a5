//! The task engine: firings become executions that walk the task's graph, every step recorded as
//! an event, surviving crashes without running a side effect twice.
//!
//! Layout:
//! - this file: `Engine`, the one entry point for every firing (`fire`), the scheduler (many runs
//!   at once, runs of one task in order), resuming pending runs on start, waiting for a run;
//! - `run`: one execution and the step protocol; `graph`: the order and reachability of nodes;
//!   `definitions`: the tasks' definitions, decoded once for all their runs;
//! - `template`: `{{ expression }}` in node configs; `vars`: the variables a run sees; `redact`:
//!   the run's secrets masked in whatever it records; `trigger_data`: what a run sees of its
//!   trigger (event logs decoded and enriched);
//! - `nodes/`: one module per node type; `sandbox`: JavaScript (one QuickJS runtime per worker
//!   thread, in `sandbox/runtime.rs`); `http`: guarded outbound HTTP;
//! - `owners`: one owner's share of the engine (running at once, queued at most); `claims`: on a
//!   replicated log, which replica runs an execution;
//! - `preview`: `RunTrigger`, `RunNodeWithInputs`, `SimulateTask` (nothing persisted but the
//!   user operations of a write sent on request); `fees`: `EstimateFees`.
//!
//! The queue is the log: an execution queued and not finished is pending (`q:` rows of the
//! executions projection). On fjall the engine learns of new ones from `fire` and, on start,
//! from the projection. On a replicated log every replica's engine runs executions, each claimed
//! by one replica through the log (`claims`): `fire` only wakes the claimer, which looks at what
//! is pending whenever the local database moves and every `RESUME_EVERY`
//! (`spawn_claimer`), claims what it may take, and runs it.
//!
//! A run belongs to the engine, not to the RPC that asked for it: a client that gives up does
//! not stop it, and a retried blocking `TriggerTask` waits for the first run and returns its
//! final result.

pub mod claims;
pub mod definitions;
pub mod fees;
pub mod graph;
pub mod http;
pub mod nodes;
pub mod owners;
pub mod preview;
pub mod redact;
pub mod run;
pub mod sandbox;
pub mod template;
pub mod trigger_data;
pub mod vars;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::execution::Firing;
use events::{Command, Expected};
use projections::executions::ExecutionRow;
use tokio::sync::{Notify, Semaphore};

use crate::chain::Chain;
use crate::clock::{new_id, now_ms, now_ms_i64};
use crate::config::EngineConfig;
use crate::domain::bounds::ValueBounds;
use crate::domain::firing::{self, Refusal};
use crate::secret_box::SecretBox;
use crate::store::{Decision, Loaded, Settled, Store};

/// What nodes use to do their work.
pub struct Tools {
    pub sandbox: sandbox::Sandbox,
    pub http: http::HttpClient,
    pub chain: Option<Chain>,
    pub config: EngineConfig,
    /// What a node's output and rendered config may hold (`limits`): past it, a failed step.
    pub bounds: ValueBounds,
    /// The users' wallets' side (`wallet::submit::Wallets`): `None` without a chain.
    pub writes: Option<nodes::write::Writes>,
    /// What a firing's data and input may hold (`limits.max_values_bytes`).
    pub firing_bounds: ValueBounds,
    /// The chain the aggregator serves (`chain_id`), for what steps report of it.
    pub chain_id: u64,
    /// Token metadata (known lists, then the chain), for enriching transfers.
    pub tokens: Arc<crate::token_metadata::TokenDirectory>,
}

/// A firing to accept: the task, who reports it, what fired.
#[derive(Debug, Clone)]
pub struct FireRequest {
    pub task_id: String,
    /// The owner (client firings) or the operators' address.
    pub actor: String,
    pub firing: Firing,
    /// How long the dedup key holds: `None` forever (operators' firings, explicit keys).
    pub window_ms: Option<u64>,
}

/// A firing accepted now, or before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    Queued { execution_id: String },
    Deduplicated { execution_id: String },
}

impl Fired {
    pub fn execution_id(&self) -> &str {
        match self {
            Self::Queued { execution_id } | Self::Deduplicated { execution_id } => execution_id,
        }
    }
}

/// What `fire` decided on the task as loaded.
enum FireDecision {
    /// The dedup key was seen: the execution it opened.
    Seen(String),
    /// Accepted: the execution it opens, and the task's owner.
    Accepted(String, String),
    /// Refused, with the task's completion when it is past its expiry.
    Refused(Refusal, Option<Command>),
}

#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// The firing's data is past the bounds of what may be stored (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] events::Error),
    #[error("the task changed concurrently too many times; retry")]
    Contended,
    /// The owner has `engine.owner_pending` executions queued or running (RESOURCE_EXHAUSTED).
    #[error(
        "you have {0} executions queued or running, the most the engine takes from one owner; fire again once some have finished"
    )]
    Busy(usize),
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

struct Inner {
    store: Store,
    tools: Tools,
    sealer: SecretBox,
    permits: Semaphore,
    /// Each owner's executions: running at once, queued at most.
    owners: owners::Owners,
    /// Per task, its queued runs (execution, owner) in order; the front one is running (runs of
    /// one task in order).
    lanes: std::sync::Mutex<HashMap<String, std::collections::VecDeque<(String, String)>>>,
    /// The tasks' definitions, decoded once for all their runs.
    definitions: definitions::Definitions,
    /// Waiters for runs to finish.
    finished: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
    /// Spawned runs, so that shutdown can wait for them.
    running: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Turns true at shutdown: no more runs start, the background loops end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The expiry sweep, awaited at shutdown (it holds the store).
    sweep: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether this process writes the log (always, on fjall; on a replicated log, while it
    /// holds the writer's lease): the expiry sweep appends only then.
    leads: tokio::sync::watch::Receiver<bool>,
    /// The executions scheduled here and not finished: each is scheduled once, whether `fire`
    /// or the claimer (`spawn_claimer`) sees it first.
    scheduled: std::sync::Mutex<std::collections::HashSet<String>>,
    /// On a replicated log: how this replica claims executions (`None` on fjall: nothing is
    /// claimed).
    claims: Option<claims::ClaimSettings>,
    /// Wakes the claimer (a firing accepted here).
    claimer: Notify,
}

/// How often the claimer on a replicated log looks for executions to take even when nothing
/// moved (a claim lapses with time, not with an event).
const RESUME_EVERY: Duration = Duration::from_millis(250);
/// The least time between two looks of the claimer: under a write load the local database moves
/// at every commit.
const CLAIM_GAP: Duration = Duration::from_millis(20);

impl Engine {
    /// Builds the engine and resumes the pending executions.
    #[expect(
        clippy::too_many_arguments,
        reason = "the engine's collaborators, each built once in server::open"
    )]
    pub async fn start(
        store: Store,
        config: EngineConfig,
        limits: &crate::config::LimitsConfig,
        sealer: SecretBox,
        chain: Option<Chain>,
        chain_id: u64,
        tokens: Arc<crate::token_metadata::TokenDirectory>,
        writes: Option<nodes::write::Writes>,
        leads: tokio::sync::watch::Receiver<bool>,
        claims: Option<claims::ClaimSettings>,
    ) -> anyhow::Result<Self> {
        let threads = if config.js_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.js_threads
        };
        let sandbox = sandbox::Sandbox::new(sandbox::SandboxConfig {
            threads,
            time_limit: config.js_time_limit,
            memory_limit: config.js_memory_mib * 1024 * 1024,
            modules: Arc::new(sandbox::JsModules::load(
                &config
                    .js_modules_dir
                    .clone()
                    .unwrap_or_else(sandbox::default_modules_dir),
            )),
            owner_budget: (!config.js_owner_budget.is_zero()).then_some(config.js_owner_budget),
            ..sandbox::SandboxConfig::default()
        });
        let http = http::HttpClient::new(config.http.clone())?;
        let engine = Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.concurrency.max(1)),
                owners: owners::Owners::new(config.owner_concurrency, config.owner_pending),
                store,
                tools: Tools {
                    sandbox,
                    http,
                    chain,
                    config,
                    bounds: ValueBounds::output(limits),
                    firing_bounds: ValueBounds::values(limits),
                    chain_id,
                    tokens,
                    writes,
                },
                sealer,
                lanes: std::sync::Mutex::new(HashMap::new()),
                definitions: definitions::Definitions::default(),
                finished: std::sync::Mutex::new(HashMap::new()),
                running: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
                stopping: tokio::sync::watch::Sender::new(false),
                sweep: std::sync::Mutex::new(None),
                leads,
                scheduled: std::sync::Mutex::new(std::collections::HashSet::new()),
                claims,
                claimer: Notify::new(),
            }),
        };
        engine.spawn_expiry_sweep();
        if engine.inner.claims.is_some() {
            // A replicated log: every replica claims what is pending and runs it.
            engine.spawn_claimer();
            return Ok(engine);
        }
        let pending = engine.inner.store.views.pending_executions()?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending executions");
        }
        for (execution_id, task_id) in pending {
            let owner = engine.owner_of(&task_id)?;
            engine.schedule(task_id, execution_id, owner).await;
        }
        Ok(engine)
    }

    /// On a replicated log: looks for executions to claim now, whenever the local database
    /// moves or a firing is accepted here, and every `RESUME_EVERY`.
    fn spawn_claimer(&self) {
        let engine = self.clone();
        let Some(mut wake) = self.inner.claims.as_ref().map(|c| c.wake.clone()) else {
            return;
        };
        let mut stopping = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                if let Err(e) = engine.claim_pending().await {
                    tracing::warn!(error = %e, "pending executions could not be read");
                }
                tokio::select! {
                    () = tokio::time::sleep(RESUME_EVERY) => {}
                    changed = wake.changed() => if changed.is_err() { return },
                    () = engine.inner.claimer.notified() => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                tokio::time::sleep(CLAIM_GAP).await;
            }
        });
    }

    /// Schedules the pending executions this replica takes now (`claims::choose`); each is
    /// claimed once it has a slot to run in (`run_one`).
    async fn claim_pending(&self) -> Result<(), events::Error> {
        let Some(settings) = &self.inner.claims else {
            return Ok(());
        };
        if *self.inner.stopping.borrow() {
            return Ok(());
        }
        let config = &self.inner.tools.config;
        let chosen = {
            // Held across the read: a run that finishes removes itself from `scheduled` only
            // after its end is in the projection, so what this read lists is not finished.
            let mut scheduled = self
                .inner
                .scheduled
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let pending = self.inner.store.views.pending_claims()?;
            let leads = *self.inner.leads.borrow();
            let takes = |task_id: &str| leads || !self.sends_user_ops(task_id);
            let room = claims::Room {
                me: &settings.replica,
                now_ms: now_ms(),
                scheduled: &scheduled,
                serial_per_task: config.serial_per_task,
                owner_concurrency: config.owner_concurrency.max(1),
                free: config.concurrency.max(1).saturating_sub(scheduled.len()),
                takes: &takes,
            };
            let chosen = claims::choose(&pending, &room, |task_id| self.owner_of(task_id).ok());
            for (execution_id, _, _) in &chosen {
                scheduled.insert(execution_id.clone());
            }
            chosen
        };
        for (execution_id, task_id, owner) in chosen {
            self.enqueue(task_id, execution_id, owner).await;
        }
        Ok(())
    }

    /// Whether the task's nodes send user operations (a write node, or a loop of them); a task
    /// gone or unreadable counts as sending, so that only the writer runs it (to its end). The
    /// definition comes from the engine's cache: each claim pass asks it of every pending run.
    fn sends_user_ops(&self, task_id: &str) -> bool {
        match self.inner.definitions.get(&self.inner.store, task_id) {
            Ok(Some(definition)) => definition
                .nodes
                .iter()
                .any(|node| node.config.as_ref().is_some_and(nodes::is_write)),
            _ => true,
        }
    }

    /// Whose a pending execution's task is (empty for a task gone meanwhile: its run then
    /// ends on the missing task), for the per-owner queues.
    fn owner_of(&self, task_id: &str) -> Result<String, events::Error> {
        Ok(self
            .inner
            .store
            .views
            .task(task_id)?
            .map(|row| row.owner)
            .unwrap_or_default())
    }

    pub fn tools(&self) -> &Tools {
        &self.inner.tools
    }

    /// The one entry point for every firing: durable dedup (a key seen before returns its first
    /// execution, also after a restart), then whether the task may run, then the firing on the
    /// task's stream against its version and the execution's stream opened, in one command
    /// (`Store::decide_and_append`).
    pub async fn fire(&self, request: FireRequest) -> Result<Fired, FireError> {
        let store = &self.inner.store;
        self.check_firing(&request.firing)
            .map_err(FireError::Invalid)?;
        let key = format!("fire:{}", request.firing.dedup_key);
        let task_stream = events::stream::task(&request.task_id);
        let settled = store
            .decide_and_append(
                |store| {
                    let now = now_ms();
                    let seen = store.log.idempotent_result(&key, now)?;
                    let row = match seen {
                        Some(_) => None,
                        None => store.views.task(&request.task_id)?,
                    };
                    Ok::<_, FireError>(Loaded {
                        version: row.as_ref().map_or(0, |r| r.version),
                        state: (now, seen, row),
                    })
                },
                |loaded| {
                    let version = loaded.expected();
                    let (now, seen, row) = loaded.state;
                    if let Some(refs) = seen {
                        return Ok(Decision::Unchanged(FireDecision::Seen(execution_of(&refs))));
                    }
                    let Some(row) = row else {
                        return Err(FireError::Refused(Refusal::NotFound));
                    };
                    if !self.inner.owners.admits(&row.owner) {
                        return Err(FireError::Busy(self.inner.owners.pending_limit()));
                    }
                    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
                    let execution_id = new_id();
                    match firing::accept(&row, &execution_id, request.firing.clone(), now_i) {
                        Ok(accepted) => {
                            let command = Command::new(request.actor.clone(), now)
                                .idempotent(key.clone(), request.window_ms)
                                .append(task_stream.clone(), version, accepted.task_events)
                                .append(
                                    events::stream::execution(&execution_id),
                                    Expected::NoStream,
                                    [accepted.execution_event],
                                );
                            Ok(Decision::Append(
                                command,
                                FireDecision::Accepted(execution_id, row.owner.clone()),
                            ))
                        }
                        Err(refusal) => {
                            let completed = firing::expiry(&row, now_i).map(|completed| {
                                Command::new("system", now).append(
                                    task_stream.clone(),
                                    version,
                                    [completed],
                                )
                            });
                            Ok(Decision::Unchanged(FireDecision::Refused(
                                refusal, completed,
                            )))
                        }
                    }
                },
            )
            .await;
        match settled {
            Ok(Settled::Unchanged(FireDecision::Seen(execution_id))) => {
                Ok(Fired::Deduplicated { execution_id })
            }
            Ok(Settled::Unchanged(FireDecision::Refused(refusal, completed))) => {
                if let Some(command) = completed {
                    // Past its expiry: recorded as completed, whether or not this lands.
                    let _ = store.log.append(command).await;
                }
                Err(FireError::Refused(refusal))
            }
            Ok(Settled::Unchanged(FireDecision::Accepted(..))) => Err(FireError::Contended),
            Ok(Settled::Appended(_, committed)) if committed.deduplicated => {
                Ok(Fired::Deduplicated {
                    execution_id: execution_of(&committed.events),
                })
            }
            Ok(Settled::Appended(FireDecision::Accepted(execution_id, owner), _)) => {
                metrics::counter!("executions_queued_total").increment(1);
                self.schedule(request.task_id.clone(), execution_id.clone(), owner)
                    .await;
                Ok(Fired::Queued { execution_id })
            }
            Ok(Settled::Appended(_, _) | Settled::Contended) => Err(FireError::Contended),
            Err(FireError::Storage(events::Error::StreamClosed { .. })) => {
                Err(FireError::Refused(Refusal::NotFound))
            }
            Err(e) => Err(e),
        }
    }

    /// The firing's data and the caller's input go into the execution's first event: bounded.
    fn check_firing(&self, firing: &Firing) -> Result<(), String> {
        let bounds = &self.inner.tools.firing_bounds;
        if let Some(output) = &firing.output {
            bounds.check("the trigger data", output)?;
        }
        if !firing.input.is_empty() {
            let input = serde_json::Value::Object(firing.input.clone().into_iter().collect());
            bounds.check("the trigger input", &input)?;
        }
        Ok(())
    }

    /// Queues a run, once (see `enqueue`); on a replicated log the claimer takes it (here or
    /// on another replica). Never waits itself: `fire` answers at once.
    async fn schedule(&self, task_id: String, execution_id: String, owner: String) {
        if self.inner.claims.is_some() {
            self.inner.claimer.notify_one();
            return;
        }
        if *self.inner.stopping.borrow() {
            return; // resumed at the next start
        }
        let fresh = self
            .inner
            .scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(execution_id.clone());
        if fresh {
            self.enqueue(task_id, execution_id, owner).await;
        }
    }

    /// Queues a run claimed in `scheduled`. With runs serial per task, each task has a lane: a
    /// queue drained in order by one worker at a time; otherwise each run goes on its own.
    /// Either way a run waits for a free slot of the engine's concurrency.
    async fn enqueue(&self, task_id: String, execution_id: String, owner: String) {
        if *self.inner.stopping.borrow() {
            self.unschedule(&execution_id);
            return;
        }
        self.inner.owners.queued(&owner);
        if !self.inner.tools.config.serial_per_task {
            let engine = self.clone();
            self.spawn(async move {
                engine.run_one(&task_id, &execution_id, &owner).await;
            })
            .await;
            return;
        }
        let start_worker = {
            let mut lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
            let lane = lanes.entry(task_id.clone()).or_default();
            lane.push_back((execution_id, owner));
            // A lane with one run just got it: nobody drains it yet.
            lane.len() == 1
        };
        if start_worker {
            let engine = self.clone();
            self.spawn(async move {
                engine.drain_lane(&task_id).await;
            })
            .await;
        }
    }

    /// Spawns a run (or a lane's worker) where `shutdown` can wait for it, first reaping the
    /// ones that have finished: a `JoinSet` keeps each finished task until it is joined.
    async fn spawn(&self, run: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut running = self.inner.running.lock().await;
        while let Some(finished) = running.try_join_next() {
            if let Err(error) = finished
                && error.is_panic()
            {
                tracing::error!(%error, "an execution's run panicked");
            }
        }
        running.spawn(run);
    }

    /// Runs a task's queued runs in order until its lane is empty.
    async fn drain_lane(&self, task_id: &str) {
        loop {
            let next = {
                let lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
                lanes.get(task_id).and_then(|lane| lane.front().cloned())
            };
            let Some((execution_id, owner)) = next else {
                return;
            };
            self.run_one(task_id, &execution_id, &owner).await;
            let mut lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(lane) = lanes.get_mut(task_id) {
                lane.pop_front();
                if lane.is_empty() {
                    lanes.remove(task_id);
                    return;
                }
            }
        }
    }

    /// Runs one execution once its owner has a free slot and the engine a free permit, with its
    /// scripts counted to its owner in the sandbox.
    async fn run_one(&self, task_id: &str, execution_id: &str, owner: &str) {
        let slot = self.inner.owners.slot(owner).await;
        let Ok(permit) = self.inner.permits.acquire().await else {
            self.inner.owners.finished(owner);
            self.unschedule(execution_id);
            return;
        };
        // On a replicated log the run is this replica's once its claim is in the log; once the
        // replica is stopping it claims nothing more (another replica takes the execution).
        if self.inner.claims.is_some() && *self.inner.stopping.borrow() {
            drop(permit);
            drop(slot);
            self.inner.owners.finished(owner);
            self.unschedule(execution_id);
            return;
        }
        let mut renewal = None;
        let cursor = match &self.inner.claims {
            None => None,
            Some(settings) => {
                let claimed = claims::claim(
                    &self.inner.store,
                    &settings.replica,
                    settings.ttl,
                    task_id,
                    execution_id,
                    owner,
                )
                .await;
                match claimed {
                    Ok(Some(cursor)) => {
                        renewal = Some(AbortOnDrop(tokio::spawn(claims::renew(
                            self.inner.store.clone(),
                            cursor.clone(),
                            settings.replica.clone(),
                            settings.ttl,
                            (
                                task_id.to_owned(),
                                execution_id.to_owned(),
                                owner.to_owned(),
                            ),
                        ))));
                        Some(cursor)
                    }
                    Ok(None) | Err(_) => {
                        if let Err(e) = claimed {
                            tracing::warn!(%execution_id, error = %e, "the execution could not be claimed; it is looked at again");
                        }
                        drop(permit);
                        drop(slot);
                        self.inner.owners.finished(owner);
                        self.unschedule(execution_id);
                        return;
                    }
                }
            }
        };
        let run = sandbox::as_owner(owner, self.execute(task_id, execution_id, cursor));
        match run.await {
            Ok(()) => {}
            Err(events::Error::Conflict { .. }) if renewal.is_some() => {
                tracing::warn!(%task_id, %execution_id, "another replica took the execution over (this replica's claim lapsed): this run stops");
            }
            Err(e) => {
                tracing::error!(%task_id, %execution_id, error = %e, "execution failed to record; it stays pending");
            }
        }
        drop(renewal);
        drop(permit);
        drop(slot);
        self.inner.owners.finished(owner);
        self.unschedule(execution_id);
        self.notify_finished(execution_id);
    }

    fn unschedule(&self, execution_id: &str) {
        self.inner
            .scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(execution_id);
    }

    fn notify_finished(&self, execution_id: &str) {
        let notify = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(execution_id);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Runs (or resumes) one execution from its stream (recording on `cursor`, the claim's, on
    /// a replicated log).
    async fn execute(
        &self,
        task_id: &str,
        execution_id: &str,
        cursor: Option<run::SharedCursor>,
    ) -> Result<(), events::Error> {
        let store = &self.inner.store;
        let stream = events::stream::execution(execution_id);
        let recorded = store.log.read_stream(&stream)?;
        let (queued, resume, finished) = run::resume_state(&recorded);
        if finished {
            return Ok(());
        }
        let Some(queued) = queued else {
            return Err(events::Error::Corrupt(format!(
                "execution {execution_id} has no ExecutionQueued"
            )));
        };
        let mut recorder = recorder(store, stream, recorded.len(), cursor.clone());
        let definition = self.inner.definitions.get(store, task_id)?;
        let row = store.views.task(task_id)?;
        let (Some(definition), Some(row)) = (definition, row) else {
            let error = "the task was deleted before this run started".to_owned();
            finish_without_running(&mut recorder, resume.started, task_id, execution_id, error)
                .await?;
            return Ok(());
        };
        let secrets = vars::secrets(store, &self.inner.sealer, &row.owner, Some(task_id))
            .unwrap_or_else(|e| {
                tracing::warn!(%task_id, error = %e, "secrets could not be opened for a run");
                Default::default()
            });
        // A resumed run sees its trigger as its first attempt recorded it.
        let trigger_data = match resume.recorded.get(&definition.trigger.id) {
            Some(step) => step
                .output
                .as_ref()
                .and_then(|o| o.data.clone())
                .unwrap_or(serde_json::Value::Null),
            None => trigger_data::run_data(&self.inner.tools, &definition, &queued.firing).await,
        };
        let vars = vars::with_secrets(
            vars::base(
                &definition,
                &row,
                &queued.firing,
                &trigger_data,
                execution_id,
                queued.index,
            ),
            secrets,
        );
        let walk = run::Walk {
            tools: &self.inner.tools,
            definition: &definition,
            firing: &queued.firing,
            task_id,
            execution_id,
            trigger_data,
            vars,
            refused: Default::default(),
            // Only write nodes use it: a graph without one skips the wallet's read.
            writes: if definition
                .nodes
                .iter()
                .any(|node| node.config.as_ref().is_some_and(nodes::is_write))
            {
                self.write_env(&row.owner, &row.wallet, nodes::write::WriteMode::Run)?
            } else {
                None
            },
            ops: HashMap::new(),
        };
        let ended = match walk
            .run(
                resume,
                &mut recorder,
                self.inner.tools.config.execution_limit,
            )
            .await
        {
            Ok(ended) => ended,
            Err(e) if recording_refused(&e) => {
                // Resuming would run into the same refusal at every start: the run ends here.
                tracing::warn!(%task_id, %execution_id, error = %e, "an execution's step could not be recorded; it is finished as failed");
                return self
                    .finish_unrecordable(task_id, execution_id, &e, cursor)
                    .await;
            }
            Err(e) => return Err(e),
        };
        metrics::counter!("executions_finished_total", "outcome" => match ended.outcome {
            events::execution::ExecutionOutcome::Success => "success",
            events::execution::ExecutionOutcome::Failed => "failed",
            events::execution::ExecutionOutcome::PartialSuccess => "partial_success",
        })
        .increment(1);
        Ok(())
    }

    /// Finishes as failed an execution whose next events the log refused (for what they hold,
    /// not for a failure of the disk), from what its stream holds now.
    async fn finish_unrecordable(
        &self,
        task_id: &str,
        execution_id: &str,
        cause: &events::Error,
        cursor: Option<run::SharedCursor>,
    ) -> Result<(), events::Error> {
        let store = &self.inner.store;
        let stream = events::stream::execution(execution_id);
        let recorded = store.log.read_stream(&stream)?;
        let (_, resume, finished) = run::resume_state(&recorded);
        if finished {
            return Ok(());
        }
        let mut recorder = recorder(store, stream, recorded.len(), cursor);
        let error = format!("the execution could not be recorded: {cause}");
        finish_without_running(&mut recorder, resume.started, task_id, execution_id, error).await?;
        metrics::counter!("executions_finished_total", "outcome" => "failed").increment(1);
        Ok(())
    }

    /// What the write nodes of `owner`'s runs from `wallet` need: `None` without a chain, or
    /// when the wallet is not registered (its salt and factory are unknown; the writes fail
    /// saying so).
    pub fn write_env(
        &self,
        owner: &str,
        wallet: &str,
        mode: nodes::write::WriteMode,
    ) -> Result<Option<nodes::write::WriteEnv>, events::Error> {
        let Some(writes) = &self.inner.tools.writes else {
            return Ok(None);
        };
        let (Ok(owner_address), Ok(wallet_address)) =
            (owner.parse::<alloy::primitives::Address>(), wallet.parse())
        else {
            return Ok(None);
        };
        let Some(row) = self
            .inner
            .store
            .views
            .wallet(&owner.to_lowercase(), &wallet.to_lowercase())?
        else {
            return Ok(None);
        };
        let (Ok(salt), Ok(factory)) = (
            crate::wallet::parse_salt(&row.salt),
            row.factory.parse::<alloy::primitives::Address>(),
        ) else {
            return Ok(None);
        };
        Ok(Some(nodes::write::WriteEnv {
            wallets: writes.wallets.clone(),
            target: nodes::write::WriteTarget {
                owner: owner_address,
                wallet: wallet_address,
                salt,
                factory: writes.factory(factory),
            },
            mode,
        }))
    }

    /// Waits until the execution has finished and returns its row.
    pub async fn wait(
        &self,
        task_id: &str,
        execution_id: &str,
    ) -> Result<ExecutionRow, events::Error> {
        loop {
            let notify = {
                let mut finished = self
                    .inner
                    .finished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                finished.entry(execution_id.to_owned()).or_default().clone()
            };
            let notified = notify.notified();
            if let Some(row) = self.inner.store.views.execution(task_id, execution_id)?
                && row.status.finished()
            {
                return Ok(row);
            }
            // The notification may come from another process's restart, or be missed between
            // the read and the wait: the timeout bounds the delay.
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }

    /// Completes active tasks past their `expired_at`, now and then.
    fn spawn_expiry_sweep(&self) {
        let engine = self.clone();
        let every = self.inner.tools.config.expiry_sweep;
        let mut stopping = self.inner.stopping.subscribe();
        let sweep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                if !*engine.inner.leads.borrow() {
                    continue; // the log's writer sweeps
                }
                if let Err(e) = engine.sweep_expired().await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
            }
        });
        *self.inner.sweep.lock().unwrap_or_else(|p| p.into_inner()) = Some(sweep);
    }

    async fn sweep_expired(&self) -> Result<(), events::Error> {
        let store = &self.inner.store;
        let now = now_ms_i64();
        // Only the tasks due, from the expiry index: the sweep costs what expires.
        for id in store.views.due_expiries(now)? {
            let Some(row) = store.views.task(&id)? else {
                continue;
            };
            if let Some(completed) = firing::expiry(&row, now) {
                let command = Command::new("system", now_ms()).append(
                    events::stream::task(&id),
                    Expected::Exactly(row.version),
                    [completed],
                );
                // A conflict means the task moved: the next sweep looks again.
                let _ = store.log.append(command).await;
            }
        }
        Ok(())
    }

    /// Stops scheduling and waits (up to `grace`) for the runs in progress; the others stay
    /// pending and resume at the next start. On a replicated log the others are stopped and
    /// this replica's claims released (`claims::release_all`), so that other replicas take its
    /// pending executions at once: a run stopped mid-step is then handled as after a lapsed
    /// claim (its started step with effects recorded interrupted, not run again). Letting such a
    /// run go on past the grace would keep the claim, and the execution waiting, until it
    /// lapsed, for a run the process is about to cut short anyway.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.send_replace(true);
        let mut running = self.inner.running.lock().await;
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            running.abort_all();
            // Until each stopped run has dropped its claim's renewal: a renewal after the
            // release would claim the execution again.
            while running.join_next().await.is_some() {}
        }
        drop(running);
        if let Some(settings) = &self.inner.claims {
            match claims::release_all(&self.inner.store, &settings.replica).await {
                Ok(0) => {}
                Ok(released) => {
                    tracing::info!(
                        released,
                        "released this replica's claims on pending executions: other replicas take them now"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "this replica's claims could not be released: they lapse after event_log.claim_ttl");
                }
            }
        }
        let sweep = self
            .inner
            .sweep
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(sweep) = sweep {
            let _ = sweep.await;
        }
    }
}

/// Whether the log refused a run's events for what they hold (too large, too deep, a row a
/// projection refuses): retrying would meet the same refusal. A poisoned store, a stopped writer
/// or a conflict leave the run pending, to resume.
fn recording_refused(e: &events::Error) -> bool {
    !matches!(
        e,
        events::Error::Poisoned(_)
            | events::Error::WriterStopped
            | events::Error::Storage(_)
            | events::Error::Conflict { .. }
            | events::Error::NotWriter(_)
            | events::Error::Unavailable(_)
    )
}

/// The execution a firing command opened (the stream `exec:<id>` among its events).
fn execution_of(refs: &[events::EventRef]) -> String {
    refs.iter()
        .find_map(|r| events::stream::execution_id_of(&r.stream))
        .unwrap_or_default()
        .to_owned()
}

async fn finish_without_running(
    recorder: &mut run::Recorder<'_>,
    started: bool,
    task_id: &str,
    execution_id: &str,
    error: String,
) -> Result<(), events::Error> {
    if !started {
        recorder.push(
            events::event::ExecutionStarted {
                execution_id: execution_id.to_owned(),
                task_id: task_id.to_owned(),
                started_at: crate::clock::now_ms_i64(),
            }
            .into(),
        );
    }
    recorder.push(
        events::event::ExecutionFinished {
            execution_id: execution_id.to_owned(),
            task_id: task_id.to_owned(),
            outcome: events::execution::ExecutionOutcome::Failed,
            error,
        }
        .into(),
    );
    recorder.flush().await
}

/// A run's recorder on the execution's stream: against the version its claim shares (a
/// replicated log), or the one its stream holds (`recorded` events).
fn recorder(
    store: &Store,
    stream: String,
    recorded: usize,
    cursor: Option<run::SharedCursor>,
) -> run::Recorder<'_> {
    match cursor {
        Some(cursor) => run::Recorder::Claimed {
            store,
            stream,
            actor: "engine".into(),
            cursor,
            buffer: Vec::new(),
        },
        None => run::Recorder::Log {
            store,
            stream,
            actor: "engine".into(),
            version: recorded as u64,
            buffer: Vec::new(),
        },
    }
}

/// Stops a spawned task (a claim's renewal) when the run it serves ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
