//! The envelope every stored event travels in, and its exact stored bytes.
//!
//! Stored value = `hash (32 bytes) || body`, where body is the JSON object
//! `{"id","stream","seq","at","actor","idem"?,"type","v","data"}` and
//! `hash = sha256(previous event's hash || body)` (32 zero bytes before the first event).
//!
//! sha-256 rather than blake3: this machine's CPU has the SHA extensions, which make sha-256 the
//! faster of the two on 400-byte inputs, and it is the hash every auditor already has.
//!
//! JSON rather than a binary format: an auditor can read the log with standard tools, the type
//! name and version sit beside a self-describing payload that upcasters can rewrite as a tree,
//! and encoding a 400-byte event costs about a microsecond, far below an fsync.
//! Upcasting happens on the decoded tree, never on the stored bytes, so the chain verifies
//! across schema versions.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::event::{DecodeError, Event, Payload};
use crate::upcast;

pub const HASH_LEN: usize = 32;
pub type Hash = [u8; HASH_LEN];
pub const GENESIS_HASH: Hash = [0; HASH_LEN];

/// The idempotency key a command carried, on its first event. The key is taken until
/// `expires_at` (ms; absent = never) or until the stream of this event is closed; `events` is the
/// number of events the command appended (they follow this one in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyMark {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub events: u32,
}

/// A decoded event with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Ulid,
    pub stream: String,
    /// 1-based position in the stream.
    pub seq: u64,
    /// Milliseconds since the epoch, taken once per command.
    pub recorded_at: u64,
    /// Owner or operator address, or `system`.
    pub actor: String,
    pub idempotency: Option<IdempotencyMark>,
    /// The schema version the event was stored with (before upcasting).
    pub stored_version: u16,
    pub event: Event,
    pub hash: Hash,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    id: Ulid,
    stream: &'a str,
    seq: u64,
    at: u64,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    idem: Option<&'a IdempotencyMark>,
    #[serde(rename = "type")]
    event_type: &'static str,
    v: u16,
    data: Payload<'a>,
}

/// The body as `decode_header` reads it: every field must be there, the payload is skipped.
#[derive(Deserialize)]
#[expect(
    dead_code,
    reason = "`actor` and `data` are parsed so that a body without them is refused"
)]
struct BodyIn<'a> {
    id: Ulid,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    seq: u64,
    at: u64,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    #[serde(default)]
    idem: Option<IdempotencyMark>,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    v: u16,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The fields of an event the writer decides, before its bytes exist.
#[derive(Debug)]
pub(crate) struct NewEnvelope<'a> {
    pub id: Ulid,
    pub stream: &'a str,
    pub seq: u64,
    pub recorded_at: u64,
    pub actor: &'a str,
    pub idempotency: Option<&'a IdempotencyMark>,
    pub event: &'a Event,
}

impl NewEnvelope<'_> {
    /// The stored value (hash || body) chained onto `prev`, and the new hash.
    pub fn encode(&self, prev: &Hash) -> Result<(Vec<u8>, Hash), serde_json::Error> {
        let mut value = Vec::with_capacity(512);
        value.extend_from_slice(&GENESIS_HASH);
        serde_json::to_writer(
            &mut value,
            &BodyOut {
                id: self.id,
                stream: self.stream,
                seq: self.seq,
                at: self.recorded_at,
                actor: self.actor,
                idem: self.idempotency,
                event_type: self.event.type_name(),
                v: self.event.schema_version(),
                data: Payload(self.event),
            },
        )?;
        let hash = chain_hash(prev, value.get(HASH_LEN..).unwrap_or_default());
        if let Some(head) = value.get_mut(..HASH_LEN) {
            head.copy_from_slice(&hash);
        }
        Ok((value, hash))
    }
}

