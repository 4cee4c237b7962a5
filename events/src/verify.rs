//! Integrity of the log, checked from its stored bytes alone: ULIDs strictly increasing and equal
//! to their keys, the hash chain, every event decoding (with upcasting), stream sequences gapless
//! from 1, nothing after an event that closes its stream.
//!
//! Nothing in these checks needs the log read in one sequence: each stored event carries its
//! own hash, so an event's link in the chain is checked from the stored hash of the event before
//! it. The key space between the first and the last event is cut into slices (`slices`), which
//! worker threads scan, chain, decode and check on their own (`check_slice`), taking the next
//! unchecked slice as they finish one; the merging thread takes the slices' outcomes back in
//! log order (`merge`) and checks what joins them: the first event's link to the previous
//! slice's last hash, and each stream's first event in a slice against where the slices before
//! left the stream. Every failure carries its position and the stage of the check (order, then
//! the stored form, the chain, decoding, the stream), so the failure reported is the first bad
//! event, and for it the first check it fails, whichever thread found it.
//!
//! `verify_with` also hands the events a caller picks (by type), decoded and in log order, to a
//! visitor on the merging thread: `replay verify` checks the operators' attestations in the same
//! pass instead of decoding the whole log a second time.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Condvar, Mutex};

use ulid::Ulid;

use crate::envelope::{self, Envelope, GENESIS_HASH, Hash};
use crate::error::{Error, Result};
use crate::event::{Event, closes_stream};
use crate::keys::ulid_from_key;
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

/// Events per slice aimed at: enough to make a slice's set-up (an iterator, a map) negligible,
/// few enough that two threads share a small log evenly.
const EVENTS_PER_SLICE: usize = 8192;
/// The most slices a log is cut into.
const MAX_SLICES: usize = 1 << 16;
/// Slices checked ahead of the merge, per worker: bounds the memory of outcomes waiting.
const AHEAD_PER_WORKER: usize = 4;

/// The checks of one event, in the order they run: of two failures at one event, the earlier
/// stage is the one reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Order,
    Stored,
    Chain,
    Decoding,
    Stream,
}

/// A failure inside a slice, at `offset` events from its start.
#[derive(Debug, Clone)]
struct Found {
    offset: u64,
    stage: Stage,
    id: Ulid,
    reason: String,
}

impl Found {
    fn key(&self) -> (u64, Stage) {
        (self.offset, self.stage)
    }
}

/// A stream as one slice sees it: its first event there (checked at the merge against the
/// slices before) and where the slice leaves it.
struct Span {
    first_seq: u64,
    first_offset: u64,
    first_id: Ulid,
    last_seq: u64,
    closed: bool,
}

type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// What a worker learned of one slice.
struct Outcome {
    index: usize,
    /// Events checked: all of the slice's, or those before its first failure.
    count: u64,
    /// The first event's ULID and stored value: its link is checked at the merge.
    first: Option<(Ulid, fjall::Slice)>,
    last: Option<(Ulid, Hash)>,
    failure: Option<Found>,
    streams: Map<Span>,
    /// The wanted events, with their offsets.
    wanted: Vec<(u64, Envelope)>,
}

/// Verifies the whole log. `progress` receives the number of events read so far, now and then.
/// The outer error is a storage failure; the inner one the first bad event.
pub fn verify(
    keyspaces: &LogKeyspaces,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<std::result::Result<VerifyReport, VerifyFailure>> {
    verify_with(keyspaces, threads, progress, |_| false, |_| {})
}

/// `verify`, handing every event for which `wanted` holds to `visit`, in log order, as it is
/// checked (up to the first bad event).
pub fn verify_with(
    keyspaces: &LogKeyspaces,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
    wanted: fn(&Event) -> bool,
    visit: impl FnMut(Envelope) + Send,
) -> Result<std::result::Result<VerifyReport, VerifyFailure>> {
    let workers = threads.max(1);
    let target = (keyspaces.events.approximate_len() / EVENTS_PER_SLICE).max(workers * 4);
    verify_in_slices(keyspaces, workers, target, progress, wanted, visit)
}

/// `verify_with` over about `target` slices.
fn verify_in_slices(
    keyspaces: &LogKeyspaces,
    workers: usize,
    target: usize,
    progress: &(dyn Fn(u64) + Sync),
    wanted: fn(&Event) -> bool,
    visit: impl FnMut(Envelope) + Send,
) -> Result<std::result::Result<VerifyReport, VerifyFailure>> {
    let Some(bounds) = slices(keyspaces, target)? else {
        return Ok(Ok(VerifyReport {
            events: 0,
            streams: 0,
            head: None,
        }));
    };
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // How many slices the merge has taken: a worker waits before running too far ahead of it.
    let merged = (Mutex::new(0usize), Condvar::new());
    let ahead = workers * AHEAD_PER_WORKER;
    std::thread::scope(|scope| {
        let (results, outcomes) = channel::<Result<Outcome>>();
        for _ in 0..workers {
            let results: Sender<Result<Outcome>> = results.clone();
            let (bounds, next, stop, merged) = (&bounds, &next, &stop, &merged);
            let worker = std::thread::Builder::new().name("verify".into());
            let spawned = worker.spawn_scoped(scope, move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&range) = bounds.get(index) else {
                        return;
                    };
                    let (lock, turned) = merged;
                    let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while index >= *done + ahead && !stop.load(Ordering::Relaxed) {
                        done = turned.wait(done).unwrap_or_else(|p| p.into_inner());
                    }
                    drop(done);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let outcome = check_slice(keyspaces, index, range, wanted);
                    if results.send(outcome).is_err() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                stop.store(true, Ordering::Relaxed);
                merged.1.notify_all();
                return Err(Error::Storage(fjall::Error::Io(e)));
            }
        }
        drop(results);
        let outcome = merge(outcomes, bounds.len(), &merged, progress, visit);
        stop.store(true, Ordering::Relaxed);
        merged.1.notify_all();
        outcome
    })
}

