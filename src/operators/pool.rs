//! The operator pool: who is connected, which tasks each watches, what each was told.
//!
//! Assignment: each task with a trigger operators watch (block, time, event) goes to `k`
//! operators (`operators.per_task`, default min(3, operators)) among those that can watch its
//! trigger type and are connected, or gone for less than the grace period, chosen by rendezvous
//! hashing (highest `sha256(task ‖ operator)`), so operators joining or leaving move few tasks.
//! The rules are `domain::assignment`; this file keeps the connections and the I/O.
//! Assignments are events (`OperatorAssigned` / `OperatorUnassigned` on `assign:<task>`), so they
//! survive a restart.
//!
//! On a replicated log (several replicas), only the log's writer decides and appends
//! assignments, from the presence of every operator connected to any replica (its own
//! connections, and the others' from a `presence::PresenceStore`); an operator is gone, for the
//! grace period, when no replica holds its stream. Every replica's pool follows the assignments
//! in its log (the `assign:` streams) and streams the messages to the operators connected to
//! it, so an operator reconnecting to another replica is told everything again there and keeps
//! its tasks. A replica that becomes the writer reads every task and assignment again first.
//!
//! Messages: each connected operator has a `SyncMessages` stream. A reconciliation (every
//! `reconcile_every`, and at once when something changes) pushes `MonitorTaskTrigger` for each
//! task assigned to it and `DisableTask` / `DeleteTask` / `CompletedTask` when one stops or moves
//! away. Every message carries an id the operator `Ack`s; one not acknowledged within
//! `ack_timeout` is sent again, and a reconnecting operator is told everything again.
//!
//! What a pass keeps between passes (`Tracking`) is a compact record per task (`Tracked`: its
//! trigger's kind and the fields its message carries, and its operators), not the task's row:
//! with a million active tasks the rows took ~700 MiB. The first pass builds it from one prefix
//! scan of the task rows (decoding only those fields) and one of the assignments; later passes
//! read the log since the last one and the rows of the tasks it touched. Every pass does its
//! reads and its choices on a blocking thread (`off_runtime`); only the appends of the
//! assignments it decided are awaited on the async runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use blst::min_pk::PublicKey;
use events::task::TriggerKind;
use events::{Command, Expected};
use projections::tasks::{Status as TaskStatus, TaskRow};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::presence::{Elsewhere, InProcess, PresenceStore};
use super::verifier::Verifier;
use crate::config::OperatorsConfig;
pub use crate::domain::assignment::Capabilities;
use crate::domain::assignment::{self, Presence, Stop, choose_for, watches};
use crate::pb;
use crate::store::Store;

/// Liveness an operator reports with `Ping`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Liveness {
    pub version: String,
    pub block_number: i64,
    pub queue_depth: i64,
    pub uptime_seconds: i64,
    pub event_count: i64,
    pub last_ping_ms: u64,
    /// The port the operator serves its metrics on, as it says.
    pub metrics_port: i32,
    /// The operator's address as it says, else the address its ping came from.
    pub remote_ip: String,
}

/// What an operator was told of a task, and whether it acknowledged it.
#[derive(Debug, Clone)]
struct Told {
    op: pb::MessageOp,
    message_id: String,
    sent_at: Instant,
    acked: bool,
    message: pb::SyncMessagesResp,
}

struct Connection {
    sender: mpsc::Sender<Result<pb::SyncMessagesResp, tonic::Status>>,
    since: Instant,
    /// By task: the last message about it.
    told: HashMap<String, Told>,
    /// Message id → task, for acknowledgements.
    by_message: HashMap<String, String>,
    /// Whether the operator was told all its tasks since it (re)connected.
    synced: bool,
}

struct Member {
    weight: u64,
    public_key: PublicKey,
    connection: Option<Connection>,
    /// Capabilities the operator had when it was last connected.
    capabilities: Capabilities,
    gone_since: Option<Instant>,
    /// The replica that holds its stream, when another one does (as the presence last said).
    elsewhere: Option<String>,
    liveness: Liveness,
}

