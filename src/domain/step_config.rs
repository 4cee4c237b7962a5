//! The `config` a step shows: the trigger's or the node's configuration as the original records
//! it, in the contract's JSON form: field names as JSON names (`pathParams`, `methodCalls`,
//! `contractAddress`), enum values by name (`lang: "LANG_JSON"`, `executionMode:
//! "EXECUTION_MODE_PARALLEL"`), a loop's runner as `{type: "customCode", config: {...}}`. User
//! data keeps its own keys: headers, path parameters, GraphQL variables, a manual trigger's data,
//! ABIs and REST options are copied as they are.

use serde_json::{Map, Value};

use events::task::{LoopRunner, NodeConfig, TriggerConfig};

/// Keys whose values are the user's own: copied without renaming their keys.
const VERBATIM: &[&str] = &[
    "headers",
    "path_params",
    "variables",
    "data",
    "contract_abi",
    "options",
];

/// The contract's `Lang` value names.
pub fn lang_name(lang: i32) -> Value {
    match lang {
        0 => "LANG_UNSPECIFIED".into(),
        1 => "LANG_JAVASCRIPT".into(),
        2 => "LANG_JSON".into(),
        3 => "LANG_GRAPHQL".into(),
        4 => "LANG_HANDLEBARS".into(),
        other => other.into(),
    }
}

/// The contract's `ExecutionMode` value names.
fn execution_mode_name(mode: i32) -> Value {
    match mode {
        0 => "EXECUTION_MODE_SEQUENTIAL".into(),
        1 => "EXECUTION_MODE_PARALLEL".into(),
        other => other.into(),
    }
}

/// `snake_case` → `camelCase`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Renames a serialized config's keys to JSON names and its enums to names, down the tree.
fn json_names(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut out = Map::with_capacity(fields.len());
            for (key, value) in fields {
                let value = match key.as_str() {
                    k if VERBATIM.contains(&k) => value,
                    "lang" => value
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .map_or(value, lang_name),
                    "execution_mode" => value
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .map_or(value, execution_mode_name),
                    _ => json_names(value),
                };
                out.insert(camel(&key), value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(json_names).collect()),
        other => other,
    }
}

/// The one member of an externally tagged enum's JSON (`{"custom_code": {...}}`), untagged.
fn untagged(value: Value) -> (String, Value) {
    match value {
        Value::Object(wrapper) if wrapper.len() == 1 => wrapper
            .into_iter()
            .next()
            .unwrap_or((String::new(), Value::Null)),
        other => (String::new(), other),
    }
}

/// A trigger's configuration as a step shows it.
pub fn trigger(config: &TriggerConfig) -> Option<Value> {
    let (_, inner) = untagged(serde_json::to_value(config).ok()?);
    Some(json_names(inner))
}

fn runner(runner: &LoopRunner) -> Option<Value> {
    let (member, inner) = untagged(serde_json::to_value(runner).ok()?);
    Some(serde_json::json!({ "type": camel(&member), "config": json_names(inner) }))
}

/// A node's configuration as a step shows it.
pub fn node(config: &NodeConfig) -> Option<Value> {
    if let NodeConfig::Loop(looped) = config {
        let mut plain = looped.clone();
        let runner_json = plain.runner.take().as_ref().and_then(runner);
        let mut json = json_names(serde_json::to_value(&plain).ok()?);
        if let (Some(r), Value::Object(fields)) = (runner_json, &mut json) {
            fields.insert("runner".into(), r);
        }
        return Some(json);
    }
    let (_, inner) = untagged(serde_json::to_value(config).ok()?);
    Some(json_names(inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::task::*;
    use serde_json::json;

    #[test]
    fn a_manual_trigger_shows_json_names_and_the_lang_by_name() {
        let config = TriggerConfig::Manual(ManualTriggerConfig {
            data: Some(json!({"user_id": 1})),
            headers: [("X-Api_Key".to_owned(), "k".to_owned())].into(),
            path_params: [("user_id".to_owned(), "7".to_owned())].into(),
            lang: 2,
        });
        assert_eq!(
            trigger(&config).unwrap(),
            json!({
                "data": {"user_id": 1},
                "headers": {"X-Api_Key": "k"},
                "pathParams": {"user_id": "7"},
                "lang": "LANG_JSON",
            })
        );
    }

    #[test]
    fn node_fields_are_camel_case_and_user_keys_stay() {
        let config = NodeConfig::ContractRead(ContractReadConfig {
            contract_address: "0xabc".into(),
            contract_abi: vec![json!({"stateMutability": "view", "type": "function"})],
            method_calls: vec![MethodCall {
                method_name: "decimals".into(),
                call_data: None,
                apply_to_fields: vec!["latestRoundData.answer".into()],
                method_params: vec![],
            }],
        });
        let json = node(&config).unwrap();
        assert_eq!(json["contractAddress"], "0xabc");
        assert_eq!(json["contractAbi"][0]["stateMutability"], "view");
        assert_eq!(json["methodCalls"][0]["methodName"], "decimals");
        assert_eq!(
            json["methodCalls"][0]["applyToFields"][0],
            "latestRoundData.answer"
        );
        let code = node(&NodeConfig::CustomCode(CustomCodeConfig {
            lang: 1,
            source: "return 1".into(),
        }))
        .unwrap();
        assert_eq!(
            code,
            json!({"lang": "LANG_JAVASCRIPT", "source": "return 1"})
        );
    }

    #[test]
    fn a_loop_shows_its_mode_by_name_and_its_runner_by_type() {
        let config = NodeConfig::Loop(LoopConfig {
            input_variable: "{{ list.data }}".into(),
            iter_val: "item".into(),
            iter_key: "i".into(),
            execution_mode: 1,
            iteration_timeout: 30,
            runner: Some(LoopRunner::CustomCode(CustomCodeConfig {
                lang: 1,
                source: "return item".into(),
            })),
        });
        let json = node(&config).unwrap();
        assert_eq!(json["executionMode"], "EXECUTION_MODE_PARALLEL");
        assert_eq!(json["inputVariable"], "{{ list.data }}");
        assert_eq!(json["iterationTimeout"], 30);
        assert_eq!(
            json["runner"],
            json!({"type": "customCode", "config": {"lang": "LANG_JAVASCRIPT", "source": "return item"}})
        );
    }
}
