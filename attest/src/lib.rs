//! The operators' cryptography, defined once for every side: the `operator` binary signs, the
//! aggregator checks, and the `replay` tool verifies attestations offline.
//!
//! - **Identity.** An operator is an ECDSA address and a BLS12-381 public key (blst, min_pk:
//!   48-byte keys, 96-byte signatures). A *proof of possession* binds them: the BLS key signs its
//!   own compressed bytes (`POP_DST`), and the ECDSA key signs, EIP-191, the text
//!   [`binding_message`] naming both keys and the chain.
//! - **Firing digest.** What every operator that sees a firing signs with BLS (`SIGNATURE_DST`):
//!   `sha256("ava-firing-v1" ‖ chain id (8 bytes BE) ‖ len ‖ task id ‖ len ‖ trigger request id ‖
//!   sha256(RFC 8785 canonical JSON of the output's chain-derived fields))`, lengths 4 bytes BE.
//!   Fields an operator observes locally (when it saw the block) are not in the output, so honest
//!   operators sign the same digest.
//! - **Request signature.** Every `aggregator.Node` call carries, in metadata, `x-operator-address`,
//!   `x-operator-timestamp` (ms), `x-operator-nonce` (hex) and `x-operator-signature`: an EIP-191
//!   signature by the operator's ECDSA key over [`request_text`], which names the method, the
//!   address, the time, the nonce and the sha-256 of the request's protobuf encoding (prost
//!   encodes deterministically: fields in number order, no unknown fields).

use alloy_primitives::{Address, Signature as EcdsaSignature};
use blst::BLST_ERROR;
use blst::min_pk::{AggregateSignature, PublicKey, SecretKey, Signature};
use sha2::{Digest, Sha256};

/// The BLS ciphersuite of firing signatures (the standard proof-of-possession scheme).
pub const SIGNATURE_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// The BLS ciphersuite of proofs of possession.
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

pub const HEADER_ADDRESS: &str = "x-operator-address";
pub const HEADER_TIMESTAMP: &str = "x-operator-timestamp";
pub const HEADER_NONCE: &str = "x-operator-nonce";
pub const HEADER_SIGNATURE: &str = "x-operator-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(pub String);

fn bls(what: &str, e: BLST_ERROR) -> CryptoError {
    CryptoError(format!("{what}: {e:?}"))
}

/// A BLS key pair from 32 bytes or more of key material.
pub fn bls_key(ikm: &[u8]) -> Result<SecretKey, CryptoError> {
    SecretKey::key_gen(ikm, &[]).map_err(|e| bls("BLS key material (at least 32 bytes)", e))
}

pub fn public_key(bytes: &[u8]) -> Result<PublicKey, CryptoError> {
    let key = PublicKey::from_bytes(bytes).map_err(|e| bls("BLS public key", e))?;
    key.validate().map_err(|e| bls("BLS public key", e))?;
    Ok(key)
}

pub fn signature(bytes: &[u8]) -> Result<Signature, CryptoError> {
    Signature::from_bytes(bytes).map_err(|e| bls("BLS signature", e))
}

/// The text an operator's ECDSA key signs (EIP-191) to bind its address to its BLS key.
pub fn binding_message(address: Address, bls_public_key: &[u8], chain_id: u64) -> String {
    format!(
        "ava-aggregator operator binding v1\noperator: {address:#x}\nbls: 0x{}\nchain: {chain_id}",
        hex::encode(bls_public_key)
    )
}

/// What an operator registers: its keys and the two proofs that bind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub address: Address,
    pub bls_public_key: Vec<u8>,
    pub proof_of_possession: Vec<u8>,
    pub ecdsa_binding: Vec<u8>,
}

impl Registration {
    /// Checks the proofs the registration carries: the proof of possession always, the ECDSA
    /// binding when there is one (a registry contract that only its owner writes to stands in
    /// for it: the contract holds the BLS key and its proof of possession, not the binding).
    pub fn check(&self, chain_id: u64) -> Result<PublicKey, CryptoError> {
        if self.ecdsa_binding.is_empty() {
            self.verify_possession()
        } else {
            self.verify(chain_id)
        }
    }

