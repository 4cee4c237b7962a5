//! Operators: who they are, which tasks each watches, and the firings they attested that the
//! engine has not queued yet.
//!
//! Keys (keyspace `operators`):
//! - `op:<address>` → `OperatorRow` (JSON);
//! - `a:<task id>:<operator>` and `ao:<operator>:<task id>` → empty: assignments, both ways;
//! - `pa:<trigger request id>` → `PendingAttestation` (JSON): attested, not yet queued (removed by
//!   the `TaskTriggered` with that dedup key); start-up fires these again (the engine dedups).

use events::event::Event;
use events::task::TriggerKind;
use events::{Envelope, Tx, fjall::Keyspace};
use serde::{Deserialize, Serialize};

use crate::{Projection, get_json, put_json};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "operators";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRow {
    pub address: String,
    pub bls_public_key: String,
    pub bls_proof_of_possession: String,
    pub ecdsa_binding: String,
    pub weight: u64,
    pub active: bool,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAttestation {
    pub task_id: String,
    pub trigger_request_id: String,
    /// The ULID of the `TriggerAttested` event.
    pub attestation: String,
    pub kind: TriggerKind,
    pub output: Option<serde_json::Value>,
}

pub fn operator_key(address: &str) -> Vec<u8> {
    format!("op:{address}").into_bytes()
}

pub const OPERATOR_PREFIX: &[u8] = b"op:";

pub fn assignment_key(task_id: &str, operator: &str) -> Vec<u8> {
    format!("a:{task_id}:{operator}").into_bytes()
}

pub const ASSIGNMENT_PREFIX: &[u8] = b"a:";

pub fn assignment_prefix(task_id: &str) -> Vec<u8> {
    format!("a:{task_id}:").into_bytes()
}

pub fn operator_task_key(operator: &str, task_id: &str) -> Vec<u8> {
    format!("ao:{operator}:{task_id}").into_bytes()
}

pub fn operator_task_prefix(operator: &str) -> Vec<u8> {
    format!("ao:{operator}:").into_bytes()
}

pub fn pending_key(trigger_request_id: &str) -> Vec<u8> {
    format!("pa:{trigger_request_id}").into_bytes()
}

pub const PENDING_PREFIX: &[u8] = b"pa:";

#[derive(Clone)]
pub struct Operators {
    keyspace: Keyspace,
}

impl Operators {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }
}

impl Projection for Operators {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn apply(&self, env: &Envelope, tx: &mut Tx) -> events::Result<()> {
        match &env.event {
            Event::OperatorRegistered(e) => {
                let row = OperatorRow {
                    address: e.address.clone(),
                    bls_public_key: e.bls_public_key.clone(),
                    bls_proof_of_possession: e.bls_proof_of_possession.clone(),
                    ecdsa_binding: e.ecdsa_binding.clone(),
                    weight: e.weight,
                    active: true,
                    registered_at: i64::try_from(env.recorded_at).unwrap_or(i64::MAX),
                };
                put_json(
                    tx,
                    &self.keyspace,
                    operator_key(&e.address),
                    &row,
                    self.name(),
                )
            }
            Event::OperatorDeregistered(e) => {
                let key = operator_key(&e.address);
                if let Some(mut row) =
                    get_json::<OperatorRow>(tx, &self.keyspace, &key, self.name())?
                {
                    row.active = false;
                    put_json(tx, &self.keyspace, key, &row, self.name())?;
                }
                Ok(())
            }
            Event::OperatorAssigned(e) => {
                tx.insert(&self.keyspace, assignment_key(&e.task_id, &e.operator), []);
                tx.insert(
                    &self.keyspace,
                    operator_task_key(&e.operator, &e.task_id),
                    [],
                );
                Ok(())
            }
            Event::OperatorUnassigned(e) => {
                tx.remove(&self.keyspace, assignment_key(&e.task_id, &e.operator));
                tx.remove(&self.keyspace, operator_task_key(&e.operator, &e.task_id));
                Ok(())
            }
            Event::TriggerAttested(e) => {
                let pending = PendingAttestation {
                    task_id: e.task_id.clone(),
                    trigger_request_id: e.trigger_request_id.clone(),
                    attestation: env.id.to_string(),
                    kind: e.kind,
                    output: e.output.clone(),
                };
                put_json(
                    tx,
                    &self.keyspace,
                    pending_key(&e.trigger_request_id),
                    &pending,
                    self.name(),
                )
            }
            Event::TaskTriggered(e) => {
                tx.remove(&self.keyspace, pending_key(&e.dedup_key));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
