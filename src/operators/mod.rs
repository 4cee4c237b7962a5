//! The operator network, the aggregator's side: the I/O around rules that live in `domain`
//! (`domain::assignment`, `domain::attestation`, `domain::overload`). The operator process
//! itself is the `operator` crate.
//!
//! - `registry`: the operator set (from the config or a registry contract), checked (proofs of
//!   possession) and recorded as events;
//! - `auth`: every operator request is signed; freshness and nonces refuse replays;
//! - `refusals`: refused requests counted by reason and by the operator they name;
//! - `pool`: connected operators, their `SyncMessages` streams, task assignment (as
//!   `domain::assignment` chooses, recorded as events, by the log's writer), pushed messages and
//!   their acknowledgements;
//! - `presence`: the operators connected to other replicas of a replicated log (none on one
//!   node), which the writer assigns tasks among too;
//! - `attestations`: signed reports of firings, folded by `domain::attestation` until a quorum
//!   agrees, then fired;
//! - `verifier`: the reports' BLS signatures, checked in batches;
//! - `overload`: event triggers that match too much;
//! - `error`: why a request is refused (`OperatorError`, mapped to statuses by `rpc::error`).
//!
//! The cryptography itself is in the `attest` crate, shared with the operator and `replay`.

pub mod attestations;
pub mod auth;
pub mod error;
pub mod overload;
pub mod pool;
pub mod presence;
pub mod refusals;
pub mod registry;
pub mod verifier;

pub use error::{OperatorError, OperatorResult};
pub use pool::Pool;