/// A slice of the key space: from a key (inclusive) to a key, inclusive for the last slice.
type Range = ([u8; 16], Bound<[u8; 16]>);

/// The key space from the first event to the last one (as the log is now: events appended
/// while it is verified are not part of it), cut into about `target` slices of equal width.
/// ULIDs grow with time, so the slices hold about equally many events unless the log's rate
/// varied a lot; workers take slices as they go, so uneven ones balance out.
fn slices(keyspaces: &LogKeyspaces, target: usize) -> Result<Option<Vec<Range>>> {
    let (Some(first), Some(last)) = (
        keyspaces.events.first_key_value(),
        keyspaces.events.last_key_value(),
    ) else {
        return Ok(None);
    };
    let first = u128::from(ulid_from_key(&first.key().map_err(Error::from)?)?);
    let last = u128::from(ulid_from_key(&last.key().map_err(Error::from)?)?);
    let count = target.clamp(1, MAX_SLICES) as u128;
    let width = (last - first) / count;
    let count = if width == 0 { 1 } else { count };
    let mut bounds = Vec::with_capacity(count as usize);
    for i in 0..count {
        let from = first + width * i;
        let to = if i + 1 == count {
            Bound::Included(last.to_be_bytes())
        } else {
            Bound::Excluded((from + width).to_be_bytes())
        };
        bounds.push((from.to_be_bytes(), to));
    }
    Ok(Some(bounds))
}

/// Scans one slice and checks what it can alone: order, the chain from its second event on,
/// decoding, and the streams from their second event in the slice on; stops at the first
/// failure.
fn check_slice(
    keyspaces: &LogKeyspaces,
    index: usize,
    (from, to): Range,
    wanted: fn(&Event) -> bool,
) -> Result<Outcome> {
    let mut outcome = Outcome {
        index,
        count: 0,
        first: None,
        last: None,
        failure: None,
        streams: Map::default(),
        wanted: Vec::new(),
    };
    for guard in keyspaces.events.range((Bound::Included(from), to)) {
        let (key, value) = guard.into_inner()?;
        let id = ulid_from_key(&key)?;
        let offset = outcome.count;
        let fail = |stage: Stage, reason: String| Found {
            offset,
            stage,
            id,
            reason,
        };
        if let Some((prev, _)) = outcome.last
            && id <= prev
        {
            outcome.failure = Some(fail(Stage::Order, "ULID not after the previous one".into()));
            break;
        }
        let recorded = match envelope::split_stored(&value) {
            Ok((recorded, _)) if outcome.first.is_none() => {
                // Its link is checked at the merge, with the previous slice's last hash.
                outcome.first = Some((id, value.clone()));
                recorded
            }
            Ok((recorded, body)) => {
                if let Some((_, prev_hash)) = outcome.last
                    && envelope::chain_hash(&prev_hash, body) != recorded
                {
                    outcome.failure = Some(fail(Stage::Chain, CHAIN_BROKEN.into()));
                    break;
                }
                recorded
            }
            Err(e) => {
                outcome.failure = Some(fail(Stage::Stored, e.to_string()));
                break;
            }
        };
        let mut env = match envelope::decode(&value) {
            Ok(env) if env.id != id => {
                let reason = format!("body names ULID {} under key {id}", env.id);
                outcome.failure = Some(fail(Stage::Decoding, reason));
                break;
            }
            Ok(env) => env,
            Err(e) => {
                outcome.failure = Some(fail(Stage::Decoding, format!("does not decode: {e}")));
                break;
            }
        };
        let closes = closes_stream(env.event.type_name());
        let keep = wanted(&env.event);
        if let Some(span) = outcome.streams.get_mut(&env.stream) {
            if span.closed {
                outcome.failure = Some(fail(Stage::Stream, FOLLOWS_CLOSED.into()));
                break;
            }
            if env.seq != span.last_seq + 1 {
                outcome.failure = Some(fail(Stage::Stream, gap(span.last_seq, env.seq)));
                break;
            }
            span.last_seq = env.seq;
            span.closed = closes;
        } else {
            let stream = if keep {
                env.stream.clone()
            } else {
                std::mem::take(&mut env.stream)
            };
            outcome.streams.insert(
                stream,
                Span {
                    first_seq: env.seq,
                    first_offset: offset,
                    first_id: id,
                    last_seq: env.seq,
                    closed: closes,
                },
            );
        }
        if keep {
            outcome.wanted.push((offset, env));
        }
        outcome.last = Some((id, recorded));
        outcome.count += 1;
    }
    Ok(outcome)
}

