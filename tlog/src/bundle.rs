//! The proof bundle of one execution: what a task's owner hands a third party to show "my task
//! ran at block N with this output", checkable with nothing but the log's verifier key and,
//! for the operators' word, an operator set the third party trusts.
//!
//! A bundle (JSON, `format: "ava-execution-bundle/v1"`) holds:
//! - `summary`: what it claims: the status, the error, the trigger (kind, who fired it, its dedup
//!   key, block number and time when the output has them, the operators who attested it) and
//!   each step's id, name, success, error and output;
//! - `checkpoint`: a signed checkpoint (the log's Ed25519 line, and the operators' BLS line when
//!   they cosigned it);
//! - `events`: every event of the execution's stream and, for an operator firing, of the firing's
//!   stream (the reports and the attestation), each as its exact stored body with its leaf index
//!   and the inclusion proof to the checkpoint's root.
//!
//! `verify` checks, in order: the checkpoint's log signature; the operators' cosignature and its
//! quorum, given an operator set (never the bundle's own word for who the operators are); each
//! event's inclusion; that the events are the whole execution stream from its first event and
//! belong to it; the attestation (the recorded output hashes to what was signed, the digest, the
//! signers in the set, the aggregate) and that the execution ran on the attested output; and that
//! the summary says what the decoded events say, naming the first claim that differs.
//! It holds only what the log holds: secrets are never in the log, only their ciphertext, and no
//! secret's event is part of an execution.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use events::event::{ExecutionQueued, TriggerAttested};
use events::execution::{ExecutionOutcome, FiringSource};
use events::task::TriggerKind;
use events::{Envelope, Event, LogKeyspaces, Ulid};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tlog_tiles::Hash;

use crate::checkpoint::{LogVerifier, SignedCheckpoint};
use crate::cosign::{OperatorSet, Quorum};
use crate::error::{Error, Result};
use crate::store::{TileSource, TileStore};

