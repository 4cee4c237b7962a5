//! The operators' cosignature of a checkpoint: one extra line on the signed note.
//!
//! - **What an operator signs.** A BLS12-381 signature (`attest`'s ciphersuite, min_pk: 48-byte
//!   keys, 96-byte signatures) of `sha256("ava-checkpoint-cosignature-v1\n" ‖ note text)`, the
//!   note text being the checkpoint's three lines. The prefix keeps these signatures apart from
//!   firing digests (`ava-firing-v1`), which the same keys sign. No timestamp, unlike C2SP's
//!   Ed25519 `cosignature/v1`: signatures of one message are what BLS can aggregate into one.
//! - **What it means.** The operator checked that this checkpoint is consistent with every
//!   checkpoint it cosigned before (`may_cosign`), and it never signs two roots for one size.
//! - **The line.** `— <origin>/operators base64(key id ‖ n ‖ signers ‖ aggregate)`: `n` the
//!   number of signers (2 bytes BE), then their 20-byte addresses in ascending order, then the
//!   96-byte aggregate of their signatures. The key id follows the signed-note recommendation for
//!   a type without an assigned byte: `SHA-256(name ‖ 0x0A ‖ 0xff ‖
//!   "ava-operators-bls12381-v1")[:4]` (no public key in it: the signer set varies, and a
//!   verifier is given the operator set out of band, never by the note).
//! - **Quorum.** An auditor gives the operator set (a file in the `operators.members` form) and
//!   a quorum: the least total weight of signers it trusts (default two thirds of the set's
//!   weight, rounded up). Every signer must be in the set; the aggregate must verify with their
//!   keys, whose proofs of possession make the fast aggregate check sound.

use std::collections::BTreeMap;
use std::path::Path;

use alloy_primitives::Address;
use blst::min_pk::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tlog_tiles::Hash;

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};

/// The signature type of the line: `0xff` and an identifier, as the signed-note specification
/// recommends for types without an assigned byte.
pub const SIGNATURE_TYPE: &[u8] = b"\xffava-operators-bls12381-v1";
const DOMAIN: &[u8] = b"ava-checkpoint-cosignature-v1\n";
const SIGNATURE_LEN: usize = 96;

/// The key name of the operators' line.
pub fn key_name(origin: &str) -> String {
    format!("{origin}/operators")
}

pub fn key_id(origin: &str) -> u32 {
    signed_note::key_id(&key_name(origin), SIGNATURE_TYPE)
}

/// What operators sign for a checkpoint whose note text is `text`.
pub fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(text)
        .finalize()
        .into()
}

/// One operator's cosignature of a checkpoint text.
pub fn sign(key: &SecretKey, text: &[u8]) -> Vec<u8> {
    attest::sign_digest(key, &digest(text))
}

/// Checks one operator's cosignature.
pub fn verify_one(key: &PublicKey, text: &[u8], signature: &[u8]) -> Result<()> {
    attest::verify_digest(key, &digest(text), signature)
        .map_err(|e| Error::Cosignature(e.to_string()))
}

/// The aggregate cosignature of a set of operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// In ascending order, each once.
    pub signers: Vec<Address>,
    pub aggregate: Vec<u8>,
}

impl Cosignature {
    /// Aggregates operators' signatures of one checkpoint (each checked by the caller).
    pub fn aggregate(mut parts: Vec<(Address, Vec<u8>)>) -> Result<Self> {
        parts.sort_by_key(|p| p.0);
        parts.dedup_by(|a, b| a.0 == b.0);
        if parts.is_empty() {
            return Err(Error::Cosignature("no signatures to aggregate".into()));
        }
        let signatures: Vec<Vec<u8>> = parts.iter().map(|(_, s)| s.clone()).collect();
        let aggregate =
            attest::aggregate(&signatures).map_err(|e| Error::Cosignature(e.to_string()))?;
        Ok(Self {
            signers: parts.into_iter().map(|(a, _)| a).collect(),
            aggregate,
        })
    }