const CHAIN_BROKEN: &str = "hash chain broken: the stored hash is not sha256(previous hash || body); the event's bytes were changed";
const FOLLOWS_CLOSED: &str = "an event follows the event that closed its stream";

fn gap(last: u64, found: u64) -> String {
    format!("stream sequence gap: expected {}, found {found}", last + 1)
}

/// Takes the slices' outcomes back in log order, checks what joins each to the ones before,
/// visits the wanted events; stops at the first failure.
fn merge(
    outcomes: std::sync::mpsc::Receiver<Result<Outcome>>,
    slices: usize,
    merged: &(Mutex<usize>, Condvar),
    progress: &(dyn Fn(u64) + Sync),
    mut visit: impl FnMut(Envelope),
) -> Result<std::result::Result<VerifyReport, VerifyFailure>> {
    let mut waiting: std::collections::BTreeMap<usize, Outcome> = Default::default();
    let mut streams: Map<(u64, bool)> = Map::default();
    let mut position = 0u64;
    let mut prev: Option<(Ulid, Hash)> = None;
    for index in 0..slices {
        let outcome = loop {
            if let Some(outcome) = waiting.remove(&index) {
                break outcome;
            }
            let Ok(received) = outcomes.recv() else {
                return Err(Error::Corrupt("a verifying thread stopped".into()));
            };
            let received = received?;
            waiting.insert(received.index, received);
        };
        let mut failure = outcome.failure;
        let mut consider = |found: Found| {
            if failure.as_ref().is_none_or(|f| found.key() < f.key()) {
                failure = Some(found);
            }
        };
        // The slice's first event: after the previous slice's last, and chained onto it.
        if let Some((id, value)) = &outcome.first {
            let (prev_id, prev_hash) = prev.unwrap_or((Ulid::nil(), GENESIS_HASH));
            if prev.is_some() && *id <= prev_id {
                consider(Found {
                    offset: 0,
                    stage: Stage::Order,
                    id: *id,
                    reason: "ULID not after the previous one".into(),
                });
            } else if let Ok((recorded, body)) = envelope::split_stored(value)
                && envelope::chain_hash(&prev_hash, body) != recorded
            {
                consider(Found {
                    offset: 0,
                    stage: Stage::Chain,
                    id: *id,
                    reason: CHAIN_BROKEN.into(),
                });
            }
        }
        // Each stream's first event in the slice, where the slices before left the stream.
        for (stream, span) in &outcome.streams {
            let (last_seq, closed) = streams.get(stream).copied().unwrap_or((0, false));
            let reason = if closed {
                FOLLOWS_CLOSED.to_owned()
            } else if span.first_seq != last_seq + 1 {
                gap(last_seq, span.first_seq)
            } else {
                continue;
            };
            consider(Found {
                offset: span.first_offset,
                stage: Stage::Stream,
                id: span.first_id,
                reason,
            });
        }
        let upto = failure.as_ref().map_or(u64::MAX, |f| f.offset);
        for (offset, envelope) in outcome.wanted {
            if offset >= upto {
                break;
            }
            visit(envelope);
        }
        if let Some(found) = failure {
            return Ok(Err(VerifyFailure {
                position: position + found.offset,
                id: found.id.to_string(),
                reason: found.reason,
            }));
        }
        for (stream, span) in outcome.streams {
            streams.insert(stream, (span.last_seq, span.closed));
        }
        position += outcome.count;
        prev = outcome.last.or(prev);
        {
            let (lock, turned) = merged;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = index + 1;
            turned.notify_all();
        }
        if index % 16 == 15 {
            progress(position);
        }
    }
    progress(position);
    Ok(Ok(VerifyReport {
        events: position,
        streams: streams.len() as u64,
        head: prev,
    }))
}

#[cfg(test)]
mod tests;
