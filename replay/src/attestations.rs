//! The offline check of every attested firing, from the log alone.
//!
//! Walking the log in order, it keeps the operators as registered at each point
//! (`OperatorRegistered` / `OperatorDeregistered`, each registration's proofs checked) and each
//! task's assigned operators (`OperatorAssigned` / `OperatorUnassigned`). For each
//! `TriggerAttested` it recomputes the output hash (RFC 8785) and the firing digest from the
//! recorded inputs, and checks that every signer was a registered operator assigned to the task
//! at that point, and that the aggregate signature verifies over the digest with the signers'
//! keys. Each `TriggerReported`'s own signature is checked the same way.
//!
//! Since `TriggerAttested` v2 the event also records the quorum it met (each signer's weight,
//! the assigned weight, the share in force): each signer's weight must be the one it registered
//! with, the assigned weight at least what the log's registrations and assignments give at that
//! point (an aggregator that understated it to fake a quorum is caught), and the signed weight
//! must reach the share. A v1 attestation recorded no quorum: its signatures are checked, and it
//! is counted apart.

use std::collections::{BTreeMap, BTreeSet};

use blst::min_pk::PublicKey;
use events::event::{TriggerAttested, TriggerReported};
use events::{Envelope, Event, LogKeyspaces};

/// What was checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub registrations: u64,
    pub reports: u64,
    pub attestations: u64,
    /// v1 attestations, which did not record the quorum they met.
    pub without_quorum: u64,
}

/// The first event that does not check out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub event: events::Ulid,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.event, self.reason)
    }
}

struct Operator {
    registration: attest::Registration,
    weight: u64,
    active: bool,
}

#[derive(Default)]
struct Audit {
    operators: BTreeMap<String, Operator>,
    /// Proofs already checked: (address, chain id) → key.
    keys: BTreeMap<(String, u64), PublicKey>,
    assigned: BTreeMap<String, BTreeSet<String>>,
    report: Report,
}

fn bytes(field: &str, text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text.trim_start_matches("0x")).map_err(|_| format!("{field} is not hex"))
}

fn digest_bytes(text: &str) -> Result<[u8; 32], String> {
    bytes("digest", text)?
        .try_into()
        .map_err(|_| "the digest is not 32 bytes".to_owned())
}

impl Audit {
    /// The key of an operator registered and active now, its proofs checked for `chain_id`.
    fn key(&mut self, address: &str, chain_id: u64) -> Result<PublicKey, String> {
        let operator = self
            .operators
            .get(address)
            .ok_or_else(|| format!("{address} is not a registered operator"))?;
        if !operator.active {
            return Err(format!("{address} was deregistered"));
        }
        let cache = (address.to_owned(), chain_id);
        if let Some(pk) = self.keys.get(&cache) {
            return Ok(*pk);
        }
        let pk = operator
            .registration
            .check(chain_id)
            .map_err(|e| e.to_string())?;
        self.keys.insert(cache, pk);
        Ok(pk)
    }

    fn assigned(&self, task_id: &str, operator: &str) -> Result<(), String> {
        if self
            .assigned
            .get(task_id)
            .is_some_and(|set| set.contains(operator))
        {
            Ok(())
        } else {
            Err(format!("{operator} was not assigned to task {task_id}"))
        }
    }

    fn reported(&mut self, r: &TriggerReported) -> Result<(), String> {
        // The chain id is in the digest, not in the report: the attestation of the same firing
        // names it; the report's signature is checked over its own recorded digest.
        let digest = digest_bytes(&r.digest)?;
        self.assigned(&r.task_id, &r.operator)?;
        let operator = self
            .operators
            .get(&r.operator)
            .ok_or_else(|| format!("{} is not a registered operator", r.operator))?;
        let pk = operator
            .registration
            .verify_possession()
            .map_err(|e| e.to_string())?;
        attest::verify_digest(&pk, &digest, &bytes("bls_signature", &r.bls_signature)?)
            .map_err(|e| format!("the report of {}: {e}", r.operator))?;
        self.report.reports += 1;
        Ok(())
    }