/// `sha256(prev || body)`.
pub fn chain_hash(prev: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

/// Splits a stored value into its recorded hash and its body.
pub fn split_stored(value: &[u8]) -> Result<(Hash, &[u8]), DecodeError> {
    let (hash, body) = value
        .split_first_chunk::<HASH_LEN>()
        .ok_or(DecodeError::Truncated(value.len()))?;
    Ok((*hash, body))
}

/// Decodes a stored value (hash || body), upcasting older payloads before typed decoding.
pub fn decode(value: &[u8]) -> Result<Envelope, DecodeError> {
    let (hash, body) = split_stored(value)?;
    let payload_failed = std::cell::Cell::new(false);
    let mut parser = serde_json::Deserializer::from_slice(body);
    let raw = serde::de::DeserializeSeed::deserialize(
        single::BodySeed {
            payload_failed: &payload_failed,
        },
        &mut parser,
    )
    .and_then(|raw| parser.end().map(|()| raw))
    .map_err(|e| {
        if payload_failed.get() {
            DecodeError::Payload(e)
        } else {
            DecodeError::Envelope(e)
        }
    })?;
    let event = match raw.data {
        single::Data::Typed(event) => event,
        single::Data::Raw(json) => decode_payload(&raw.event_type, raw.v, json.get())?,
    };
    Ok(Envelope {
        id: raw.id,
        stream: raw.stream,
        seq: raw.seq,
        recorded_at: raw.at,
        actor: raw.actor,
        idempotency: raw.idem,
        stored_version: raw.v,
        event,
        hash,
    })
}

/// The body decoded in one pass: the payload is decoded as the parser reaches it when the type
/// and version before it (where the writer puts them) name a current schema; otherwise it is
/// kept raw and decoded (or upcast) afterwards. Decoding the payload from a raw slice, as
/// `BodyIn` does, parses its bytes twice; on the log's read paths that is a fifth of the cost.
mod single {
    use std::borrow::Cow;
    use std::cell::Cell;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use ulid::Ulid;

    use super::IdempotencyMark;
    use crate::event::Event;

    #[expect(
        clippy::large_enum_variant,
        reason = "lives on the stack for one decode; boxing would allocate per event"
    )]
    pub(super) enum Data<'a> {
        Typed(Event),
        Raw(&'a RawValue),
    }

    pub(super) struct Body<'a> {
        pub id: Ulid,
        pub stream: String,
        pub seq: u64,
        pub at: u64,
        pub actor: String,
        pub idem: Option<IdempotencyMark>,
        pub event_type: Cow<'a, str>,
        pub v: u16,
        pub data: Data<'a>,
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Field {
        Id,
        Stream,
        Seq,
        At,
        Actor,
        Idem,
        Type,
        V,
        Data,
        #[serde(other)]
        Other,
    }

    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

    pub(super) struct BodySeed<'f> {
        pub payload_failed: &'f Cell<bool>,
    }

    struct PayloadSeed<'t, 'f> {
        type_name: &'t str,
        failed: &'f Cell<bool>,
    }

    impl<'de> DeserializeSeed<'de> for PayloadSeed<'_, '_> {
        type Value = Event;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
            Event::deserialize_current(self.type_name, d).inspect_err(|_| self.failed.set(true))
        }
    }

    fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
        if slot.is_some() {
            return Err(E::duplicate_field(name));
        }
        *slot = Some(value);
        Ok(())
    }

    impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
        type Value = Body<'de>;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Body<'de>, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for BodySeed<'_> {
        type Value = Body<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event body")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body<'de>, A::Error> {
            let (mut id, mut stream, mut seq, mut at, mut actor) = (None, None, None, None, None);
            let (mut idem, mut event_type, mut v, mut data) = (None, None, None, None);
            while let Some(field) = map.next_key::<Field>()? {
                match field {
                    Field::Id => once(&mut id, "id", map.next_value::<Ulid>()?)?,
                    Field::Stream => once(&mut stream, "stream", map.next_value::<String>()?)?,
                    Field::Seq => once(&mut seq, "seq", map.next_value::<u64>()?)?,
                    Field::At => once(&mut at, "at", map.next_value::<u64>()?)?,
                    Field::Actor => once(&mut actor, "actor", map.next_value::<String>()?)?,
                    Field::Idem => once(
                        &mut idem,
                        "idem",
                        map.next_value::<Option<IdempotencyMark>>()?,
                    )?,
                    Field::Type => once(&mut event_type, "type", map.next_value::<Text<'de>>()?.0)?,
                    Field::V => once(&mut v, "v", map.next_value::<u16>()?)?,
                    Field::Data => {
                        let typed = match (&event_type, v) {
                            (Some(name), Some(version))
                                if Event::current_version(name) == Some(version) =>
                            {
                                Some(map.next_value_seed(PayloadSeed {
                                    type_name: name,
                                    failed: self.payload_failed,
                                })?)
                            }
                            _ => None,
                        };
                        let value = match typed {
                            Some(event) => Data::Typed(event),
                            None => Data::Raw(map.next_value::<&'de RawValue>()?),
                        };
                        once(&mut data, "data", value)?;
                    }
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Body {
                id: id.ok_or_else(|| de::Error::missing_field("id"))?,
                stream: stream.ok_or_else(|| de::Error::missing_field("stream"))?,
                seq: seq.ok_or_else(|| de::Error::missing_field("seq"))?,
                at: at.ok_or_else(|| de::Error::missing_field("at"))?,
                actor: actor.ok_or_else(|| de::Error::missing_field("actor"))?,
                idem: idem.flatten(),
                event_type: event_type.ok_or_else(|| de::Error::missing_field("type"))?,
                v: v.ok_or_else(|| de::Error::missing_field("v"))?,
                data: data.ok_or_else(|| de::Error::missing_field("data"))?,
            })
        }
    }
}

