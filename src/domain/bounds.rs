//! The bound every value a user controls keeps before it enters an event: node outputs (REST and
//! GraphQL bodies, custom code results, loop arrays), rendered node configs, trigger data and
//! task inputs. A value past it is refused where it comes in (a failed step, an invalid request),
//! so that the log's own last-line bounds (`events::bounds`: no event nested deeper than its
//! readers parse, none larger than `limits.max_event_bytes`) never have to refuse a command.
//!
//! Depth is measured without recursion: a value is checked before anything else walks it.

use serde_json::Value;

use crate::config::LimitsConfig;

/// How deep and how large one value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueBounds {
    /// Nesting of arrays and objects (a scalar is 0).
    pub max_depth: usize,
    /// Bytes of its JSON encoding.
    pub max_bytes: usize,
    /// Bytes of a step's log or error text.
    pub max_text_bytes: usize,
    /// Bytes of all the steps of one execution together.
    pub max_execution_bytes: usize,
}

impl ValueBounds {
    /// The bounds of one node's output, or of a firing's data.
    pub fn output(limits: &LimitsConfig) -> Self {
        Self {
            max_depth: limits.max_value_depth,
            max_bytes: limits.max_output_bytes,
            max_text_bytes: limits.max_text_bytes,
            max_execution_bytes: limits.max_execution_bytes,
        }
    }

    /// The bounds of what a caller or an operator sends as a firing's data and input.
    pub fn values(limits: &LimitsConfig) -> Self {
        Self {
            max_bytes: limits.max_values_bytes,
            ..Self::output(limits)
        }
    }

    /// Cuts `text` to `max_text_bytes` (at a character boundary), saying so at its end.
    pub fn truncate(&self, text: &mut String) {
        if text.len() <= self.max_text_bytes {
            return;
        }
        const NOTE: &str = " … (truncated)";
        let mut end = self.max_text_bytes.saturating_sub(NOTE.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(NOTE);
    }

    /// Checks `value`, naming it as `what` ("the output", "the trigger data") in the refusal.
    pub fn check(&self, what: &str, value: &Value) -> Result<(), String> {
        let depth = depth(value);
        if depth > self.max_depth {
            return Err(format!(
                "{what} nests {depth} levels deep, more than the limit of {}",
                self.max_depth
            ));
        }
        let bytes = encoded_len(value);
        if bytes > self.max_bytes {
            return Err(format!(
                "{what} is {bytes} bytes encoded, more than the limit of {}",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

/// How deep `value` nests arrays and objects, walked with an explicit stack.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level + 1);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The length of `value`'s compact JSON encoding, without building it.
fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    const BOUNDS: ValueBounds = ValueBounds {
        max_depth: 64,
        max_bytes: 1024,
        max_text_bytes: 32,
        max_execution_bytes: 4096,
    };

    #[test]
    fn a_long_text_is_cut_at_a_character_boundary_and_says_so() {
        let mut text = "é".repeat(40);
        BOUNDS.truncate(&mut text);
        assert!(text.len() <= 32, "{}", text.len());
        assert!(text.ends_with("(truncated)"));
        let mut short = "fine".to_owned();
        BOUNDS.truncate(&mut short);
        assert_eq!(short, "fine");
    }

    #[test]
    fn depth_counts_levels_of_arrays_and_objects() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [1, {"b": [2]}]})), 4);
        assert_eq!(depth(&nested(125)), 125);
    }

    #[test]
    fn a_value_within_the_bounds_passes() {
        assert_eq!(BOUNDS.check("the output", &nested(64)), Ok(()));
    }

    #[test]
    fn a_value_too_deep_is_refused_with_its_depth() {
        let err = BOUNDS.check("the output", &nested(125)).unwrap_err();
        assert_eq!(
            err,
            "the output nests 125 levels deep, more than the limit of 64"
        );
    }

    #[test]
    fn a_value_too_large_is_refused_with_its_size() {
        let err = BOUNDS
            .check("the trigger data", &json!("x".repeat(2000)))
            .unwrap_err();
        assert_eq!(
            err,
            "the trigger data is 2002 bytes encoded, more than the limit of 1024"
        );
    }
}