    /// Checks that the BLS key signed itself (what makes aggregate verification sound).
    pub fn verify_possession(&self) -> Result<PublicKey, CryptoError> {
        let pk = public_key(&self.bls_public_key)?;
        let pop = signature(&self.proof_of_possession)?;
        let result = pop.verify(true, &self.bls_public_key, POP_DST, &[], &pk, true);
        if result != BLST_ERROR::BLST_SUCCESS {
            return Err(CryptoError(format!(
                "operator {:#x}: the proof of possession does not verify",
                self.address
            )));
        }
        Ok(pk)
    }

    /// Checks both proofs: the BLS key signed itself, the ECDSA key signed the binding.
    pub fn verify(&self, chain_id: u64) -> Result<PublicKey, CryptoError> {
        let pk = self.verify_possession()?;
        let binding = EcdsaSignature::from_raw(&self.ecdsa_binding).map_err(|e| {
            CryptoError(format!("operator {:#x}: ECDSA binding: {e}", self.address))
        })?;
        let signer = binding
            .recover_address_from_msg(
                binding_message(self.address, &self.bls_public_key, chain_id).as_bytes(),
            )
            .map_err(|e| {
                CryptoError(format!("operator {:#x}: ECDSA binding: {e}", self.address))
            })?;
        if signer != self.address {
            return Err(CryptoError(format!(
                "operator {:#x}: the BLS key is bound by {signer:#x}, not by the operator",
                self.address
            )));
        }
        Ok(pk)
    }
}

/// sha-256 of the RFC 8785 canonical JSON of a trigger output.
pub fn output_hash(output: &serde_json::Value) -> Result<[u8; 32], CryptoError> {
    let canonical = serde_json_canonicalizer::to_vec(output)
        .map_err(|e| CryptoError(format!("canonical JSON: {e}")))?;
    Ok(Sha256::digest(canonical).into())
}

/// The firing digest (see the module docs).
pub fn firing_digest(
    chain_id: u64,
    task_id: &str,
    trigger_request_id: &str,
    output_hash: &[u8; 32],
) -> [u8; 32] {
    let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes();
    Sha256::new()
        .chain_update(b"ava-firing-v1")
        .chain_update(chain_id.to_be_bytes())
        .chain_update(len(task_id))
        .chain_update(task_id.as_bytes())
        .chain_update(len(trigger_request_id))
        .chain_update(trigger_request_id.as_bytes())
        .chain_update(output_hash)
        .finalize()
        .into()
}

/// A BLS key's proof of possession: the key signs its own compressed bytes.
pub fn proof_of_possession(key: &SecretKey) -> Vec<u8> {
    key.sign(&key.sk_to_pk().to_bytes(), POP_DST, &[])
        .to_bytes()
        .to_vec()
}

pub fn sign_digest(key: &SecretKey, digest: &[u8; 32]) -> Vec<u8> {
    key.sign(digest, SIGNATURE_DST, &[]).to_bytes().to_vec()
}

/// Checks one operator's signature of a digest.
pub fn verify_digest(
    pk: &PublicKey,
    digest: &[u8; 32],
    signature_bytes: &[u8],
) -> Result<(), CryptoError> {
    let sig = signature(signature_bytes)?;
    match sig.verify(true, digest, SIGNATURE_DST, &[], pk, false) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        e => Err(bls("the BLS signature does not verify", e)),
    }
}

/// One report to check in a batch: the signer's key, the digest, the signature's bytes.
#[derive(Debug, Clone)]
pub struct Signed {
    pub public_key: PublicKey,
    pub digest: [u8; 32],
    pub signature: Vec<u8>,
}

