//! The domain events: every change the system can make, as past-tense variants.
//!
//! Each variant wraps a payload struct of the same name and is stored with its type name and
//! schema version (see `envelope`). Never change what an old variant means: add a field with a
//! default, or bump the version and add an upcaster (`upcast`).

use serde::{Deserialize, Serialize};

use crate::execution::{ExecutionOutcome, Firing, Step};
use crate::task::{TaskDefinition, TriggerKind};
use crate::user_op::{OpPurpose, OpReceipt, SenderKind, UserOpRecord};

/// Generates the `Event` enum from the payload types, with the type name and schema version of
/// each, the payload serializer and the typed decoder.
macro_rules! events {
    ($($name:ident = $version:literal),* $(,)?) => {
        /// One domain event. The variant name is the stored type name.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Event {
            $($name($name),)*
        }

        /// Every event type with its current schema version.
        pub const EVENT_TYPES: &[(&str, u16)] = &[$((stringify!($name), $version),)*];

        impl Event {
            /// The stored type name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$name(_) => stringify!($name),)*
                }
            }

            /// The schema version this code writes for the event's type.
            pub fn schema_version(&self) -> u16 {
                match self {
                    $(Self::$name(_) => $version,)*
                }
            }

            /// The current schema version of a type, `None` for a type this code does not know.
            pub fn current_version(type_name: &str) -> Option<u16> {
                match type_name {
                    $(stringify!($name) => Some($version),)*
                    _ => None,
                }
            }

            /// Decodes a payload already at the current schema version of `type_name`.
            pub(crate) fn decode_current(type_name: &str, json: &str) -> Result<Self, DecodeError> {
                match type_name {
                    $(stringify!($name) => serde_json::from_str(json).map(Self::$name).map_err(DecodeError::Payload),)*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }

            /// Deserializes a payload at the current schema version of `type_name` (a known type)
            /// from inside the envelope's parser: one pass over the stored bytes.
            pub(crate) fn deserialize_current<'de, D: serde::Deserializer<'de>>(
                type_name: &str,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                match type_name {
                    $(stringify!($name) => $name::deserialize(deserializer).map(Self::$name),)*
                    other => Err(serde::de::Error::custom(format!("unknown event type {other:?}"))),
                }
            }

            /// Decodes an upcast payload value.
            pub(crate) fn decode_value(type_name: &str, value: serde_json::Value) -> Result<Self, DecodeError> {
                match type_name {
                    $(stringify!($name) => serde_json::from_value(value).map(Self::$name).map_err(DecodeError::Payload),)*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }

        /// Serializes the payload alone (no tag): the envelope carries the type name.
        pub(crate) struct Payload<'a>(pub &'a Event);

        impl Serialize for Payload<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    $(Event::$name(payload) => payload.serialize(serializer),)*
                }
            }
        }

        $(impl From<$name> for Event {
            fn from(payload: $name) -> Self {
                Self::$name(payload)
            }
        })*
    };
}

events! {
    TaskCreated = 1,
    TaskEnabled = 1,
    TaskDisabled = 1,
    TaskCancelled = 1,
    TaskDeleted = 1,
    TaskCompleted = 1,
    TaskFailed = 1,
    TaskTriggered = 1,
    ExecutionQueued = 1,
    ExecutionStarted = 1,
    StepStarted = 1,
    StepRecorded = 1,
    ExecutionFinished = 1,
    TriggerReported = 1,
    TriggerAttested = 2,
    ReportsDisagreed = 1,
    TriggerOverloadReported = 1,
    OperatorRegistered = 1,
    OperatorDeregistered = 1,
    OperatorAssigned = 1,
    OperatorUnassigned = 1,
    WalletRegistered = 1,
    WalletHidden = 1,
    WalletUnhidden = 1,
    SecretCreated = 1,
    SecretUpdated = 1,
    SecretDeleted = 1,
    ApiKeyRevoked = 1,
    UserOpSubmitted = 1,
    UserOpSent = 1,
    UserOpRejected = 1,
    UserOpLanded = 1,
    UserOpPending = 1,
    WithdrawalRequested = 1,
    ExecutionClaimed = 1,
    ExecutionReleased = 1,
}

/// Serializes an event's payload alone, as it is stored (without the type tag).
pub fn serialize_payload<S: serde::Serializer>(
    event: &Event,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Payload(event).serialize(serializer)
}

/// Event types that end their stream for good: nothing may be appended after one, and an
/// idempotency key whose result lives on the stream is free again.
pub const CLOSING_TYPES: &[&str] = &["TaskDeleted"];

impl Event {
    pub fn closes_stream(&self) -> bool {
        closes_stream(self.type_name())
    }
}

pub fn closes_stream(type_name: &str) -> bool {
    CLOSING_TYPES.contains(&type_name)
}

/// Why a stored payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error(
        "event type {type_name} has schema version {version}, newer than this code's {current}"
    )]
    FutureVersion {
        type_name: String,
        version: u16,
        current: u16,
    },
    #[error("no upcaster from {type_name} v{version}")]
    MissingUpcaster { type_name: String, version: u16 },
    #[error("envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("payload: {0}")]
    Payload(serde_json::Error),
    #[error("stored value is {0} bytes, shorter than its hash")]
    Truncated(usize),
}

