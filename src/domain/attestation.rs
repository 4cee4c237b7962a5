//! Attestation: the operators' reports of one firing (stream `firing:<task>:<trigger request
//! id>`), folded, and the rule that attests it.
//!
//! - `fold`: the stream as state: who reported which digest, the attestation if there is one,
//!   the disagreement last recorded;
//! - `decide`: a new report, already checked by the caller (the operator is assigned, its BLS
//!   signature verifies), against that state: record it; when the operators that signed one
//!   digest hold a `Quorum` of the assigned weight, attest that digest in the same command
//!   (`TriggerAttested` with the aggregate signature and the signers); when reports disagree,
//!   record the disagreement (`ReportsDisagreed`) once per change. An operator that is not
//!   assigned weighs 0.
//!
//! Pure: the caller reads the stream, appends the events against its version and hands an
//! attested firing to the engine.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use events::event::{QuorumMet, ReportsDisagreed, TriggerAttested, TriggerReported};
use events::task::TriggerKind;
use events::{Envelope, Event};
use serde_json::Value;

/// The share of the assigned operators' weight that must sign one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub numerator: u64,
    pub denominator: u64,
}

impl Quorum {
    /// Whether `weight` of `total` reaches the quorum (never with nothing assigned).
    pub fn reached(self, weight: u64, total: u64) -> bool {
        total > 0
            && u128::from(weight) * u128::from(self.denominator)
                >= u128::from(total) * u128::from(self.numerator)
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// A firing attested by a quorum: the attestation's event id and what it attested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub attestation: String,
    pub kind: TriggerKind,
    pub output: Option<Value>,
}

/// A firing's stream, folded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FiringState {
    /// Per operator (lower-case hex): the digest it signed and its BLS signature (both hex).
    pub reports: BTreeMap<String, (String, String)>,
    /// Per digest: the output of the first report that carried it.
    pub outputs: BTreeMap<String, Option<Value>>,
    pub attested: Option<Attested>,
    /// The operators behind each digest, as last recorded in a `ReportsDisagreed`.
    pub disagreement: Option<BTreeMap<String, Vec<String>>>,
}

pub fn fold(history: &[Envelope]) -> FiringState {
    let mut state = FiringState::default();
    for envelope in history {
        match &envelope.event {
            Event::TriggerReported(r) => {
                state.reports.insert(
                    r.operator.clone(),
                    (r.digest.clone(), r.bls_signature.clone()),
                );
                state
                    .outputs
                    .entry(r.digest.clone())
                    .or_insert_with(|| r.output.clone());
            }
            Event::TriggerAttested(a) => {
                state.attested = Some(Attested {
                    attestation: envelope.id.to_string(),
                    kind: a.kind,
                    output: a.output.clone(),
                });
            }
            Event::ReportsDisagreed(d) => state.disagreement = Some(d.digests.clone()),
            _ => {}
        }
    }
    state
}

/// One operator's report of a firing, checked by the caller: the operator is assigned and its
/// BLS signature verifies over `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub task_id: String,
    pub trigger_request_id: String,
    pub operator: Address,
    pub kind: TriggerKind,
    pub output: Option<Value>,
    pub digest: [u8; 32],
    pub bls_signature: Vec<u8>,
}

/// What a report comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A quorum attested the firing before: it goes to the engine (again; the engine dedups).
    AlreadyAttested(Attested),
    /// Nothing new: this operator reported already, and no quorum formed.
    Waiting,
    /// Record these events; `attesting` carries the attested output when they attest it.
    Record {
        events: Vec<Event>,
        attesting: Option<Option<Value>>,
    },
}

