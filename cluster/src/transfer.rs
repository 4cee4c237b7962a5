//! Moving the log between a stream and a local database, for the tools (`aggregator log export`,
//! `aggregator log import`, `replay --nats`):
//!
//! - `read`: every message of the stream up to its head as of the call, in stream order;
//! - `copy_into`: those messages' events into an empty `events` keyspace, exactly as stored, so
//!   that the log's own checks (`events::verify`) and rebuilds run on them unchanged;
//! - `import`: a local log into an empty stream, or after the prefix of it an interrupted import
//!   left there (checked byte for byte), as messages of whole commands under the server's
//!   `max_payload`, each published against the sequence before it.

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use events::fjall::Slice;
use events::{GENESIS_HASH, LogKeyspaces, Records, Ulid, chain_hash, split_stored};
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::message::{decode, split};
use crate::stream::Replicated;

/// Events handed to `split` at once while importing.
const IMPORT_CHUNK: usize = 4096;

fn corrupt(replicated: &Replicated, sequence: u64, what: String) -> Error {
    Error::Log(events::Error::Corrupt(format!(
        "message {sequence} of stream {}: {what}",
        replicated.name()
    )))
}

/// Hands `each` every message of the stream (its sequence and stored events), from the first to
/// the stream's last as of the call. Answers that last sequence.
pub async fn read(
    replicated: &Replicated,
    mut each: impl FnMut(u64, Vec<Slice>) -> Result<()>,
) -> Result<u64> {
    let head = replicated.head_patiently().await?;
    if head == 0 {
        return Ok(0);
    }
    let failed = |e: &dyn std::fmt::Display| Error::Stream {
        stream: replicated.name().to_owned(),
        message: e.to_string(),
    };
    let consumer = replicated
        .stream()
        .await?
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..pull::OrderedConfig::default()
        })
        .await
        .map_err(|e| failed(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
    let mut next = 1;
    while next <= head {
        let Some(message) = messages.next().await else {
            return Err(failed(&format!(
                "the stream ended at {} before its head {head}",
                next - 1
            )));
        };
        let message = message.map_err(|e| failed(&e))?;
        let sequence = message.info().map_err(|e| failed(&e))?.stream_sequence;
        if sequence < next {
            continue;
        }
        if sequence > next {
            // The log's stream refuses deletes: a gap is a stream that was tampered with.
            return Err(corrupt(
                replicated,
                sequence,
                format!("messages {next} to {} are missing", sequence - 1),
            ));
        }
        let events = decode(&message.payload).map_err(|e| corrupt(replicated, sequence, e))?;
        each(sequence, events)?;
        next = sequence + 1;
    }
    Ok(head)
}

/// What `copy_into` copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub events: u64,
    /// The stream's last sequence it read up to.
    pub position: u64,
}

/// Copies the stream's events, exactly as stored, into `into`'s empty `events` keyspace (by
/// their ULIDs, as the log keeps them). What a keyspace cannot show is checked here: that the
/// stream holds its events in ULID order, each once. Everything else (the hash chain, decoding,
/// the streams' sequences) is for `events::verify` on the copy.
pub async fn copy_into(replicated: &Replicated, into: &LogKeyspaces) -> Result<Copied> {
    if into.head()?.is_some() {
        return Err(Error::Local(
            "the copy's database already holds events".into(),
        ));
    }
    let mut ingestion = into.events.start_ingestion()?;
    let mut last = Ulid::nil();
    let mut count = 0u64;
    let position = read(replicated, |sequence, events| {
        for (i, stored) in events.into_iter().enumerate() {
            let header = events::decode_header(&stored).map_err(|e| {
                corrupt(
                    replicated,
                    sequence,
                    format!("its event {i} does not decode: {e}"),
                )
            })?;
            if header.id <= last {
                return Err(corrupt(
                    replicated,
                    sequence,
                    format!(
                        "event {} does not come after {last} in ULID order",
                        header.id
                    ),
                ));
            }
            last = header.id;
            ingestion.write(header.id.to_bytes(), stored)?;
            count += 1;
        }
        Ok(())
    })
    .await?;
    ingestion.finish()?;
    Ok(Copied {
        events: count,
        position,
    })
}

/// What `import` published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Events published by this run.
    pub events: u64,
    pub messages: u64,
    /// Events the stream held already, a prefix of the source's log (an interrupted import).
    pub resumed: u64,
    /// The stream's last sequence afterwards.
    pub position: u64,
}

