//! One owner's share of the JavaScript workers. Every script runs for an owner (the one whose
//! execution or preview it belongs to, set with [`as_owner`] around the run); the queue serves
//! owners in turn, one script each, so that one user's busy scripts never hold the workers while
//! another user's trivial run waits behind them (the review saw ~9.7 s). Each owner also has a
//! budget of worker time per minute: past it, their scripts fail at once, without a worker, until
//! the minute rolls over.
//!
//! The owner travels as a task-local value rather than as an argument of every script: every
//! node, template and condition of a run is awaited inside the run's own task, so scoping the run
//! once covers them all. A script outside any scope (the sandbox's own tests) has no owner and no
//! budget.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

tokio::task_local! {
    static OWNER: Arc<str>;
}

/// How long an owner's budget of worker time lasts before it is renewed.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// Runs `run` with every script it submits counted to `owner`.
pub async fn as_owner<F: Future>(owner: &str, run: F) -> F::Output {
    OWNER.scope(Arc::from(owner), run).await
}

/// The owner of the scripts submitted here (`""`: none).
pub(super) fn current_owner() -> Arc<str> {
    OWNER.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(""))
}

/// Jobs queued per owner, served in turn.
#[derive(Debug)]
pub(super) struct FairQueue<J> {
    queues: HashMap<Arc<str>, VecDeque<J>>,
    /// Owners with queued jobs, in the order they are served next.
    turns: VecDeque<Arc<str>>,
}

impl<J> Default for FairQueue<J> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            turns: VecDeque::new(),
        }
    }
}

impl<J> FairQueue<J> {
    pub(super) fn push(&mut self, owner: Arc<str>, job: J) {
        let queue = self.queues.entry(owner.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(owner);
        }
        queue.push_back(job);
    }

    /// The next owner's first job; the owner goes to the back of the turns if it has more.
    pub(super) fn pop(&mut self) -> Option<(Arc<str>, J)> {
        let owner = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&owner)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&owner);
        } else {
            self.turns.push_back(owner.clone());
        }
        Some((owner, job))
    }
}

/// Worker time used per owner in the current window.
#[derive(Debug)]
pub(super) struct Budgets {
    per_window: Option<Duration>,
    used: HashMap<Arc<str>, (Instant, Duration)>,
}

impl Budgets {
    pub(super) fn new(per_window: Option<Duration>) -> Self {
        Self {
            per_window,
            used: HashMap::new(),
        }
    }

    /// The budget, when `owner` has spent it in this window (an owner-less script has none).
    pub(super) fn spent(&mut self, owner: &str, now: Instant) -> Option<Duration> {
        let budget = self.per_window?;
        if owner.is_empty() {
            return None;
        }
        let (since, used) = self.used.get(owner)?;
        if now.duration_since(*since) >= BUDGET_WINDOW {
            self.used.remove(owner);
            return None;
        }
        (*used >= budget).then_some(budget)
    }

    /// Counts `elapsed` of worker time to `owner`.
    pub(super) fn charge(&mut self, owner: &Arc<str>, elapsed: Duration, now: Instant) {
        if self.per_window.is_none() || owner.is_empty() {
            return;
        }
        let entry = self
            .used
            .entry(owner.clone())
            .or_insert((now, Duration::ZERO));
        if now.duration_since(entry.0) >= BUDGET_WINDOW {
            *entry = (now, Duration::ZERO);
        }
        entry.1 += elapsed;
        // Owners whose window ended long ago are forgotten, so the map holds recent owners only.
        if self.used.len() > 4096 {
            self.used
                .retain(|_, (since, _)| now.duration_since(*since) < BUDGET_WINDOW);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_busy_owner_when_another_queues_then_they_take_turns() {
        let mut queue = FairQueue::default();
        let (busy, other): (Arc<str>, Arc<str>) = (Arc::from("0xbusy"), Arc::from("0xother"));
        for i in 0..5 {
            queue.push(busy.clone(), format!("busy {i}"));
        }
        queue.push(other.clone(), "other 0".to_owned());
        let order: Vec<String> = std::iter::from_fn(|| queue.pop().map(|(_, job)| job)).collect();
        assert_eq!(
            order,
            ["busy 0", "other 0", "busy 1", "busy 2", "busy 3", "busy 4"]
        );
        assert!(queue.pop().is_none());
    }

    #[test]
    fn given_a_spent_budget_then_scripts_fail_until_the_window_rolls_over() {
        let mut budgets = Budgets::new(Some(Duration::from_secs(2)));
        let owner: Arc<str> = Arc::from("0xowner");
        let start = Instant::now();
        assert_eq!(budgets.spent(&owner, start), None);
        budgets.charge(&owner, Duration::from_millis(1500), start);
        assert_eq!(budgets.spent(&owner, start), None);
        budgets.charge(&owner, Duration::from_millis(600), start);
        assert_eq!(
            budgets.spent(&owner, start + Duration::from_secs(1)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(budgets.spent("0xsomeone-else", start), None);
        assert_eq!(budgets.spent(&owner, start + BUDGET_WINDOW), None);
        let mut unlimited = Budgets::new(None);
        unlimited.charge(&owner, Duration::from_secs(600), start);
        assert_eq!(unlimited.spent(&owner, start), None);
    }
}
