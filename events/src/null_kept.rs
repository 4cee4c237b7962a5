//! An optional JSON value whose `null` is a value: a field written with
//! `skip_serializing_if = "Option::is_none"` is absent for `None` and `null` for `Some(Null)`
//! (a step whose data is `null`), and serde's own rule for `Option` would read that `null` back
//! as `None`, so a row rebuilt from the log would lack the `"data":null` of the row made live.
//! With `#[serde(default, deserialize_with = "crate::null_kept::option")]` an absent field is
//! `None` and any present value, `null` included, is `Some`.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub fn option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}
