//! What triggers output, in the original's shapes:
//!
//! - time and block triggers: `protocol::trigger_output` (operators build and sign them);
//! - event triggers: operators report the raw log (`{blockNumber, blockHash, transactionHash,
//!   logIndex, address, topics, data}`), which is what they sign, so that every honest operator
//!   signs the same digest. The run sees it decoded with the query's ABI (`eventName` and each
//!   field by name), and a `Transfer` enriched as the original does it: the token's name, symbol
//!   and decimals, `valueFormatted`, `fromAddress`/`toAddress`, and `direction` (`sent` or
//!   `received`, from the wallet the queries' topics name). Decoding is pure and here; what it
//!   needs from the chain (token metadata, the block's time) the engine looks up.

use alloy::dyn_abi::{DynSolValue, EventExt};
use alloy::json_abi::{Event as AbiEvent, JsonAbi};
use alloy::primitives::{Address, B256, Bytes, LogData};
use serde_json::{Map, Value};

use events::task::EventQuery;

pub use protocol::trigger_output::{BlockFacts, block_output, iso_millis, time_output};

/// A raw log as an output carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub block_number: Option<u64>,
}

/// The raw log in an event output, when it holds one.
pub fn raw_log(output: &Value) -> Option<RawLog> {
    let address = output.get("address")?.as_str()?.parse().ok()?;
    let topics = output
        .get("topics")?
        .as_array()?
        .iter()
        .map(|t| t.as_str().and_then(|t| t.parse().ok()))
        .collect::<Option<Vec<B256>>>()?;
    let data = output.get("data")?.as_str()?;
    let data = hex::decode(data.trim_start_matches("0x")).ok()?;
    Some(RawLog {
        address,
        topics,
        data: data.into(),
        block_number: output.get("blockNumber").and_then(Value::as_u64),
    })
}

/// A decoded value as text: addresses checksummed, numbers in decimal, bytes in hex; booleans
/// stay booleans and arrays arrays.
pub fn value_json(value: &DynSolValue) -> Value {
    match value {
        DynSolValue::Address(a) => Value::String(a.to_checksum(None)),
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Bytes(b) => Value::String(format!("0x{}", hex::encode(b))),
        DynSolValue::FixedBytes(w, size) => Value::String(format!(
            "0x{}",
            hex::encode(w.get(..*size).unwrap_or_default())
        )),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(value_json).collect())
        }
        other => Value::String(format!("{other:?}")),
    }
}

/// Whether a query's filter matches the log (its addresses, its topics by position).
fn query_matches(query: &EventQuery, log: &RawLog) -> bool {
    let address_ok = query.addresses.is_empty()
        || query
            .addresses
            .iter()
            .any(|a| a.parse::<Address>().is_ok_and(|a| a == log.address));
    let topics_ok = query.topics.iter().enumerate().all(|(i, want)| {
        match want.parse::<B256>() {
            Ok(want) => log.topics.get(i) == Some(&want),
            Err(_) => true, // empty or null: any
        }
    });
    address_ok && topics_ok
}

/// The log decoded with the ABI of the first query that matches it and knows its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The query that decoded it (its index).
    pub query: usize,
    pub event_name: String,
    /// `eventName` and each field by name.
    pub fields: Map<String, Value>,
    /// The decoded values by field name, for formatting.
    pub values: Vec<(String, DynSolValue)>,
}

pub fn decode(log: &RawLog, queries: &[EventQuery]) -> Option<Decoded> {
    let selector = *log.topics.first()?;
    queries.iter().enumerate().find_map(|(index, query)| {
        if !query_matches(query, log) || query.contract_abi.is_empty() {
            return None;
        }
        let abi: JsonAbi = serde_json::from_value(Value::Array(query.contract_abi.clone())).ok()?;
        let event: &AbiEvent = abi.events().find(|e| e.selector() == selector)?;
        let data = LogData::new(log.topics.clone(), log.data.clone())?;
        let decoded = event.decode_log(&data).ok()?;
        let (mut indexed, mut body) = (decoded.indexed.into_iter(), decoded.body.into_iter());
        let mut fields = Map::new();
        let mut values = Vec::new();
        fields.insert("eventName".into(), Value::String(event.name.clone()));
        for (i, input) in event.inputs.iter().enumerate() {
            let value = if input.indexed {
                indexed.next()
            } else {
                body.next()
            };
            let Some(value) = value else { continue };
            let name = if input.name.is_empty() {
                format!("arg{i}")
            } else {
                input.name.clone()
            };
            fields.insert(name.clone(), value_json(&value));
            values.push((name, value));
        }
        Some(Decoded {
            query: index,
            event_name: event.name.clone(),
            fields,
            values,
        })
    })
}

