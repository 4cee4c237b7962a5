//! ETH transfer: `amount` wei from the task's smart wallet to `destination`, as one user
//! operation (`execute(destination, amount, "")`). Simulated, it answers locally with what the
//! transfer would be.
//!
//! Output `{transfer: {from, to, value}}` (the shape of an ERC-20 `Transfer`); metadata the
//! transaction and user-operation hashes and the gas.

use alloy::primitives::{Address, Bytes, U256};
use serde_json::{Value, json};

use events::task::EthTransferConfig;

use super::write::{Sent, WriteCtx, WriteRun, gas_fields, not_sent_code};
use super::{NodeError, NodeRun};
use crate::pb::ErrorCode;
use crate::wallet::submit::Journal;
use crate::wallet::user_op::Call;

/// The destination and the amount, checked with the original's words.
pub fn parse(config: &EthTransferConfig) -> Result<(Address, U256), NodeError> {
    let destination: Address = config.destination.trim().parse().map_err(|_| {
        NodeError::new(format!(
            "invalid destination address: {:?}",
            config.destination
        ))
        .with_code(ErrorCode::InvalidAddress)
    })?;
    let amount = config.amount.trim();
    let value = if amount.bytes().all(|b| b.is_ascii_digit()) && !amount.is_empty() {
        U256::from_str_radix(amount, 10).ok()
    } else {
        None
    }
    .ok_or_else(|| {
        NodeError::new(format!(
            "invalid amount: {:?} is not a whole number of wei",
            config.amount
        ))
        .with_code(ErrorCode::InvalidNodeConfig)
    })?;
    Ok((destination, value))
}

fn transfer(from: Address, to: Address, value: U256) -> Value {
    json!({ "transfer": {
        "from": from.to_checksum(None),
        "to": to.to_checksum(None),
        "value": value.to_string(),
    }})
}

/// What the transfer would be, without the chain.
pub fn simulate(from: Address, config: &EthTransferConfig) -> Result<WriteRun, NodeError> {
    let (to, value) = parse(config)?;
    Ok(WriteRun {
        run: NodeRun {
            metadata: None,
            output: transfer(from, to, value),
            log: vec![format!("simulated: {value} wei from {from} to {to}")],
            taken: None,
        },
        metadata: Some(json!({ "simulated": true })),
        gas: None,
    })
}

/// Sends the transfer as a user operation of the step.
pub async fn send<J: Journal>(
    ctx: &mut WriteCtx<'_, J>,
    config: &EthTransferConfig,
) -> Result<WriteRun, NodeError> {
    let (to, value) = parse(config)?;
    let from = ctx.wallet();
    let output = transfer(from, to, value);
    let sent = ctx
        .send(vec![Call {
            to,
            value,
            data: Bytes::new(),
        }])
        .await?;
    match sent {
        Sent::Landed {
            receipt,
            user_op_hash,
        } => {
            let metadata = json!({
                "transactionHash": receipt.tx_hash,
                "userOpHash": format!("{user_op_hash:#x}"),
                "blockNumber": receipt.block_number,
                "gasUsed": receipt.actual_gas_used,
                "gasPrice": receipt.gas_price,
                "totalGasCost": receipt.actual_gas_cost,
            });
            if !receipt.success {
                return Err(NodeError {
                    metadata: None,
                    message: format!(
                        "the transfer reverted: {} (transaction {})",
                        receipt.revert_reason, receipt.tx_hash
                    ),
                    code: ErrorCode::SmartWalletRpcError,
                    output: Some(output),
                    log: vec![format!("user operation {user_op_hash:#x} reverted")],
                });
            }
            Ok(WriteRun {
                run: NodeRun {
                    metadata: None,
                    output,
                    log: vec![format!(
                        "sent {value} wei from {from} to {to} in {} (user operation {user_op_hash:#x})",
                        receipt.tx_hash
                    )],
                    taken: None,
                },
                metadata: Some(metadata),
                gas: gas_fields(ctx.gas),
            })
        }
        Sent::Pending { user_op_hash } => Ok(WriteRun {
            run: NodeRun {
                metadata: None,
                output,
                log: vec![format!(
                    "pending: the user operation {user_op_hash:#x} has no receipt yet"
                )],
                taken: None,
            },
            metadata: Some(json!({
                "status": "pending",
                "userOpHash": format!("{user_op_hash:#x}"),
            })),
            gas: None,
        }),
        Sent::NotSent(not_sent) => Err(NodeError {
            metadata: None,
            code: not_sent_code(&not_sent),
            message: not_sent.reason,
            output: Some(output),
            log: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(destination: &str, amount: &str) -> EthTransferConfig {
        EthTransferConfig {
            destination: destination.into(),
            amount: amount.into(),
        }
    }

    #[test]
    fn bad_destinations_and_amounts_get_the_originals_words() {
        let e = parse(&config("invalid_address", "1")).unwrap_err();
        assert!(
            e.message.starts_with("invalid destination address"),
            "{}",
            e.message
        );
        assert_eq!(e.code, ErrorCode::InvalidAddress);
        for amount in ["", "-1", "1.5", "0x10", "one"] {
            let e = parse(&config(
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                amount,
            ))
            .unwrap_err();
            assert!(
                e.message.starts_with("invalid amount"),
                "{amount}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_simulated_transfer_answers_locally() {
        let from = Address::repeat_byte(1);
        let to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let run = simulate(from, &config(to, "0")).unwrap();
        assert_eq!(run.run.output["transfer"]["value"], "0");
        assert_eq!(run.run.output["transfer"]["to"], to);
        assert_eq!(run.run.output["transfer"]["from"], from.to_checksum(None));
    }
}
