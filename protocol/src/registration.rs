//! The registration an operator hands to the aggregator (`operator register` prints it, the
//! aggregator's `operators.members` lists it): its ECDSA address, its BLS12-381 public key and
//! the proofs binding them (hex; see `attest`).

use serde::{Deserialize, Serialize};

/// One operator: its ECDSA address, its BLS12-381 public key and the proofs binding them (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorMember {
    pub address: String,
    pub bls_public_key: String,
    /// The BLS key's signature of itself.
    pub proof_of_possession: String,
    /// The ECDSA key's EIP-191 signature of the binding text.
    pub ecdsa_binding: String,
    #[serde(default = "one")]
    pub weight: u64,
}

fn one() -> u64 {
    1
}