/// The pool, shared by the `Node` service and its reconciliation loop.
pub struct Pool {
    store: Store,
    config: OperatorsConfig,
    members: Mutex<BTreeMap<Address, Member>>,
    nudge: Notify,
    closed: AtomicBool,
    /// What the reconciliation keeps between passes.
    tracking: tokio::sync::Mutex<Tracking>,
    /// Checks the reports' BLS signatures, batched.
    pub verifier: Verifier,
    /// Refused requests, by reason and by the operator they name.
    pub refusals: Arc<super::refusals::Refusals>,
    /// The nonces of the operators' signed requests (`auth`).
    pub nonces: Arc<dyn super::auth::NonceStore>,
    /// The operators connected to other replicas.
    presence: Arc<dyn PresenceStore>,
    /// Whether this process writes the log, so decides the assignments (always, on one node).
    leads: watch::Receiver<bool>,
}

/// What the replicas of a replicated log share for the pool.
pub struct Replicated {
    /// The operators' request nonces, seen by every replica.
    pub nonces: Arc<dyn super::auth::NonceStore>,
    /// Which operators are connected to which replica.
    pub presence: Arc<dyn PresenceStore>,
    /// Whether this replica writes the log.
    pub leads: watch::Receiver<bool>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// An operator as `/operators` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    pub address: String,
    pub weight: u64,
    pub connected: bool,
    pub connected_for_seconds: Option<u64>,
    /// Connected to another replica of the log (its id), not this one.
    pub connected_elsewhere: Option<String>,
    pub gone_for_seconds: Option<u64>,
    pub capabilities: Capabilities,
    pub tasks: usize,
    pub unacknowledged: usize,
    pub liveness: Liveness,
}

/// What the reconciliation keeps between passes, so that a pass costs what changed.
#[derive(Default)]
struct Tracking {
    loaded: bool,
    /// The last event read.
    cursor: Option<events::Ulid>,
    /// The tasks operators watch or are assigned to (a task that is neither is not kept). A
    /// B-tree: built in bulk from the sorted scans, without hashing a million keys, and walked
    /// in order.
    tasks: BTreeMap<Box<str>, Tracked>,
    /// The eligible operators and `k` of the last pass.
    eligible: Vec<(Address, Capabilities)>,
    k: usize,
    /// Whether the last pass decided assignments (this process wrote the log).
    deciding: bool,
}

/// What the pool keeps of one task: about 130 bytes with its key, where its row took ~700.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// Set while operators watch the task.
    watch: Option<Watch>,
    /// Its operators as the log holds them, sorted.
    assigned: Box<[Address]>,
}

impl Tracked {
    fn watching(watch: Watch) -> Self {
        Self {
            watch: Some(watch),
            assigned: Box::default(),
        }
    }

    fn had(&self) -> BTreeSet<Address> {
        self.assigned.iter().copied().collect()
    }
}

/// What choosing a watched task's operators and telling them of it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watch {
    kind: TriggerKind,
    start_at: i64,
    expired_at: i64,
    /// Runs left (`max_execution - execution_count`), -1 for no limit, as the message says.
    remain: i64,
}

/// The fields of a task's row the pool reads, named as in `TaskRow` (the rest of the row is
/// skipped while decoding: `Views::for_each_task_with_letter`).
#[derive(Debug, Deserialize)]
struct WatchFields {
    id: String,
    status: TaskStatus,
    trigger_kind: Option<TriggerKind>,
    start_at: i64,
    expired_at: i64,
    max_execution: i64,
    execution_count: i64,
}

impl WatchFields {
    fn of(row: &TaskRow) -> Self {
        Self {
            id: row.id.clone(),
            status: row.status,
            trigger_kind: row.trigger_kind,
            start_at: row.start_at,
            expired_at: row.expired_at,
            max_execution: row.max_execution,
            execution_count: row.execution_count,
        }
    }

    /// What the pool keeps, if operators watch the task (`domain::assignment::watched`).
    fn watch(&self) -> Option<Watch> {
        let kind = self.trigger_kind?;
        watches(self.status, Some(kind)).then(|| Watch {
            kind,
            start_at: self.start_at,
            expired_at: self.expired_at,
            remain: if self.max_execution == 0 {
                -1
            } else {
                self.max_execution - self.execution_count
            },
        })
    }
}

