//! Contract read: `eth_call`s with the node's JSON ABI: each method call by name and parameters
//! (coerced from text to the ABI's types) or by raw call data; results decoded into named fields.
//! `apply_to_fields` formats those fields as decimals with the contract's `decimals()`.
//!
//! The output is the list of `ContractReadNode.MethodResult`s: `{methodName, success, error,
//! data: [{name, type, value}]}`; a failed call fails the step, keeping the list.

use alloy::dyn_abi::{DynSolValue, FunctionExt, JsonAbiExt, Specifier};
use alloy::json_abi::{Function, JsonAbi};
use alloy::primitives::{Address, Bytes};
use serde_json::{Value, json};

use events::task::{ContractReadConfig, MethodCall};

use super::{NodeError, NodeResult, NodeRun, chain, format_units};
use crate::engine::Tools;

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

pub async fn run(tools: &Tools, config: &ContractReadConfig) -> NodeResult {
    let chain = chain(tools)?;
    let contract: Address = config
        .contract_address
        .parse()
        .map_err(|_| NodeError::new(format!("{:?} is not an address", config.contract_address)))?;
    let abi = parse_abi(&config.contract_abi)?;
    let mut results = Vec::with_capacity(config.method_calls.len());
    let mut failures = Vec::new();
    let mut decimals: Option<u8> = None;
    for call in &config.method_calls {
        let raw = match call.call_data.as_deref().filter(|d| !d.is_empty()) {
            Some(hex_data) => Some(
                hex::decode(hex_data.trim_start_matches("0x"))
                    .map_err(|_| NodeError::new(format!("call data {hex_data:?} is not hex")))?,
            ),
            None => None,
        };
        let attempt = async {
            let function = find(&abi, call, raw.as_deref())?;
            let data = match &raw {
                Some(d) => d.clone(),
                None => encode(function, call)?,
            };
            let answer = chain
                .call(contract, Bytes::from(data))
                .await
                .map_err(|e| NodeError::new(format!("eth_call {}: {e}", function.name)))?;
            let decoded = function
                .abi_decode_output(&answer)
                .map_err(|e| NodeError::new(format!("decoding {}: {e}", function.name)))?;
            Ok::<_, NodeError>((function.clone(), decoded))
        };
        match attempt.await {
            Ok((function, decoded)) => {
                let mut fields = Vec::with_capacity(decoded.len());
                for (i, (output, value)) in function.outputs.iter().zip(&decoded).enumerate() {
                    let name = if output.name.is_empty() {
                        if function.outputs.len() == 1 {
                            function.name.clone()
                        } else {
                            format!("output{i}")
                        }
                    } else {
                        output.name.clone()
                    };
                    let mut text = value_text(value);
                    if call.apply_to_fields.contains(&name)
                        && matches!(value, DynSolValue::Uint(..) | DynSolValue::Int(..))
                    {
                        let d = match decimals {
                            Some(d) => d,
                            None => {
                                let d = chain
                                    .token_metadata(contract)
                                    .await
                                    .map(|m| m.decimals)
                                    .map_err(|e| {
                                        NodeError::new(format!(
                                            "apply_to_fields needs the contract's decimals(): {e}"
                                        ))
                                    })?;
                                decimals = Some(d);
                                d
                            }
                        };
                        text = format_units(&text, d);
                    }
                    fields.push(json!({ "name": name, "type": output.ty, "value": text }));
                }
                results.push(json!({ "methodName": function.name, "success": true, "error": "", "data": fields }));
            }
            Err(e) => {
                failures.push(format!("{}: {}", call.method_name, e.message));
                results.push(json!({ "methodName": call.method_name, "success": false, "error": e.message, "data": [] }));
            }
        }
    }
    let output = Value::Array(results);
    let log = vec![format!(
        "{} call(s) to {contract}",
        config.method_calls.len()
    )];
    if !failures.is_empty() {
        return Err(NodeError {
            message: format!(
                "{} of {} calls failed: {}",
                failures.len(),
                config.method_calls.len(),
                failures.join("; ")
            ),
            code: crate::pb::ErrorCode::RpcNodeError,
            output: Some(output),
            log,
        });
    }
    Ok(NodeRun {
        output,
        log,
        taken: None,
    })
}
