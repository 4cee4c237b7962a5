//! How a user operation ended, read from the chain: its `UserOperationEvent` (success, gas used
//! and paid) and, when its call reverted, its `UserOperationRevertReason`, either in the receipt
//! of the transaction that carried it or by a search of the EntryPoint's logs for its hash
//! (after a crash, or when a bundler forgets it).
//!
//! Also here: the ERC-4337 error code of a refusal (`AA25 invalid account nonce` → `AA25`) and
//! revert data made readable.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::{SolError, SolEvent};

use super::contracts::{Error as SolidityError, IEntryPointV06, Panic};
use crate::chain::Chain;
use events::user_op::OpReceipt;

/// The ERC-4337 code at the start of a refusal's reason (`AA` and two digits), if any.
pub fn aa_code(reason: &str) -> Option<&str> {
    let start = reason.find("AA")?;
    let code = reason.get(start..start + 4)?;
    code[2..]
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then_some(code)
}

/// Revert data as a person reads it: the message of `Error(string)`, the code of a `Panic`, or
/// the hex of anything else (a custom error, which the caller may decode with the target's ABI).
pub fn revert_text(data: &[u8]) -> String {
    if data.is_empty() {
        return "reverted without a reason".into();
    }
    if let Ok(error) = SolidityError::abi_decode(data) {
        return error.message;
    }
    if let Ok(panic) = Panic::abi_decode(data) {
        return format!("panic {:#x}", panic.code);
    }
    format!("0x{}", alloy::hex::encode(data))
}

/// The operation's outcome among `logs` (those of one transaction, or a search's).
pub fn from_logs(logs: &[Log], entry_point: Address, user_op_hash: B256) -> Option<OpReceipt> {
    let ours =
        |log: &&Log| log.address() == entry_point && log.topics().get(1) == Some(&user_op_hash);
    let event = logs.iter().filter(ours).find_map(|log| {
        IEntryPointV06::UserOperationEvent::decode_log(&log.inner)
            .ok()
            .map(|decoded| (log, decoded.data))
    })?;
    let (log, event) = event;
    let revert_reason = logs
        .iter()
        .filter(ours)
        .find_map(|log| {
            IEntryPointV06::UserOperationRevertReason::decode_log(&log.inner)
                .ok()
                .map(|decoded| revert_text(&decoded.data.revertReason))
        })
        .unwrap_or_default();
    let gas_price = event
        .actualGasCost
        .checked_div(event.actualGasUsed)
        .unwrap_or(U256::ZERO);
    Some(OpReceipt {
        success: event.success,
        tx_hash: log
            .transaction_hash
            .map(|h| format!("{h:#x}"))
            .unwrap_or_default(),
        block_number: log.block_number.unwrap_or_default(),
        actual_gas_cost: event.actualGasCost.to_string(),
        actual_gas_used: event.actualGasUsed.to_string(),
        gas_price: gas_price.to_string(),
        revert_reason: if event.success {
            String::new()
        } else if revert_reason.is_empty() {
            "the call reverted (no reason recorded)".into()
        } else {
            revert_reason
        },
        paymaster: if event.paymaster.is_zero() {
            String::new()
        } else {
            format!("{:#x}", event.paymaster)
        },
    })
}

/// The receipt of the transaction `tx_hash`, if mined, read for the operation.
pub async fn from_transaction(
    chain: &Chain,
    entry_point: Address,
    user_op_hash: B256,
    tx_hash: B256,
) -> Result<Option<OpReceipt>, crate::chain::ChainError> {
    let receipt = chain
        .provider
        .get_transaction_receipt(tx_hash)
        .await
        .map_err(|e| crate::chain::ChainError::Rpc(e.to_string()))?;
    Ok(receipt.and_then(|r| from_logs(r.inner.logs(), entry_point, user_op_hash)))
}