/// The envelope fields without decoding the payload: enough for integrity checks and indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: Ulid,
    pub stream: String,
    pub seq: u64,
    pub recorded_at: u64,
    pub event_type: String,
    pub version: u16,
    pub idempotency: Option<IdempotencyMark>,
}

pub fn decode_header(value: &[u8]) -> Result<Header, DecodeError> {
    let (_, body) = split_stored(value)?;
    let raw: BodyIn<'_> = serde_json::from_slice(body).map_err(DecodeError::Envelope)?;
    Ok(Header {
        id: raw.id,
        stream: raw.stream.into_owned(),
        seq: raw.seq,
        recorded_at: raw.at,
        event_type: raw.event_type.into_owned(),
        version: raw.v,
        idempotency: raw.idem,
    })
}

/// Decodes a payload stored at `version` of `type_name`.
pub fn decode_payload(type_name: &str, version: u16, json: &str) -> Result<Event, DecodeError> {
    let current = Event::current_version(type_name)
        .ok_or_else(|| DecodeError::UnknownType(type_name.to_owned()))?;
    if version == current {
        return Event::decode_current(type_name, json);
    }
    if version > current {
        return Err(DecodeError::FutureVersion {
            type_name: type_name.to_owned(),
            version,
            current,
        });
    }
    let tree: serde_json::Value = serde_json::from_str(json).map_err(DecodeError::Payload)?;
    let tree = upcast::to_current(upcast::UPCASTERS, type_name, version, current, tree)?;
    Event::decode_value(type_name, tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TaskEnabled;

    fn stored(body: &[u8]) -> Vec<u8> {
        let mut value = GENESIS_HASH.to_vec();
        value.extend_from_slice(body);
        value
    }

    fn written() -> Vec<u8> {
        let event: Event = TaskEnabled {
            task_id: "01TASK".into(),
        }
        .into();
        let (value, _) = NewEnvelope {
            id: Ulid::from_parts(1, 2),
            stream: "task:01TASK",
            seq: 3,
            recorded_at: 4,
            actor: "0xowner",
            idempotency: None,
            event: &event,
        }
        .encode(&GENESIS_HASH)
        .unwrap();
        value
    }

    #[test]
    fn a_body_with_its_payload_before_its_type_decodes_the_same() {
        // Given the writer's body, and the same fields re-ordered (serde_json's map sorts its
        // keys: `data` comes before `type` and `v`, so the payload cannot be decoded in passing).
        let value = written();
        let tree: serde_json::Value = serde_json::from_slice(&value[HASH_LEN..]).unwrap();
        let reordered = stored(&serde_json::to_vec(&tree).unwrap());
        assert!(reordered[HASH_LEN..].starts_with(br#"{"actor""#));
        // When both are decoded, then they are the same envelope.
        let mut a = decode(&value).unwrap();
        let b = decode(&reordered).unwrap();
        a.hash = b.hash;
        assert_eq!(a, b);
        assert_eq!(b.event.type_name(), "TaskEnabled");
    }

    #[test]
    fn a_repeated_field_or_a_bad_payload_is_refused_and_named() {
        let repeated = stored(
            br#"{"id":"00000000010000000000000002","stream":"s","seq":1,"seq":2,"at":0,"actor":"a","type":"TaskEnabled","v":1,"data":{"task_id":"t"}}"#,
        );
        let err = decode(&repeated).unwrap_err();
        assert!(matches!(err, DecodeError::Envelope(_)), "{err}");
        assert!(err.to_string().contains("duplicate field `seq`"), "{err}");

        let bad_payload = stored(
            br#"{"id":"00000000010000000000000002","stream":"s","seq":1,"at":0,"actor":"a","type":"TaskEnabled","v":1,"data":{"task_id":5}}"#,
        );
        let err = decode(&bad_payload).unwrap_err();
        assert!(matches!(err, DecodeError::Payload(_)), "{err}");

        let no_data = stored(
            br#"{"id":"00000000010000000000000002","stream":"s","seq":1,"at":0,"actor":"a","type":"TaskEnabled","v":1}"#,
        );
        let err = decode(&no_data).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
    }

    /// `event` as the writer stores it.
    fn encoded(event: &Event) -> Vec<u8> {
        NewEnvelope {
            id: Ulid::from_parts(1, 2),
            stream: "task:01TASK",
            seq: 1,
            recorded_at: 4,
            actor: "0xowner",
            idempotency: None,
            event,
        }
        .encode(&GENESIS_HASH)
        .unwrap()
        .0
    }

    /// Decoding gives back the appended event, and encoding that gives back the stored bytes:
    /// what a rebuild needs to write the rows the live projections wrote from the event in
    /// memory. `==` alone would let `-0.0` pass for `0.0`; the bytes do not.
    fn assert_decodes_to_itself(event: &Event) {
        let value = encoded(event);
        let back = decode(&value).unwrap();
        assert_eq!(&back.event, event);
        assert_eq!(
            String::from_utf8_lossy(&encoded(&back.event)),
            String::from_utf8_lossy(&value)
        );
    }

    #[test]
    fn every_event_kind_decodes_to_the_event_that_was_appended() {
        for event in crate::samples::all() {
            assert_decodes_to_itself(&event);
        }
    }

    /// A step whose output carries `data`, and a firing whose input carries each value.
    fn carrying(data: serde_json::Value) -> Vec<Event> {
        let mut step = crate::samples::step();
        if let Some(output) = step.output.as_mut() {
            output.data = Some(data.clone());
        }
        let mut firing = crate::samples::firing();
        firing.input.insert("value".into(), data.clone());
        firing.output = Some(data.clone());
        let mut definition = crate::samples::definition();
        definition.input_variables.insert("value".into(), data);
        vec![
            crate::event::StepRecorded {
                execution_id: "01EXEC".into(),
                task_id: "01TASK".into(),
                step,
            }
            .into(),
            crate::event::ExecutionQueued {
                execution_id: "01EXEC".into(),
                task_id: "01TASK".into(),
                owner: "0xowner".into(),
                index: 0,
                firing,
            }
            .into(),
            crate::event::TaskCreated {
                task_id: "01TASK".into(),
                owner: "0xowner".into(),
                wallet: "0xwallet".into(),
                definition,
            }
            .into(),
        ]
    }

    #[test]
    fn floats_that_need_all_17_digits_decode_to_the_same_float() {
        // Given user values (a task's input variables, a step's output, a firing's input) with
        // floats whose shortest form has 16-17 significant digits (serde_json's default
        // parser, without `float_roundtrip`, reads some of them one unit in the last place off:
        // 1/7 among them), negative zero, and integers at the edges of u64 and i64.
        let values = serde_json::json!([
            1.0 / 7.0,
            1.0715660391465826e-75,
            -1.81996730402717e-179,
            -1.603964615428183e143,
            2.225073858507201e-308,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            -0.0,
            0.1,
            u64::MAX,
            i64::MIN,
        ]);
        // When each is stored and decoded, then it is the same value, to the bit.
        for event in carrying(values) {
            assert_decodes_to_itself(&event);
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Every finite float: normal, subnormal, zero of either sign, either sign.
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Any unicode: control characters, quotes and backslashes (escaped), astral planes.
            any::<String>().prop_map(Value::String),
            "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{80}\u{ffff}\u{10000}\u{10ffff}a]{0,12}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 256, ..Default::default() })]

        #[test]
        // A top-level `null` included: the optional values keep it (`null_kept`).
        fn any_json_a_user_can_put_in_an_event_decodes_to_itself(
            value in proptest::prop_oneof![1 => proptest::strategy::Just(serde_json::Value::Null), 9 => json_value()]
        ) {
            for event in carrying(value) {
                assert_decodes_to_itself(&event);
            }
        }
    }
}