/// The tasks a pass looks at: all of them (the first pass, or when who may watch changed), or
/// those the events since the last pass touched.
enum Scope {
    All,
    Tasks(BTreeSet<String>),
}

/// An assignment a pass decided on: the task, its operators from now on, the events saying so.
struct Move {
    task: String,
    wanted: BTreeSet<Address>,
    events: Vec<events::Event>,
}

impl Pool {
    /// A pool of the registered operators (from the projection) of the one process that writes
    /// the log, remembering their requests' nonces and their presence in this process.
    pub fn new(store: Store, config: OperatorsConfig) -> anyhow::Result<Arc<Self>> {
        Self::replicated(
            store,
            config,
            Replicated {
                nonces: Arc::new(super::auth::MemoryNonces::default()),
                presence: Arc::new(InProcess),
                // One process writes the log for good: a receiver that never changes.
                leads: watch::channel(true).1,
            },
        )
    }

    /// `new` on one replica of a replicated log: nonces and presence shared with the others,
    /// assignments decided while this replica writes the log.
    pub fn replicated(
        store: Store,
        config: OperatorsConfig,
        Replicated {
            nonces,
            presence,
            leads,
        }: Replicated,
    ) -> anyhow::Result<Arc<Self>> {
        let pool = Arc::new(Self {
            store,
            config,
            members: Mutex::new(BTreeMap::new()),
            nudge: Notify::new(),
            closed: AtomicBool::new(false),
            tracking: tokio::sync::Mutex::new(Tracking::default()),
            verifier: Verifier::start()?,
            refusals: Arc::default(),
            nonces,
            presence,
            leads,
        });
        pool.refresh_members()?;
        Ok(pool)
    }

    /// Re-reads the registered operators (after the registry changed).
    pub fn refresh_members(&self) -> anyhow::Result<()> {
        let rows = self.store.views.operators()?;
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let mut active = BTreeSet::new();
        for row in rows.into_iter().filter(|r| r.active) {
            let address: Address = row.address.parse()?;
            let public_key = attest::public_key(&hex::decode(&row.bls_public_key)?)?;
            active.insert(address);
            match members.get_mut(&address) {
                Some(m) => {
                    m.weight = row.weight;
                    m.public_key = public_key;
                }
                None => {
                    members.insert(
                        address,
                        Member {
                            weight: row.weight,
                            public_key,
                            connection: None,
                            capabilities: Capabilities::ANY,
                            gone_since: Some(Instant::now()),
                            elsewhere: None,
                            liveness: Liveness::default(),
                        },
                    );
                }
            }
        }
        members.retain(|address, _| active.contains(address));
        Ok(())
    }