/// Where one command's events may end, as the source log shows it. A command's events are
/// consecutive and share their `recorded_at` (taken once per command); the first event of a
/// command with an idempotency key says how many events it has. So a unit ends where the time
/// changes, before an event with a key, and after a keyed command's last event: each unit is
/// one command or several whole ones recorded in the same millisecond.
#[derive(Debug, Default)]
struct Units {
    current: Records,
    /// The current unit's time, and the events left of its keyed command (0: none known).
    at: u64,
    left: u32,
    /// Whether the current unit is known to be one command (it started with a key).
    keyed: bool,
}

/// A unit of events that the import publishes in one message.
struct Unit {
    events: Records,
    /// It is one command (its first event carries the command's key and count).
    one_command: bool,
}

impl Units {
    /// Takes the next event; answers the unit it closed, if it did.
    fn push(&mut self, id: Ulid, stored: Slice, header: &events::Header) -> Option<Unit> {
        let starts = self.current.is_empty()
            || header.recorded_at != self.at
            || header.idempotency.is_some()
            || (self.keyed && self.left == 0);
        let closed = if starts { self.close() } else { None };
        if self.current.is_empty() {
            self.at = header.recorded_at;
            self.keyed = header.idempotency.is_some();
            self.left = header.idempotency.as_ref().map_or(0, |m| m.events);
        }
        self.left = self.left.saturating_sub(1);
        self.current.push((id, stored));
        closed
    }

    fn close(&mut self) -> Option<Unit> {
        if self.current.is_empty() {
            return None;
        }
        Some(Unit {
            events: std::mem::take(&mut self.current),
            one_command: self.keyed,
        })
    }
}

/// Why a stream cannot take the source's log: it holds something else than a prefix of it.
fn differs(replicated: &Replicated, what: String) -> Error {
    Error::Stream {
        stream: replicated.name().to_owned(),
        message: format!(
            "{what}: it holds something else than the start of this log, so nothing was imported (name a new stream in event_log.stream, or remove this one with `nats stream rm {}` if nothing in it is needed)",
            replicated.name()
        ),
    }
}

/// Loads the log `from` (a local database no aggregator runs on) into the stream. The stream
/// must be empty (its genesis message alone) or hold a prefix of `from`'s log, byte for byte:
/// what an interrupted import published; the import goes on after it. Anything else in the
/// stream is refused, saying where it differs. Each event's hash is checked to chain onto the
/// one before as it goes; the caller verifies the whole log first (`events::verify`), since
/// nothing published can be taken back (the stream refuses deletes).
///
/// Each message holds whole commands (`Units`), as many as fit under the server's
/// `max_payload`, published against the sequence before it and with the first event's ULID as
/// its `Nats-Msg-Id` (a publish repeated after a lost acknowledgement is stored once). A
/// command larger than `max_payload` stops the import before it, naming it. A publish refused
/// because the stream moved (another writer) stops the import.
pub async fn import(
    replicated: &Replicated,
    from: &LogKeyspaces,
    progress: &dyn Fn(u64),
) -> Result<Imported> {
    let mut scan = from.scan(None).peekable();
    let mut prev = GENESIS_HASH;
    let mut resumed = 0u64;
    // What the stream holds must be the source's first events, exactly.
    let position = read(replicated, |sequence, events| {
        for stored in events {
            let Some(item) = scan.next() else {
                let id = events::decode_header(&stored)
                    .map(|h| h.id.to_string())
                    .unwrap_or_else(|_| "an undecodable event".into());
                return Err(differs(
                    replicated,
                    format!(
                        "message {sequence} holds event {id}, after the last of the source's {resumed} events"
                    ),
                ));
            };
            let (id, ours) = item?;
            if stored.as_ref() != ours.as_ref() {
                let theirs = events::decode_header(&stored)
                    .map(|h| h.id.to_string())
                    .unwrap_or_else(|_| "an undecodable event".into());
                let what = if theirs == id.to_string() {
                    format!(
                        "message {sequence} holds event {id} with other bytes than the source's"
                    )
                } else {
                    format!(
                        "message {sequence} holds event {theirs} where the source's event {} is {id}",
                        resumed + 1
                    )
                };
                return Err(differs(replicated, what));
            }
            prev = split_stored(&ours)
                .map(|(hash, _)| hash)
                .map_err(|source| {
                    Error::Log(events::Error::Decode {
                        id: id.to_string(),
                        source,
                    })
                })?;
            resumed += 1;
        }
        Ok(())
    })
    .await?;
    let mut imported = Imported {
        events: 0,
        messages: 0,
        resumed,
        position,
    };
    if resumed > 0 {
        tracing::info!(
            events = resumed,
            position,
            "the stream holds the start of the log already: the import goes on after it"
        );
    }
    let mut units = Units::default();
    let mut chunk: Vec<Unit> = Vec::new();
    let mut in_chunk = 0usize;
    loop {
        let next = scan.next();
        let closed = match next {
            Some(item) => {
                let (id, stored) = item?;
                let (hash, body) = split_stored(&stored).map_err(|source| {
                    Error::Log(events::Error::Decode {
                        id: id.to_string(),
                        source,
                    })
                })?;
                if chain_hash(&prev, body) != hash {
                    return Err(Error::Log(events::Error::Corrupt(format!(
                        "event {id}'s hash does not chain onto the event before it: nothing after it was imported"
                    ))));
                }
                prev = hash;
                let header = events::decode_header(&stored).map_err(|source| {
                    Error::Log(events::Error::Decode {
                        id: id.to_string(),
                        source,
                    })
                })?;
                units.push(id, stored, &header)
            }
            None => units.close(),
        };
        let done = next_is_end(&closed, &units);
        if let Some(unit) = closed {
            in_chunk += unit.events.len();
            chunk.push(unit);
        }
        if in_chunk >= IMPORT_CHUNK || (done && !chunk.is_empty()) {
            publish_chunk(replicated, &chunk, &mut imported).await?;
            chunk.clear();
            in_chunk = 0;
            progress(imported.events);
        }
        if done {
            return Ok(imported);
        }
    }
}