pub const FORMAT: &str = "ava-execution-bundle/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub execution_id: String,
    pub task_id: String,
    pub summary: Summary,
    /// The signed checkpoint the proofs lead to.
    pub checkpoint: String,
    pub events: Vec<ProvenEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEvent {
    /// The leaf index: the event's position in the log.
    pub index: u64,
    /// The stored body, byte for byte (the JSON the hash chain and the leaf cover).
    pub body: String,
    /// The audit path to the checkpoint's root, base64 hashes from the leaf up.
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Failed,
    /// Some steps failed, or a branch left nodes untaken (the original's PARTIAL_SUCCESS).
    PartialSuccess,
    /// Not finished when the bundle was made.
    Running,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub status: Status,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub trigger: TriggerSummary,
    pub steps: Vec<StepSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSummary {
    pub kind: TriggerKind,
    /// `client` or `operators`.
    pub fired_by: String,
    pub dedup_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// Milliseconds since the epoch, for time triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The operators whose aggregate signature attested the firing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attested_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSummary {
    pub id: String,
    pub name: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// What the events of an execution say, in the summary's terms. `events` in log order.
pub fn summarize(events: &[Envelope]) -> Result<Summary> {
    let queued = queued(events)?;
    let output = queued.firing.output.as_ref();
    let attested_by = match &queued.firing.source {
        FiringSource::Operators { attestation } => events
            .iter()
            .find(|e| e.id.to_string() == *attestation)
            .and_then(|e| match &e.event {
                Event::TriggerAttested(a) => Some(a.signers.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        FiringSource::Client => Vec::new(),
    };
    let mut summary = Summary {
        status: Status::Running,
        error: String::new(),
        trigger: TriggerSummary {
            kind: queued.firing.kind,
            fired_by: match queued.firing.source {
                FiringSource::Client => "client".into(),
                FiringSource::Operators { .. } => "operators".into(),
            },
            dedup_key: queued.firing.dedup_key.clone(),
            block_number: number(output.and_then(|o| o.get("blockNumber"))),
            timestamp: number(output.and_then(|o| o.get("timestamp"))),
            attested_by,
        },
        steps: Vec::new(),
    };
    let stream = events::stream::execution(&queued.execution_id);
    for envelope in events.iter().filter(|e| e.stream == stream) {
        match &envelope.event {
            Event::StepRecorded(s) => summary.steps.push(StepSummary {
                id: s.step.id.clone(),
                name: s.step.name.clone(),
                success: s.step.success,
                error: s.step.error.clone(),
                output: s.step.output.as_ref().and_then(|o| o.data.clone()),
            }),
            Event::ExecutionFinished(f) => {
                summary.status = match f.outcome {
                    ExecutionOutcome::Success => Status::Success,
                    ExecutionOutcome::Failed => Status::Failed,
                    ExecutionOutcome::PartialSuccess => Status::PartialSuccess,
                };
                summary.error = f.error.clone();
            }
            _ => {}
        }
    }
    Ok(summary)
}

fn queued(events: &[Envelope]) -> Result<&ExecutionQueued> {
    events
        .iter()
        .find_map(|e| match &e.event {
            Event::ExecutionQueued(q) => Some(q),
            _ => None,
        })
        .ok_or_else(|| Error::Bundle("no ExecutionQueued event: not an execution".into()))
}

/// Reads an event's stored body and envelope.
fn stored(log: &LogKeyspaces, id: Ulid) -> Result<(String, Envelope)> {
    let value = log
        .events
        .get(id.to_bytes())?
        .ok_or_else(|| Error::Bundle(format!("event {id} is missing from the log")))?;
    let envelope = events::decode_at(id, &value)?;
    let (_, body) = events::split_stored(&value).map_err(|source| events::Error::Decode {
        id: id.to_string(),
        source,
    })?;
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| Error::Bundle(format!("event {id} is not UTF-8")))?;
    Ok((body, envelope))
}

/// The events a bundle of `execution_id` holds, in log order: the execution's stream and, for
/// an operator firing, the firing's stream.
pub fn collect(log: &LogKeyspaces, execution_id: &str) -> Result<Vec<(String, Envelope)>> {
    let stream = events::stream::execution(execution_id);
    let mut ids: Vec<Ulid> = log.read_stream(&stream)?.iter().map(|e| e.id).collect();
    let Some(first) = ids.first().copied() else {
        return Err(Error::Bundle(format!("no execution {execution_id}")));
    };
    let (_, opened) = stored(log, first)?;
    let Event::ExecutionQueued(queued) = &opened.event else {
        return Err(Error::Bundle(format!(
            "execution {execution_id} does not start with ExecutionQueued"
        )));
    };
    if let FiringSource::Operators { attestation } = &queued.firing.source {
        let attestation = Ulid::from_string(attestation).map_err(|_| {
            Error::Bundle(format!(
                "the attestation reference {attestation:?} is not a ULID"
            ))
        })?;
        let (_, attested) = stored(log, attestation)?;
        ids.extend(log.read_stream(&attested.stream)?.iter().map(|e| e.id));
    }
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| stored(log, id)).collect()
}

/// Makes the bundle of `execution_id` against the stored checkpoint `checkpoint` (its note and
/// size; it must cover every event of the execution).
pub fn build(
    log: &LogKeyspaces,
    store: &TileStore,
    execution_id: &str,
    checkpoint_note: &[u8],
    checkpoint_size: u64,
) -> Result<Bundle> {
    let collected = indexed(log, store, execution_id)?;
    assemble(
        store,
        execution_id,
        collected,
        checkpoint_note,
        checkpoint_size,
    )
}

/// Makes the bundle of `execution_id` against the newest stored checkpoint that covers it,
/// preferring one the operators cosigned.
pub fn prove(log: &LogKeyspaces, store: &TileStore, execution_id: &str) -> Result<Bundle> {
    let collected = indexed(log, store, execution_id)?;
    let needed = collected.iter().map(|(i, _, _)| i + 1).max().unwrap_or(0);
    let (size, note) = choose_checkpoint(store, needed)?.ok_or_else(|| {
        Error::Bundle(format!(
            "execution {execution_id} is not covered by a checkpoint yet (it needs {needed} leaves); try again after the next one"
        ))
    })?;
    assemble(store, execution_id, collected, &note, size)
}

/// The newest stored checkpoint of at least `min_size` leaves that carries the operators' line,
/// or else the newest of at least that size.
pub fn choose_checkpoint(store: &TileStore, min_size: u64) -> Result<Option<(u64, Vec<u8>)>> {
    let mut fallback = None;
    for item in store.checkpoints_newest_first() {
        let (size, note) = item?;
        if size < min_size {
            break;
        }
        if cosigned(&note) {
            return Ok(Some((size, note)));
        }
        if fallback.is_none() {
            fallback = Some((size, note));
        }
    }
    Ok(fallback)
}

/// Whether a stored note carries an operators' line (checked by whoever relies on it).
fn cosigned(note: &[u8]) -> bool {
    let text = String::from_utf8_lossy(note);
    let origin = text.lines().next().unwrap_or_default();
    let line = format!("\n\u{2014} {} ", crate::cosign::key_name(origin));
    text.contains(&line)
}

type Indexed = Vec<(u64, String, Envelope)>;

fn indexed(log: &LogKeyspaces, store: &TileStore, execution_id: &str) -> Result<Indexed> {
    collect(log, execution_id)?
        .into_iter()
        .map(|(body, envelope)| {
            let index = store.leaf_index(log, envelope.id)?.ok_or_else(|| {
                Error::Bundle(format!(
                    "event {} is not in the Merkle tree yet; try again after the next checkpoint",
                    envelope.id
                ))
            })?;
            Ok((index, body, envelope))
        })
        .collect()
}

fn assemble(
    store: &TileStore,
    execution_id: &str,
    collected: Indexed,
    checkpoint_note: &[u8],
    checkpoint_size: u64,
) -> Result<Bundle> {
    let envelopes: Vec<Envelope> = collected.iter().map(|(_, _, e)| e.clone()).collect();
    let summary = summarize(&envelopes)?;
    let task_id = queued(&envelopes)?.task_id.clone();
    let mut proven = Vec::with_capacity(collected.len());
    for (index, body, envelope) in collected {
        if index >= checkpoint_size {
            return Err(Error::Bundle(format!(
                "event {} (leaf {index}) is newer than the latest checkpoint ({checkpoint_size} leaves); try again after the next one",
                envelope.id
            )));
        }
        let proof = crate::proof::inclusion(store as &dyn TileSource, checkpoint_size, index)?;
        proven.push(ProvenEvent {
            index,
            body,
            proof: crate::proof::to_base64(&proof),
        });
    }
    Ok(Bundle {
        format: FORMAT.into(),
        execution_id: execution_id.to_owned(),
        task_id,
        summary,
        checkpoint: String::from_utf8(checkpoint_note.to_vec())
            .map_err(|_| Error::Bundle("the checkpoint is not UTF-8".into()))?,
        events: proven,
    })
}

/// What an auditor brings: the log's key and, to check the operators' word, their set and the
/// quorum to require of the cosignature (default two thirds of the set's weight).
#[derive(Debug, Clone)]
pub struct Trust {
    pub log: LogVerifier,
    pub operators: Option<OperatorSet>,
    pub quorum: Option<u64>,
}

/// What a bundle was found to prove.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub checkpoint_size: u64,
    pub root: Hash,
    pub events: usize,
    /// The cosignature's quorum, when an operator set was given.
    pub cosignature: Option<Quorum>,
    /// Signers of the trigger's attestation checked against the operator set.
    pub attestation: Option<usize>,
    pub summary: Summary,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events included in the checkpoint of {} leaves (root {})",
            self.events, self.checkpoint_size, self.root
        )?;
        match &self.cosignature {
            Some(q) => write!(f, "; cosigned by {q}")?,
            None => write!(
                f,
                "; the operators' cosignature not checked (no operator set given)"
            )?,
        }
        match self.attestation {
            Some(n) => write!(f, "; the trigger attested by {n} operators of the set")?,
            None if self.summary.trigger.fired_by == "operators" => write!(
                f,
                "; the trigger's attestation not checked (no operator set given)"
            )?,
            None => write!(f, "; fired by a client")?,
        }
        write!(f, "; status {:?}", self.summary.status)
    }
}