/// Searches the EntryPoint's logs from `from_block` for the operation's events.
pub async fn search(
    chain: &Chain,
    entry_point: Address,
    user_op_hash: B256,
    from_block: u64,
) -> Result<Option<OpReceipt>, crate::chain::ChainError> {
    let filter = Filter::new()
        .address(entry_point)
        .event_signature(vec![
            IEntryPointV06::UserOperationEvent::SIGNATURE_HASH,
            IEntryPointV06::UserOperationRevertReason::SIGNATURE_HASH,
        ])
        .topic1(user_op_hash)
        .from_block(from_block);
    let logs = chain
        .provider
        .get_logs(&filter)
        .await
        .map_err(|e| crate::chain::ChainError::Rpc(e.to_string()))?;
    Ok(from_logs(&logs, entry_point, user_op_hash))
}

/// The `FailedOp` reason in revert data of `handleOps` / `simulateHandleOp`, if that is what it is.
pub fn failed_op(data: &[u8]) -> Option<String> {
    IEntryPointV06::FailedOp::abi_decode(data)
        .ok()
        .map(|e| e.reason)
}

/// Revert data from an RPC error (`eth_call`, `eth_estimateGas`): the `data` of its JSON-RPC error.
pub fn revert_data<E>(error: &alloy::transports::RpcError<E>) -> Option<Bytes> {
    error
        .as_error_resp()
        .and_then(|payload| payload.as_revert_data())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{LogData, address};
    use alloy::sol_types::SolValue;

    use super::*;

    #[test]
    fn aa_codes_are_read_from_reasons() {
        assert_eq!(aa_code("AA25 invalid account nonce"), Some("AA25"));
        assert_eq!(aa_code("FailedOp: AA21 didn't pay prefund"), Some("AA21"));
        assert_eq!(aa_code("AAx"), None);
        assert_eq!(aa_code("execution reverted"), None);
    }

    #[test]
    fn revert_data_is_made_readable() {
        let error = SolidityError {
            message: "insufficient".into(),
        }
        .abi_encode();
        assert_eq!(revert_text(&error), "insufficient");
        assert_eq!(
            revert_text(
                &Panic {
                    code: U256::from(0x11)
                }
                .abi_encode()
            ),
            "panic 0x11"
        );
        assert_eq!(revert_text(&[0xde, 0xad]), "0xdead");
        assert_eq!(revert_text(&[]), "reverted without a reason");
    }

    fn log(entry_point: Address, data: LogData, tx: B256) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address: entry_point,
                data,
            },
            transaction_hash: Some(tx),
            block_number: Some(7),
            ..Log::default()
        }
    }

    #[test]
    fn given_a_reverted_op_when_reading_its_logs_then_the_reason_and_costs_are_there() {
        let entry_point = address!("0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789");
        let (hash, other, tx) = (
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(9),
        );
        let sender = Address::repeat_byte(5);
        let event = |h: B256, success: bool| IEntryPointV06::UserOperationEvent {
            userOpHash: h,
            sender,
            paymaster: Address::ZERO,
            nonce: U256::ZERO,
            success,
            actualGasCost: U256::from(2_000_000u64),
            actualGasUsed: U256::from(1_000u64),
        };
        let reason = IEntryPointV06::UserOperationRevertReason {
            userOpHash: hash,
            sender,
            nonce: U256::ZERO,
            revertReason: SolidityError {
                message: "nope".into(),
            }
            .abi_encode()
            .into(),
        };
        let logs = vec![
            log(entry_point, event(other, true).encode_log_data(), tx),
            log(entry_point, reason.encode_log_data(), tx),
            log(entry_point, event(hash, false).encode_log_data(), tx),
        ];
        let receipt = from_logs(&logs, entry_point, hash).unwrap();
        assert!(!receipt.success);
        assert_eq!(receipt.revert_reason, "nope");
        assert_eq!(receipt.gas_price, "2000");
        assert_eq!(receipt.block_number, 7);
        assert_eq!(receipt.tx_hash, format!("{tx:#x}"));
        assert!(from_logs(&logs, entry_point, B256::repeat_byte(3)).is_none());
        // Logs of another contract do not count.
        assert!(from_logs(&logs, Address::repeat_byte(4), hash).is_none());
        let ok = from_logs(&logs, entry_point, other).unwrap();
        assert!(ok.success && ok.revert_reason.is_empty());
        let _ = (U256::ZERO, Address::ZERO).abi_encode();
    }
}
