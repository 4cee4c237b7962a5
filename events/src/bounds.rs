//! What every stored event and row keeps to, so that every reader reads what any writer wrote.
//!
//! serde_json refuses to parse JSON nested 128 levels or more (its recursion limit), and every
//! reader of the log and of the projections parses with it. A value that nests deeper is written
//! without complaint (serialization has no limit) and then cannot be read back: a projection
//! reading its own row would fail on every later event of that stream. So the writer refuses
//! events nested deeper than `MAX_EVENT_DEPTH`, the projections refuse rows deeper than
//! `READABLE_DEPTH`, and the callers that put user data into events (node outputs, trigger data,
//! inputs) bound it well below both (the aggregator's `limits.max_value_depth`), so that a value
//! past their bound is the user's failed step, not a refused command.

/// The deepest JSON serde_json parses with its default recursion limit (128).
pub const READABLE_DEPTH: usize = 127;

/// The deepest event body the log accepts; rows built from events stay under `READABLE_DEPTH`
/// (a projection row wraps an event's values in fewer levels than the envelope does, plus
/// headroom).
pub const MAX_EVENT_DEPTH: usize = 100;

/// How deep `json` nests arrays and objects (0 for a scalar). Assumes well-formed JSON (what
/// serde_json wrote); brackets inside strings are skipped.
pub fn json_depth(json: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> serde_json::Value {
        let mut v = serde_json::json!(1);
        for _ in 0..levels {
            v = serde_json::json!([v]);
        }
        v
    }

    #[test]
    fn depth_counts_arrays_and_objects_not_brackets_in_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"[[[{{\"]]"}"#), 1);
        assert_eq!(json_depth(br#"["\\",[1]]"#), 2);
    }

    #[test]
    fn readable_depth_is_what_serde_json_reads() {
        let ok = serde_json::to_vec(&nested(READABLE_DEPTH)).unwrap();
        assert_eq!(json_depth(&ok), READABLE_DEPTH);
        assert!(serde_json::from_slice::<serde_json::Value>(&ok).is_ok());
        let deep = serde_json::to_vec(&nested(READABLE_DEPTH + 1)).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&deep).is_err());
    }
}