    pub fn is_member(&self, address: Address) -> bool {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&address)
    }

    pub fn public_key(&self, address: Address) -> Option<PublicKey> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&address)
            .map(|m| m.public_key)
    }

    /// Weights of the members, by address.
    pub fn weights(&self) -> BTreeMap<Address, u64> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(a, m)| (*a, m.weight))
            .collect()
    }

    /// Opens an operator's stream; what was there before is replaced (a reconnect).
    pub fn connect(
        &self,
        address: Address,
        capabilities: Capabilities,
    ) -> mpsc::Receiver<Result<pb::SyncMessagesResp, tonic::Status>> {
        let (sender, receiver) = mpsc::channel(1024);
        if self.closed.load(Ordering::SeqCst) {
            return receiver;
        }
        {
            let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = members.get_mut(&address) {
                m.connection = Some(Connection {
                    sender,
                    since: Instant::now(),
                    told: HashMap::new(),
                    by_message: HashMap::new(),
                    synced: false,
                });
                m.capabilities = capabilities;
                m.gone_since = None;
                self.presence.joined(address, capabilities);
            }
        }
        metrics::gauge!("operators_connected").set(self.connected() as f64);
        self.nudge.notify_one();
        receiver
    }

    fn connected(&self) -> usize {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|m| m.connection.is_some())
            .count()
    }

    pub fn ack(&self, address: Address, message_id: &str) -> bool {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let Some(connection) = members
            .get_mut(&address)
            .and_then(|m| m.connection.as_mut())
        else {
            return false;
        };
        let Some(task) = connection.by_message.get(message_id) else {
            return false;
        };
        match connection.told.get_mut(task) {
            Some(told) if told.message_id == message_id => {
                told.acked = true;
                true
            }
            _ => false,
        }
    }

    pub fn ping(&self, address: Address, liveness: Liveness) {
        if let Some(m) = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&address)
        {
            m.liveness = liveness;
        }
    }

    /// Asks for a reconciliation now (a task changed, an operator came or went).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    pub fn snapshot(&self) -> Vec<OperatorView> {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members
            .iter()
            .map(|(address, m)| OperatorView {
                address: format!("{address:#x}"),
                weight: m.weight,
                connected: m.connection.is_some(),
                connected_for_seconds: m.connection.as_ref().map(|c| c.since.elapsed().as_secs()),
                connected_elsewhere: m.elsewhere.clone(),
                gone_for_seconds: m.gone_since.map(|g| g.elapsed().as_secs()),
                capabilities: m.capabilities,
                tasks: m.connection.as_ref().map_or(0, |c| {
                    c.told
                        .values()
                        .filter(|t| t.op == pb::MessageOp::MonitorTaskTrigger)
                        .count()
                }),
                unacknowledged: m
                    .connection
                    .as_ref()
                    .map_or(0, |c| c.told.values().filter(|t| !t.acked).count()),
                liveness: m.liveness.clone(),
            })
            .collect()
    }

    /// Reconciles every `reconcile_every` or when nudged, until `stop` turns true; then closes
    /// every operator's stream (so a graceful shutdown does not wait on them) and refuses new ones.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = pool.reconcile().await {
                    tracing::warn!(error = %e, "operator reconciliation failed");
                }
                tokio::select! {
                    _ = tokio::time::timeout(pool.config.reconcile_every, pool.nudge.notified()) => {}
                    // An operator came to or left another replica.
                    () = pool.presence.changed() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            pool.close();
        })
    }

    /// Ends every operator's stream and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for (address, member) in members.iter_mut() {
            if member.connection.take().is_some() {
                self.presence.left(*address);
            }
        }
    }

    /// Every task operators watch (active, or running, with a non-manual trigger), and every
    /// assignment: read once, at the first pass, in one prefix scan each.
    fn load(&self, t: &mut Tracking) -> anyhow::Result<()> {
        // Each scan comes in key order, so task-id order: the two lists are merged and joined
        // rather than hashed (a stable sort of sorted runs is a linear merge).
        let mut watched: Vec<(Box<str>, Watch)> = Vec::new();
        for letter in [TaskStatus::Active.letter(), projections::tasks::EXECUTING] {
            self.store
                .views
                .for_each_task_with_letter(letter, |row: WatchFields| {
                    if let Some(watch) = row.watch() {
                        watched.push((row.id.into_boxed_str(), watch));
                    }
                })?;
        }
        watched.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tasks: Vec<(Box<str>, Tracked, Vec<Address>)> = Vec::with_capacity(watched.len());
        let mut pending = watched.into_iter().peekable();
        self.store.views.for_each_assignment(|task, operator| {
            let Ok(address) = operator.parse::<Address>() else {
                return;
            };
            while let Some((id, watch)) = pending.next_if(|(id, _)| &**id < task) {
                tasks.push((id, Tracked::watching(watch), Vec::new()));
            }
            if let Some(last) = tasks.last_mut().filter(|last| &*last.0 == task) {
                last.2.push(address);
                return;
            }
            let watch = pending
                .next_if(|(id, _)| &**id == task)
                .map(|(_, watch)| watch);
            tasks.push((
                task.into(),
                Tracked {
                    watch,
                    assigned: Box::default(),
                },
                vec![address],
            ));
        })?;
        tasks.extend(pending.map(|(id, watch)| (id, Tracked::watching(watch), Vec::new())));
        // (Sorted already, unless ids of different lengths order differently inside the
        // assignments' keys: then this sort puts them right, and equal ids are merged below.)
        tasks.sort_by(|a, b| a.0.cmp(&b.0));
        tasks.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1.watch = kept.1.watch.or(later.1.watch);
                kept.2.append(&mut later.2);
            }
            same
        });
        t.tasks = tasks
            .into_iter()
            .map(|(id, mut tracked, mut operators)| {
                operators.sort_unstable();
                operators.dedup();
                tracked.assigned = operators.into_boxed_slice();
                (id, tracked)
            })
            .collect();
        Ok(())
    }

    /// The tasks that changed since the last pass (all of them at the first), with the tracked
    /// set brought up to date: the events appended since are read, and the tasks whose
    /// streams they touch are read again. With `follow`, the assignments too (another replica
    /// decides them); otherwise this pool decided them itself and keeps what it decided.
    /// Storage reads and decoding: called off the async workers (`off_runtime`).
    fn changed_tasks(&self, t: &mut Tracking, follow: bool) -> anyhow::Result<Scope> {
        if !t.loaded {
            // Where the log stands before the full read: what lands meanwhile is read again.
            t.cursor = self.store.log.head()?.map(|(id, _)| id);
            self.load(t)?;
            t.loaded = true;
            return Ok(Scope::All);
        }
        let mut changed = BTreeSet::new();
        let mut reassigned = BTreeSet::new();
        let assignments = events::stream::assignment("");
        for item in self.store.log.keyspaces().scan(t.cursor) {
            let (id, value) = item?;
            if Some(id) == t.cursor {
                continue;
            }
            let header = events::decode_header_at(id, &value)?;
            if let Some(task) = events::stream::task_id_of(&header.stream) {
                changed.insert(task.to_owned());
            } else if follow && let Some(task) = header.stream.strip_prefix(&assignments) {
                changed.insert(task.to_owned());
                reassigned.insert(task.to_owned());
            }
            t.cursor = Some(id);
        }
        for task in &changed {
            let watch = self
                .store
                .views
                .task(task)?
                .and_then(|row| WatchFields::of(&row).watch());
            let kept = t
                .tasks
                .remove(task.as_str())
                .map(|tracked| tracked.assigned)
                .unwrap_or_default();
            let assigned = if reassigned.contains(task) {
                self.assigned_in_log(task)?
            } else {
                kept
            };
            if watch.is_some() || !assigned.is_empty() {
                t.tasks
                    .insert(task.as_str().into(), Tracked { watch, assigned });
            }
        }
        Ok(Scope::Tasks(changed))
    }

    /// A task's operators as the log's projection holds them, sorted.
    fn assigned_in_log(&self, task: &str) -> anyhow::Result<Box<[Address]>> {
        let mut operators: Vec<Address> = self
            .store
            .views
            .assigned(task)?
            .iter()
            .filter_map(|operator| operator.parse().ok())
            .collect();
        operators.sort_unstable();
        operators.dedup();
        Ok(operators.into_boxed_slice())
    }

    /// The assignments that differ from what the log holds, for the tasks in `scope`.
    fn decide(t: &Tracking, scope: &Scope) -> Vec<Move> {
        let decide = |task: &str, tracked: Option<&Tracked>| {
            let had = tracked.map(Tracked::had).unwrap_or_default();
            let watch = tracked.and_then(|tracked| tracked.watch);
            let wanted = match watch {
                Some(watch) => choose_for(task, watch.kind, &t.eligible, t.k, &had),
                None => BTreeSet::new(),
            };
            (wanted != had).then(|| Move {
                task: task.to_owned(),
                events: assignment::changes(task, &had, &wanted, watch.is_some()),
                wanted,
            })
        };
        match scope {
            Scope::All => t
                .tasks
                .iter()
                .filter_map(|(task, tracked)| decide(task, Some(tracked)))
                .collect(),
            Scope::Tasks(tasks) => tasks
                .iter()
                .filter_map(|task| decide(task, t.tasks.get(task.as_str())))
                .collect(),
        }
    }

    /// Takes in which operators other replicas hold: one connected elsewhere is present with
    /// the capabilities it has there; one no replica holds any more is gone from now on.
    fn follow_presence(&self) {
        let elsewhere = self.presence.elsewhere();
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for (address, m) in members.iter_mut() {
            match elsewhere.get(address) {
                Some(Elsewhere {
                    replica,
                    capabilities,
                }) => {
                    if m.connection.is_none() {
                        m.capabilities = *capabilities;
                    }
                    m.gone_since = None;
                    if m.elsewhere.as_ref() != Some(replica) {
                        m.elsewhere = Some(replica.clone());
                    }
                }
                None if m.elsewhere.is_some() => {
                    m.elsewhere = None;
                    if m.connection.is_none() && m.gone_since.is_none() {
                        m.gone_since = Some(now);
                    }
                }
                None => {}
            }
        }
    }

    /// The operators that may be given tasks: connected (here or to another replica), or gone
    /// for less than the grace period.
    fn eligible(&self) -> (Vec<(Address, Capabilities)>, usize) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let presence = members.iter().map(|(a, m)| {
            (
                a,
                Presence {
                    connected: m.connection.is_some() || m.elsewhere.is_some(),
                    gone_since: m.gone_since,
                    capabilities: m.capabilities,
                },
            )
        });
        let eligible = assignment::eligible(presence, self.config.reassign_grace, Instant::now());
        (
            eligible,
            assignment::per_task(self.config.per_task, members.len()),
        )
    }

    /// Runs `work` on the tracked state on a blocking thread: the reads of a pass (the log since
    /// the last one, task rows, definitions for the messages) took 26-190 ms under load, and on
    /// one of the runtime's two workers that was every caller's p99. If it panics the state is
    /// dropped, and the next pass reads everything again.
    async fn off_runtime<R: Send + 'static>(
        self: &Arc<Self>,
        t: &mut Tracking,
        work: impl FnOnce(&Self, &mut Tracking) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let pool = Arc::clone(self);
        let mut state = std::mem::take(t);
        let (state, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = work(&pool, &mut state);
            (state, outcome)
        })
        .await
        .map_err(|e| anyhow::anyhow!("operator reconciliation stopped: {e}"))?;
        *t = state;
        outcome
    }

    /// One reconciliation: assignments (decided while this process writes the log), then
    /// messages. A pass costs what changed since the last one (new events, operators becoming
    /// eligible or not), not the number of tasks.
    pub async fn reconcile(self: &Arc<Self>) -> anyhow::Result<()> {
        // Streams whose receiver is gone: the operator left.
        {
            let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
            for (address, m) in members.iter_mut() {
                if m.connection.as_ref().is_some_and(|c| c.sender.is_closed()) {
                    m.connection = None;
                    self.presence.left(*address);
                    if m.elsewhere.is_none() {
                        m.gone_since = Some(Instant::now());
                    }
                }
            }
        }
        self.follow_presence();
        let leading = *self.leads.borrow();
        let mut tracking = self.tracking.lock().await;
        let t = &mut *tracking;
        if self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            // No operators: nothing to assign. Everything is read again when some register.
            t.loaded = false;
            return Ok(());
        }
        if leading && !t.deciding && t.loaded {
            // This replica became the log's writer: what it followed is read again whole, so
            // that it decides on everything the log holds.
            t.loaded = false;
        }
        let chosen = leading.then(|| self.eligible());
        let (scope, moves) = self
            .off_runtime(t, move |pool, t| {
                let mut scope = pool.changed_tasks(t, !leading)?;
                let Some((eligible, k)) = chosen else {
                    // Another replica decides; this one streams what the log says.
                    t.deciding = false;
                    return Ok((scope, Vec::new()));
                };
                if !t.deciding || eligible != t.eligible || k != t.k {
                    // Who may watch changed: every task's choice is made again.
                    scope = Scope::All;
                    t.eligible = eligible;
                    t.k = k;
                    t.deciding = true;
                }
                let moves = Self::decide(t, &scope);
                Ok((scope, moves))
            })
            .await?;
        for Move {
            task,
            wanted,
            events,
        } in moves
        {
            if !*self.leads.borrow() {
                // Deposed meanwhile: the next writer decides (and this pool follows the log).
                break;
            }
            let command = Command::new("system", events::now_ms()).append(
                events::stream::assignment(&task),
                Expected::Any,
                events,
            );
            self.store.log.append(command).await?;
            let assigned: Box<[Address]> = wanted.into_iter().collect();
            let watch = t.tasks.get(task.as_str()).and_then(|tracked| tracked.watch);
            if watch.is_none() && assigned.is_empty() {
                t.tasks.remove(task.as_str());
            } else {
                t.tasks
                    .insert(task.into_boxed_str(), Tracked { watch, assigned });
            }
        }
        self.off_runtime(t, move |pool, t| pool.push(t, &scope))
            .await
    }

    /// Sends each connected operator what changed for it (everything, to one that just
    /// connected), and again what it did not acknowledge in time.
    fn push(&self, t: &Tracking, changed: &Scope) -> anyhow::Result<()> {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for (address, member) in members.iter_mut() {
            let Some(connection) = member.connection.as_mut() else {
                continue;
            };
            // The tasks to look at: what changed; everything it has or was told, when it has
            // not been told anything since it connected.
            let told_before: Vec<String>;
            let scope: Vec<&str> = if connection.synced {
                match changed {
                    Scope::All => t.tasks.keys().map(|task| &**task).collect(),
                    Scope::Tasks(tasks) => tasks.iter().map(String::as_str).collect(),
                }
            } else {
                connection.synced = true;
                told_before = connection.told.keys().cloned().collect();
                t.tasks
                    .iter()
                    .filter(|(_, tracked)| tracked.assigned.contains(address))
                    .map(|(task, _)| &**task)
                    .chain(told_before.iter().map(String::as_str))
                    .collect()
            };
            for &task in &scope {
                let tracked = t.tasks.get(task);
                let watch = tracked.and_then(|tracked| tracked.watch);
                let mine = watch.is_some()
                    && tracked.is_some_and(|tracked| tracked.assigned.contains(address));
                let watching = connection
                    .told
                    .get(task)
                    .is_some_and(|told| told.op == pb::MessageOp::MonitorTaskTrigger);
                if mine && !watching {
                    if let Some(watch) = watch {
                        let message = self.monitor_message(task, watch)?;
                        tell(connection, task, pb::MessageOp::MonitorTaskTrigger, message);
                    }
                } else if !mine && watching {
                    // Stopped, or moved to another operator.
                    let op = match assignment::stop(self.store.views.task(task)?.as_ref()) {
                        Stop::Delete => pb::MessageOp::DeleteTask,
                        Stop::Complete => pb::MessageOp::CompletedTask,
                        Stop::Disable => pb::MessageOp::DisableTask,
                    };
                    let message = pb::SyncMessagesResp {
                        id: String::new(),
                        op: op as i32,
                        task_metadata: Some(pb::sync_messages_resp::TaskMetadata {
                            task_id: task.to_owned(),
                            ..Default::default()
                        }),
                        checkpoint: None,
                    };
                    tell(connection, task, op, message);
                }
            }
            // What was not acknowledged in time goes again.
            let (timeout, now) = (self.config.ack_timeout, Instant::now());
            for told in connection.told.values_mut() {
                if !told.acked && assignment::due_again(told.sent_at, now, timeout) {
                    told.sent_at = now;
                    let _ = connection.sender.try_send(Ok(told.message.clone()));
                    metrics::counter!("operator_messages_resent_total").increment(1);
                }
            }
            // Stops that were acknowledged are forgotten (the task may come back).
            let Connection {
                told, by_message, ..
            } = connection;
            told.retain(|_, t| {
                let keep = t.op == pb::MessageOp::MonitorTaskTrigger || !t.acked;
                if !keep {
                    by_message.remove(&t.message_id);
                }
                keep
            });
        }
        Ok(())
    }

    fn monitor_message(&self, task: &str, watch: Watch) -> anyhow::Result<pb::SyncMessagesResp> {
        let definition = self
            .store
            .views
            .task_definition(task)?
            .ok_or_else(|| anyhow::anyhow!("task {task} has no definition"))?;
        Ok(pb::SyncMessagesResp {
            id: String::new(),
            op: pb::MessageOp::MonitorTaskTrigger as i32,
            task_metadata: Some(pb::sync_messages_resp::TaskMetadata {
                task_id: task.to_owned(),
                remain: watch.remain,
                expired_at: watch.expired_at,
                trigger: Some(crate::pb::convert::trigger_to_pb(&definition.trigger)),
                start_at: watch.start_at,
            }),
            checkpoint: None,
        })
    }

    /// Tells every connected operator of a new checkpoint to cosign (sent again until
    /// acknowledged, replaced by the next checkpoint).
    pub fn push_checkpoint(&self, checkpoint: &crate::transparency::ToCosign) {
        let message = pb::SyncMessagesResp {
            id: String::new(),
            op: pb::MessageOp::CosignCheckpoint as i32,
            task_metadata: None,
            checkpoint: Some(pb::CheckpointToCosign {
                note: String::from_utf8_lossy(&checkpoint.note).into_owned(),
                previous_size: checkpoint.previous,
                consistency_proof: checkpoint.proof.iter().map(|h| h.0.to_vec()).collect(),
                log_key: checkpoint.log_key.clone(),
            }),
        };
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for member in members.values_mut() {
            if let Some(connection) = member.connection.as_mut() {
                tell(
                    connection,
                    CHECKPOINT_SLOT,
                    pb::MessageOp::CosignCheckpoint,
                    message.clone(),
                );
            }
        }
    }

    /// The operators' weights and the weight a cosignature quorum needs (the quorum share of
    /// the whole set).
    pub fn cosign_quorum(&self) -> (BTreeMap<Address, u64>, u64) {
        let weights = self.weights();
        let total = weights.values().sum();
        let required = crate::transparency::required_weight(
            total,
            self.config.quorum_numerator,
            self.config.quorum_denominator,
        );
        (weights, required)
    }

    /// The assigned operators of a task and their total weight.
    pub fn assignment(&self, task_id: &str) -> anyhow::Result<(BTreeMap<Address, u64>, u64)> {
        let weights = self.weights();
        let mut assigned = BTreeMap::new();
        for operator in self.store.views.assigned(task_id)? {
            if let Ok(address) = operator.parse::<Address>()
                && let Some(weight) = weights.get(&address)
            {
                assigned.insert(address, *weight);
            }
        }
        let total = assigned.values().sum();
        Ok((assigned, total))
    }

    pub fn quorum(&self) -> (u64, u64) {
        (self.config.quorum_numerator, self.config.quorum_denominator)
    }

    pub fn idle_for(&self, address: Address) -> Option<Duration> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&address)
            .and_then(|m| m.gone_since.map(|g| g.elapsed()))
    }
}

/// Where a connection's latest checkpoint message is kept among its tasks' (no task id has a NUL).
const CHECKPOINT_SLOT: &str = "\0checkpoint";

/// Records and sends one message to a connection.
fn tell(
    connection: &mut Connection,
    task: &str,
    op: pb::MessageOp,
    mut message: pb::SyncMessagesResp,
) {
    let message_id = ulid::Ulid::generate().to_string();
    message.id.clone_from(&message_id);
    let sent = connection.sender.try_send(Ok(message.clone())).is_ok();
    if let Some(previous) = connection.told.get(task) {
        connection.by_message.remove(&previous.message_id);
    }
    connection
        .by_message
        .insert(message_id.clone(), task.to_owned());
    connection.told.insert(
        task.to_owned(),
        Told {
            op,
            message_id,
            // A message that did not fit the stream goes again at the next timeout.
            sent_at: if sent {
                Instant::now()
            } else {
                Instant::now() - Duration::from_secs(3600)
            },
            acked: false,
            message,
        },
    );
    metrics::counter!("operator_messages_sent_total", "op" => op.as_str_name()).increment(1);
}
