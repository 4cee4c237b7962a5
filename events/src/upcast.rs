//! Upcasters: rewrite an older payload, as a JSON tree, into the next schema version of its type.
//!
//! They run on the decoded tree before typed decoding and never touch the stored bytes, so the
//! hash chain keeps verifying. To change a payload's meaning: bump its version in `event.rs` and
//! add the step from the old version here, with a fixture of the old encoding in `tests/fixtures`.
//!
//! Steps: `TriggerAttested` v1 → v2 (the quorum met is recorded; a v1 event did not say).

use serde_json::Value;

use crate::event::DecodeError;

/// Rewrites a payload of `type_name` at version `from` into version `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub type_name: &'static str,
    pub from: u16,
    pub apply: fn(Value) -> Value,
}

/// The upcasters of this code base.
pub const UPCASTERS: &[Upcaster] = &[Upcaster {
    type_name: "TriggerAttested",
    from: 1,
    apply: attested_without_quorum,
}];

/// A v1 attestation recorded its signers, not the quorum they met: v2's `quorum` is unknown.
fn attested_without_quorum(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.entry("quorum").or_insert(Value::Null);
    }
    v
}

/// Applies the chain of upcasters from `version` up to `current`.
pub fn to_current(
    table: &[Upcaster],
    type_name: &str,
    mut version: u16,
    current: u16,
    mut tree: Value,
) -> Result<Value, DecodeError> {
    while version < current {
        let step = table
            .iter()
            .find(|u| u.type_name == type_name && u.from == version)
            .ok_or_else(|| DecodeError::MissingUpcaster {
                type_name: type_name.to_owned(),
                version,
            })?;
        tree = (step.apply)(tree);
        version += 1;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_name(mut v: Value) -> Value {
        if let Some(obj) = v.as_object_mut()
            && let Some(Value::String(full)) = obj.remove("full_name")
        {
            let (first, last) = full.split_once(' ').unwrap_or((&full, ""));
            obj.insert("first".into(), json!(first));
            obj.insert("last".into(), json!(last));
        }
        v
    }

    fn add_flag(mut v: Value) -> Value {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("flag".into(), json!(true));
        }
        v
    }

    const TABLE: &[Upcaster] = &[
        Upcaster {
            type_name: "Person",
            from: 1,
            apply: split_name,
        },
        Upcaster {
            type_name: "Person",
            from: 2,
            apply: add_flag,
        },
    ];

    #[test]
    fn chains_upcasters_from_an_old_version_to_the_current_one() {
        let v1 = json!({"full_name": "Ada Lovelace"});
        let out = to_current(TABLE, "Person", 1, 3, v1).unwrap();
        assert_eq!(
            out,
            json!({"first": "Ada", "last": "Lovelace", "flag": true})
        );
    }

    #[test]
    fn a_missing_step_is_an_error_not_a_silent_pass() {
        let err = to_current(TABLE, "Person", 0, 3, json!({})).unwrap_err();
        assert!(
            matches!(err, DecodeError::MissingUpcaster { version: 0, .. }),
            "{err}"
        );
    }
}