// ---- Tasks (stream `task:<task id>`) ----

/// A task was created with the definition the client submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: String,
    /// The signed-in owner (EOA), lower-case hex.
    pub owner: String,
    /// The smart wallet that runs the task, lower-case hex.
    pub wallet: String,
    pub definition: TaskDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEnabled {
    pub task_id: String,
}

/// Stopped, can be enabled again. `reason` is `user` or an overload description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDisabled {
    pub task_id: String,
    pub reason: String,
}

/// A terminal stop by the user: never runs again, never enabled again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    pub task_id: String,
}

/// The task is gone; closes its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDeleted {
    pub task_id: String,
}

/// Reached `max_execution` or passed `expired_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub task_id: String,
    pub reason: String,
}

/// Can never run again because of an error (its definition no longer validates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub task_id: String,
    pub error: String,
}

/// A firing was accepted for the task: appended to the task's stream against its version, so that
/// `max_execution` is checked in order; the run itself is the execution's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTriggered {
    pub task_id: String,
    pub execution_id: String,
    /// 0-based index of this run among the task's runs.
    pub index: i64,
    pub dedup_key: String,
}

// ---- Executions (stream `exec:<execution id>`) ----

/// Opens an execution's stream: the run is pending until `ExecutionFinished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionQueued {
    pub execution_id: String,
    pub task_id: String,
    pub owner: String,
    pub index: i64,
    pub firing: Firing,
}

/// A run began; recorded with its first durable step, so `started_at` (ms) says when it began
/// (0 in events written before the field existed: the event's own time then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStarted {
    pub execution_id: String,
    pub task_id: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Durable before a node with side effects runs: a started step with no result was interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStarted {
    pub execution_id: String,
    pub task_id: String,
    pub step_id: String,
    pub name: String,
    pub step_type: String,
}

/// A step's result (or a skipped node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecorded {
    pub execution_id: String,
    pub task_id: String,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFinished {
    pub execution_id: String,
    pub task_id: String,
    pub outcome: ExecutionOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

// ---- Operators and attestations ----

/// One operator's signed report of a firing (stream `firing:<task id>:<trigger request id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerReported {
    pub task_id: String,
    pub trigger_request_id: String,
    pub operator: String,
    pub kind: TriggerKind,
    /// The trigger output's chain-derived fields, as reported.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::null_kept::option"
    )]
    pub output: Option<serde_json::Value>,
    /// Hex of the firing digest the operator signed.
    pub digest: String,
    /// Hex of the operator's BLS12-381 signature over the digest.
    pub bls_signature: String,
}

/// A quorum of the assigned operators signed the same digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerAttested {
    pub task_id: String,
    pub trigger_request_id: String,
    pub chain_id: u64,
    pub kind: TriggerKind,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::null_kept::option"
    )]
    pub output: Option<serde_json::Value>,
    /// Hex of sha-256 of the RFC 8785 canonical JSON of `output`.
    pub output_hash: String,
    pub digest: String,
    pub aggregate_signature: String,
    /// Operator addresses whose signatures are aggregated.
    pub signers: Vec<String>,
    /// The quorum the signers met (since v2; `None` in v1 events, upcast, which recorded only
    /// the signers).
    pub quorum: Option<QuorumMet>,
}

/// The quorum a `TriggerAttested` met: the signers' weights, the weight assigned to the task,
/// and the share of it in force (`sum(weights) * denominator >= assigned_weight * numerator`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumMet {
    /// Each signer's weight, in the order of `signers`.
    pub weights: Vec<u64>,
    /// The total weight of the operators assigned to the task when the quorum formed.
    pub assigned_weight: u64,
    pub numerator: u64,
    pub denominator: u64,
}

impl QuorumMet {
    pub fn signed_weight(&self) -> u64 {
        self.weights.iter().fold(0u64, |a, w| a.saturating_add(*w))
    }

    /// Whether the signed weight reaches the share in force.
    pub fn reached(&self) -> bool {
        self.denominator > 0
            && self.numerator <= self.denominator
            && u128::from(self.signed_weight()) * u128::from(self.denominator)
                >= u128::from(self.assigned_weight) * u128::from(self.numerator)
            && self.assigned_weight > 0
    }
}

/// Reports of one firing that disagree on the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportsDisagreed {
    pub task_id: String,
    pub trigger_request_id: String,
    /// Digest (hex) → operators that signed it.
    pub digests: std::collections::BTreeMap<String, Vec<String>>,
}

/// An event trigger matched more events in a block than its cap (stream `overload:<task id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerOverloadReported {
    pub task_id: String,
    pub operator: String,
    pub block_number: u64,
    pub events_detected: u32,
    pub safety_limit: u32,
    pub query_index: String,
}

