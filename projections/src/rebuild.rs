//! A rebuild from scratch: every projection's rows from the whole log, into empty keyspaces.
//!
//! The rows gather in memory (`Tx::bulk`) and are written by sorted ingestion: when they outgrow
//! the memory given (a spill) and at the end. The projections are split over two lanes, each
//! with a `Tx` of its own on a thread of its own: the executions view, whose rows every event of
//! every run changes, on one (the calling thread, which also receives the decoded events), all
//! the others on the other. A projection writes and reads only its own keyspace, so the lanes
//! share nothing but the decoded events (handed to both in batches behind an `Arc`) and the
//! memory budget: each lane publishes the bytes it holds, and spills when its rows pass what the
//! other leaves of the budget.
//!
//! On one thread the projections' `apply` was most of a rebuild's wall time (the decoding
//! workers waiting on it): 4.8 M events, 60 s, of which the applying thread was busy ~50 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use events::fjall::Database;
use events::{Envelope, LogKeyspaces, Tx, Ulid};

use crate::{Projection, executions};

/// Events handed to the lanes at a time.
const BATCH: usize = 1024;

/// What a rebuild did.
pub(crate) struct Rebuilt {
    /// The last event applied.
    pub last: Option<Ulid>,
    pub applied: u64,
    pub spills: u32,
}

/// Applies the whole log in `source` to `all`, whose keyspaces in `db` are empty, holding about
/// `memory` bytes of rows; checks whether to spill every `check_every` events. The rows are in
/// their keyspaces when it returns (not yet persisted); checkpoints are the caller's.
pub(crate) fn rebuild(
    all: &[Box<dyn Projection>],
    db: &Database,
    source: &LogKeyspaces,
    memory: usize,
    check_every: usize,
    progress: &dyn Fn(u64),
) -> events::Result<Rebuilt> {
    let (heavy, others): (Vec<&dyn Projection>, Vec<&dyn Projection>) = all
        .iter()
        .map(AsRef::as_ref)
        .partition(|p| p.name() == executions::NAME);
    let held = [AtomicUsize::new(0), AtomicUsize::new(0)];
    // Set when the calling thread's lane fails: the other then stops without ingesting what it
    // gathered.
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let check_every = check_every.max(1);
    let progress_every = u64::try_from(check_every).unwrap_or(u64::MAX);
    std::thread::scope(|scope| {
        let (hand, batches) = sync_channel::<Arc<Vec<Envelope>>>(4);
        let mut theirs = Lane::new(others, db, memory, &held, 1);
        let other = scope.spawn(|| -> events::Result<u32> {
            for batch in batches {
                theirs.apply(&batch, check_every)?;
            }
            if failed.load(Ordering::Relaxed) {
                return Ok(0);
            }
            theirs.finish()
        });
        let mut mine = Lane::new(heavy, db, memory, &held, 0);
        let mut batch = Vec::with_capacity(BATCH);
        let mut last = None;
        let mut applied = 0u64;
        let hand_over = move |batch: Vec<Envelope>, mine: &mut Lane<'_>| -> events::Result<()> {
            let batch = Arc::new(batch);
            hand.send(Arc::clone(&batch)).map_err(|_| stopped())?;
            mine.apply(&batch, check_every)
        };
        let read = events::for_each_decoded(source, None, threads, |envelope| {
            last = Some(envelope.id);
            applied += 1;
            batch.push(envelope);
            if batch.len() == BATCH {
                hand_over(
                    std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
                    &mut mine,
                )?;
            }
            if applied.is_multiple_of(progress_every) {
                progress(applied);
            }
            Ok(())
        })
        .and_then(|()| {
            if batch.is_empty() {
                Ok(())
            } else {
                hand_over(std::mem::take(&mut batch), &mut mine)
            }
        });
        if read.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        // Dropping the sender ends the other lane once it has every batch (or this one failed).
        drop(hand_over);
        let mine = read.and_then(|()| mine.finish());
        let theirs = other.join().unwrap_or_else(|_| {
            Err(events::Error::Corrupt(
                "a thread rebuilding projections panicked".into(),
            ))
        });
        // The other lane's failure first: this one's "stopped" only says that it failed.
        let spills = theirs? + mine?;
        Ok(Rebuilt {
            last,
            applied,
            spills,
        })
    })
}

fn stopped() -> events::Error {
    events::Error::Corrupt("the other rebuilding thread stopped".into())
}

/// Some of the projections, with the rows they gathered.
struct Lane<'a> {
    projections: Vec<&'a dyn Projection>,
    db: &'a Database,
    tx: Tx,
    memory: usize,
    /// The bytes each lane holds (rows gathered, cached, spilled keys' fingerprints), as each
    /// last published them.
    held: &'a [AtomicUsize; 2],
    me: usize,
    since_check: usize,
    spills: u32,
}

impl<'a> Lane<'a> {
    fn new(
        projections: Vec<&'a dyn Projection>,
        db: &'a Database,
        memory: usize,
        held: &'a [AtomicUsize; 2],
        me: usize,
    ) -> Self {
        Self {
            projections,
            db,
            // The read cache of each lane keeps up to a quarter of the memory.
            tx: Tx::bulk(memory / 2),
            memory,
            held,
            me,
            since_check: 0,
            spills: 0,
        }
    }

    fn apply(&mut self, batch: &[Envelope], check_every: usize) -> events::Result<()> {
        if self.projections.is_empty() {
            return Ok(());
        }
        for envelope in batch {
            for projection in &self.projections {
                projection.apply(envelope, &mut self.tx)?;
            }
            self.since_check += 1;
            if self.since_check >= check_every {
                self.since_check = 0;
                self.check()?;
            }
        }
        Ok(())
    }

    /// Spills the rows gathered if they pass their share of the memory; publishes what this lane
    /// holds.
    fn check(&mut self) -> events::Result<()> {
        self.tx.drain_into(&mut self.db.batch())?;
        // The rows may take what is left of the budget beside this lane's cache and
        // fingerprints and everything the other lane holds, and at least an eighth of it.
        let other = self.held[1 - self.me].load(Ordering::Relaxed);
        let kept = self.tx.cached_bytes() + self.tx.spilled_bytes();
        let room = self
            .memory
            .saturating_sub(kept + other)
            .max(self.memory / 8);
        if self.tx.pending_bytes() > room {
            self.tx.spill()?;
            self.spills += 1;
        }
        let holding = self.tx.pending_bytes() + self.tx.cached_bytes() + self.tx.spilled_bytes();
        self.held[self.me].store(holding, Ordering::Relaxed);
        Ok(())
    }

    /// Writes what is left; the number of spills before.
    fn finish(mut self) -> events::Result<u32> {
        self.tx.drain_into(&mut self.db.batch())?;
        self.tx.finish_bulk()?;
        Ok(self.spills)
    }
}
