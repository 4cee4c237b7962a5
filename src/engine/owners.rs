//! One owner's share of the engine: at most `engine.owner_concurrency` of their executions run at
//! once (the rest wait their turn, queued), and at most `engine.owner_pending` are queued or
//! running; a firing beyond that is refused (RESOURCE_EXHAUSTED) before anything is recorded. So
//! one user's flood of runs takes a bounded part of the engine's `concurrency`, and the others'
//! runs start beside it.
//!
//! The counts live in memory: on start the engine schedules every pending execution again, which
//! counts them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One owner's executions in the engine.
#[derive(Debug)]
struct Load {
    /// Queued or running.
    pending: usize,
    /// Permits of running at once.
    running: Arc<Semaphore>,
}

/// Every owner with executions in the engine.
#[derive(Debug)]
pub struct Owners {
    concurrency: usize,
    pending_limit: usize,
    loads: Mutex<HashMap<String, Load>>,
}

impl Owners {
    pub fn new(concurrency: usize, pending_limit: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            pending_limit: pending_limit.max(1),
            loads: Mutex::new(HashMap::new()),
        }
    }

    /// The most executions one owner may have queued or running.
    pub fn pending_limit(&self) -> usize {
        self.pending_limit
    }

    /// Whether `owner` may queue one more execution.
    pub fn admits(&self, owner: &str) -> bool {
        self.lock()
            .get(owner)
            .is_none_or(|load| load.pending < self.pending_limit)
    }

    /// One more execution of `owner` queued.
    pub fn queued(&self, owner: &str) {
        let concurrency = self.concurrency;
        self.lock()
            .entry(owner.to_owned())
            .or_insert_with(|| Load {
                pending: 0,
                running: Arc::new(Semaphore::new(concurrency)),
            })
            .pending += 1;
    }

    /// Waits for one of `owner`'s running slots (held for the whole run).
    pub async fn slot(&self, owner: &str) -> Option<OwnedSemaphorePermit> {
        let running = self.lock().get(owner).map(|load| load.running.clone())?;
        running.acquire_owned().await.ok()
    }

    /// One execution of `owner` finished (or stopped at shutdown).
    pub fn finished(&self, owner: &str) {
        let mut loads = self.lock();
        if let Some(load) = loads.get_mut(owner) {
            load.pending = load.pending.saturating_sub(1);
            if load.pending == 0 {
                loads.remove(owner);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Load>> {
        self.loads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_owner_at_the_limit_then_they_are_refused_and_others_are_not() {
        let owners = Owners::new(2, 3);
        for _ in 0..3 {
            assert!(owners.admits("0xbusy"));
            owners.queued("0xbusy");
        }
        assert!(!owners.admits("0xbusy"));
        assert!(owners.admits("0xother"));
        owners.finished("0xbusy");
        assert!(owners.admits("0xbusy"));
    }

    #[tokio::test]
    async fn given_an_owner_running_at_their_concurrency_then_the_next_waits() {
        let owners = Owners::new(1, 10);
        owners.queued("0xbusy");
        owners.queued("0xbusy");
        let first = owners.slot("0xbusy").await;
        assert!(first.is_some());
        let second =
            tokio::time::timeout(std::time::Duration::from_millis(20), owners.slot("0xbusy")).await;
        assert!(second.is_err(), "waits while the first runs");
        drop(first);
        assert!(owners.slot("0xbusy").await.is_some());
    }
}
