//! The trigger rules the operators and the aggregator share: which logs an event query
//! matches. An operator applies them to fire; the aggregator applies them again to confirm an
//! overload an operator reports (`operators::overload`), so both read a block alike.
//!
//! - `filter_of`: the query's addresses and topics, as an `eth_getLogs` filter;
//! - `abi_event`: the ABI event its conditions decode a log against;
//! - `conditions_hold`: the conditions on the decoded fields (`gt gte lt lte eq ne`; numbers
//!   compare as numbers, everything else as text, `eq` and `ne` only);
//! - `DEFAULT_EVENTS_PER_BLOCK`: the per-block cap of a query that sets none.

use std::collections::HashMap;

use alloy::dyn_abi::{DynSolValue, EventExt};
use alloy::json_abi::{Event as AbiEvent, JsonAbi};
use alloy::primitives::{Address, B256, I256, U256};
use alloy::rpc::types::{Filter, Log};
use events::task::{EventCondition, EventQuery};
use serde_json::Value;

/// The cap of an event query that sets none (the operator's default too).
pub const DEFAULT_EVENTS_PER_BLOCK: u32 = 100;

/// The log filter of a query (without the block range).
pub fn filter_of(query: &EventQuery) -> Filter {
    let addresses: Vec<Address> = query
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut filter = Filter::new();
    if !addresses.is_empty() {
        filter = filter.address(addresses);
    }
    for (i, topic) in query.topics.iter().enumerate().take(4) {
        if let Ok(t) = topic.parse::<B256>() {
            filter = match i {
                0 => filter.event_signature(t),
                1 => filter.topic1(t),
                2 => filter.topic2(t),
                _ => filter.topic3(t),
            };
        }
    }
    filter
}

/// The ABI event a query's conditions decode against: the one whose selector is the first topic
/// (or the only event of the ABI).
pub fn abi_event(query: &EventQuery) -> Option<AbiEvent> {
    let abi: JsonAbi = serde_json::from_value(Value::Array(query.contract_abi.clone())).ok()?;
    let first: Option<B256> = query.topics.first().and_then(|t| t.parse().ok());
    let mut events = abi.events().cloned();
    match first {
        Some(selector) => abi.events().find(|e| e.selector() == selector).cloned(),
        None => events.next(),
    }
}

/// Whether a log meets the query's conditions on its ABI-decoded fields.
pub fn conditions_hold(query: &EventQuery, abi: Option<&AbiEvent>, log: &Log) -> bool {
    if query.conditions.is_empty() {
        return true;
    }
    let Some(event) = abi else { return false };
    let Ok(decoded) = event.decode_log(&log.inner.data) else {
        return false;
    };
    let mut fields: HashMap<&str, &DynSolValue> = HashMap::new();
    let (mut indexed, mut body) = (decoded.indexed.iter(), decoded.body.iter());
    for input in &event.inputs {
        let value = if input.indexed {
            indexed.next()
        } else {
            body.next()
        };
        if let Some(value) = value {
            fields.insert(input.name.as_str(), value);
        }
    }
    query.conditions.iter().all(|c| {
        fields
            .get(c.field_name.as_str())
            .is_some_and(|v| holds(c, v))
    })
}

/// One condition against a decoded value: numbers compare as numbers, everything else as text
/// (only `eq` and `ne`).
fn holds(condition: &EventCondition, value: &DynSolValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match value {
        DynSolValue::Uint(v, _) => condition
            .value
            .trim()
            .parse::<U256>()
            .ok()
            .map(|want| v.cmp(&want)),
        DynSolValue::Int(v, _) => condition
            .value
            .trim()
            .parse::<I256>()
            .ok()
            .map(|want| v.cmp(&want)),
        other => {
            let text = match other {
                DynSolValue::Address(a) => format!("{a:#x}"),
                DynSolValue::Bool(b) => b.to_string(),
                DynSolValue::String(s) => s.clone(),
                DynSolValue::FixedBytes(w, _) => format!("{w:#x}"),
                _ => return false,
            };
            let equal = text.eq_ignore_ascii_case(condition.value.trim());
            return match condition.operator.as_str() {
                "eq" => equal,
                "ne" => !equal,
                _ => false,
            };
        }
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match condition.operator.as_str() {
        "gt" => ordering == Ordering::Greater,
        "gte" => ordering != Ordering::Less,
        "lt" => ordering == Ordering::Less,
        "lte" => ordering != Ordering::Greater,
        "eq" => ordering == Ordering::Equal,
        "ne" => ordering != Ordering::Equal,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_compare_numbers_and_text() {
        let c = |op: &str, v: &str| EventCondition {
            field_name: "value".into(),
            operator: op.into(),
            value: v.into(),
            field_type: "uint256".into(),
        };
        let v = DynSolValue::Uint(U256::from(500), 256);
        assert!(holds(&c("gt", "100"), &v));
        assert!(!holds(&c("lt", "100"), &v));
        assert!(holds(&c("eq", "500"), &v));
        assert!(holds(&c("gte", "500"), &v));
        let a = DynSolValue::Address(Address::repeat_byte(0xab));
        assert!(holds(
            &c("eq", &format!("{:#x}", Address::repeat_byte(0xab))),
            &a
        ));
        assert!(!holds(&c("gt", "1"), &a));
    }
}
