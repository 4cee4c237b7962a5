//! Per-owner quotas (tasks, secrets, wallets) are counted from the projections and decided before
//! the append. Two creations of one owner at the same moment each counted the other's absence and
//! both passed: 40 concurrent CreateSecret at 190 secrets made 230 against a limit of 200. A
//! creation that counts against a quota holds its owner's slot from the count to the end of its
//! append, so that one owner's creations are decided one after the other, each on a count that
//! includes the one before.
//!
//! The slots are striped by a hash of the owner: their memory is bounded whatever the number of
//! owners, and two owners who share a stripe only wait for each other's short creations. The
//! writer decides every command, so the slots are where the decisions are made.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

/// How many stripes: enough that unrelated owners rarely share one.
const STRIPES: usize = 256;

/// One lock per stripe of owners.
#[derive(Debug)]
pub struct OwnerSlots {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Default for OwnerSlots {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl OwnerSlots {
    /// Waits for `owner`'s slot; the creation holds the guard until its append has landed.
    pub async fn hold(&self, owner: &str) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(owner) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_owners_holders_never_overlap() {
        let slots = Arc::new(OwnerSlots::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (slots, inside, most) = (slots.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _slot = slots.hold("0xowner").await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }
}
