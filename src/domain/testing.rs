//! The given/when/then helpers of the domain's tests, written once: `given` folds events into
//! the state a rule decides on, exactly as the projections do, with no storage.
//!
//! A task's state is its projection row (`TaskRow`): the domain decides on what the read side
//! folds, where cqrs-es keeps `Aggregate::apply` apart from `View::update`. One fold serves both,
//! and the property test that incremental projections equal a rebuild covers it.

use events::{Envelope, Event, Ulid};
use projections::tasks::TaskRow;

/// `events` as they would be stored on `stream`, one a millisecond from t = 1 s.
pub fn envelopes(stream: &str, events: Vec<Event>) -> Vec<Envelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Envelope {
            id: Ulid::from_parts(1_000 + i as u64, i as u128),
            stream: stream.into(),
            seq: i as u64 + 1,
            recorded_at: 1_000 + i as u64,
            actor: "0xowner".into(),
            idempotency: None,
            stored_version: 1,
            event,
            hash: [0; 32],
        })
        .collect()
}

/// A task's state after `events` (the first creates it).
pub fn given(events: Vec<Event>) -> TaskRow {
    let mut row: Option<TaskRow> = None;
    for env in envelopes("task:t", events) {
        match (&env.event, row.as_mut()) {
            (Event::TaskCreated(c), None) => row = Some(TaskRow::created(&env, c)),
            (_, Some(r)) => r.apply(&env),
            _ => panic!("the first event must create the task"),
        }
    }
    row.expect("given at least the creation")
}