fn fail(message: impl Into<String>) -> Error {
    Error::Bundle(message.into())
}

/// Checks a bundle offline (see the module docs for what, in which order).
pub fn verify(bundle: &Bundle, trust: &Trust) -> Result<Verified> {
    if bundle.format != FORMAT {
        return Err(fail(format!(
            "format {:?}, this verifier reads {FORMAT:?}",
            bundle.format
        )));
    }
    let checkpoint = trust.log.open(bundle.checkpoint.as_bytes())?;
    let cosignature = match &trust.operators {
        None => None,
        Some(set) => Some(check_cosignature(&checkpoint, set, trust.quorum)?),
    };
    let envelopes = check_events(bundle, &checkpoint)?;
    let queued = check_streams(bundle, &envelopes)?;
    let attestation = check_trigger(queued, &envelopes, trust.operators.as_ref())?;
    let summary = summarize(&envelopes)?;
    compare(&bundle.summary, &summary)?;
    Ok(Verified {
        checkpoint_size: checkpoint.size,
        root: checkpoint.root,
        events: envelopes.len(),
        cosignature,
        attestation,
        summary,
    })
}

fn check_cosignature(
    checkpoint: &SignedCheckpoint,
    set: &OperatorSet,
    quorum: Option<u64>,
) -> Result<Quorum> {
    let line = checkpoint.cosignature.as_ref().ok_or_else(|| {
        fail("the checkpoint carries no operators' cosignature: nothing but the aggregator vouches for it")
    })?;
    set.verify(
        &checkpoint.text,
        line,
        quorum.unwrap_or_else(|| set.two_thirds()),
    )
    .map_err(|e| fail(format!("the checkpoint's cosignature: {e}")))
}

