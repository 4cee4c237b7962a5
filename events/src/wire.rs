//! A command and its outcome as bytes: what a replica of a replicated log sends the replica that
//! writes the log (`Router`), and what it answers.
//!
//! Events travel as they are stored (type name, schema version, payload alone) and are decoded
//! with the log's own decoder (`decode_payload`, upcasters included), so a forwarded command is
//! the command its sender built. Errors travel as the variants a caller tells apart (a conflict
//! is decided again, a closed stream is "not found", a refused event is the caller's), so that
//! the RPC caller of a replica that forwarded sees what the writer's own caller would.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use ulid::Ulid;

use crate::command::{Append, Command, Committed, EventRef, Expected, Idempotency};
use crate::envelope::decode_payload;
use crate::error::{Error, Result};
use crate::event::Payload;

#[derive(Serialize, Deserialize)]
struct WireCommand {
    actor: String,
    at: u64,
    idempotency: Option<(String, Option<u64>)>,
    appends: Vec<WireAppend>,
}

#[derive(Serialize, Deserialize)]
struct WireAppend {
    stream: String,
    expected: WireExpected,
    events: Vec<WireEvent>,
}

#[derive(Serialize, Deserialize)]
enum WireExpected {
    Any,
    NoStream,
    Exactly(u64),
}

#[derive(Serialize, Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    type_name: String,
    v: u16,
    data: Box<RawValue>,
}

/// The writer's answer: the outcome, and the replicated log's position its local database
/// held once the command landed (the sender waits until it holds as much before it answers).
#[derive(Serialize, Deserialize)]
struct WireReply {
    outcome: std::result::Result<WireCommitted, WireError>,
    position: u64,
}

#[derive(Serialize, Deserialize)]
struct WireCommitted {
    events: Vec<(Ulid, String, u64)>,
    deduplicated: bool,
}

#[derive(Serialize, Deserialize)]
enum WireError {
    Conflict {
        stream: String,
        expected: WireExpected,
        actual: u64,
    },
    StreamClosed(String),
    Poisoned(String),
    InvalidCommand(String),
    TooLarge(String),
    NotWriter(String),
    Unavailable(String),
    Projection {
        projection: String,
        message: String,
    },
    /// Everything else the writer's caller would see as an internal failure.
    Internal(String),
}

impl From<Expected> for WireExpected {
    fn from(e: Expected) -> Self {
        match e {
            Expected::Any => Self::Any,
            Expected::NoStream => Self::NoStream,
            Expected::Exactly(v) => Self::Exactly(v),
        }
    }
}

impl From<WireExpected> for Expected {
    fn from(e: WireExpected) -> Self {
        match e {
            WireExpected::Any => Self::Any,
            WireExpected::NoStream => Self::NoStream,
            WireExpected::Exactly(v) => Self::Exactly(v),
        }
    }
}

