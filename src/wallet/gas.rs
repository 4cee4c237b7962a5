//! Gas for a user operation when the aggregator bundles it itself, and the chain's fees.
//!
//! - `callGasLimit`: `eth_estimateGas` of the wallet's call as the EntryPoint makes it (from the
//!   EntryPoint to the wallet); a wallet without code yet runs as its implementation's code
//!   (a state override), which is what the proxy will delegate to. A call that would revert
//!   fails here, with its reason, before anything is signed.
//! - `verificationGasLimit`: measured with `EntryPoint.simulateHandleOp` at fees of zero (so no
//!   prefund is needed): `preOpGas - preVerificationGas` is what validation (and the wallet's
//!   creation) used. A refusal of the EntryPoint (`FailedOp`, an `AA` code) surfaces here too.
//! - `preVerificationGas`: the bundlers' formula over the packed operation's call data.
//!
//! Margins: the limits are what was measured plus a share (`HEADROOM_PERCENT`); in v0.6 unused
//! gas is not charged, a limit only sets the prefund the wallet must hold.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::rpc::types::state::{AccountOverride, StateOverride};
use alloy::sol_types::{SolCall, SolError, SolValue};

use super::contracts::{IEntryPointV06, UserOperation};
use super::receipt::{failed_op, revert_data, revert_text};
use crate::chain::Chain;

/// Share added to measured gas.
pub const HEADROOM_PERCENT: u64 = 30;
/// Validation gas given to the measuring simulation: more than any wallet creation needs.
const SIMULATION_VERIFICATION_GAS: u64 = 3_000_000;
/// Floor of `verificationGasLimit`.
const MIN_VERIFICATION_GAS: u64 = 60_000;

/// Gas limits of a user operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasLimits {
    pub call_gas_limit: U256,
    pub verification_gas_limit: U256,
    pub pre_verification_gas: U256,
}

/// EIP-1559 fees of a user operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee_per_gas: U256,
    pub max_priority_fee_per_gas: U256,
}

/// Why gas could not be estimated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GasError {
    /// The wallet's call reverts on the chain as it is.
    #[error("the call would revert: {reason}")]
    Reverted { reason: String, data: Bytes },
    /// The EntryPoint refuses the operation (`AA..` reason).
    #[error("{0}")]
    Refused(String),
    #[error("the chain did not answer: {0}")]
    Chain(String),
}

/// The chain's current fees: priority as the node suggests, the cap at twice the base fee plus
/// the priority (room for two full blocks of base-fee growth).
pub async fn fees(chain: &Chain) -> Result<Fees, GasError> {
    let rpc = |e: alloy::transports::TransportError| GasError::Chain(e.to_string());
    let priority = chain
        .provider
        .get_max_priority_fee_per_gas()
        .await
        .map_err(rpc)?;
    let block = chain
        .provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .map_err(rpc)?
        .ok_or_else(|| GasError::Chain("no latest block".into()))?;
    let base = block.header.base_fee_per_gas.unwrap_or_default();
    Ok(Fees {
        max_fee_per_gas: U256::from(base) * U256::from(2) + U256::from(priority),
        max_priority_fee_per_gas: U256::from(priority),
    })
}

/// The bundlers' `preVerificationGas`: call data cost of the packed operation (4 per zero byte,
/// 16 per other), plus 21 000 for the transaction, 18 300 per operation and 4 per word, plus the
/// headroom (bundlers check it against their own calculation).
pub fn pre_verification_gas(op: &UserOperation) -> U256 {
    let packed = op.abi_encode();
    let data_cost: u64 = packed.iter().map(|&b| if b == 0 { 4u64 } else { 16 }).sum();
    let words = (packed.len() as u64).div_ceil(32);
    let gas = data_cost + 21_000 + 18_300 + 4 * words;
    U256::from(with_headroom(gas, 10))
}

fn with_headroom(gas: u64, percent: u64) -> u64 {
    gas.saturating_add(gas.saturating_mul(percent) / 100)
}

/// What the self-bundler needs to estimate: the operation so far (sender, nonce, initCode,
/// callData, paymasterAndData filled in) and a way to sign a version of it.
pub struct Estimate<'a> {
    pub chain: &'a Chain,
    pub entry_point: Address,
    /// The wallet implementation's address, whose code stands in for an undeployed wallet.
    pub implementation: Address,
    /// Whether the wallet has code.
    pub deployed: bool,
}

