//! The operator network, the aggregator's side.
//!
//! - `registry`: the operator set (from the config or a registry contract), checked (proofs of
//!   possession) and recorded as events;
//! - `auth`: every operator request is signed; freshness and nonces refuse replays;
//! - `pool`: connected operators, their `SyncMessages` streams, task assignment (rendezvous
//!   hashing, recorded as events), pushed messages and their acknowledgements;
//! - `attestations`: signed reports of firings, aggregated until a quorum agrees, then fired;
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
pub mod registry;
pub mod verifier;

pub use error::{OperatorError, OperatorResult};
pub use pool::Pool;