/// Each event's inclusion, in log order; returns them decoded.
fn check_events(bundle: &Bundle, checkpoint: &SignedCheckpoint) -> Result<Vec<Envelope>> {
    if bundle.events.is_empty() {
        return Err(fail("the bundle holds no events"));
    }
    let mut envelopes = Vec::with_capacity(bundle.events.len());
    let mut previous: Option<u64> = None;
    for (n, event) in bundle.events.iter().enumerate() {
        let mut value = Vec::with_capacity(32 + event.body.len());
        value.extend_from_slice(&events::GENESIS_HASH);
        value.extend_from_slice(event.body.as_bytes());
        let decoded = events::decode(&value);
        let name = match &decoded {
            Ok(e) => format!(
                "event #{n} (leaf {}, {} {} in {})",
                event.index,
                e.event.type_name(),
                e.id,
                e.stream
            ),
            Err(_) => format!("event #{n} (leaf {})", event.index),
        };
        if previous.is_some_and(|p| p >= event.index) {
            return Err(fail(format!("{name}: events are not in log order")));
        }
        previous = Some(event.index);
        // Inclusion first: a changed body fails here, whatever it changed.
        let proof =
            crate::proof::from_base64(&event.proof).map_err(|e| fail(format!("{name}: {e}")))?;
        crate::proof::verify_inclusion(
            &proof,
            checkpoint.size,
            checkpoint.root,
            event.index,
            crate::leaf_hash(event.body.as_bytes()),
        )
        .map_err(|e| {
            fail(format!(
                "{name} is not the event the log holds at that position: {e}"
            ))
        })?;
        let envelope = decoded.map_err(|e| fail(format!("{name} does not decode: {e}")))?;
        envelopes.push(envelope);
    }
    let mut ids: Vec<Ulid> = envelopes.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if ids.iter().zip(envelopes.iter()).any(|(a, e)| *a != e.id) {
        return Err(fail(
            "the events' ULIDs are not in the order of their leaves",
        ));
    }
    Ok(envelopes)
}

/// The execution's stream whole from its first event, and nothing from other streams but the
/// firing's.
fn check_streams<'a>(bundle: &Bundle, envelopes: &'a [Envelope]) -> Result<&'a ExecutionQueued> {
    let stream = events::stream::execution(&bundle.execution_id);
    let queued = queued(envelopes)?;
    if queued.execution_id != bundle.execution_id || queued.task_id != bundle.task_id {
        return Err(fail(format!(
            "the events are of execution {} of task {}, the bundle says {} of {}",
            queued.execution_id, queued.task_id, bundle.execution_id, bundle.task_id
        )));
    }
    let firing_stream = match &queued.firing.source {
        FiringSource::Operators { attestation } => envelopes
            .iter()
            .find(|e| e.id.to_string() == *attestation)
            .map(|e| e.stream.clone()),
        FiringSource::Client => None,
    };
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for envelope in envelopes {
        let own = envelope.stream == stream;
        if !own && Some(&envelope.stream) != firing_stream.as_ref() {
            return Err(fail(format!(
                "event {} of stream {} does not belong to execution {}",
                envelope.id, envelope.stream, bundle.execution_id
            )));
        }
        let expected = next.entry(envelope.stream.as_str()).or_insert(1);
        if envelope.seq != *expected {
            return Err(fail(format!(
                "stream {} skips from event {} to {}: the bundle leaves events out",
                envelope.stream,
                *expected - 1,
                envelope.seq
            )));
        }
        *expected += 1;
    }
    Ok(queued)
}