/// Checks many signatures at once: one multi-pairing over the batch, each term weighted by a
/// random 64-bit coefficient so that bad signatures cannot cancel each other out (blst spreads
/// the work over its thread pool). `Err` says only that some signature is bad: check them one by
/// one to find which.
pub fn verify_batch(batch: &[Signed]) -> Result<(), CryptoError> {
    match batch {
        [] => return Ok(()),
        [one] => return verify_digest(&one.public_key, &one.digest, &one.signature),
        _ => {}
    }
    let signatures: Vec<Signature> = batch
        .iter()
        .map(|s| signature(&s.signature))
        .collect::<Result<_, _>>()?;
    let mut random = vec![0u8; 8 * batch.len()];
    getrandom::fill(&mut random).map_err(|e| CryptoError(format!("no randomness: {e}")))?;
    let scalars: Vec<blst::blst_scalar> = random
        .chunks(8)
        .map(|chunk| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(chunk);
            b[0] |= 1; // never zero
            blst::blst_scalar { b }
        })
        .collect();
    let messages: Vec<&[u8]> = batch.iter().map(|s| s.digest.as_slice()).collect();
    let keys: Vec<&PublicKey> = batch.iter().map(|s| &s.public_key).collect();
    let refs: Vec<&Signature> = signatures.iter().collect();
    match Signature::verify_multiple_aggregate_signatures(
        &messages,
        SIGNATURE_DST,
        &keys,
        false,
        &refs,
        true,
        &scalars,
        64,
    ) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        e => Err(bls("a signature of the batch does not verify", e)),
    }
}

/// Aggregates signatures of one digest.
pub fn aggregate(signatures: &[Vec<u8>]) -> Result<Vec<u8>, CryptoError> {
    let parsed: Vec<Signature> = signatures
        .iter()
        .map(|s| signature(s))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Signature> = parsed.iter().collect();
    let aggregate =
        AggregateSignature::aggregate(&refs, true).map_err(|e| bls("aggregating", e))?;
    Ok(aggregate.to_signature().to_bytes().to_vec())
}

/// Checks an aggregate signature of one digest by the given keys (each with a verified proof of
/// possession, which is what makes the fast check sound).
pub fn verify_aggregate(
    pks: &[PublicKey],
    digest: &[u8; 32],
    aggregate: &[u8],
) -> Result<(), CryptoError> {
    let sig = signature(aggregate)?;
    let refs: Vec<&PublicKey> = pks.iter().collect();
    match sig.fast_aggregate_verify(true, digest, SIGNATURE_DST, &refs) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        e => Err(bls("the aggregate signature does not verify", e)),
    }
}

/// The text an operator request's ECDSA signature covers.
pub fn request_text(
    method: &str,
    address: Address,
    timestamp_ms: u64,
    nonce: &str,
    message: &[u8],
) -> String {
    format!(
        "ava-operator-request-v1\n{method}\n{address:#x}\n{timestamp_ms}\n{nonce}\n{}",
        hex::encode(Sha256::digest(message))
    )
}

