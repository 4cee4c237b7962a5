//! The public part of the console: the operator network, the engine's activity, the log and the
//! store, as counts. Nothing here names a user, a task or a wallet.
//!
//! Checkpoints of the transparency log, and which operators cosigned them, come from a
//! `CheckpointSource`: the aggregator's transparency log (`transparency::Transparency`).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use super::Console;
use crate::operators::pool::Capabilities;
use crate::telemetry::pulse::PulseView;

/// Checkpoints read for the operators' cosignature counts.
pub const RECENT_CHECKPOINTS: usize = 20;

/// A checkpoint of the transparency log, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Events the checkpoint covers (the tree size).
    pub size: u64,
    /// The tree's root hash, base64 as the checkpoint note writes it.
    pub root: String,
    /// Operators in the note's cosignature line (written once they hold a quorum's weight).
    pub cosigners: Vec<String>,
}

/// Where the console reads checkpoints from.
pub trait CheckpointSource: Send + Sync {
    /// The latest checkpoints, newest first, at most `n` (blocking reads).
    fn recent(&self, n: usize) -> Vec<Checkpoint>;
}

impl CheckpointSource for crate::transparency::Transparency {
    fn recent(&self, n: usize) -> Vec<Checkpoint> {
        let Ok(verifier) = tlog::checkpoint::LogVerifier::new(&self.verifier_key) else {
            return Vec::new();
        };
        self.store()
            .checkpoints_newest_first()
            .take(n)
            .filter_map(|item| {
                let (_, note) = item
                    .map_err(|e| tracing::warn!(error = %e, "console: a checkpoint could not be read"))
                    .ok()?;
                let signed = verifier
                    .open(&note)
                    .map_err(|e| tracing::warn!(error = %e, "console: a stored checkpoint does not verify"))
                    .ok()?;
                Some(Checkpoint {
                    size: signed.size,
                    root: base64::engine::general_purpose::STANDARD.encode(signed.root.0),
                    cosigners: signed
                        .cosignature
                        .map(|c| c.signers.iter().map(|a| format!("{a:#x}")).collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at_ms: u64,
    pub version: &'static str,
    pub started_at_ms: u64,
    pub chain: ChainView,
    pub operators: Vec<OperatorCard>,
    /// Refused operator requests that named no registered operator, by reason.
    pub refused_unattributed: BTreeMap<&'static str, u64>,
    /// Tasks per status, named as `tasks{status}` names them (`executing`: a run in progress).
    pub tasks: Vec<TaskCount>,
    pub pulse: PulseView,
    pub log: LogView,
    pub store: StoreView,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskCount {
    pub status: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainView {
    pub id: u64,
    pub name: Option<&'static str>,
    pub explorer: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatorCard {
    pub address: String,
    /// The address on the chain's explorer, for a known public chain.
    pub explorer_url: Option<String>,
    pub weight: u64,
    /// Registered and not deregistered.
    pub active: bool,
    pub registered_at_ms: i64,
    pub bls_public_key: String,
    pub connected: bool,
    pub connected_for_seconds: Option<u64>,
    pub gone_for_seconds: Option<u64>,
    pub capabilities: Option<Capabilities>,
    /// 0 before its first ping since this aggregator started.
    pub last_ping_ms: u64,
    pub block_number: i64,
    pub version: String,
    pub queue_depth: i64,
    /// Tasks assigned to it in the log.
    pub tasks_assigned: u64,
    /// Tasks it was told to watch on its current connection.
    pub watching: usize,
    pub unacknowledged: usize,
    pub reports_last_hour: u64,
    pub attestations_last_hour: u64,
    /// Refused requests that named it, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Of the latest checkpoints (at most `RECENT_CHECKPOINTS`), how many carry its cosignature.
    pub cosigned: Cosigned,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// `None` when the count could not be read.
    pub events: Option<u64>,
    pub head: Option<HeadView>,
    pub checkpoint: CheckpointView,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadView {
    pub id: String,
    pub at_ms: u64,
    /// The head of the hash chain (hex).
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// `None` before the first checkpoint is issued.
    pub latest: Option<Checkpoint>,
    /// Events in the log not yet covered by the latest checkpoint.
    pub behind: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cosigned {
    pub checkpoints: usize,
    pub of_latest: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreView {
    /// Why the store refuses writes, when it does.
    pub poisoned: Option<String>,
    /// Events not yet in every projection; `None` when it could not be read.
    pub projection_lag: Option<u64>,
    pub disk_bytes: u64,
    pub durability: &'static str,
}

/// Builds the snapshot (blocking reads: called off the async runtime).
pub fn build(console: &Console, head: Option<(events::Ulid, events::Hash)>) -> Snapshot {
    let app = &console.app;
    let views = &app.store.views;
    let pulse = console.pulse.view_of(&console.app.store);
    let explorer = console.explorer();
    let recent = console.checkpoints.recent(RECENT_CHECKPOINTS);

    let mut registered: BTreeMap<String, projections::operators::OperatorRow> = views
        .operators()
        .unwrap_or_default()
        .into_iter()
        .map(|row| (row.address.clone(), row))
        .collect();
    let mut live: BTreeMap<String, crate::operators::pool::OperatorView> = app
        .pool
        .snapshot()
        .into_iter()
        .map(|view| (view.address.clone(), view))
        .collect();
    let addresses: std::collections::BTreeSet<String> =
        registered.keys().chain(live.keys()).cloned().collect();
    let operators = addresses
        .into_iter()
        .map(|address| {
            let row = registered.remove(&address);
            let view = live.remove(&address);
            let activity = pulse.operators.get(&address).cloned().unwrap_or_default();
            let refused = address
                .parse()
                .map(|a| app.pool.refusals.of(a))
                .unwrap_or_default();
            OperatorCard {
                explorer_url: explorer.map(|e| e.address(&address)),
                weight: row
                    .as_ref()
                    .map(|r| r.weight)
                    .or(view.as_ref().map(|v| v.weight))
                    .unwrap_or(0),
                active: row.as_ref().is_some_and(|r| r.active),
                registered_at_ms: row.as_ref().map_or(0, |r| r.registered_at),
                bls_public_key: row
                    .as_ref()
                    .map(|r| r.bls_public_key.clone())
                    .unwrap_or_default(),
                connected: view.as_ref().is_some_and(|v| v.connected),
                connected_for_seconds: view.as_ref().and_then(|v| v.connected_for_seconds),
                gone_for_seconds: view.as_ref().and_then(|v| v.gone_for_seconds),
                capabilities: view
                    .as_ref()
                    .filter(|v| v.connected)
                    .map(|v| v.capabilities),
                last_ping_ms: view.as_ref().map_or(0, |v| v.liveness.last_ping_ms),
                block_number: view.as_ref().map_or(0, |v| v.liveness.block_number),
                version: view
                    .as_ref()
                    .map(|v| v.liveness.version.clone())
                    .unwrap_or_default(),
                queue_depth: view.as_ref().map_or(0, |v| v.liveness.queue_depth),
                tasks_assigned: views.operator_task_count(&address).unwrap_or(0),
                watching: view.as_ref().map_or(0, |v| v.tasks),
                unacknowledged: view.as_ref().map_or(0, |v| v.unacknowledged),
                reports_last_hour: activity.reports,
                attestations_last_hour: activity.attestations,
                refused,
                cosigned: Cosigned {
                    checkpoints: recent
                        .iter()
                        .filter(|c| c.cosigners.contains(&address))
                        .count(),
                    of_latest: recent.len(),
                },
                address,
            }
        })
        .collect();

    let tasks = crate::telemetry::catalog::TASK_STATUSES
        .iter()
        .map(|(letter, status)| TaskCount {
            status,
            count: views.tasks_with_letter(*letter).unwrap_or(0),
        })
        .collect();

    let head = head.map(|(id, hash)| HeadView {
        id: id.to_string(),
        at_ms: id.timestamp_ms(),
        hash: hex::encode(hash),
    });
    let events = views.event_count().ok();
    let checkpoint = CheckpointView {
        behind: recent
            .first()
            .zip(events)
            .map(|(c, n)| n.saturating_sub(c.size)),
        latest: recent.into_iter().next(),
    };

    Snapshot {
        generated_at_ms: events::now_ms(),
        version: crate::app::VERSION,
        started_at_ms: app.started_ms,
        chain: ChainView {
            id: app.config.chain_id,
            name: explorer.map(|e| e.chain),
            explorer: explorer.map(|e| e.url),
        },
        operators,
        refused_unattributed: app.pool.refusals.unattributed(),
        tasks,
        pulse,
        log: LogView {
            events,
            head,
            checkpoint,
        },
        store: StoreView {
            poisoned: app.store.log.poisoned(),
            projection_lag: app.store.projection_lag().ok(),
            disk_bytes: app.store.disk_space(),
            durability: match app.config.durability {
                crate::config::DurabilityMode::Sync => "sync",
                crate::config::DurabilityMode::Relaxed => "relaxed",
            },
        },
    }
}
