//! Sponsorship by the v0.6 `VerifyingPaymaster` (`wallet.paymaster`), whose signer is the
//! controller: the paymaster pays the operation's gas from its EntryPoint deposit, the wallet
//! pays only the value it sends.
//!
//! `paymasterAndData = paymaster ‖ abi.encode(uint48 validUntil, uint48 validAfter) ‖ signature`,
//! the signature the controller's EIP-191 one over `paymaster.getHash(op, validUntil,
//! validAfter)`. That hash covers every field of the operation but the signature (so the gas and
//! the nonce: a rebuilt operation is signed again) and the paymaster's `senderNonce[wallet]`,
//! which each sponsored operation increments: two sponsored operations of one wallet cannot be
//! signed at once, so the caller holds the wallet's sponsorship lock from signing to receipt.

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, Bytes};
use alloy::sol_types::SolValue;

use super::contracts::{IVerifyingPaymaster, UserOperation};
use super::keys::ChainKey;
use super::sender::SendError;
use super::user_op::{dummy_signature, sign};
use crate::chain::Chain;

/// The sponsorship the operations carry: no time bounds (the nonce bounds them).
const VALID_UNTIL: u64 = 0;
const VALID_AFTER: u64 = 0;

pub struct Paymaster {
    pub address: Address,
    signer: ChainKey,
    chain: Chain,
    /// One lock per wallet: its sponsored operations go one at a time (see the module doc).
    locks: std::sync::Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Paymaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paymaster")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Paymaster {
    pub fn new(address: Address, signer: ChainKey, chain: Chain) -> Self {
        Self {
            address,
            signer,
            chain,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The lock a wallet's sponsored operation holds from signing until its outcome is known.
    pub fn wallet_lock(&self, wallet: Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(wallet).or_default().clone()
    }

    fn with_signature(&self, signature: &[u8]) -> Bytes {
        paymaster_and_data(self.address, signature)
    }

    /// `paymasterAndData` with a signature of the right length, for gas estimates.
    pub fn placeholder(&self) -> Bytes {
        self.with_signature(&dummy_signature())
    }

    /// `paymasterAndData` signed for `op` (whose other fields are final).
    pub async fn sponsor(&self, op: &UserOperation) -> Result<Bytes, SendError> {
        let hash = IVerifyingPaymaster::new(self.address, &self.chain.provider)
            .getHash(
                op.clone(),
                alloy::primitives::aliases::U48::from(VALID_UNTIL),
                alloy::primitives::aliases::U48::from(VALID_AFTER),
            )
            .call()
            .await
            .map_err(|e| SendError::Unknown(format!("paymaster getHash: {e}")))?;
        let signature = sign(hash, self.signer.signer())
            .map_err(|e| SendError::refused(format!("signing the sponsorship: {e}")))?;
        Ok(self.with_signature(&signature))
    }
}

/// `paymaster ‖ abi.encode(validUntil, validAfter) ‖ signature`.
fn paymaster_and_data(paymaster: Address, signature: &[u8]) -> Bytes {
    let validity = (
        alloy::primitives::aliases::U48::from(VALID_UNTIL),
        alloy::primitives::aliases::U48::from(VALID_AFTER),
    )
        .abi_encode_params();
    [paymaster.as_slice(), &validity, signature].concat().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paymaster_and_data_has_the_stock_layout() {
        // paymasterAndData[:20] address, [20:84] validity, [84:] signature (VerifyingPaymaster's
        // VALID_TIMESTAMP_OFFSET and SIGNATURE_OFFSET).
        let data = paymaster_and_data(Address::repeat_byte(0x22), &dummy_signature());
        assert_eq!(data.len(), 20 + 64 + 65);
        assert_eq!(&data[..20], Address::repeat_byte(0x22).as_slice());
        assert!(data[20..84].iter().all(|&b| b == 0), "{data}");
        assert_eq!(&data[84..], dummy_signature().as_ref());
    }
}
