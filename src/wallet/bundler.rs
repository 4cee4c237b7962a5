//! A client of an external ERC-4337 bundler (`wallet.bundler_url`): `eth_sendUserOperation`,
//! `eth_estimateUserOperationGas`, `eth_getUserOperationReceipt`, one JSON-RPC request per call
//! (some bundlers refuse batches).
//!
//! The reply types are our own and lenient: real bundlers omit fields, send `null` where the
//! specification has a value, and numbers as hex or decimal text or JSON numbers (alloy's 4337
//! types reject such replies). A receipt only tells which transaction carried the operation; its
//! outcome is then read from that transaction's logs on our own node (`receipt`), the same way
//! as for the self-bundler, and the EntryPoint's logs are searched when the bundler has
//! forgotten the operation.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::contracts::UserOperation;
use super::gas::GasLimits;
use super::receipt;
use super::sender::{Accepted, SendError, UserOpSender};
use super::user_op::UserOpJson;
use crate::chain::Chain;
use events::user_op::{OpReceipt, SenderKind};

/// How long one request to the bundler may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// JSON-RPC error codes of ERC-4337 bundlers (ERC-7769): a revert in the wallet's call.
const EXECUTION_REVERTED: i64 = -32521;

pub struct BundlerClient {
    http: reqwest::Client,
    url: String,
    entry_point: Address,
    chain: Chain,
}

impl std::fmt::Debug for BundlerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a provider's API key.
        f.debug_struct("BundlerClient")
            .field("entry_point", &self.entry_point)
            .finish_non_exhaustive()
    }
}

/// A JSON-RPC error reply.
#[derive(Debug, Clone, Deserialize)]
struct RpcError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RpcReply {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// `eth_estimateUserOperationGas`'s answer (v0.6 field names; `verificationGas` is an older
/// name some bundlers still send).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GasReply {
    #[serde(default, deserialize_with = "lenient_number")]
    pre_verification_gas: Option<U256>,
    #[serde(default, deserialize_with = "lenient_number")]
    verification_gas_limit: Option<U256>,
    #[serde(default, deserialize_with = "lenient_number")]
    verification_gas: Option<U256>,
    #[serde(default, deserialize_with = "lenient_number")]
    call_gas_limit: Option<U256>,
}

/// The part of `eth_getUserOperationReceipt`'s answer we use: where it landed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptReply {
    #[serde(default)]
    receipt: Option<TxPart>,
    /// Some bundlers put the transaction hash at the top level.
    #[serde(default)]
    transaction_hash: Option<B256>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TxPart {
    #[serde(default)]
    transaction_hash: Option<B256>,
}

/// A number as hex text, decimal text or a JSON number; `null` or absent as `None`.
fn lenient_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().map(U256::from),
        Some(Value::String(s)) => match s.strip_prefix("0x") {
            Some(hex) => U256::from_str_radix(hex, 16).ok(),
            None => U256::from_str_radix(&s, 10).ok(),
        },
        Some(_) => None,
    })
}

impl BundlerClient {
    pub fn new(url: String, entry_point: Address, chain: Chain) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            url,
            entry_point,
            chain,
        })
    }

    /// One JSON-RPC call: `Ok(result)`, `Err(Ok(error reply))`, or `Err(Err(no answer))`.
    async fn call(&self, method: &str, params: Value) -> Result<Value, Result<RpcError, String>> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Err(format!("{method}: {}", e.without_url())))?;
        let status = response.status();
        let reply: RpcReply = response.json().await.map_err(|e| {
            Err(format!(
                "{method}: HTTP {status}, not a JSON-RPC reply: {}",
                e.without_url()
            ))
        })?;
        match (reply.result, reply.error) {
            (_, Some(error)) => Err(Ok(error)),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        }
    }
}

fn reason(error: &RpcError) -> String {
    match &error.data {
        Some(Value::String(data)) if !data.is_empty() && !error.message.contains(data) => {
            format!("{} ({data})", error.message)
        }
        _ => error.message.clone(),
    }
}

fn no_answer(e: Result<RpcError, String>) -> SendError {
    match e {
        Ok(error) => SendError::refused(reason(&error)),
        Err(e) => SendError::Unknown(e),
    }
}

impl UserOpSender for BundlerClient {
    fn kind(&self) -> SenderKind {
        SenderKind::Bundler
    }

