//! Contract write: each method call (by name and parameters with the node's JSON ABI, or by raw
//! call data) is a user operation from the task's smart wallet, sent one after the other, as the
//! original does. Before each, an `eth_call` as the wallet gives the method's return value and,
//! when it would revert, the reason decoded with the ABI's errors; simulated (`is_simulated`),
//! that call is all that runs.
//!
//! The output is the list of `ContractWriteNode.MethodResult`s: `{methodName, methodABI,
//! success, error, receipt, blockNumber, value}`. One failed method fails the step, keeping the
//! list; a method missing from the ABI has the error code 3000 (`INVALID_REQUEST`).

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt};
use alloy::json_abi::{Function, JsonAbi};
use alloy::primitives::{Address, U256};
use serde_json::{Map, Value, json};

use events::task::{ContractWriteConfig, MethodCall};

use super::contract_read::{encode, find, parse_abi, value_text};
use super::write::{Sent, WriteCtx, WriteEnv, WriteRun, gas_fields, not_sent_code, receipt_json};
use super::{NodeError, NodeRun};
use crate::pb::ErrorCode;
use crate::wallet::submit::Journal;
use crate::wallet::user_op::Call;

/// One method call, resolved: its function (when the ABI has it) and its call.
#[derive(Debug)]
struct Planned {
    name: String,
    function: Option<Function>,
    call: Call,
}

/// A method call planned, or why not (with the method's name).
type PlanResult = Result<Planned, Box<(String, NodeError)>>;

fn plan(config: &ContractWriteConfig) -> Result<(JsonAbi, Vec<PlanResult>), NodeError> {
    let address = config.contract_address.trim();
    if address.is_empty() {
        return Err(NodeError::new("contractAddress is required")
            .with_code(ErrorCode::MissingRequiredField));
    }
    let contract: Address = address.parse().map_err(|_| {
        NodeError::new(format!("invalid contract address: {address:?}"))
            .with_code(ErrorCode::InvalidAddress)
    })?;
    let abi = if config.contract_abi.is_empty() {
        JsonAbi::new()
    } else {
        parse_abi(&config.contract_abi)?
    };
    let value = match config
        .value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => U256::ZERO,
        Some(v) => U256::from_str_radix(v, 10).map_err(|_| {
            NodeError::new(format!("invalid value: {v:?} is not a whole number of wei"))
                .with_code(ErrorCode::InvalidNodeConfig)
        })?,
    };
    let mut calls = config.method_calls.clone();
    if calls.is_empty() && !config.call_data.is_empty() {
        calls.push(MethodCall {
            method_name: String::new(),
            call_data: Some(config.call_data.clone()),
            apply_to_fields: Vec::new(),
            method_params: Vec::new(),
        });
    }
    if calls.is_empty() {
        return Err(NodeError::new("methodCalls or callData is required")
            .with_code(ErrorCode::MissingRequiredField));
    }
    let planned = calls
        .iter()
        .map(|call| plan_one(&abi, contract, value, call))
        .collect();
    Ok((abi, planned))
}

fn plan_one(abi: &JsonAbi, contract: Address, value: U256, call: &MethodCall) -> PlanResult {
    let name = call.method_name.clone();
    let failed = |e: NodeError| Box::new((name.clone(), e));
    let raw = match call
        .call_data
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        Some(text) => Some(
            alloy::hex::decode(text.trim_start_matches("0x")).map_err(|_| {
                failed(
                    NodeError::new(format!("call data {text:?} is not hex"))
                        .with_code(ErrorCode::InvalidNodeConfig),
                )
            })?,
        ),
        None => None,
    };
    let function = match find(abi, call, raw.as_deref()) {
        Ok(function) => Some(function.clone()),
        // Raw call data needs no ABI; a method by name does.
        Err(_) if raw.is_some() => None,
        Err(_) => {
            return Err(failed(
                NodeError::new(format!(
                    "method {} not found in the contract ABI (with {} parameters)",
                    call.method_name,
                    call.method_params.len()
                ))
                .with_code(ErrorCode::InvalidRequest),
            ));
        }
    };
    let data = match (raw, &function) {
        (Some(raw), _) => raw,
        (None, Some(function)) => {
            encode(function, call).map_err(|e| failed(e.with_code(ErrorCode::InvalidNodeConfig)))?
        }
        (None, None) => {
            return Err(failed(NodeError::new(
                "a method call needs a name or call data",
            )));
        }
    };
    Ok(Planned {
        name: function.as_ref().map_or(name.clone(), |f| f.name.clone()),
        function,
        call: Call {
            to: contract,
            value,
            data: data.into(),
        },
    })
}