impl Estimate<'_> {
    /// `callGasLimit`: the wallet's call from the EntryPoint, plus headroom.
    pub async fn call_gas(&self, op: &UserOperation) -> Result<U256, GasError> {
        let tx = TransactionRequest::default()
            .with_from(self.entry_point)
            .with_to(op.sender)
            .with_input(op.callData.clone());
        let mut overrides = StateOverride::default();
        if !self.deployed {
            let code = self
                .chain
                .provider
                .get_code_at(self.implementation)
                .await
                .map_err(|e| GasError::Chain(e.to_string()))?;
            if code.is_empty() {
                return Err(GasError::Refused(format!(
                    "the wallet implementation {} has no code on this chain",
                    self.implementation
                )));
            }
            overrides.insert(op.sender, AccountOverride::default().with_code(code));
        }
        match self
            .chain
            .provider
            .estimate_gas(tx)
            .overrides(overrides)
            .await
        {
            Ok(gas) => Ok(U256::from(with_headroom(gas, HEADROOM_PERCENT))),
            Err(e) => match revert_data(&e) {
                Some(data) => Err(GasError::Reverted {
                    reason: revert_text(&data),
                    data,
                }),
                None if e.to_string().contains("revert") => Err(GasError::Reverted {
                    reason: "reverted without a reason".into(),
                    data: Bytes::new(),
                }),
                None => Err(GasError::Chain(e.to_string())),
            },
        }
    }

    /// `verificationGasLimit` from a simulation of `signed` (limits generous, fees zero, signed).
    pub async fn verification_gas(&self, signed: &UserOperation) -> Result<U256, GasError> {
        let call = IEntryPointV06::simulateHandleOpCall {
            op: signed.clone(),
            target: Address::ZERO,
            targetCallData: Bytes::new(),
        };
        let tx = TransactionRequest::default()
            .with_to(self.entry_point)
            .with_input(call.abi_encode());
        let data = match self.chain.provider.call(tx).await {
            Ok(_) => {
                return Err(GasError::Chain(
                    "simulateHandleOp returned instead of reverting: is this an EntryPoint v0.6?"
                        .into(),
                ));
            }
            Err(e) => revert_data(&e).ok_or_else(|| GasError::Chain(e.to_string()))?,
        };
        if let Some(reason) = failed_op(&data) {
            return Err(GasError::Refused(reason));
        }
        let result = IEntryPointV06::ExecutionResult::abi_decode(&data).map_err(|_| {
            GasError::Chain(format!(
                "simulateHandleOp reverted with {}",
                revert_text(&data)
            ))
        })?;
        let used = result
            .preOpGas
            .saturating_sub(signed.preVerificationGas)
            .saturating_to::<u64>();
        Ok(U256::from(
            with_headroom(used, HEADROOM_PERCENT).max(MIN_VERIFICATION_GAS),
        ))
    }
}

/// The operation as the measuring simulation takes it: generous validation gas, no fees.
pub fn for_simulation(op: &UserOperation, call_gas_limit: U256) -> UserOperation {
    UserOperation {
        callGasLimit: call_gas_limit,
        verificationGasLimit: U256::from(SIMULATION_VERIFICATION_GAS),
        preVerificationGas: pre_verification_gas(op),
        maxFeePerGas: U256::ZERO,
        maxPriorityFeePerGas: U256::ZERO,
        ..op.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::user_op::dummy_signature;

    #[test]
    fn pre_verification_gas_grows_with_the_call_data() {
        let small = UserOperation {
            signature: dummy_signature(),
            ..UserOperation::default()
        };
        let large = UserOperation {
            callData: vec![0xab; 1000].into(),
            ..small.clone()
        };
        let (a, b) = (pre_verification_gas(&small), pre_verification_gas(&large));
        assert!(a > U256::from(39_300), "{a}");
        // 1000 non-zero bytes cost 16 each, plus the words, plus the headroom.
        assert!(b - a >= U256::from(16_000), "{a} {b}");
    }

    #[test]
    fn headroom_is_a_share_of_what_was_measured() {
        assert_eq!(with_headroom(100_000, 30), 130_000);
        assert_eq!(with_headroom(u64::MAX, 30), u64::MAX);
    }
}
