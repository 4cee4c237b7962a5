//! `google.protobuf.Value` ⇄ JSON, both directions, and the small map helpers the other
//! conversions share.

use std::collections::{BTreeMap, HashMap};

use prost_types::value::Kind;
use serde_json::Value as Json;

use super::ConvertError;

/// A `Value` as JSON; NaN and infinities have no JSON form and are refused.
pub fn json_from_value(value: &prost_types::Value) -> Result<Json, ConvertError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n)?,
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .iter()
                .map(json_from_value)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_from_value(v)?)))
                .collect::<Result<_, ConvertError>>()?,
        ),
    })
}

/// Integral numbers become JSON integers (so templates and code see `5`, not `5.0`); the wire form
/// is a double either way, so nothing is lost.
fn number(n: f64) -> Result<Json, ConvertError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        #[expect(clippy::cast_possible_truncation, reason = "integral and below 2^53")]
        return Ok(Json::from(n as i64));
    }
    serde_json::Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| ConvertError(format!("the number {n} has no JSON form")))
}

/// JSON as a `Value` (numbers become doubles, as on the wire).
pub fn value_from_json(json: &Json) -> prost_types::Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        Json::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), value_from_json(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A map of `Value`s (trigger inputs, input variables) as JSON.
pub fn json_map_from_values(
    values: &HashMap<String, prost_types::Value>,
) -> Result<BTreeMap<String, Json>, ConvertError> {
    values
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_from_value(v)?)))
        .collect()
}

/// `json_map_from_values` the other way.
pub fn values_from_json_map(map: &BTreeMap<String, Json>) -> HashMap<String, prost_types::Value> {
    map.iter()
        .map(|(k, v)| (k.clone(), value_from_json(v)))
        .collect()
}

/// An optional `Value` as JSON.
pub fn opt_json(value: &Option<prost_types::Value>) -> Result<Option<Json>, ConvertError> {
    value.as_ref().map(json_from_value).transpose()
}

/// A list of `Value`s (an ABI) as JSON.
pub fn json_list(values: &[prost_types::Value]) -> Result<Vec<Json>, ConvertError> {
    values.iter().map(json_from_value).collect()
}

/// A wire map in the domain's order.
pub fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `sorted` the other way.
pub fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_nan_is_refused() {
        let json = serde_json::json!({"a": [1.5, "x", null, true, {"b": -2}], "c": {}});
        assert_eq!(json_from_value(&value_from_json(&json)).unwrap(), json);
        let nan = prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert!(json_from_value(&nan).is_err());
    }
}
