//! The sliced verification against a plain one-pass reference, on logs tampered with in every
//! way the checks cover, at every position, cut into slices of every size: the first bad event
//! and its reason are the same.

use super::*;
use crate::event::{TaskCreated, TaskDeleted, TaskEnabled};
use crate::task::TaskDefinition;
use crate::{Command, Durability, Expected, Log, LogOptions, Projector, Tx, open_database};

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &Envelope, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> crate::Result<()> {
        Ok(())
    }
}

fn cmd(stream: &str, expected: Expected, events: Vec<Event>) -> Command {
    Command::new("0xowner", 1_000).append(stream, expected, events)
}

fn created(task: &str) -> Event {
    Event::TaskCreated(TaskCreated {
        task_id: task.into(),
        owner: "0xowner".into(),
        wallet: "0xwallet".into(),
        definition: TaskDefinition::default(),
    })
}

fn enabled(task: &str) -> Event {
    Event::TaskEnabled(TaskEnabled {
        task_id: task.into(),
    })
}

/// A log of 8 task streams written interleaved, 3 of them deleted (closed): 40 events.
fn sample_log(dir: &std::path::Path) -> LogKeyspaces {
    let db = open_database(dir).unwrap();
    let options = LogOptions {
        durability: Durability::Relaxed,
        ..LogOptions::default()
    };
    let log = Log::open(&db, options, Box::new(NoProjections)).unwrap();
    for t in 0..8 {
        let id = format!("t{t}");
        log.append_blocking(cmd(
            &format!("task:{id}"),
            Expected::NoStream,
            vec![created(&id)],
        ))
        .unwrap();
    }
    for round in 0..4u64 {
        for t in 0..8 {
            let id = format!("t{t}");
            let event = if round == 3 && t % 3 == 0 {
                Event::TaskDeleted(TaskDeleted {
                    task_id: id.clone(),
                })
            } else {
                enabled(&id)
            };
            log.append_blocking(cmd(
                &format!("task:{id}"),
                Expected::Exactly(round + 1),
                vec![event],
            ))
            .unwrap();
        }
    }
    let ks = log.keyspaces().clone();
    log.shutdown();
    ks
}

/// The checks one event after the other, as the definition of what `verify` reports.
fn reference(ks: &LogKeyspaces) -> std::result::Result<u64, VerifyFailure> {
    let mut prev: Option<(Ulid, Hash)> = None;
    let mut streams: HashMap<String, (u64, bool)> = HashMap::new();
    let mut position = 0u64;
    for item in ks.scan(None) {
        let (id, value) = item.unwrap();
        let fail = |reason: String| VerifyFailure {
            position,
            id: id.to_string(),
            reason,
        };
        if prev.is_some_and(|(p, _)| id <= p) {
            return Err(fail("ULID not after the previous one".into()));
        }
        let (recorded, body) = envelope::split_stored(&value).map_err(|e| fail(e.to_string()))?;
        if envelope::chain_hash(&prev.map_or(GENESIS_HASH, |(_, h)| h), body) != recorded {
            return Err(fail(CHAIN_BROKEN.into()));
        }
        let env = envelope::decode(&value).map_err(|e| fail(format!("does not decode: {e}")))?;
        if env.id != id {
            return Err(fail(format!("body names ULID {} under key {id}", env.id)));
        }
        let entry = streams.entry(env.stream.clone()).or_insert((0, false));
        if entry.1 {
            return Err(fail(FOLLOWS_CLOSED.into()));
        }
        if env.seq != entry.0 + 1 {
            return Err(fail(gap(entry.0, env.seq)));
        }
        *entry = (env.seq, env.event.closes_stream());
        prev = Some((id, recorded));
        position += 1;
    }
    Ok(position)
}

fn events_of(ks: &LogKeyspaces) -> Vec<(Ulid, Vec<u8>)> {
    ks.scan(None)
        .map(|item| {
            let (id, value) = item.unwrap();
            (id, value.to_vec())
        })
        .collect()
}

/// Rewrites the stored hashes from event `from` on, as a forger who rewrites the rest of the
/// chain does.
fn rechain(ks: &LogKeyspaces, from: usize) {
    let all = events_of(ks);
    let mut prev = from
        .checked_sub(1)
        .and_then(|i| all.get(i))
        .map_or(GENESIS_HASH, |(_, v)| v[..32].try_into().unwrap());
    for (id, value) in all.into_iter().skip(from) {
        let body = &value[32..];
        let hash = envelope::chain_hash(&prev, body);
        let mut stored = hash.to_vec();
        stored.extend_from_slice(body);
        ks.events.insert(id.to_bytes(), stored).unwrap();
        prev = hash;
    }
}

fn body_of(ks: &LogKeyspaces, at: usize) -> (Ulid, Vec<u8>, String) {
    let (id, value) = events_of(ks).swap_remove(at);
    let body = String::from_utf8(value[32..].to_vec()).unwrap();
    (id, value, body)
}