/// Whether the scan ended: nothing was closed and nothing is left open.
fn next_is_end(closed: &Option<Unit>, units: &Units) -> bool {
    closed.is_none() && units.current.is_empty()
}

async fn publish_chunk(
    replicated: &Replicated,
    chunk: &[Unit],
    imported: &mut Imported,
) -> Result<()> {
    let commands: Vec<Records> = chunk.iter().map(|u| u.events.clone()).collect();
    let messages = split(&commands, replicated.max_payload()).map_err(|i| {
        let unit = &chunk[i];
        let size: usize = unit.events.iter().map(|(_, s)| s.len()).sum();
        let first = unit.events.first().map(|(id, _)| *id).unwrap_or_default();
        let last = unit.events.last().map(|(id, _)| *id).unwrap_or_default();
        let what = if unit.one_command {
            format!(
                "the command of events {first} to {last} ({} events, {size} bytes)",
                unit.events.len()
            )
        } else {
            format!(
                "the commands of events {first} to {last} ({} events, {size} bytes, recorded in the same millisecond: where one ends is not in the log)",
                unit.events.len()
            )
        };
        Error::Stream {
            stream: replicated.name().to_owned(),
            message: format!(
                "{what} cannot go in one message under the NATS server's max_payload ({} bytes): raise max_payload; the import stopped before it, after {} events (run it again to go on)",
                replicated.max_payload(),
                imported.resumed + imported.events
            ),
        }
    })?;
    let mut through = 0;
    for message in &messages {
        imported.position = replicated
            .publish(message, imported.position)
            .await
            .map_err(|refused| Error::Stream {
                stream: replicated.name().to_owned(),
                message: format!(
                    "the import stopped after {} events: {refused:?}",
                    imported.resumed + imported.events
                ),
            })?;
        imported.messages += 1;
        imported.events += chunk[through..message.through]
            .iter()
            .map(|u| u.events.len() as u64)
            .sum::<u64>();
        through = message.through;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::IdempotencyMark;

    fn header(id: u128, at: u64, keyed: Option<u32>) -> events::Header {
        events::Header {
            id: Ulid(id),
            stream: "s".into(),
            seq: 1,
            recorded_at: at,
            event_type: "TaskCreated".into(),
            version: 1,
            idempotency: keyed.map(|events| IdempotencyMark {
                key: format!("k{id}"),
                expires_at: None,
                events,
            }),
        }
    }

    /// The events of each unit the log's events fall into.
    fn units_of(headers: &[events::Header]) -> Vec<(Vec<u128>, bool)> {
        let mut units = Units::default();
        let mut out = Vec::new();
        for h in headers {
            out.extend(units.push(h.id, Slice::from(vec![0u8]), h));
        }
        out.extend(units.close());
        out.into_iter()
            .map(|u| (u.events.iter().map(|(id, _)| id.0).collect(), u.one_command))
            .collect()
    }

    #[test]
    fn units_end_where_a_command_may_end() {
        // Given two commands at one time without keys, a keyed command of two events at the
        // same time, a keyed one of one event, and one at another time
        let headers = [
            header(1, 100, None),
            header(2, 100, None),
            header(3, 100, Some(2)),
            header(4, 100, None),
            header(5, 100, Some(1)),
            header(6, 100, None),
            header(7, 101, None),
        ];
        // When they are grouped
        let units = units_of(&headers);
        // Then a unit ends at a key, after a keyed command's count, and where the time changes
        assert_eq!(
            units,
            vec![
                (vec![1, 2], false),
                (vec![3, 4], true),
                (vec![5], true),
                (vec![6], false),
                (vec![7], false),
            ]
        );
    }
}