    fn estimate<'a>(
        &'a self,
        op: &'a UserOperation,
        _sign: &'a (dyn Fn(UserOperation) -> Result<UserOperation, SendError> + Send + Sync),
    ) -> BoxFuture<'a, Result<GasLimits, SendError>> {
        async move {
            let params = json!([UserOpJson::from(op), self.entry_point]);
            let result = match self.call("eth_estimateUserOperationGas", params).await {
                Ok(result) => result,
                Err(Ok(error)) if error.code == EXECUTION_REVERTED => {
                    let data = error
                        .data
                        .as_ref()
                        .and_then(Value::as_str)
                        .and_then(|d| d.parse::<alloy::primitives::Bytes>().ok());
                    return Err(SendError::Reverted {
                        reason: data
                            .map(|d| receipt::revert_text(&d))
                            .unwrap_or_else(|| error.message.clone()),
                    });
                }
                Err(e) => return Err(no_answer(e)),
            };
            let gas: GasReply = serde_json::from_value(result.clone()).map_err(|e| {
                SendError::Unknown(format!(
                    "eth_estimateUserOperationGas answered {result}: {e}"
                ))
            })?;
            let missing = |field: &str| {
                SendError::Unknown(format!(
                    "eth_estimateUserOperationGas answered without {field}: {result}"
                ))
            };
            Ok(GasLimits {
                call_gas_limit: gas.call_gas_limit.ok_or_else(|| missing("callGasLimit"))?,
                verification_gas_limit: gas
                    .verification_gas_limit
                    .or(gas.verification_gas)
                    .ok_or_else(|| missing("verificationGasLimit"))?,
                pre_verification_gas: gas
                    .pre_verification_gas
                    .ok_or_else(|| missing("preVerificationGas"))?,
            })
        }
        .boxed()
    }

    fn send<'a>(&'a self, op: &'a UserOperation) -> BoxFuture<'a, Result<Accepted, SendError>> {
        async move {
            let params = json!([UserOpJson::from(op), self.entry_point]);
            match self.call("eth_sendUserOperation", params).await {
                Ok(_) => Ok(Accepted { tx_hash: None }),
                Err(Ok(error))
                    if error.message.contains("already known")
                        || error.message.contains("already in mempool") =>
                {
                    // The identical operation sent again (after a restart): it is taken.
                    Ok(Accepted { tx_hash: None })
                }
                Err(e) => Err(no_answer(e)),
            }
        }
        .boxed()
    }

    fn receipt<'a>(
        &'a self,
        user_op_hash: B256,
        _tx_hash: Option<B256>,
        from_block: u64,
    ) -> BoxFuture<'a, Result<Option<OpReceipt>, SendError>> {
        async move {
            let chain_error = |e: crate::chain::ChainError| SendError::Unknown(e.to_string());
            let reply = self
                .call("eth_getUserOperationReceipt", json!([user_op_hash]))
                .await;
            let tx_hash = match reply {
                Ok(Value::Null) => None,
                Ok(value) => serde_json::from_value::<ReceiptReply>(value)
                    .ok()
                    .and_then(|r| {
                        r.receipt
                            .and_then(|t| t.transaction_hash)
                            .or(r.transaction_hash)
                    }),
                // A bundler that errs or forgot the operation: the chain's logs still know.
                Err(_) => None,
            };
            if let Some(tx_hash) = tx_hash
                && let Some(found) =
                    receipt::from_transaction(&self.chain, self.entry_point, user_op_hash, tx_hash)
                        .await
                        .map_err(chain_error)?
            {
                return Ok(Some(found));
            }
            receipt::search(&self.chain, self.entry_point, user_op_hash, from_block)
                .await
                .map_err(chain_error)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_replies_parse_whatever_the_number_format() {
        let reply: GasReply = serde_json::from_value(json!({
            "preVerificationGas": "0xb3b0",
            "verificationGasLimit": "70000",
            "callGasLimit": 35000,
            "paymasterVerificationGasLimit": null,
        }))
        .unwrap();
        assert_eq!(reply.pre_verification_gas, Some(U256::from(0xb3b0)));
        assert_eq!(reply.verification_gas_limit, Some(U256::from(70_000)));
        assert_eq!(reply.call_gas_limit, Some(U256::from(35_000)));
        let old: GasReply =
            serde_json::from_value(json!({"verificationGas": "0x10", "callGasLimit": null}))
                .unwrap();
        assert_eq!(old.verification_gas, Some(U256::from(16)));
        assert_eq!(old.call_gas_limit, None);
    }

    #[test]
    fn receipt_replies_with_nulls_and_omissions_parse() {
        let full: ReceiptReply = serde_json::from_value(json!({
            "userOpHash": "0x01",
            "sender": "0x0000000000000000000000000000000000000001",
            "paymaster": null,
            "reason": null,
            "logs": [],
            "receipt": {"transactionHash": format!("{:#x}", B256::repeat_byte(7)), "logs": null},
        }))
        .unwrap();
        assert_eq!(
            full.receipt.and_then(|r| r.transaction_hash),
            Some(B256::repeat_byte(7))
        );
        let bare: ReceiptReply = serde_json::from_value(json!({})).unwrap();
        assert!(bare.receipt.is_none() && bare.transaction_hash.is_none());
    }

    #[test]
    fn error_reasons_keep_the_data_when_it_adds_something() {
        let error = RpcError {
            code: -32500,
            message: "AA25 invalid account nonce".into(),
            data: None,
        };
        assert_eq!(reason(&error), "AA25 invalid account nonce");
        let refused = no_answer(Ok(error));
        assert_eq!(refused.code(), Some("AA25"));
    }
}