    /// The line's bytes after the key id.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 20 * self.signers.len() + SIGNATURE_LEN);
        let n = u16::try_from(self.signers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for signer in self.signers.iter().take(usize::from(n)) {
            out.extend_from_slice(signer.as_slice());
        }
        out.extend_from_slice(&self.aggregate);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::Cosignature(format!("malformed operators' line: {why}"));
        let (n, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("too short"))?;
        let n = usize::from(u16::from_be_bytes(*n));
        if rest.len() != 20 * n + SIGNATURE_LEN {
            return Err(bad("its length does not match its signer count"));
        }
        let (addresses, aggregate) = rest.split_at(20 * n);
        let signers: Vec<Address> = addresses.chunks(20).map(Address::from_slice).collect();
        if signers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("signers out of order or repeated"));
        }
        if signers.is_empty() {
            return Err(bad("no signers"));
        }
        Ok(Self {
            signers,
            aggregate: aggregate.to_vec(),
        })
    }
}

/// One operator as `operators.members` lists it (hex fields; what `operator register` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub address: String,
    pub bls_public_key: String,
    pub proof_of_possession: String,
    #[serde(default)]
    pub ecdsa_binding: String,
    #[serde(default = "one")]
    pub weight: u64,
}

fn one() -> u64 {
    1
}

/// The forms a file of operators may take: a list, `{members: [...]}`, or an aggregator config's
/// `{operators: {members: [...]}}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum MembersFile {
    List(Vec<Member>),
    Members { members: Vec<Member> },
    Config { operators: MembersOnly },
}

#[derive(Deserialize)]
struct MembersOnly {
    members: Vec<Member>,
}

#[derive(Debug, Clone)]
struct Operator {
    registration: attest::Registration,
    key: PublicKey,
    weight: u64,
}

/// The operators an auditor trusts, with their weights; each key's proof of possession checked.
#[derive(Debug, Clone, Default)]
pub struct OperatorSet {
    operators: BTreeMap<Address, Operator>,
}

fn hex_field(field: &str, text: &str) -> Result<Vec<u8>> {
    hex::decode(text.trim_start_matches("0x"))
        .map_err(|_| Error::Operators(format!("{field} {text:?} is not hex")))
}

/// What a cosignature's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub signers: usize,
    pub weight: u64,
    pub required: u64,
    pub total: u64,
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operators holding weight {} of {} (at least {} required)",
            self.signers, self.weight, self.total, self.required
        )
    }
}

impl OperatorSet {
    pub fn new(members: &[Member]) -> Result<Self> {
        let mut operators = BTreeMap::new();
        for m in members {
            let address: Address = m
                .address
                .parse()
                .map_err(|_| Error::Operators(format!("{:?} is not an address", m.address)))?;
            let registration = attest::Registration {
                address,
                bls_public_key: hex_field("bls_public_key", &m.bls_public_key)?,
                proof_of_possession: hex_field("proof_of_possession", &m.proof_of_possession)?,
                ecdsa_binding: hex_field("ecdsa_binding", &m.ecdsa_binding)?,
            };
            let key = registration
                .verify_possession()
                .map_err(|e| Error::Operators(e.to_string()))?;
            if m.weight == 0 {
                return Err(Error::Operators(format!("{address:#x} has weight 0")));
            }
            let operator = Operator {
                registration,
                key,
                weight: m.weight,
            };
            if operators.insert(address, operator).is_some() {
                return Err(Error::Operators(format!("{address:#x} is listed twice")));
            }
        }
        Ok(Self { operators })
    }

