//! An event trigger's queries as they are stored and watched, prepared as the original prepares
//! them when a task is created:
//!
//! - `{{settings.*}}` in addresses and topics is resolved against the task's
//!   `input_variables.settings` (the original's `resolveEventTriggerTemplates`): operators watch
//!   plain addresses and topics, and every operator must watch the same ones. A template that is
//!   one whole entry of the address list may name a list of addresses; other expressions than
//!   `settings` paths are refused;
//! - a 20-byte topic (an address) is left-padded to 32 bytes, the form a log's topics take.
//!
//! What a query means on the chain (its log filter, the ABI event it decodes with) is shared
//! with the operators: `protocol::triggers`.

use serde_json::Value;

use events::task::EventTriggerConfig;

use super::{Code, DomainError, DomainResult};

fn invalid(message: String) -> DomainError {
    DomainError::Invalid(message, Code::InvalidTriggerConfig)
}

/// The value of `settings.a.b[0]` (the expression inside `{{ }}`).
fn lookup<'v>(settings: Option<&'v Value>, expr: &str) -> Result<&'v Value, String> {
    let path = expr
        .strip_prefix("settings")
        .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        .ok_or_else(|| {
            format!("only {{{{settings.*}}}} can be resolved in an event query, not {{{{{expr}}}}}")
        })?;
    let mut value = settings.ok_or("the task has no settings to resolve it with")?;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let (key, tail) = after.split_at(end);
            value = match value {
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                other => other.get(key),
            }
            .ok_or_else(|| format!("settings has no {key:?} for {{{{{expr}}}}}"))?;
            rest = tail;
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("an unclosed [ in {{{{{expr}}}}}"))?;
            let (inner, tail) = after.split_at(end);
            let inner = inner.trim().trim_matches(['"', '\'']);
            value = match inner.parse::<usize>() {
                Ok(i) => value.get(i),
                Err(_) => value.get(inner),
            }
            .ok_or_else(|| format!("settings has no [{inner}] for {{{{{expr}}}}}"))?;
            rest = tail.get(1..).unwrap_or_default();
        } else {
            return Err(format!("{{{{{expr}}}}} is not a settings path"));
        }
    }
    Ok(value)
}

fn text_of(value: &Value, expr: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!(
            "{{{{{expr}}}}} is not text (an address or a topic) in settings"
        )),
    }
}

/// Renders one entry: its `{{ }}` parts replaced by text.
fn render(text: &str, settings: Option<&Value>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let after = after.get(2..).unwrap_or_default();
        let end = after
            .find("}}")
            .ok_or_else(|| format!("an unclosed {{{{ in {text:?}"))?;
        let (expr, tail) = after.split_at(end);
        let expr = expr.trim();
        out.push_str(&text_of(lookup(settings, expr)?, expr)?);
        rest = tail.get(2..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// The whole-entry template's expression (`"{{ settings.tokens }}"` → `settings.tokens`).
fn whole_template(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// A 20-byte hex topic left-padded to 32 bytes; anything else as it is.
pub fn padded_topic(topic: &str) -> String {
    match topic
        .strip_prefix("0x")
        .or_else(|| topic.strip_prefix("0X"))
    {
        Some(hex) if hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            format!("0x{:0>64}", hex.to_ascii_lowercase())
        }
        _ => topic.to_owned(),
    }
}

/// Resolves the templates and pads the topics of every query, in place.
pub fn prepare(config: &mut EventTriggerConfig, settings: Option<&Value>) -> DomainResult<()> {
    for (q, query) in config.queries.iter_mut().enumerate() {
        let mut addresses = Vec::with_capacity(query.addresses.len());
        for address in &query.addresses {
            if !address.contains("{{") {
                addresses.push(address.clone());
                continue;
            }
            let failed =
                |why: String| invalid(format!("event query {q}: address {address:?}: {why}"));
            match whole_template(address).map(|expr| (expr, lookup(settings, expr))) {
                Some((expr, Ok(Value::Array(items)))) => {
                    for item in items {
                        addresses.push(text_of(item, expr).map_err(failed)?);
                    }
                }
                _ => addresses.push(render(address, settings).map_err(failed)?),
            }
        }
        query.addresses = addresses;
        for topic in &mut query.topics {
            if topic.contains("{{") {
                *topic = render(topic, settings)
                    .map_err(|why| invalid(format!("event query {q}: topic {topic:?}: {why}")))?;
            }
            *topic = padded_topic(topic.trim());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::task::EventQuery;
    use serde_json::json;

    fn config(addresses: &[&str], topics: &[&str]) -> EventTriggerConfig {
        EventTriggerConfig {
            queries: vec![EventQuery {
                addresses: addresses.iter().map(|s| (*s).to_owned()).collect(),
                topics: topics.iter().map(|s| (*s).to_owned()).collect(),
                ..EventQuery::default()
            }],
            cooldown_seconds: None,
        }
    }

    #[test]
    fn settings_templates_resolve_at_create() {
        let settings = json!({
            "token": "0x1c7d4b196cb0c7b01d743fbc6116a902379c7238",
            "tokens": ["0x00000000000000000000000000000000000000aa", "0x00000000000000000000000000000000000000bb"],
            "wallet": "0x71c7656ec7ab88b098defb751b7401b5f6d8976f",
        });
        let mut c = config(
            &["{{settings.token}}", "{{ settings.tokens }}"],
            &[
                "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                "{{settings.wallet}}",
                "",
            ],
        );
        prepare(&mut c, Some(&settings)).unwrap();
        let q = &c.queries[0];
        assert_eq!(q.addresses.len(), 3);
        assert_eq!(q.addresses[0], "0x1c7d4b196cb0c7b01d743fbc6116a902379c7238");
        assert_eq!(q.addresses[2], "0x00000000000000000000000000000000000000bb");
        assert_eq!(
            q.topics[1], "0x00000000000000000000000071c7656ec7ab88b098defb751b7401b5f6d8976f",
            "a 20-byte topic is padded to 32 bytes"
        );
        assert_eq!(q.topics[2], "");
    }

    #[test]
    fn unknown_settings_and_other_expressions_are_refused() {
        let mut c = config(&["{{settings.missing}}"], &[]);
        let e = prepare(&mut c, Some(&json!({}))).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let mut c = config(&["{{ trigger.data.to }}"], &[]);
        let e = prepare(&mut c, Some(&json!({}))).unwrap_err();
        assert!(e.to_string().contains("only {{settings.*}}"), "{e}");
        let mut c = config(&[], &["{{settings.x"]);
        assert!(prepare(&mut c, Some(&json!({"x": "1"}))).is_err());
    }

    #[test]
    fn only_twenty_byte_topics_are_padded() {
        assert_eq!(
            padded_topic("0xAB00000000000000000000000000000000000000").len(),
            66
        );
        assert_eq!(padded_topic("0xabc"), "0xabc");
        assert_eq!(padded_topic(""), "");
    }
}