fn put_body(ks: &LogKeyspaces, id: Ulid, hash: &[u8], body: &str) {
    let mut stored = hash.to_vec();
    stored.extend_from_slice(body.as_bytes());
    ks.events.insert(id.to_bytes(), stored).unwrap();
}

/// Each way of tampering with event `at`.
const TAMPERINGS: usize = 7;

fn tamper(ks: &LogKeyspaces, kind: usize, at: usize) {
    let (id, value, body) = body_of(ks, at);
    match kind {
        // A byte of the body changed, the hash left: the chain breaks there.
        0 => put_body(
            ks,
            id,
            &value[..32],
            &body.replacen("0xowner", "0xother", 1),
        ),
        // The same, its own hash recomputed: the chain breaks at the next event.
        1 => {
            let forged = body.replacen("0xowner", "0xother", 1);
            let prev = at.checked_sub(1).map_or(GENESIS_HASH, |i| {
                events_of(ks)[i].1[..32].try_into().unwrap()
            });
            put_body(
                ks,
                id,
                &envelope::chain_hash(&prev, forged.as_bytes()),
                &forged,
            );
        }
        // The sequence number moved on, the rest of the chain rewritten: a gap.
        2 => {
            let seq = envelope::decode(&value).unwrap().seq;
            put_body(
                ks,
                id,
                &value[..32],
                &body.replacen(
                    &format!("\"seq\":{seq},"),
                    &format!("\"seq\":{},", seq + 5),
                    1,
                ),
            );
            rechain(ks, at);
        }
        // The event removed, the chain rewritten: a gap in its stream, if it has a later event.
        3 => {
            ks.events.remove(id.to_bytes()).unwrap();
            rechain(ks, at);
        }
        // A body that is not JSON, chained.
        4 => {
            put_body(ks, id, &value[..32], &body[..body.len() / 2]);
            rechain(ks, at);
        }
        // A body naming another event's ULID, chained.
        5 => {
            let other = Ulid::from(u128::from(id) ^ 1);
            put_body(
                ks,
                id,
                &value[..32],
                &body.replacen(&id.to_string(), &other.to_string(), 1),
            );
            rechain(ks, at);
        }
        // A stored value shorter than a hash.
        _ => ks.events.insert(id.to_bytes(), &value[..10]).unwrap(),
    }
}

#[test]
fn a_clean_log_verifies_whatever_its_slices() {
    let dir = tempfile::tempdir().unwrap();
    let ks = sample_log(dir.path());
    let events = reference(&ks).unwrap();
    for (workers, slices) in [(1, 1), (2, 3), (2, 7), (3, 40), (2, 1000)] {
        let report = verify_in_slices(&ks, workers, slices, &|_| {}, |_| false, |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(report.events, events);
        assert_eq!(report.streams, 8);
        let (last_id, last_value) = events_of(&ks).pop().unwrap();
        assert_eq!(
            report.head,
            Some((last_id, last_value[..32].try_into().unwrap()))
        );
    }
}

#[test]
fn the_first_bad_event_is_named_as_one_pass_names_it() {
    for kind in 0..TAMPERINGS {
        for at in [0usize, 1, 7, 8, 13, 20, 26, 33, 39] {
            let dir = tempfile::tempdir().unwrap();
            let ks = sample_log(dir.path());
            tamper(&ks, kind, at);
            let expected = reference(&ks);
            for (workers, slices) in [(1, 1), (2, 3), (2, 5), (3, 16), (2, 1000)] {
                let found = verify_in_slices(&ks, workers, slices, &|_| {}, |_| false, |_| {})
                    .unwrap()
                    .map(|report| report.events);
                assert_eq!(
                    found, expected,
                    "tampering {kind} at event {at}, {slices} slices"
                );
            }
        }
    }
}

#[test]
fn the_wanted_events_are_visited_in_log_order_up_to_the_first_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let ks = sample_log(dir.path());
    let deleted = |e: &Event| matches!(e, Event::TaskDeleted(_));
    let all: Vec<Ulid> = events_of(&ks)
        .into_iter()
        .filter(|(_, v)| deleted(&envelope::decode(v).unwrap().event))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(all.len(), 3);
    let mut seen = Vec::new();
    verify_in_slices(&ks, 2, 9, &|_| {}, deleted, |e| seen.push(e.id))
        .unwrap()
        .unwrap();
    assert_eq!(seen, all);
    // Break the chain at the second deletion: only the first is visited.
    let at = events_of(&ks)
        .iter()
        .position(|(id, _)| *id == all[1])
        .unwrap();
    tamper(&ks, 0, at);
    let mut seen = Vec::new();
    let failure = verify_in_slices(&ks, 2, 9, &|_| {}, deleted, |e| seen.push(e.id))
        .unwrap()
        .unwrap_err();
    assert_eq!(failure.position, at as u64);
    assert_eq!(seen, all[..1]);
}
