//! Contract read: `eth_call`s with the node's JSON ABI: each method call by name and parameters
//! (coerced from text to the ABI's types) or by raw call data; results decoded by the ABI.
//!
//! As the original shapes it:
//! - the output is one object keyed by method name: a method with one output gives its value
//!   (`{"decimals": "6"}`), one with several gives its fields by name (`{"latestRoundData":
//!   {"roundId": "…", "answer": "…"}}`; unnamed ones are `output_<i>`); values are text;
//! - the step's `metadata` lists each call's result with the raw, unformatted values:
//!   `[{methodName, methodABI, success, error, value}]`;
//! - `apply_to_fields` sits on the call that *provides* the decimals (usually `decimals()`): it
//!   names the values to format with that call's result, as `method.field` or `method` for a
//!   method with one output;
//! - a failed call fails the step; the output and metadata keep what the other calls returned.

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt, Specifier};
use alloy::json_abi::{Function, JsonAbi};
use alloy::primitives::{Address, Bytes};
use serde_json::{Map, Value, json};

use events::task::{ContractReadConfig, MethodCall};

use super::{NodeError, NodeResult, NodeRun, chain, format_units};
use crate::engine::Tools;
use crate::pb::ErrorCode;

/// A decoded value as text.
pub fn value_text(value: &DynSolValue) -> String {
    match value {
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Int(i, _) => i.to_string(),
        DynSolValue::Uint(u, _) => u.to_string(),
        DynSolValue::String(s) => s.clone(),
        DynSolValue::Bytes(b) => format!("0x{}", hex::encode(b)),
        DynSolValue::FixedBytes(w, size) => {
            format!("0x{}", hex::encode(w.get(..*size).unwrap_or_default()))
        }
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(|v| Value::String(value_text(v))).collect()).to_string()
        }
        other => format!("{other:?}"),
    }
}

pub fn parse_abi(entries: &[Value]) -> Result<JsonAbi, NodeError> {
    serde_json::from_value(Value::Array(entries.to_vec()))
        .map_err(|e| NodeError::new(format!("the contract ABI does not parse: {e}")))
}

pub(super) fn find<'a>(
    abi: &'a JsonAbi,
    call: &MethodCall,
    data: Option<&[u8]>,
) -> Result<&'a Function, NodeError> {
    if let Some(data) = data
        && let Some(selector) = data.get(..4)
    {
        return abi
            .functions()
            .find(|f| f.selector().as_slice() == selector)
            .ok_or_else(|| NodeError::new("no function of the ABI has the call data's selector"));
    }
    abi.function(&call.method_name)
        .and_then(|overloads| {
            overloads
                .iter()
                .find(|f| f.inputs.len() == call.method_params.len())
        })
        .ok_or_else(|| {
            NodeError::new(format!(
                "the ABI has no function {}({} parameters)",
                call.method_name,
                call.method_params.len()
            ))
        })
}

/// The call data of one method call.
pub(super) fn encode(function: &Function, call: &MethodCall) -> Result<Vec<u8>, NodeError> {
    let mut values = Vec::with_capacity(call.method_params.len());
    for (param, text) in function.inputs.iter().zip(&call.method_params) {
        let ty = param.resolve().map_err(|e| {
            NodeError::new(format!("parameter {} type {}: {e}", param.name, param.ty))
        })?;
        values.push(ty.coerce_str(text).map_err(|e| {
            NodeError::new(format!(
                "parameter {} ({}) {text:?}: {e}",
                param.name, param.ty
            ))
        })?);
    }
    function
        .abi_encode_input(&values)
        .map_err(|e| NodeError::new(format!("encoding {}: {e}", function.name)))
}

/// What one call returned.
struct CallResult {
    method: String,
    abi: Value,
    outcome: Result<Vec<(String, DynSolValue)>, String>,
}

/// A decoded value as the output holds it: text, with arrays and tuples as arrays of text.
fn value_json(value: &DynSolValue) -> Value {
    match value {
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(value_json).collect())
        }
        other => Value::String(value_text(other)),
    }
}

/// The output names of a function's results, as the original names them.
fn output_names(function: &Function) -> Vec<String> {
    let single = function.outputs.len() == 1;
    function
        .outputs
        .iter()
        .enumerate()
        .map(|(i, output)| match output.name.as_str() {
            "" if single => function.name.clone(),
            "" => format!("output_{i}"),
            name => name.to_owned(),
        })
        .collect()
}

/// A call's values as one value: the value of a single output, else the fields by name.
fn shaped(fields: &[(String, Value)]) -> Value {
    match fields {
        [(_, only)] => only.clone(),
        _ => Value::Object(fields.iter().cloned().collect()),
    }
}

/// The decimals a providing call returned (its first output, an integer below 256).
fn provided_decimals(fields: &[(String, DynSolValue)]) -> Option<u8> {
    match fields.first().map(|(_, v)| v) {
        Some(DynSolValue::Uint(u, _)) => u8::try_from(*u).ok(),
        Some(DynSolValue::Int(i, _)) => u8::try_from(*i).ok(),
        _ => None,
    }
}

