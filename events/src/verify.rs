//! Integrity of the log, checked from its stored bytes alone: ULIDs strictly increasing and equal
//! to their keys, the hash chain, every event decoding (with upcasting), stream sequences gapless
//! from 1, nothing after an event that closes its stream.
//!
//! The reading thread checks order and the chain (both sequential); decoding, the costly part,
//! runs on worker threads fed in round-robin and read back in the same order, so the first bad
//! event is named exactly whichever thread finds it.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ulid::Ulid;

use crate::envelope::{self, GENESIS_HASH, Hash};
use crate::error::Result;
use crate::event::closes_stream;
use crate::keyspaces::LogKeyspaces;

/// What a clean log looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub head: Option<(Ulid, Hash)>,
}

/// The first bad event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event #{position} ({id}): {reason}")]
pub struct VerifyFailure {
    /// 0-based position in the log.
    pub position: u64,
    pub id: String,
    pub reason: String,
}

const CHUNK: usize = 2048;

struct Chunk {
    first_position: u64,
    items: Vec<(Ulid, fjall::Slice)>,
}

/// What a decoder learned of each event of a chunk, or where it failed.
type Decoded = std::result::Result<Vec<(Ulid, String, u64, bool)>, VerifyFailure>;

/// Verifies the whole log. `progress` receives the number of events read so far, now and then.
/// The outer error is a storage failure; the inner one the first bad event.
pub fn verify(
    keyspaces: &LogKeyspaces,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<std::result::Result<VerifyReport, VerifyFailure>> {
    let workers = threads.max(1);
    std::thread::scope(|scope| {
        let mut job_senders: Vec<SyncSender<Chunk>> = Vec::with_capacity(workers);
        let mut result_receivers: Vec<Receiver<Decoded>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_tx, job_rx) = sync_channel::<Chunk>(4);
            let (res_tx, res_rx) = sync_channel::<Decoded>(4);
            scope.spawn(move || decode_worker(job_rx, res_tx));
            job_senders.push(job_tx);
            result_receivers.push(res_rx);
        }
        let collector = scope.spawn(move || collect(result_receivers));

        let read = read_and_chain(keyspaces, &job_senders, progress);
        drop(job_senders);
        let collected = collector
            .join()
            .unwrap_or_else(|_| Err(failure(0, "-", "a decoder thread panicked")));
        let (count, head, chain_failure) = read?;
        Ok(match (chain_failure, collected) {
            (Some(a), Err(b)) => Err(if b.position < a.position { b } else { a }),
            (Some(a), Ok(_)) => Err(a),
            (None, Err(b)) => Err(b),
            (None, Ok(streams)) => Ok(VerifyReport {
                events: count,
                streams,
                head,
            }),
        })
    })
}

type ReadOutcome = (u64, Option<(Ulid, Hash)>, Option<VerifyFailure>);

/// Reads the log in order, checks key order and the hash chain, hands chunks to the decoders.
fn read_and_chain(
    keyspaces: &LogKeyspaces,
    workers: &[SyncSender<Chunk>],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ReadOutcome> {
    let mut prev_hash: Hash = GENESIS_HASH;
    let mut prev_id: Option<Ulid> = None;
    let mut position = 0u64;
    let mut chunk = Chunk {
        first_position: 0,
        items: Vec::with_capacity(CHUNK),
    };
    let mut chunk_index = 0usize;
    let send = |chunk: Chunk, index: &mut usize| {
        if let Some(worker) = workers.get(*index % workers.len()) {
            let _ = worker.send(chunk);
        }
        *index += 1;
    };
    for item in keyspaces.scan(None) {
        let (id, value) = item?;
        if let Some(prev) = prev_id
            && id <= prev
        {
            return Ok((
                position,
                None,
                Some(failure(
                    position,
                    &id.to_string(),
                    "ULID not after the previous one",
                )),
            ));
        }
        let (recorded, body) = match envelope::split_stored(&value) {
            Ok(parts) => parts,
            Err(e) => {
                return Ok((
                    position,
                    None,
                    Some(failure(position, &id.to_string(), &e.to_string())),
                ));
            }
        };
        let expected = envelope::chain_hash(&prev_hash, body);
        if recorded != expected {
            return Ok((
                position,
                None,
                Some(failure(
                    position,
                    &id.to_string(),
                    "hash chain broken: the stored hash is not sha256(previous hash || body); the event's bytes were changed",
                )),
            ));
        }
        prev_hash = recorded;
        prev_id = Some(id);
        chunk.items.push((id, value));
        position += 1;
        if chunk.items.len() == CHUNK {
            let next = Chunk {
                first_position: position,
                items: Vec::with_capacity(CHUNK),
            };
            send(std::mem::replace(&mut chunk, next), &mut chunk_index);
            if position.is_multiple_of(CHUNK as u64 * 16) {
                progress(position);
            }
        }
    }
    if !chunk.items.is_empty() {
        send(chunk, &mut chunk_index);
    }
    progress(position);
    Ok((position, prev_id.map(|id| (id, prev_hash)), None))
}

fn decode_worker(jobs: Receiver<Chunk>, results: SyncSender<Decoded>) {
    for chunk in jobs {
        let mut out = Vec::with_capacity(chunk.items.len());
        let mut failed = None;
        for (offset, (id, value)) in chunk.items.iter().enumerate() {
            let position = chunk.first_position + offset as u64;
            match envelope::decode(value) {
                Ok(env) if env.id != *id => {
                    failed = Some(failure(
                        position,
                        &id.to_string(),
                        &format!("body names ULID {} under key {id}", env.id),
                    ));
                    break;
                }
                Ok(env) => out.push((
                    *id,
                    env.stream,
                    env.seq,
                    closes_stream(env.event.type_name()),
                )),
                Err(e) => {
                    failed = Some(failure(
                        position,
                        &id.to_string(),
                        &format!("does not decode: {e}"),
                    ));
                    break;
                }
            }
        }
        let sent = match failed {
            Some(f) => results.send(Err(f)),
            None => results.send(Ok(out)),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Reads decoded chunks back in log order and checks stream sequences.
fn collect(results: Vec<Receiver<Decoded>>) -> std::result::Result<u64, VerifyFailure> {
    let mut streams: HashMap<String, (u64, bool)> = HashMap::new();
    let mut position = 0u64;
    let mut index = 0usize;
    let mut first_failure: Option<VerifyFailure> = None;
    while let Some(receiver) = results.get(index % results.len().max(1)) {
        let Ok(decoded) = receiver.recv() else {
            break;
        };
        index += 1;
        if first_failure.is_some() {
            continue; // drain, so that the reader never blocks
        }
        match decoded {
            Err(f) => first_failure = Some(f),
            Ok(items) => {
                for (id, stream, seq, closes) in items {
                    let entry = streams.entry(stream).or_insert((0, false));
                    if entry.1 {
                        first_failure = Some(failure(
                            position,
                            &id.to_string(),
                            "an event follows the event that closed its stream",
                        ));
                        break;
                    }
                    if seq != entry.0 + 1 {
                        first_failure = Some(failure(
                            position,
                            &id.to_string(),
                            &format!("stream sequence gap: expected {}, found {seq}", entry.0 + 1),
                        ));
                        break;
                    }
                    *entry = (seq, closes);
                    position += 1;
                }
            }
        }
    }
    match first_failure {
        Some(f) => Err(f),
        None => Ok(streams.len() as u64),
    }
}

fn failure(position: u64, id: &str, reason: &str) -> VerifyFailure {
    VerifyFailure {
        position,
        id: id.to_owned(),
        reason: reason.to_owned(),
    }
}
