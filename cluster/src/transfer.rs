//! Moving the log between a stream and a local database, for the tools (`aggregator log export`,
//! `aggregator log import`, `replay --nats`):
//!
//! - `read`: every message of the stream up to its head as of the call, in stream order;
//! - `copy_into`: those messages' events into an empty `events` keyspace, exactly as stored, so
//!   that the log's own checks (`events::verify`) and rebuilds run on them unchanged;
//! - `import`: a local log into an empty stream, whole messages under the server's
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
    let head = replicated.head().await?;
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
    pub events: u64,
    pub messages: u64,
    /// The stream's last sequence afterwards.
    pub position: u64,
}

/// Loads the log `from` (a local database no aggregator runs on) into the stream, which must be
/// empty (its genesis message alone). Each event's hash is checked to chain onto the one before
/// as it goes; the caller verifies the whole log first (`events::verify`), since nothing
/// published can be taken back (the stream refuses deletes). A publish refused because the
/// stream moved (another writer) stops the import.
pub async fn import(
    replicated: &Replicated,
    from: &LogKeyspaces,
    progress: &dyn Fn(u64),
) -> Result<Imported> {
    let head = replicated.head().await?;
    if head > 1 {
        return Err(Error::Stream {
            stream: replicated.name().to_owned(),
            message: format!(
                "holds {} messages already: a log is imported only into an empty stream (name a new one in event_log.stream, or remove this one with `nats stream rm {}` if nothing in it is needed)",
                head - 1,
                replicated.name()
            ),
        });
    }
    let mut imported = Imported {
        events: 0,
        messages: 0,
        position: head,
    };
    let mut prev = GENESIS_HASH;
    let mut chunk: Vec<Records> = Vec::with_capacity(IMPORT_CHUNK);
    let mut scan = from.scan(None).peekable();
    while scan.peek().is_some() {
        chunk.clear();
        for item in scan.by_ref().take(IMPORT_CHUNK) {
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
            // One event per "command": a message holds as many as fit.
            chunk.push(vec![(id, stored)]);
        }
        let messages = split(&chunk, replicated.max_payload()).map_err(|i| Error::Stream {
            stream: replicated.name().to_owned(),
            message: format!(
                "event {} is larger than the NATS server's max_payload ({} bytes): raise max_payload",
                chunk[i][0].0,
                replicated.max_payload()
            ),
        })?;
        for message in &messages {
            imported.position = replicated
                .publish(message, imported.position)
                .await
                .map_err(|refused| Error::Stream {
                    stream: replicated.name().to_owned(),
                    message: format!(
                        "the import stopped after {} events: {refused:?}",
                        imported.events
                    ),
                })?;
            imported.messages += 1;
        }
        imported.events += chunk.len() as u64;
        progress(imported.events);
    }
    Ok(imported)
}