/// Which `(method, field)` values get which decimals: every `apply_to_fields` entry of a call
/// that returned an integer, with that integer.
fn formatting(results: &[CallResult], calls: &[MethodCall]) -> Vec<(String, Option<String>, u8)> {
    let mut targets = Vec::new();
    for (result, call) in results.iter().zip(calls) {
        if call.apply_to_fields.is_empty() {
            continue;
        }
        let Some(decimals) = result
            .outcome
            .as_ref()
            .ok()
            .and_then(|f| provided_decimals(f))
        else {
            continue;
        };
        for target in &call.apply_to_fields {
            let target = target.trim();
            match target.split_once('.') {
                Some((method, field)) => {
                    targets.push((method.to_owned(), Some(field.to_owned()), decimals));
                }
                None => targets.push((target.to_owned(), None, decimals)),
            }
        }
    }
    targets
}

pub async fn run(tools: &Tools, config: &ContractReadConfig) -> NodeResult {
    let chain = chain(tools)?;
    let contract: Address = config
        .contract_address
        .parse()
        .map_err(|_| NodeError::new(format!("{:?} is not an address", config.contract_address)))?;
    let abi = parse_abi(&config.contract_abi)?;
    if config.method_calls.is_empty() {
        return Err(
            NodeError::new("no method calls specified").with_code(ErrorCode::InvalidNodeConfig)
        );
    }
    let mut results = Vec::with_capacity(config.method_calls.len());
    for call in &config.method_calls {
        let raw = match call.call_data.as_deref().filter(|d| !d.is_empty()) {
            Some(hex_data) => Some(
                hex::decode(hex_data.trim_start_matches("0x"))
                    .map_err(|_| NodeError::new(format!("call data {hex_data:?} is not hex")))?,
            ),
            None => None,
        };
        let function = find(&abi, call, raw.as_deref());
        let attempt = async {
            let function = function.as_ref().map_err(|e| e.message.clone())?;
            let data = match &raw {
                Some(d) => d.clone(),
                None => encode(function, call).map_err(|e| e.message)?,
            };
            let answer = chain
                .call(contract, Bytes::from(data))
                .await
                .map_err(|e| format!("contract call failed: {e}"))?;
            if answer.is_empty() {
                return Err(format!(
                    "contract call returned empty data: {contract} has no such function, or it reverted silently"
                ));
            }
            let decoded = function
                .abi_decode_output(&answer)
                .map_err(|e| format!("failed to decode result: {e}"))?;
            Ok(output_names(function).into_iter().zip(decoded).collect())
        };
        let outcome = attempt.await;
        let (method, abi_entry) = match &function {
            Ok(f) => (
                f.name.clone(),
                serde_json::to_value(f).unwrap_or(Value::Null),
            ),
            Err(_) => (call.method_name.clone(), Value::Null),
        };
        results.push(CallResult {
            method,
            abi: abi_entry,
            outcome,
        });
    }
    let targets = formatting(&results, &config.method_calls);
    let mut output = Map::new();
    let mut metadata = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for result in &results {
        match &result.outcome {
            Ok(fields) => {
                let raw: Vec<(String, Value)> = fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value_json(value)))
                    .collect();
                let single = fields.len() == 1;
                let formatted: Vec<(String, Value)> = fields
                    .iter()
                    .zip(&raw)
                    .map(|((name, value), (_, text))| {
                        let decimals = targets.iter().find_map(|(method, field, d)| {
                            let hit = *method == result.method
                                && match field {
                                    Some(field) => field == name,
                                    None => single,
                                };
                            hit.then_some(*d)
                        });
                        let text = match (decimals, value) {
                            (Some(d), DynSolValue::Uint(..) | DynSolValue::Int(..)) => {
                                Value::String(format_units(&value_text(value), d))
                            }
                            _ => text.clone(),
                        };
                        (name.clone(), text)
                    })
                    .collect();
                output.insert(result.method.clone(), shaped(&formatted));
                metadata.push(json!({
                    "methodName": result.method,
                    "methodABI": result.abi,
                    "success": true,
                    "error": "",
                    "value": shaped(&raw),
                }));
            }
            Err(e) => {
                failures.push(format!("{}: {e}", result.method));
                metadata.push(json!({
                    "methodName": result.method,
                    "methodABI": result.abi,
                    "success": false,
                    "error": e,
                    "value": null,
                }));
            }
        }
    }
    let log = results
        .iter()
        .enumerate()
        .map(|(i, r)| match &r.outcome {
            Ok(_) => format!("Call {}: {} on {contract}: success", i + 1, r.method),
            Err(e) => format!("Call {}: {} on {contract}: failed: {e}", i + 1, r.method),
        })
        .collect();
    let output = Value::Object(output);
    let metadata = Some(Value::Array(metadata));
    if !failures.is_empty() {
        return Err(NodeError {
            message: format!("method call failed: {}", failures.join("; ")),
            code: ErrorCode::RpcNodeError,
            output: Some(output),
            metadata,
            log,
        });
    }
    Ok(NodeRun {
        output,
        metadata,
        log,
        taken: None,
    })
}