/// The event output a run sees: the decoded fields over the raw log's (`blockNumber`,
/// `transactionHash`, ... stay where no field of the event has their name).
pub fn decoded_output(raw: &Value, decoded: &Decoded) -> Value {
    let mut out = decoded.fields.clone();
    if let Value::Object(raw) = raw {
        for (key, value) in raw {
            out.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    Value::Object(out)
}

/// The wallet a set of queries watches, and whether a transfer was `sent` or `received` by it:
/// the address in a query's second topic (the sender) or third (the recipient).
pub fn direction(
    queries: &[EventQuery],
    from: Address,
    to: Address,
) -> (Option<Address>, &'static str) {
    let topic_address = |topic: Option<&String>| -> Option<Address> {
        let topic: B256 = topic?.parse().ok()?;
        (topic.0.get(..12)? == [0u8; 12]).then(|| Address::from_word(topic))
    };
    let mut watched = None;
    for query in queries {
        if let Some(sender) = topic_address(query.topics.get(1)) {
            watched.get_or_insert(sender);
            if sender == from {
                return (Some(sender), "sent");
            }
        }
        if let Some(recipient) = topic_address(query.topics.get(2)) {
            watched.get_or_insert(recipient);
            if recipient == to {
                return (Some(recipient), "received");
            }
        }
    }
    (watched, "unknown")
}

/// What the chain says of a transferred token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub name: String,
    pub symbol: String,
    pub decimals: u8,
}

/// `raw` (an integer in decimal) with `decimals` decimals: `1500000, 6` → `1.5`.
pub fn format_units(raw: &str, decimals: u8) -> String {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let decimals = usize::from(decimals);
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (whole, fraction) = padded.split_at(padded.len() - decimals);
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// Adds the original's `Transfer` enrichment to a decoded output (an object): token facts where
/// known (else the original's "Unknown Token", "UNKNOWN", 18), `valueFormatted`, the addresses
/// under the original's names, the direction, the block's time (ms) and the chain.
pub fn enrich_transfer(
    output: &mut Value,
    decoded: &Decoded,
    log: &RawLog,
    queries: &[EventQuery],
    token: Option<&TokenFacts>,
    block_timestamp_ms: Option<u64>,
    chain_id: u64,
) {
    if decoded.event_name != "Transfer" {
        return;
    }
    let address_of = |name: &str| {
        decoded.values.iter().find_map(|(n, v)| match v {
            DynSolValue::Address(a) if n == name => Some(*a),
            _ => None,
        })
    };
    let (Some(from), Some(to)) = (address_of("from"), address_of("to")) else {
        return;
    };
    let value = decoded.values.iter().find_map(|(n, v)| match v {
        DynSolValue::Uint(u, _) if n == "value" => Some(u.to_string()),
        _ => None,
    });
    let Value::Object(out) = output else { return };
    let (name, symbol, decimals) = match token {
        Some(t) => (t.name.clone(), t.symbol.clone(), t.decimals),
        None => ("Unknown Token".to_owned(), "UNKNOWN".to_owned(), 18),
    };
    let (wallet, direction) = direction(queries, from, to);
    out.insert("tokenName".into(), name.into());
    out.insert("tokenSymbol".into(), symbol.into());
    out.insert("tokenDecimals".into(), decimals.into());
    out.insert("tokenContract".into(), log.address.to_checksum(None).into());
    out.insert("fromAddress".into(), from.to_checksum(None).into());
    out.insert("toAddress".into(), to.to_checksum(None).into());
    if let Some(value) = value {
        out.insert(
            "valueFormatted".into(),
            format_units(&value, decimals).into(),
        );
    }
    out.insert("direction".into(), direction.into());
    out.insert(
        "walletAddress".into(),
        wallet.map_or(Value::Null, |w| w.to_checksum(None).into()),
    );
    if let Some(ms) = block_timestamp_ms {
        out.insert("blockTimestamp".into(), ms.into());
    }
    out.insert("chainId".into(), chain_id.into());
}

/// Formats the decoded fields a query's method calls name (`apply_to_fields`, as `field` or
/// `Event.field`) with the decimals a call returned; the raw value stays as `<field>Raw`.
pub fn apply_decimals(output: &mut Value, decoded: &Decoded, fields: &[String], decimals: u8) {
    let Value::Object(out) = output else { return };
    for target in fields {
        let field = target
            .split_once('.')
            .filter(|(event, _)| *event == decoded.event_name)
            .map_or(target.as_str(), |(_, f)| f);
        let raw = decoded.values.iter().find_map(|(n, v)| match v {
            DynSolValue::Uint(u, _) if n == field => Some(u.to_string()),
            DynSolValue::Int(i, _) if n == field => Some(i.to_string()),
            _ => None,
        });
        if let Some(raw) = raw {
            out.insert(field.to_owned(), format_units(&raw, decimals).into());
            out.insert(format!("{field}Raw"), raw.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;
    use serde_json::json;

    const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

    fn transfer_abi() -> Vec<Value> {
        vec![
            json!({"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
            {"name": "from", "type": "address", "indexed": true},
            {"name": "to", "type": "address", "indexed": true},
            {"name": "value", "type": "uint256", "indexed": false}]}),
        ]
    }

    fn word(a: Address) -> String {
        format!("{:#x}", a.into_word())
    }

    fn raw(from: Address, to: Address, value: u64) -> Value {
        json!({
            "blockNumber": 7, "blockHash": format!("{:#x}", B256::repeat_byte(1)),
            "transactionHash": format!("{:#x}", B256::repeat_byte(2)), "logIndex": 0,
            "address": Address::repeat_byte(0xcc).to_checksum(None),
            "topics": [TRANSFER, word(from), word(to)],
            "data": format!("{:#x}", B256::from(U256::from(value))),
        })
    }

    #[test]
    fn a_transfer_is_decoded_and_enriched_with_its_direction() {
        let me = Address::repeat_byte(0x11);
        let other = Address::repeat_byte(0x22);
        let queries = vec![
            EventQuery {
                addresses: vec![],
                topics: vec![TRANSFER.into(), word(me), String::new()],
                contract_abi: transfer_abi(),
                ..EventQuery::default()
            },
            EventQuery {
                addresses: vec![],
                topics: vec![TRANSFER.into(), String::new(), word(me)],
                contract_abi: transfer_abi(),
                ..EventQuery::default()
            },
        ];
        let output = raw(other, me, 1_500_000);
        let log = raw_log(&output).unwrap();
        let decoded = decode(&log, &queries).unwrap();
        assert_eq!(
            decoded.query, 1,
            "the query that matches the log decodes it"
        );
        let mut out = decoded_output(&output, &decoded);
        assert_eq!(out["eventName"], "Transfer");
        assert_eq!(out["value"], "1500000");
        assert_eq!(out["from"], other.to_checksum(None));
        assert_eq!(out["transactionHash"], output["transactionHash"]);
        let token = TokenFacts {
            name: "USD Coin".into(),
            symbol: "USDC".into(),
            decimals: 6,
        };
        enrich_transfer(
            &mut out,
            &decoded,
            &log,
            &queries,
            Some(&token),
            Some(5_000),
            1,
        );
        assert_eq!(out["tokenSymbol"], "USDC");
        assert_eq!(out["valueFormatted"], "1.5");
        assert_eq!(out["direction"], "received");
        assert_eq!(out["walletAddress"], me.to_checksum(None));
        assert_eq!(out["toAddress"], me.to_checksum(None));
        assert_eq!(out["blockTimestamp"], 5_000);
    }

    #[test]
    fn a_log_no_query_knows_stays_raw() {
        let output = raw(Address::ZERO, Address::ZERO, 1);
        let log = raw_log(&output).unwrap();
        let queries = vec![EventQuery {
            topics: vec![TRANSFER.into()],
            ..EventQuery::default()
        }];
        assert!(decode(&log, &queries).is_none(), "no ABI");
        assert!(raw_log(&json!({"n": 1})).is_none());
    }

    #[test]
    fn method_call_decimals_format_the_named_fields() {
        let output = raw(Address::ZERO, Address::ZERO, 2_500);
        let log = raw_log(&output).unwrap();
        let queries = vec![EventQuery {
            topics: vec![TRANSFER.into()],
            contract_abi: transfer_abi(),
            ..EventQuery::default()
        }];
        let decoded = decode(&log, &queries).unwrap();
        let mut out = decoded_output(&output, &decoded);
        apply_decimals(&mut out, &decoded, &["Transfer.value".into()], 3);
        assert_eq!(out["value"], "2.5");
        assert_eq!(out["valueRaw"], "2500");
    }

    #[test]
    fn units_format() {
        assert_eq!(format_units("1500000", 6), "1.5");
        assert_eq!(format_units("1", 18), "0.000000000000000001");
        assert_eq!(format_units("-25", 1), "-2.5");
        assert_eq!(format_units("1000", 0), "1000");
    }
}