/// The calls of the method calls (the first one that cannot be planned is the error).
pub(super) fn calls(config: &ContractWriteConfig) -> Result<Vec<Call>, NodeError> {
    let (_, planned) = plan(config)?;
    planned
        .into_iter()
        .map(|p| p.map(|p| p.call).map_err(|failed| failed.1))
        .collect()
}

/// A method's return value as JSON: one output as its value, several as an object by name.
fn return_value(function: Option<&Function>, data: &[u8]) -> Value {
    let Some(function) = function else {
        return if data.is_empty() {
            Value::Null
        } else {
            Value::String(format!("0x{}", alloy::hex::encode(data)))
        };
    };
    let Ok(values) = function.abi_decode_output(data) else {
        return Value::Null;
    };
    let json_of = |v: &DynSolValue| match v {
        DynSolValue::Bool(b) => Value::Bool(*b),
        other => Value::String(value_text(other)),
    };
    match values.as_slice() {
        [] => Value::Null,
        [one] => json_of(one),
        many => {
            let mut object = Map::new();
            for (i, (output, value)) in function.outputs.iter().zip(many).enumerate() {
                let key = if output.name.is_empty() {
                    format!("output{i}")
                } else {
                    output.name.clone()
                };
                object.insert(key, json_of(value));
            }
            Value::Object(object)
        }
    }
}

/// Revert data as a person reads it, with the contract's own errors decoded by the ABI.
pub fn revert_reason(abi: &JsonAbi, data: &[u8]) -> String {
    if let Some(selector) = data.get(..4)
        && let Some(error) = abi.errors().find(|e| e.selector().as_slice() == selector)
        && let Ok(values) = error.abi_decode_input(data.get(4..).unwrap_or_default())
    {
        let args: Vec<String> = error
            .inputs
            .iter()
            .zip(&values)
            .map(|(input, value)| {
                if input.name.is_empty() {
                    value_text(value)
                } else {
                    format!("{}={}", input.name, value_text(value))
                }
            })
            .collect();
        return format!("{}({})", error.name, args.join(", "));
    }
    crate::wallet::receipt::revert_text(data)
}

/// A reason recorded in a receipt (text, or hex of custom error data), decoded with the ABI.
fn receipt_reason(abi: &JsonAbi, recorded: &str) -> String {
    match recorded
        .strip_prefix("0x")
        .and_then(|h| alloy::hex::decode(h).ok())
    {
        Some(data) => revert_reason(abi, &data),
        None => recorded.to_owned(),
    }
}

fn method_abi(function: Option<&Function>) -> Value {
    function
        .and_then(|f| serde_json::to_value(f).ok())
        .unwrap_or(Value::Null)
}

fn failure(name: &str, function: Option<&Function>, error: &str) -> Value {
    json!({
        "methodName": name,
        "methodABI": method_abi(function),
        "success": false,
        "error": error,
        "receipt": null,
        "value": null,
    })
}

