//! What a run sees as its trigger's data (the trigger step's output and `<trigger>.data`):
//!
//! - a manual trigger: the data `TriggerTask` sent, else the data the trigger was configured
//!   with (as the original runs it);
//! - an event trigger: the log the operators attested, decoded with the matching query's ABI
//!   and, for a `Transfer`, enriched with the token's metadata (`domain::trigger_output`). The
//!   firing in the log keeps the raw log the operators signed: the decoding happens here, after
//!   the attestation, and is recorded with the trigger step, so a resumed run sees the same;
//! - anything else: the firing's output as reported.
//!
//! What the chain does not answer (no RPC, a token that is not an ERC-20) leaves the fields it
//! would have filled out: decoding still happens.

use alloy::primitives::{Address, Bytes};
use serde_json::Value;

use events::execution::Firing;
use events::task::{EventQuery, TaskDefinition, TriggerConfig};

use super::Tools;
use crate::domain::trigger_output::{self, TokenFacts};

pub async fn run_data(tools: &Tools, definition: &TaskDefinition, firing: &Firing) -> Value {
    let reported = || firing.output.clone().unwrap_or(Value::Null);
    match (&definition.trigger.config, &firing.output) {
        (Some(TriggerConfig::Manual(manual)), None) => manual.data.clone().unwrap_or(Value::Null),
        (Some(TriggerConfig::Event(event)), Some(output)) => {
            let decoded = decoded_event(tools, &event.queries, output).await;
            // The decoding adds to what was reported: past the bounds a step may record, the
            // run sees the log as reported.
            match tools.bounds.check("the decoded event", &decoded) {
                Ok(()) => decoded,
                Err(_) => reported(),
            }
        }
        _ => reported(),
    }
}

/// An event output decoded and enriched, or as it is when no query's ABI knows the log.
pub async fn decoded_event(tools: &Tools, queries: &[EventQuery], output: &Value) -> Value {
    let Some(log) = trigger_output::raw_log(output) else {
        return output.clone();
    };
    let Some(decoded) = trigger_output::decode(&log, queries) else {
        return output.clone();
    };
    let mut out = trigger_output::decoded_output(output, &decoded);
    if let Some(query) = queries.get(decoded.query) {
        for call in query
            .method_calls
            .iter()
            .filter(|c| !c.apply_to_fields.is_empty())
        {
            if let Some(decimals) = call_decimals(tools, log.address, call).await {
                trigger_output::apply_decimals(&mut out, &decoded, &call.apply_to_fields, decimals);
            }
        }
    }
    if decoded.event_name == "Transfer" {
        let token = tools
            .tokens
            .lookup(tools.chain.as_ref(), log.address)
            .await
            .ok()
            .flatten()
            .map(|(m, _)| TokenFacts {
                name: m.name,
                symbol: m.symbol,
                decimals: m.decimals,
            });
        let block_ms = match (&tools.chain, log.block_number) {
            (Some(chain), Some(number)) => chain
                .block_timestamp(number)
                .await
                .ok()
                .map(|s| s.saturating_mul(1000)),
            _ => None,
        };
        trigger_output::enrich_transfer(
            &mut out,
            &decoded,
            &log,
            queries,
            token.as_ref(),
            block_ms,
            tools.chain_id,
        );
    }
    out
}

/// The decimals a query's method call returns from the log's contract (its call data, or the
/// method by name with no parameters, usually `decimals()`).
async fn call_decimals(
    tools: &Tools,
    contract: Address,
    call: &events::task::MethodCall,
) -> Option<u8> {
    let chain = tools.chain.as_ref()?;
    let data = match call.call_data.as_deref().filter(|d| !d.is_empty()) {
        Some(hex_data) => hex::decode(hex_data.trim_start_matches("0x")).ok()?,
        None => {
            let signature = format!("{}()", call.method_name.trim());
            alloy::primitives::keccak256(signature.as_bytes())
                .get(..4)?
                .to_vec()
        }
    };
    let answer = chain.call(contract, Bytes::from(data)).await.ok()?;
    let word = alloy::primitives::U256::try_from_be_slice(answer.get(..32)?)?;
    u8::try_from(word).ok()
}