/// `report` against the firing's `state`, with the assigned operators' weights.
///
/// Fails only when the signers' signatures or the output cannot be combined; both were checked
/// before, so that is a corrupt stream or a bug, not the operator's fault.
pub fn decide(
    state: &FiringState,
    report: &Report,
    assigned: &BTreeMap<Address, u64>,
    quorum: Quorum,
    chain_id: u64,
) -> Result<Decision, String> {
    if let Some(attested) = &state.attested {
        return Ok(Decision::AlreadyAttested(attested.clone()));
    }
    let mut reports = state.reports.clone();
    let mut new_events: Vec<Event> = Vec::new();
    let me = format!("{:#x}", report.operator);
    let digest = hex::encode(report.digest);
    if let std::collections::btree_map::Entry::Vacant(slot) = reports.entry(me.clone()) {
        let recorded = TriggerReported {
            task_id: report.task_id.clone(),
            trigger_request_id: report.trigger_request_id.clone(),
            operator: me,
            kind: report.kind,
            output: report.output.clone(),
            digest: digest.clone(),
            bls_signature: hex::encode(&report.bls_signature),
        };
        slot.insert((recorded.digest.clone(), recorded.bls_signature.clone()));
        new_events.push(recorded.into());
    }
    let by_digest = signers_by_digest(&reports);
    if by_digest.len() > 1 {
        let digests: BTreeMap<String, Vec<String>> = by_digest
            .iter()
            .map(|(d, s)| (d.clone(), s.iter().map(|(w, _)| w.clone()).collect()))
            .collect();
        if state.disagreement.as_ref() != Some(&digests) {
            new_events.push(
                ReportsDisagreed {
                    task_id: report.task_id.clone(),
                    trigger_request_id: report.trigger_request_id.clone(),
                    digests,
                }
                .into(),
            );
        }
    }
    let total: u64 = assigned.values().sum();
    let weight_of = |who: &str| {
        who.parse::<Address>()
            .ok()
            .and_then(|a| assigned.get(&a))
            .copied()
            .unwrap_or(0)
    };
    let winner = by_digest.iter().find(|(_, signers)| {
        let weight: u64 = signers.iter().map(|(w, _)| weight_of(w)).sum();
        quorum.reached(weight, total)
    });
    let mut attesting = None;
    if let Some((winning_digest, signers)) = winner {
        let (who, signatures): (Vec<String>, Vec<Vec<u8>>) = signers
            .iter()
            .filter(|(w, _)| weight_of(w) > 0)
            .filter_map(|(w, s)| hex::decode(s).ok().map(|s| (w.clone(), s)))
            .unzip();
        let aggregate = attest::aggregate(&signatures).map_err(|e| e.0)?;
        let quorum_met = QuorumMet {
            weights: who.iter().map(|w| weight_of(w)).collect(),
            assigned_weight: total,
            numerator: quorum.numerator,
            denominator: quorum.denominator,
        };
        // The winning digest's output: the report that carried it (this one, or an earlier).
        let output = if *winning_digest == digest {
            report.output.clone()
        } else {
            state.outputs.get(winning_digest).cloned().flatten()
        };
        let output_hash =
            attest::output_hash(&output.clone().unwrap_or(Value::Null)).map_err(|e| e.0)?;
        new_events.push(
            TriggerAttested {
                task_id: report.task_id.clone(),
                trigger_request_id: report.trigger_request_id.clone(),
                chain_id,
                kind: report.kind,
                output_hash: hex::encode(output_hash),
                output: output.clone(),
                digest: winning_digest.clone(),
                aggregate_signature: hex::encode(aggregate),
                signers: who,
                quorum: Some(quorum_met),
            }
            .into(),
        );
        attesting = Some(output);
    }
    if new_events.is_empty() {
        return Ok(Decision::Waiting);
    }
    Ok(Decision::Record {
        events: new_events,
        attesting,
    })
}

/// Per digest, its signers and their signatures, in operator order.
fn signers_by_digest(
    reports: &BTreeMap<String, (String, String)>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut by_digest: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (who, (digest, signature)) in reports {
        by_digest
            .entry(digest.clone())
            .or_default()
            .push((who.clone(), signature.clone()));
    }
    by_digest
}

#[cfg(test)]
mod tests;
