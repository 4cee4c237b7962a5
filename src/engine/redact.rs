//! Secrets never leave a run in clear: whatever a run records or answers (a step's config,
//! output, log and error) has the exact values of the secrets the run could read
//! (`apContext.configVars`), and their base64 and URL-encoded forms, replaced by `***`. A REST
//! call that echoes its headers, a GraphQL error quoting a variable, `return
//! apContext.configVars`: none of them puts a secret into the log, a projection, a response or an
//! export.
//!
//! The config a step records is the node's config as written (with its templates), never the
//! rendered one, so a secret used in a template is not even there to cut out. What cannot be
//! caught: a secret transformed by the user's own code (reversed, hashed, split) is no longer
//! the secret's bytes.

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use events::execution::Step;

/// Shorter values are not cut out: three characters would turn common words into `***`.
const MIN_SECRET_CHARS: usize = 4;

pub const MASK: &str = "***";

/// The spellings of a run's secrets, longest first (so that a secret containing another is
/// masked whole).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    spellings: Vec<String>,
}

impl Redactor {
    /// The secrets a run sees, from its variables.
    pub fn from_vars(vars: &Map<String, Value>) -> Self {
        let secrets = vars
            .get("apContext")
            .and_then(|c| c.get("configVars"))
            .and_then(Value::as_object);
        let values = secrets
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(Value::as_str);
        Self::new(values)
    }

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut spellings = Vec::new();
        for secret in secrets {
            if secret.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            let bytes = secret.as_bytes();
            spellings.push(secret.to_owned());
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                spellings.push(engine.encode(bytes));
            }
            let encoded = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
            spellings.push(encoded.replace("%20", "+"));
            spellings.push(encoded);
        }
        spellings.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        spellings.dedup();
        Self { spellings }
    }

    pub fn is_empty(&self) -> bool {
        self.spellings.is_empty()
    }

    /// Masks every spelling in `text`.
    pub fn text(&self, text: &mut String) {
        for spelling in &self.spellings {
            if text.contains(spelling.as_str()) {
                *text = text.replace(spelling.as_str(), MASK);
            }
        }
    }

    /// Masks every string of `value`, keys included.
    pub fn value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(s) => self.text(s),
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => {
                    let needs_new_keys = map.keys().any(|k| self.masks(k));
                    if needs_new_keys {
                        let old = std::mem::take(map);
                        for (mut key, v) in old {
                            self.text(&mut key);
                            map.insert(key, v);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                _ => {}
            }
        }
    }

    fn masks(&self, text: &str) -> bool {
        self.spellings.iter().any(|s| text.contains(s.as_str()))
    }

    /// Masks what a step records: config, output, log and error.
    pub fn step(&self, step: &mut Step) {
        if self.is_empty() {
            return;
        }
        if let Some(config) = &mut step.config {
            self.value(config);
        }
        if let Some(data) = step.output.as_mut().and_then(|o| o.data.as_mut()) {
            self.value(data);
        }
        self.text(&mut step.log);
        self.text(&mut step.error);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "s3cr3t value/with+chars";

    #[test]
    fn every_spelling_of_a_secret_is_masked() {
        let r = Redactor::new([SECRET]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let url = utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string();
        let mut text = format!(
            "plain {SECRET} b64 {b64} url {url} form {}",
            url.replace("%20", "+")
        );
        r.text(&mut text);
        assert_eq!(text, "plain *** b64 *** url *** form ***");
    }

    #[test]
    fn values_are_masked_deep_and_in_keys() {
        let r = Redactor::new([SECRET]);
        let mut value =
            json!({"headers": {"authorization": format!("Bearer {SECRET}")}, SECRET: [SECRET, 1]});
        r.value(&mut value);
        assert_eq!(
            value,
            json!({"headers": {"authorization": "Bearer ***"}, "***": ["***", 1]})
        );
    }

    #[test]
    fn short_values_are_left_alone() {
        let r = Redactor::new(["abc"]);
        assert!(r.is_empty());
        let mut text = "abc".to_owned();
        r.text(&mut text);
        assert_eq!(text, "abc");
    }

    #[test]
    fn the_run_secrets_come_from_its_variables() {
        let vars = json!({"apContext": {"configVars": {"key": SECRET, "n": 5}}});
        let r = Redactor::from_vars(vars.as_object().unwrap());
        let mut text = SECRET.to_owned();
        r.text(&mut text);
        assert_eq!(text, MASK);
    }
}