/// A command as bytes (JSON).
pub fn encode_command(command: &Command) -> Result<Vec<u8>> {
    let appends = command
        .appends
        .iter()
        .map(|append| {
            let events = append
                .events
                .iter()
                .map(|event| {
                    Ok(WireEvent {
                        type_name: event.type_name().to_owned(),
                        v: event.schema_version(),
                        data: serde_json::value::to_raw_value(&Payload(event))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(WireAppend {
                stream: append.stream.clone(),
                expected: append.expected.into(),
                events,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(serde_json::to_vec(&WireCommand {
        actor: command.actor.clone(),
        at: command.recorded_at,
        idempotency: command
            .idempotency
            .as_ref()
            .map(|i| (i.key.clone(), i.window_ms)),
        appends,
    })?)
}

/// The command `encode_command` wrote. An event this code cannot decode (another version of
/// the aggregator sent it) is `InvalidCommand`, naming it.
pub fn decode_command(bytes: &[u8]) -> Result<Command> {
    let wire: WireCommand = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidCommand(format!("a forwarded command is malformed: {e}")))?;
    let appends = wire
        .appends
        .into_iter()
        .map(|append| {
            let events = append
                .events
                .into_iter()
                .map(|e| {
                    decode_payload(&e.type_name, e.v, e.data.get()).map_err(|err| {
                        Error::InvalidCommand(format!(
                            "a forwarded {} event (version {}) cannot be read by this replica: {err}",
                            e.type_name, e.v
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Append {
                stream: append.stream,
                expected: append.expected.into(),
                events,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Command {
        actor: wire.actor,
        recorded_at: wire.at,
        idempotency: wire
            .idempotency
            .map(|(key, window_ms)| Idempotency { key, window_ms }),
        appends,
    })
}

/// An append's outcome on the writer, and the position it holds then, as bytes.
pub fn encode_reply(outcome: &Result<Committed>, position: u64) -> Vec<u8> {
    let outcome = match outcome {
        Ok(committed) => Ok(WireCommitted {
            events: committed
                .events
                .iter()
                .map(|r| (r.id, r.stream.clone(), r.seq))
                .collect(),
            deduplicated: committed.deduplicated,
        }),
        Err(e) => Err(match e {
            Error::Conflict {
                stream,
                expected,
                actual,
            } => WireError::Conflict {
                stream: stream.clone(),
                expected: (*expected).into(),
                actual: *actual,
            },
            Error::StreamClosed { stream } => WireError::StreamClosed(stream.clone()),
            Error::Poisoned(r) => WireError::Poisoned(r.clone()),
            Error::InvalidCommand(r) => WireError::InvalidCommand(r.clone()),
            Error::TooLarge(r) => WireError::TooLarge(r.clone()),
            Error::NotWriter(r) => WireError::NotWriter(r.clone()),
            // The writer is shutting down: another replica takes over.
            Error::WriterStopped => WireError::NotWriter(e.to_string()),
            Error::Unavailable(r) => WireError::Unavailable(r.clone()),
            Error::Projection {
                projection,
                message,
            } => WireError::Projection {
                projection: projection.clone(),
                message: message.clone(),
            },
            other => WireError::Internal(other.to_string()),
        }),
    };
    // Plain data: serializing it cannot fail.
    serde_json::to_vec(&WireReply { outcome, position }).unwrap_or_default()
}

/// The outcome and position `encode_reply` wrote.
pub fn decode_reply(bytes: &[u8]) -> Result<(Result<Committed>, u64)> {
    let wire: WireReply = serde_json::from_slice(bytes)
        .map_err(|e| Error::Unavailable(format!("the writer's answer is malformed: {e}")))?;
    let outcome = match wire.outcome {
        Ok(c) => Ok(Committed {
            events: c
                .events
                .into_iter()
                .map(|(id, stream, seq)| EventRef { id, stream, seq })
                .collect(),
            deduplicated: c.deduplicated,
        }),
        Err(e) => Err(match e {
            WireError::Conflict {
                stream,
                expected,
                actual,
            } => Error::Conflict {
                stream,
                expected: expected.into(),
                actual,
            },
            WireError::StreamClosed(stream) => Error::StreamClosed { stream },
            WireError::Poisoned(r) => Error::Poisoned(r),
            WireError::InvalidCommand(r) => Error::InvalidCommand(r),
            WireError::TooLarge(r) => Error::TooLarge(r),
            WireError::NotWriter(r) => Error::NotWriter(r),
            WireError::Unavailable(r) => Error::Unavailable(r),
            WireError::Projection {
                projection,
                message,
            } => Error::Projection {
                projection,
                message,
            },
            WireError::Internal(r) => Error::Corrupt(format!("on the writer: {r}")),
        }),
    };
    Ok((outcome, wire.position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, TaskEnabled};

    #[test]
    fn a_command_comes_back_as_it_was_built() {
        // Given a command with two streams, an idempotency key and an expected version
        let command = Command::new("0xabc", 42)
            .idempotent("key", Some(1_000))
            .append(
                "task:1",
                Expected::Exactly(3),
                [Event::TaskEnabled(TaskEnabled {
                    task_id: "1".into(),
                })],
            )
            .append(
                "execution:9",
                Expected::NoStream,
                [Event::TaskEnabled(TaskEnabled {
                    task_id: "1".into(),
                })],
            );
        // When it is encoded and decoded
        let back = decode_command(&encode_command(&command).unwrap()).unwrap();
        // Then it is the same command
        assert_eq!(back.actor, command.actor);
        assert_eq!(back.recorded_at, 42);
        assert_eq!(back.idempotency, command.idempotency);
        assert_eq!(back.appends.len(), 2);
        for (a, b) in back.appends.iter().zip(&command.appends) {
            assert_eq!(
                (&a.stream, a.expected, &a.events),
                (&b.stream, b.expected, &b.events)
            );
        }
    }

    #[test]
    fn errors_come_back_as_the_variants_callers_tell_apart() {
        let conflict = Err(Error::Conflict {
            stream: "task:1".into(),
            expected: Expected::Exactly(2),
            actual: 3,
        });
        let (outcome, position) = decode_reply(&encode_reply(&conflict, 7)).unwrap();
        assert_eq!(position, 7);
        assert!(matches!(
            outcome,
            Err(Error::Conflict { stream, expected: Expected::Exactly(2), actual: 3 }) if stream == "task:1"
        ));
        let closed = Err(Error::StreamClosed {
            stream: "task:1".into(),
        });
        assert!(matches!(
            decode_reply(&encode_reply(&closed, 1)).unwrap().0,
            Err(Error::StreamClosed { .. })
        ));
        let stopped = Err(Error::WriterStopped);
        assert!(matches!(
            decode_reply(&encode_reply(&stopped, 1)).unwrap().0,
            Err(Error::NotWriter(_))
        ));
        let committed = Committed {
            events: vec![EventRef {
                id: Ulid(5),
                stream: "task:1".into(),
                seq: 1,
            }],
            deduplicated: true,
        };
        assert_eq!(
            decode_reply(&encode_reply(&Ok(committed.clone()), 3))
                .unwrap()
                .0
                .unwrap(),
            committed
        );
    }

    #[test]
    fn an_unreadable_event_is_an_invalid_command_naming_it() {
        let bytes = br#"{"actor":"a","at":1,"idempotency":null,"appends":[{"stream":"s","expected":"Any","events":[{"type":"TaskEnabled","v":9,"data":{}}]}]}"#;
        let err = decode_command(bytes).unwrap_err().to_string();
        assert!(
            err.contains("TaskEnabled") && err.contains("version 9"),
            "{err}"
        );
    }
}