    /// Reads a YAML or JSON file of operators (see `MembersFile`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Operators(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Operators(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let file: MembersFile = serde_norway::from_str(text).map_err(|e| {
            Error::Operators(format!(
                "not a list of operators (address, bls_public_key, proof_of_possession, ecdsa_binding, weight): {e}"
            ))
        })?;
        let members = match file {
            MembersFile::List(m) | MembersFile::Members { members: m } => m,
            MembersFile::Config { operators } => operators.members,
        };
        Self::new(&members)
    }

    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    pub fn len(&self) -> usize {
        self.operators.len()
    }

    pub fn total_weight(&self) -> u64 {
        self.operators.values().map(|o| o.weight).sum()
    }

    /// Two thirds of the total weight, rounded up: the default quorum.
    pub fn two_thirds(&self) -> u64 {
        (self.total_weight().saturating_mul(2)).div_ceil(3)
    }

    pub fn weight(&self, address: &Address) -> Option<u64> {
        self.operators.get(address).map(|o| o.weight)
    }

    pub fn key(&self, address: &Address) -> Option<&PublicKey> {
        self.operators.get(address).map(|o| &o.key)
    }

    /// Checks every ECDSA binding that is present for `chain_id` (an entry read from a registry
    /// contract has none; its proof of possession is checked in any case).
    pub fn check_bindings(&self, chain_id: u64) -> Result<()> {
        for operator in self.operators.values() {
            operator
                .registration
                .check(chain_id)
                .map_err(|e| Error::Operators(e.to_string()))?;
        }
        Ok(())
    }

    /// Checks a cosignature of the checkpoint text `text`: every signer in this set, the
    /// aggregate valid for their keys, their weight at least `required`.
    pub fn verify(&self, text: &[u8], cosignature: &Cosignature, required: u64) -> Result<Quorum> {
        let mut keys = Vec::with_capacity(cosignature.signers.len());
        let mut weight = 0u64;
        for signer in &cosignature.signers {
            let operator = self.operators.get(signer).ok_or_else(|| {
                Error::Cosignature(format!(
                    "{signer:#x} cosigned, and is not in the operator set given"
                ))
            })?;
            keys.push(operator.key);
            weight = weight.saturating_add(operator.weight);
        }
        attest::verify_aggregate(&keys, &digest(text), &cosignature.aggregate).map_err(|e| {
            Error::Cosignature(format!(
                "the operators' aggregate signature does not verify for the signers it names: {e}"
            ))
        })?;
        let quorum = Quorum {
            signers: keys.len(),
            weight,
            required,
            total: self.total_weight(),
        };
        if weight < required {
            return Err(Error::Cosignature(format!("no quorum: {quorum}")));
        }
        Ok(quorum)
    }
}

/// What an operator keeps in its state file: the last checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    pub origin: String,
    /// The log's verifier key, pinned on the first checkpoint.
    pub log_key: String,
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
}

/// Why an operator refuses to cosign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the checkpoint is of log {offered:?}, this operator cosigns {pinned:?}")]
    OtherLog { pinned: String, offered: String },
    /// Evidence of a fork: the same size with another root.
    #[error(
        "the log showed two roots for size {size}: {signed} (cosigned) and now {offered}; refusing to sign a fork"
    )]
    Fork {
        size: u64,
        signed: String,
        offered: String,
    },
    #[error("the checkpoint has {offered} leaves, fewer than the {signed} already cosigned")]
    Rollback { signed: u64, offered: u64 },
    /// The proof offered starts at another size than the one this operator cosigned last.
    #[error("a consistency proof from size {from} is needed")]
    NeedProof { from: u64 },
    #[error(
        "the checkpoint is not consistent with the one of size {from} cosigned before: {reason}"
    )]
    Inconsistent { from: u64, reason: String },
    #[error("the state file is unreadable: {0}")]
    State(String),
}

/// The rule an operator follows before cosigning `offered`: the same log, never a second root
/// for a size, never a smaller tree, and a valid consistency proof (from size `proof_from`)
/// from the last checkpoint it cosigned.
pub fn may_cosign(
    last: Option<&Cosigned>,
    offered: &SignedCheckpoint,
    proof_from: u64,
    proof: &[Hash],
) -> std::result::Result<(), Refusal> {
    let Some(last) = last else {
        return Ok(());
    };
    if last.origin != offered.origin {
        return Err(Refusal::OtherLog {
            pinned: last.origin.clone(),
            offered: offered.origin.clone(),
        });
    }
    let signed_root = Hash::parse_hash(&last.root)
        .map_err(|_| Refusal::State("the root is not base64".into()))?;
    if offered.size == last.size {
        return if offered.root == signed_root {
            Ok(())
        } else {
            Err(Refusal::Fork {
                size: last.size,
                signed: last.root.clone(),
                offered: offered.root.to_string(),
            })
        };
    }
    if offered.size < last.size {
        return Err(Refusal::Rollback {
            signed: last.size,
            offered: offered.size,
        });
    }
    if proof_from != last.size {
        return Err(Refusal::NeedProof { from: last.size });
    }
    crate::proof::verify_consistency(proof, last.size, signed_root, offered.size, offered.root)
        .map_err(|e| Refusal::Inconsistent {
            from: last.size,
            reason: e.to_string(),
        })
}