    /// The quorum a v2 attestation recorded, against the log's registrations and assignments.
    fn quorum(&self, a: &TriggerAttested, stored_version: u16) -> Result<(), String> {
        let Some(q) = &a.quorum else {
            return if stored_version >= 2 {
                Err("a v2 attestation without the quorum it met".into())
            } else {
                Ok(())
            };
        };
        if q.weights.len() != a.signers.len() {
            return Err(format!(
                "{} weights recorded for {} signers",
                q.weights.len(),
                a.signers.len()
            ));
        }
        for (signer, weight) in a.signers.iter().zip(&q.weights) {
            let registered = self.operators.get(signer).map_or(0, |o| o.weight);
            if registered != *weight {
                return Err(format!(
                    "{signer} is counted with weight {weight}, and registered with {registered}"
                ));
            }
        }
        let assigned: u64 = self
            .assigned
            .get(&a.task_id)
            .into_iter()
            .flatten()
            .filter_map(|op| self.operators.get(op))
            .filter(|o| o.active)
            .map(|o| o.weight)
            .sum();
        if q.assigned_weight < assigned {
            return Err(format!(
                "the attestation counts {} of assigned weight, the log's assignments give {assigned}: the quorum was measured against too little",
                q.assigned_weight
            ));
        }
        if !q.reached() {
            return Err(format!(
                "no quorum: the signers hold {} of {} assigned weight, below the {}/{} in force",
                q.signed_weight(),
                q.assigned_weight,
                q.numerator,
                q.denominator
            ));
        }
        Ok(())
    }

    fn attested(&mut self, a: &TriggerAttested, stored_version: u16) -> Result<(), String> {
        self.quorum(a, stored_version)?;
        if a.quorum.is_none() {
            self.report.without_quorum += 1;
        }
        let output = a.output.clone().unwrap_or(serde_json::Value::Null);
        let output_hash = attest::output_hash(&output).map_err(|e| e.to_string())?;
        if hex::encode(output_hash) != a.output_hash.trim_start_matches("0x") {
            return Err("the recorded output does not hash to output_hash".into());
        }
        let digest =
            attest::firing_digest(a.chain_id, &a.task_id, &a.trigger_request_id, &output_hash);
        if digest != digest_bytes(&a.digest)? {
            return Err("the digest is not the one its recorded inputs give".into());
        }
        if a.signers.is_empty() {
            return Err("an attestation without signers".into());
        }
        let distinct: BTreeSet<&String> = a.signers.iter().collect();
        if distinct.len() != a.signers.len() {
            return Err("a signer is counted twice".into());
        }
        let mut keys = Vec::with_capacity(a.signers.len());
        for signer in &a.signers {
            self.assigned(&a.task_id, signer)?;
            keys.push(self.key(signer, a.chain_id)?);
        }
        attest::verify_aggregate(
            &keys,
            &digest,
            &bytes("aggregate_signature", &a.aggregate_signature)?,
        )
        .map_err(|e| e.to_string())?;
        self.report.attestations += 1;
        Ok(())
    }

    fn apply(&mut self, envelope: &Envelope) -> Result<(), String> {
        match &envelope.event {
            Event::OperatorRegistered(r) => {
                let registration = attest::Registration {
                    address: r
                        .address
                        .parse()
                        .map_err(|_| format!("{} is not an address", r.address))?,
                    bls_public_key: bytes("bls_public_key", &r.bls_public_key)?,
                    proof_of_possession: bytes(
                        "bls_proof_of_possession",
                        &r.bls_proof_of_possession,
                    )?,
                    ecdsa_binding: bytes("ecdsa_binding", &r.ecdsa_binding)?,
                };
                self.keys.retain(|(address, _), _| *address != r.address);
                self.operators.insert(
                    r.address.clone(),
                    Operator {
                        registration,
                        weight: r.weight,
                        active: true,
                    },
                );
                self.report.registrations += 1;
            }
            Event::OperatorDeregistered(d) => {
                if let Some(operator) = self.operators.get_mut(&d.address) {
                    operator.active = false;
                }
            }
            Event::OperatorAssigned(a) => {
                self.assigned
                    .entry(a.task_id.clone())
                    .or_default()
                    .insert(a.operator.clone());
            }
            Event::OperatorUnassigned(u) => {
                if let Some(set) = self.assigned.get_mut(&u.task_id) {
                    set.remove(&u.operator);
                }
            }
            Event::TriggerReported(r) => self.reported(r)?,
            Event::TriggerAttested(a) => self.attested(a, envelope.stored_version)?,
            _ => {}
        }
        Ok(())
    }
}

/// Checks every attestation and report of the log, in order.
pub fn verify(log: &LogKeyspaces, threads: usize) -> anyhow::Result<Result<Report, Failure>> {
    let mut audit = Audit::default();
    let mut failure: Option<Failure> = None;
    events::for_each_decoded(log, None, threads, |envelope| {
        if failure.is_none()
            && let Err(reason) = audit.apply(&envelope)
        {
            failure = Some(Failure {
                event: envelope.id,
                reason,
            });
        }
        Ok(())
    })?;
    Ok(match failure {
        Some(f) => Err(f),
        None => Ok(audit.report),
    })
}
