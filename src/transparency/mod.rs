//! The aggregator's side of the transparency log (`tlog`): its log key, the checkpoints it issues
//! as the log grows, and the operators' cosignatures it gathers onto them.
//!
//! - `key`: the Ed25519 log key, generated into the keys directory on first start
//!   (`log.key`, mode 0600), named by the log's origin; `aggregator log-key` prints its verifier;
//! - this module: `Transparency`, shared by the HTTP endpoints (`http`), the operators' RPC
//!   (`CosignCheckpoint`) and the issuing loop (`spawn`), which every
//!   `event_log.checkpoint_interval` signs the committed tree when it grew and pushes the new
//!   checkpoint, with a consistency proof from the previous one, to the connected operators;
//! - `http`: `/checkpoint`, `/tile/...` (public) and `/proof/execution/<id>` (the task's owner or
//!   an admin key).
//!
//! On a replicated log (`event_log.backend: jetstream`) every replica issues its own checkpoints,
//! of its own copy of the tree, with the log key all replicas share. That is sound for auditors:
//! a replica's tree holds only events the stream acknowledged (the writer commits its local
//! batch after the stream's acknowledgement, the others apply what they read from the stream),
//! and every replica derives the same tree from the same events in stream order, so a checkpoint
//! of size N has the same root on every replica; Ed25519 signatures being deterministic, it is
//! the same note, byte for byte, whichever replica signed it. Checkpoints of different sizes
//! from different replicas are consistent with each other (one tree), and each replica refuses
//! to sign a tree that does not extend its own previous checkpoint (`tlog::issue`). An
//! operator cosigns the checkpoints of the replica it is connected to (`CosignCheckpoint`).
//! Recording the writer's checkpoints for the others to serve was the alternative; it would
//! have a follower serve a checkpoint of a tree it may not hold yet (its tiles and proofs
//! missing until it catches up).
//!
//! All of it reads and writes fjall, so it runs on blocking threads, never on the runtime.

pub mod http;
pub mod key;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use blst::min_pk::PublicKey;
use tlog::issue::{Cosigned, Issued, Issuer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::SharedApp;

/// What the aggregator shares about its transparency log.
pub struct Transparency {
    issuer: Issuer,
    pub verifier_key: String,
    pub interval: Duration,
}

impl std::fmt::Debug for Transparency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.verifier_key)
    }
}

/// A checkpoint as the operators receive it: the signed note, and the consistency proof from
/// the checkpoint of `previous` leaves (0: none before it).
#[derive(Debug, Clone, PartialEq)]
pub struct ToCosign {
    pub log_key: String,
    pub note: Vec<u8>,
    pub size: u64,
    pub previous: u64,
    pub proof: Vec<tlog::Hash>,
}

impl Transparency {
    pub fn new(issuer: Issuer, interval: Duration) -> Self {
        let verifier_key = issuer.key().verifier().key().to_owned();
        Self {
            issuer,
            verifier_key,
            interval,
        }
    }

    pub fn store(&self) -> &tlog::TileStore {
        self.issuer.store()
    }

    /// Signs the committed tree if it grew (blocking).
    pub fn issue(&self) -> tlog::Result<Option<ToCosign>> {
        let Some(Issued {
            size,
            note,
            previous,
            ..
        }) = self.issuer.issue()?
        else {
            return Ok(None);
        };
        let proof = self.issuer.consistency(previous, size)?;
        Ok(Some(ToCosign {
            log_key: self.verifier_key.clone(),
            note,
            size,
            previous,
            proof,
        }))
    }

    /// The consistency proof an operator that cosigned `from` needs for the checkpoint of `to`.
    pub fn consistency(&self, from: u64, to: u64) -> tlog::Result<Vec<tlog::Hash>> {
        self.issuer.consistency(from, to)
    }

    /// One operator's cosignature (blocking; see `tlog::issue::Issuer::cosign`).
    pub fn cosign(
        &self,
        size: u64,
        operator: Address,
        key: &PublicKey,
        signature: &[u8],
        weights: &BTreeMap<Address, u64>,
        required: u64,
    ) -> tlog::Result<Cosigned> {
        self.issuer
            .cosign(size, operator, key, signature, weights, required)
    }
}

/// The weight a cosignature quorum needs: the operators' share in force (`quorum_numerator /
/// quorum_denominator`) of the whole operator set's weight, rounded up.
pub fn required_weight(total: u64, numerator: u64, denominator: u64) -> u64 {
    if denominator == 0 {
        return total;
    }
    let needed = u128::from(total) * u128::from(numerator);
    u64::try_from(needed.div_ceil(u128::from(denominator))).unwrap_or(u64::MAX)
}

/// Every `interval`, signs the tree when it grew and hands the checkpoint to the operators
/// connected to this process (on a replicated log, every replica does, see the module doc).
pub fn spawn(app: SharedApp, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(app.transparency.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let issuing = app.clone();
            match tokio::task::spawn_blocking(move || issuing.transparency.issue()).await {
                Ok(Ok(Some(checkpoint))) => {
                    metrics::gauge!("tlog_checkpoint_size").set(checkpoint.size as f64);
                    app.pool.push_checkpoint(&checkpoint);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "no checkpoint issued");
                }
                Err(e) => tracing::error!(error = %e, "the checkpoint task failed"),
            }
        }
    })
}

/// Opens the issuer: the log key from the keys directory (made on first start).
pub fn open(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> anyhow::Result<Arc<Transparency>> {
    let key = key::load_or_create(&config.keys_dir, config.event_log.origin(config.chain_id))?;
    let issuer = Issuer::new(store.database().clone(), store.tiles.clone(), key);
    Ok(Arc::new(Transparency::new(
        issuer,
        config.event_log.checkpoint_interval,
    )))
}
