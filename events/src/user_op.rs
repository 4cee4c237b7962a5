//! What the user-operation events carry: the signed ERC-4337 v0.6 operation exactly as it was
//! sent (so that it can be sent again, byte for byte, after a crash), and its outcome on chain.
//!
//! Numbers are `0x` hex quantities and byte strings `0x` hex, as bundlers exchange them; this
//! crate does not interpret them.

use serde::{Deserialize, Serialize};

/// A signed v0.6 user operation, in the JSON shape of `eth_sendUserOperation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOpRecord {
    pub sender: String,
    pub nonce: String,
    pub init_code: String,
    pub call_data: String,
    pub call_gas_limit: String,
    pub verification_gas_limit: String,
    pub pre_verification_gas: String,
    pub max_fee_per_gas: String,
    pub max_priority_fee_per_gas: String,
    pub paymaster_and_data: String,
    pub signature: String,
}

/// What a user operation was built for: a step of an execution, or a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpPurpose {
    /// A node of a run (`iteration`: the element of a loop whose runner writes).
    Step {
        step_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
    },
    /// `WithdrawFunds`.
    Withdrawal { withdrawal_id: String },
}

/// Which sender took the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    /// The aggregator's own bundler: `handleOps` from its funded account.
    SelfBundler,
    /// An external bundler (`wallet.bundler_url`).
    Bundler,
}

/// How a user operation ended on chain, from its `UserOperationEvent` (and
/// `UserOperationRevertReason` when the call reverted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReceipt {
    /// The call ran without reverting.
    pub success: bool,
    pub tx_hash: String,
    pub block_number: u64,
    /// Wei, decimal.
    pub actual_gas_cost: String,
    /// Decimal.
    pub actual_gas_used: String,
    /// Wei per gas, decimal: `actual_gas_cost / actual_gas_used`.
    pub gas_price: String,
    /// Hex of the revert data, decoded where it is an `Error(string)`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revert_reason: String,
    /// The paymaster that paid, lower-case hex; empty when the wallet paid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub paymaster: String,
}