/// The attestation behind an operator firing; with an operator set, its signatures.
fn check_trigger(
    queued: &ExecutionQueued,
    envelopes: &[Envelope],
    operators: Option<&OperatorSet>,
) -> Result<Option<usize>> {
    let FiringSource::Operators { attestation } = &queued.firing.source else {
        return Ok(None);
    };
    let attested = envelopes
        .iter()
        .find(|e| e.id.to_string() == *attestation)
        .and_then(|e| match &e.event {
            Event::TriggerAttested(a) => Some(a),
            _ => None,
        })
        .ok_or_else(|| {
            fail(format!(
                "the execution names attestation {attestation}, which the bundle does not hold"
            ))
        })?;
    if attested.task_id != queued.task_id || attested.trigger_request_id != queued.firing.dedup_key
    {
        return Err(fail(format!(
            "the attestation is of firing {}:{}, the execution of {}:{}",
            attested.task_id, attested.trigger_request_id, queued.task_id, queued.firing.dedup_key
        )));
    }
    if attested.output != queued.firing.output || attested.kind != queued.firing.kind {
        return Err(fail(
            "the execution ran on a trigger output the operators did not attest",
        ));
    }
    let Some(set) = operators else {
        return Ok(None);
    };
    check_attestation(attested, set).map(Some)
}

/// Checks a `TriggerAttested` against an operator set: the output hashes to what was signed,
/// the digest is the one its inputs give, every signer is in the set (binding checked for the
/// attestation's chain), and the aggregate verifies.
pub fn check_attestation(a: &TriggerAttested, set: &OperatorSet) -> Result<usize> {
    let bad = |why: String| fail(format!("the trigger's attestation: {why}"));
    let output = a.output.clone().unwrap_or(Value::Null);
    let output_hash = attest::output_hash(&output).map_err(|e| bad(e.to_string()))?;
    if hex::encode(output_hash) != a.output_hash.trim_start_matches("0x") {
        return Err(bad(
            "the recorded output does not hash to output_hash".into()
        ));
    }
    let digest = attest::firing_digest(a.chain_id, &a.task_id, &a.trigger_request_id, &output_hash);
    if hex::encode(digest) != a.digest.trim_start_matches("0x") {
        return Err(bad(
            "the digest is not the one its recorded inputs give".into()
        ));
    }
    if a.signers.is_empty() {
        return Err(bad("no signers".into()));
    }
    let mut keys = Vec::with_capacity(a.signers.len());
    let mut seen = std::collections::BTreeSet::new();
    for signer in &a.signers {
        let address: Address = signer
            .parse()
            .map_err(|_| bad(format!("{signer:?} is not an address")))?;
        if !seen.insert(address) {
            return Err(bad(format!("{signer} is counted twice")));
        }
        let key = set.key(&address).ok_or_else(|| {
            bad(format!(
                "{signer} signed, and is not in the operator set given"
            ))
        })?;
        keys.push(*key);
    }
    set.check_bindings(a.chain_id)
        .map_err(|e| bad(format!("{e} (chain {})", a.chain_id)))?;
    let aggregate = hex::decode(a.aggregate_signature.trim_start_matches("0x"))
        .map_err(|_| bad("the aggregate signature is not hex".into()))?;
    attest::verify_aggregate(&keys, &digest, &aggregate).map_err(|e| bad(e.to_string()))?;
    Ok(keys.len())
}

/// Names the first claim of `claimed` the events do not back.
fn compare(claimed: &Summary, actual: &Summary) -> Result<()> {
    let differ = |what: &str, claim: String, fact: String| {
        Err(fail(format!(
            "the summary says {what} {claim}, the events say {fact}"
        )))
    };
    if claimed.status != actual.status {
        return differ(
            "status",
            format!("{:?}", claimed.status),
            format!("{:?}", actual.status),
        );
    }
    if claimed.error != actual.error {
        return differ(
            "error",
            format!("{:?}", claimed.error),
            format!("{:?}", actual.error),
        );
    }
    if claimed.trigger != actual.trigger {
        return differ(
            "the trigger was",
            serde_json::to_string(&claimed.trigger).unwrap_or_default(),
            serde_json::to_string(&actual.trigger).unwrap_or_default(),
        );
    }
    if claimed.steps.len() != actual.steps.len() {
        return differ(
            "the number of steps is",
            claimed.steps.len().to_string(),
            actual.steps.len().to_string(),
        );
    }
    for (i, (c, a)) in claimed.steps.iter().zip(&actual.steps).enumerate() {
        if c != a {
            return differ(
                &format!("step {i} ({}) was", a.id),
                serde_json::to_string(c).unwrap_or_default(),
                serde_json::to_string(a).unwrap_or_default(),
            );
        }
    }
    Ok(())
}