/// Stream `operator:<address>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRegistered {
    pub address: String,
    /// Hex of the 48-byte BLS12-381 (min_pk) public key.
    pub bls_public_key: String,
    /// Hex of the 96-byte BLS proof of possession.
    pub bls_proof_of_possession: String,
    /// Hex of the ECDSA signature binding the address to the BLS key.
    pub ecdsa_binding: String,
    pub weight: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorDeregistered {
    pub address: String,
}

/// Stream `assign:<task id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorAssigned {
    pub task_id: String,
    pub operator: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorUnassigned {
    pub task_id: String,
    pub operator: String,
    pub reason: String,
}

// ---- Wallets (stream `wallet:<owner>:<address>`) ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletRegistered {
    pub owner: String,
    pub address: String,
    /// Decimal string: salts are uint256.
    pub salt: String,
    pub factory: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletHidden {
    pub owner: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletUnhidden {
    pub owner: String,
    pub address: String,
}

// ---- Secrets (stream `secret:<org|_>:<owner>:<workflow|_>:<name>`) ----

/// Where a secret lives; empty `org_id` / `workflow_id` mean none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretScope {
    pub owner: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow_id: String,
    pub name: String,
}

/// The value only as AEAD ciphertext (hex of nonce || ciphertext || tag), never in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretCreated {
    pub scope: SecretScope,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretUpdated {
    pub scope: SecretScope,
    pub ciphertext: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretDeleted {
    pub scope: SecretScope,
}

// ---- API keys (stream `apikey:<jti>`) ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub jti: String,
}

// ---- User operations (on the stream of what they are for: `exec:<id>` for a step,
// `withdrawal:<id>` for a withdrawal) ----

/// Durable before the operation is handed to a sender: after a crash, the restarted aggregator
/// reads the chain for this exact operation and may send it again, byte for byte (the
/// EntryPoint nonce makes that at-most-once), but never builds a new one for the same purpose
/// while this one may still land.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOpSubmitted {
    pub purpose: OpPurpose,
    /// The smart wallet (the operation's sender), lower-case hex.
    pub wallet: String,
    pub chain_id: u64,
    pub entry_point: String,
    pub sender: SenderKind,
    pub user_op: UserOpRecord,
    pub user_op_hash: String,
    /// The nonce's key (upper 192 bits), hex, and its sequence (lower 64 bits).
    pub nonce_key: String,
    pub nonce_sequence: u64,
    /// The chain's head when the operation was built: where a search of the logs starts.
    pub from_block: u64,
    /// 1 for the first operation of this purpose; a rebuilt one (AA25, dropped) counts up.
    pub attempt: u32,
}

/// The sender took the operation (the self-bundler's `handleOps` transaction, when it has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOpSent {
    pub user_op_hash: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tx_hash: String,
}

/// The sender refused the operation, or it can no longer land (its nonce was used by another):
/// nothing of it is on chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOpRejected {
    pub user_op_hash: String,
    /// The ERC-4337 code when there is one (`AA25`, ...), else empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    pub reason: String,
}

/// The operation is on chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOpLanded {
    pub user_op_hash: String,
    pub receipt: OpReceipt,
}

/// No receipt within the wait: the operation may still land. Reported as pending, not as a
/// failure; the next look at the chain (a restart, a later read) settles it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOpPending {
    pub user_op_hash: String,
    pub waited_ms: u64,
}

// ---- Withdrawals (stream `withdrawal:<id>`) ----

/// `WithdrawFunds` accepted after local validation; its user operation follows on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalRequested {
    pub withdrawal_id: String,
    pub owner: String,
    pub wallet: String,
    pub recipient: String,
    /// Empty for ETH, else the ERC-20 contract, lower-case hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Decimal base units (resolved from "max" before it is recorded).
    pub amount: String,
}

// ---- Claims on executions (stream `exec:<execution id>`, on a replicated log only) ----

/// A replica of a replicated log took an execution to run, until `lease_until_ms` (ms since the
/// epoch, by the claimant's clock: the command's `recorded_at` plus the claim's lease). Appended
/// against the execution stream's version, so of two replicas racing for one execution one
/// wins; the same replica appends it again to renew its lease while it runs. A claim is granted
/// over another only once that one's lease has lapsed (judged at the new claim's
/// `recorded_at`). On a single-node log (fjall) executions are never claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionClaimed {
    pub execution_id: String,
    pub task_id: String,
    /// The execution's owner: every replica counts an owner's claims (`engine.owner_concurrency`).
    pub owner: String,
    /// The claimant: the replica's id (a ULID per process start).
    pub replica: String,
    pub lease_until_ms: u64,
}

/// A replica gave its claim on a pending execution up (it is stopping gracefully), so that
/// another replica takes the execution at once instead of after the claim's lease lapses.
/// Appended against the execution stream's version, by the latest claimant: a release decided
/// on a claim another replica has since replaced conflicts and is not recorded. What the
/// releaser recorded of the run stays: a step it started and did not record is found
/// interrupted by the next claimant, as after a lapse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReleased {
    pub execution_id: String,
    pub task_id: String,
    /// The releasing replica's id (the claimant named by the claim it gives up).
    pub replica: String,
}