/// The signer of a request's text.
pub fn request_signer(text: &str, signature_hex: &str) -> Result<Address, CryptoError> {
    let bytes = hex::decode(signature_hex.trim_start_matches("0x"))
        .map_err(|_| CryptoError("the signature is not hex".into()))?;
    let signature = EcdsaSignature::from_raw(&bytes)
        .map_err(|e| CryptoError(format!("invalid signature: {e}")))?;
    signature
        .recover_address_from_msg(text.as_bytes())
        .map_err(|e| CryptoError(format!("cannot recover the signer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use serde_json::json;

    fn operator(seed: u8) -> (PrivateKeySigner, SecretKey) {
        let ecdsa =
            PrivateKeySigner::from_bytes(&alloy_primitives::B256::repeat_byte(seed)).unwrap();
        (ecdsa, bls_key(&[seed; 32]).unwrap())
    }

    fn register(ecdsa: &PrivateKeySigner, bls: &SecretKey, chain_id: u64) -> Registration {
        let pk = bls.sk_to_pk().to_bytes().to_vec();
        let binding = ecdsa
            .sign_message_sync(binding_message(ecdsa.address(), &pk, chain_id).as_bytes())
            .unwrap();
        Registration {
            address: ecdsa.address(),
            proof_of_possession: proof_of_possession(bls),
            bls_public_key: pk,
            ecdsa_binding: binding.as_bytes().to_vec(),
        }
    }

    #[test]
    fn registrations_verify_and_forgeries_do_not() {
        let (ecdsa, bls) = operator(1);
        let registration = register(&ecdsa, &bls, 31337);
        registration.verify(31337).unwrap();
        assert!(registration.verify(1).is_err(), "bound to another chain");
        let (other, other_bls) = operator(2);
        let mut stolen = registration.clone();
        stolen.address = other.address();
        assert!(
            stolen.verify(31337).is_err(),
            "another address cannot claim the key"
        );
        let mut no_pop = registration.clone();
        no_pop.proof_of_possession = other_bls
            .sign(&registration.bls_public_key, POP_DST, &[])
            .to_bytes()
            .to_vec();
        assert!(no_pop.verify(31337).is_err());
    }

    #[test]
    fn the_digest_ignores_key_order_and_aggregates_verify() {
        let a = output_hash(&json!({"blockNumber": 10, "blockHash": "0xab"})).unwrap();
        let b = output_hash(&json!({"blockHash": "0xab", "blockNumber": 10})).unwrap();
        assert_eq!(a, b);
        let digest = firing_digest(31337, "task", "task:10", &a);
        assert_ne!(digest, firing_digest(31337, "task", "task:11", &a));
        assert_ne!(digest, firing_digest(1, "task", "task:10", &a));
        let keys: Vec<SecretKey> = (1..=3).map(|i| operator(i).1).collect();
        let sigs: Vec<Vec<u8>> = keys.iter().map(|k| sign_digest(k, &digest)).collect();
        for (k, s) in keys.iter().zip(&sigs) {
            verify_digest(&k.sk_to_pk(), &digest, s).unwrap();
        }
        let aggregate_sig = aggregate(&sigs).unwrap();
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::sk_to_pk).collect();
        verify_aggregate(&pks, &digest, &aggregate_sig).unwrap();
        assert!(verify_aggregate(&pks[..2], &digest, &aggregate_sig).is_err());
        let other = firing_digest(31337, "task", "task:12", &a);
        assert!(verify_digest(&pks[0], &other, &sigs[0]).is_err());
    }

    #[test]
    fn requests_are_signed_over_their_bytes() {
        let (ecdsa, _) = operator(3);
        let text = request_text(
            "/aggregator.Node/Ping",
            ecdsa.address(),
            1_000,
            "ab",
            b"payload",
        );
        let signature = ecdsa.sign_message_sync(text.as_bytes()).unwrap();
        let signature = format!("0x{}", hex::encode(signature.as_bytes()));
        assert_eq!(request_signer(&text, &signature).unwrap(), ecdsa.address());
        let changed = request_text(
            "/aggregator.Node/Ping",
            ecdsa.address(),
            1_000,
            "ab",
            b"payloaD",
        );
        assert_ne!(
            request_signer(&changed, &signature).unwrap(),
            ecdsa.address()
        );
    }

    #[test]
    fn a_batch_verifies_and_one_bad_signature_fails_it() {
        let keys: Vec<SecretKey> = (1..=8u8).map(|i| bls_key(&[i; 32]).unwrap()).collect();
        let mut batch: Vec<Signed> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let digest = firing_digest(31337, "task", &format!("task:{i}"), &[0; 32]);
                Signed {
                    public_key: k.sk_to_pk(),
                    digest,
                    signature: sign_digest(k, &digest),
                }
            })
            .collect();
        verify_batch(&batch).unwrap();
        verify_batch(&batch[..1]).unwrap();
        verify_batch(&[]).unwrap();
        // Two signatures swapped between their digests: each is valid for the other's.
        let (a, b) = (batch[2].signature.clone(), batch[3].signature.clone());
        batch[2].signature = b;
        batch[3].signature = a;
        assert!(verify_batch(&batch).is_err());
    }
}