/// Runs the method calls: simulated (`ctx` `None`) or as user operations of the step.
pub async fn run<J: Journal>(
    env: &WriteEnv,
    ctx: Option<&mut WriteCtx<'_, J>>,
    config: &ContractWriteConfig,
) -> Result<WriteRun, NodeError> {
    let (abi, planned) = plan(config)?;
    let wallet = env.target.wallet;
    let mut ctx = ctx;
    let mut results = Vec::with_capacity(planned.len());
    let mut failures: Vec<(String, ErrorCode)> = Vec::new();
    let mut log = Vec::new();
    let mut pending = Vec::new();
    for item in planned {
        let planned = match item {
            Ok(planned) => planned,
            Err(failed) => {
                let (name, e) = *failed;
                results.push(failure(&name, None, &e.message));
                failures.push((format!("{name}: {}", e.message), e.code));
                continue;
            }
        };
        let name = planned.name.clone();
        let function = planned.function.as_ref();
        let simulated = env
            .wallets
            .simulate_call(wallet, &planned.call)
            .await
            .map_err(|e| NodeError::new(e.reason).with_code(ErrorCode::RpcNodeError))?;
        let value = match &simulated {
            Ok(data) => return_value(function, data),
            Err(_) => Value::Null,
        };
        let Some(ctx) = ctx.as_deref_mut() else {
            // Simulated: the eth_call is the answer.
            match simulated {
                Ok(_) => results.push(json!({
                    "methodName": name,
                    "methodABI": method_abi(function),
                    "success": true,
                    "error": "",
                    "receipt": null,
                    "value": value,
                })),
                Err((_, data)) => {
                    let reason = format!("execution reverted: {}", revert_reason(&abi, &data));
                    results.push(failure(&name, function, &reason));
                    failures.push((format!("{name}: {reason}"), ErrorCode::SimulationError));
                }
            }
            log.push(format!("simulated {name} on {}", planned.call.to));
            continue;
        };
        if let Err((_, data)) = &simulated {
            // It would revert on the chain as it is: say why, send nothing.
            let reason = format!("execution reverted: {}", revert_reason(&abi, data));
            results.push(failure(&name, function, &reason));
            failures.push((format!("{name}: {reason}"), ErrorCode::SimulationError));
            continue;
        }
        match ctx.send(vec![planned.call.clone()]).await? {
            Sent::Landed {
                receipt,
                user_op_hash,
            } => {
                let error = if receipt.success {
                    String::new()
                } else {
                    format!(
                        "execution reverted: {} (transaction {})",
                        receipt_reason(&abi, &receipt.revert_reason),
                        receipt.tx_hash
                    )
                };
                if !receipt.success {
                    failures.push((format!("{name}: {error}"), ErrorCode::SmartWalletRpcError));
                }
                log.push(format!(
                    "{name}: user operation {user_op_hash:#x} in {}",
                    receipt.tx_hash
                ));
                results.push(json!({
                    "methodName": name,
                    "methodABI": method_abi(function),
                    "success": receipt.success,
                    "error": error,
                    "receipt": receipt_json(&receipt, user_op_hash, wallet, planned.call.to),
                    "blockNumber": receipt.block_number,
                    "value": if receipt.success { value } else { Value::Null },
                }));
            }
            Sent::Pending { user_op_hash } => {
                log.push(format!(
                    "{name}: pending, the user operation {user_op_hash:#x} has no receipt yet"
                ));
                pending.push(format!("{user_op_hash:#x}"));
                results.push(json!({
                    "methodName": name,
                    "methodABI": method_abi(function),
                    "success": true,
                    "error": "",
                    "status": "pending",
                    "userOpHash": format!("{user_op_hash:#x}"),
                    "receipt": null,
                    "value": value,
                }));
            }
            Sent::NotSent(not_sent) => {
                let code = not_sent_code(&not_sent);
                results.push(failure(&name, function, &not_sent.reason));
                failures.push((format!("{name}: {}", not_sent.reason), code));
            }
        }
    }
    let gas = ctx.as_ref().and_then(|c| gas_fields(c.gas));
    let output = Value::Array(results);
    let mut metadata = json!({ "results": output.clone() });
    if !pending.is_empty() {
        metadata["status"] = Value::from("pending");
        metadata["pendingUserOps"] = Value::from(pending);
    }
    if ctx.is_none() {
        metadata["simulated"] = Value::Bool(true);
    }
    if let Some((_, code)) = failures.first() {
        let count = output.as_array().map_or(0, Vec::len);
        return Err(NodeError {
            metadata: None,
            message: format!(
                "{} of {count} method calls failed: {}",
                failures.len(),
                failures
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            code: *code,
            output: Some(output),
            log,
        });
    }
    Ok(WriteRun {
        run: NodeRun {
            metadata: None,
            output,
            log,
            taken: None,
        },
        metadata: Some(metadata),
        gas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abi() -> Vec<Value> {
        vec![
            json!({"type": "function", "name": "transfer", "stateMutability": "nonpayable",
                "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
                "outputs": [{"name": "", "type": "bool"}]}),
            json!({"type": "error", "name": "InsufficientBalance", "inputs": [
                {"name": "account", "type": "address"}, {"name": "balance", "type": "uint256"},
                {"name": "needed", "type": "uint256"}]}),
        ]
    }

    fn config(calls: Vec<MethodCall>) -> ContractWriteConfig {
        ContractWriteConfig {
            contract_address: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            contract_abi: abi(),
            method_calls: calls,
            ..ContractWriteConfig::default()
        }
    }

    fn call(name: &str, params: &[&str]) -> MethodCall {
        MethodCall {
            method_name: name.into(),
            call_data: None,
            apply_to_fields: Vec::new(),
            method_params: params.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_method_missing_from_the_abi_has_error_code_3000() {
        let (_, planned) = plan(&config(vec![
            call(
                "transfer",
                &["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "5"],
            ),
            call("mint", &["1"]),
        ]))
        .unwrap();
        assert!(planned[0].is_ok());
        let Err(failed) = &planned[1] else {
            panic!("mint was planned")
        };
        let (name, e) = &**failed;
        assert_eq!(name, "mint");
        assert_eq!(e.code as i32, 3000);
        assert!(
            e.message.contains("not found in the contract ABI"),
            "{}",
            e.message
        );
    }

    #[test]
    fn addresses_and_calls_are_required() {
        let mut c = config(vec![]);
        assert_eq!(plan(&c).unwrap_err().code, ErrorCode::MissingRequiredField);
        c.contract_address = "0x12".into();
        assert_eq!(plan(&c).unwrap_err().code, ErrorCode::InvalidAddress);
        let mut raw = config(vec![]);
        raw.call_data = "0xa9059cbb".into();
        let (_, planned) = plan(&raw).unwrap();
        assert!(planned[0].is_ok());
    }

    #[test]
    fn custom_errors_are_decoded_with_the_abi() {
        let abi = parse_abi(&abi()).unwrap();
        let error = abi.errors().next().unwrap();
        let data = error
            .abi_encode_input(&[
                DynSolValue::Address(Address::repeat_byte(1)),
                DynSolValue::Uint(U256::from(10), 256),
                DynSolValue::Uint(U256::from(20), 256),
            ])
            .unwrap();
        // (`abi_encode_input` puts the selector first, as a revert carries it.)
        let full = data;
        let reason = revert_reason(&abi, &full);
        assert!(
            reason.starts_with("InsufficientBalance(account=0x0101"),
            "{reason}"
        );
        assert!(reason.ends_with("balance=10, needed=20)"), "{reason}");
        assert_eq!(
            receipt_reason(&abi, &format!("0x{}", alloy::hex::encode(&full))),
            reason
        );
    }

    #[test]
    fn return_values_are_json() {
        let abi = parse_abi(&abi()).unwrap();
        let transfer = abi.function("transfer").unwrap()[0].clone();
        let mut word = [0u8; 32];
        word[31] = 1;
        assert_eq!(return_value(Some(&transfer), &word), Value::Bool(true));
        assert_eq!(return_value(None, &[]), Value::Null);
    }
}
