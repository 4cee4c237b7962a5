//! Repeats of a call whose answer the caller never got (row X6 of the original's behaviour).
//!
//! The official client repeats a call by itself (up to 3 times, 1 s apart) after a timeout,
//! UNAVAILABLE or RESOURCE_EXHAUSTED; a repeat of a `CreateTask` or `TriggerTask` whose first
//! answer was lost must not make a second task or run. But two presses of "run" are two runs, as
//! in the original. Without an `idempotency-key` header (which the log dedups durably), an
//! identical call (same caller, same request bytes: `digest`) is therefore collapsed into the
//! first only when the first could not have answered the caller:
//!
//! - it is still running when the repeat arrives: the repeat waits for it and gets its answer;
//! - it finished after the caller had stopped waiting: past the deadline the caller sent with it
//!   (`grpc-timeout`), or after the caller's call was dropped (the deadline passed or the
//!   connection went away). The repeat then gets the first's answer, within `window`.
//!
//! A first that answered in time, or that failed, leaves nothing behind: the next identical call
//! is a new command. The work of a call runs in a task of its own, so a dropped call still
//! finishes what it started and its answer can go to the repeat. What is held is bounded
//! (`MAX_HELD` answers); past that, calls are simply not collapsed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::Status;

/// The calls whose repeats collapse, by kind.
#[derive(Debug, Default)]
pub struct CallRepeats {
    /// `CreateTask`: the new task's id.
    pub creates: Arc<Repeats<String>>,
    /// `TriggerTask`: its answer.
    pub triggers: Arc<Repeats<crate::pb::TriggerTaskResp>>,
}

/// Answers held at most, running calls included.
const MAX_HELD: usize = 10_000;

type Answer<T> = Result<T, Status>;

enum Entry<T> {
    Running(watch::Receiver<Option<Answer<T>>>),
    /// Finished after its caller stopped waiting: repeats until `until` get `answer`.
    Unanswered {
        answer: T,
        until: Instant,
    },
}

/// The calls of one kind (creates, triggers) whose repeats collapse.
pub struct Repeats<T> {
    entries: Mutex<HashMap<[u8; 32], Entry<T>>>,
}

impl<T> Default for Repeats<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for Repeats<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("Repeats").field("held", &held).finish()
    }
}

/// The digest of a call: who calls, which method, the request's bytes (maps are ordered, so the
/// same request always has the same bytes).
pub fn digest(caller: &str, method: &str, request: &impl prost::Message) -> [u8; 32] {
    Sha256::new()
        .chain_update(caller.as_bytes())
        .chain_update([0])
        .chain_update(method.as_bytes())
        .chain_update([0])
        .chain_update(request.encode_to_vec())
        .finalize()
        .into()
}

/// The deadline a caller sent (`grpc-timeout`: digits and a unit, H M S m u n).
pub fn deadline(metadata: &tonic::metadata::MetadataMap, now: Instant) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let unit = text.chars().last()?;
    let amount: u64 = text.get(..text.len() - unit.len_utf8())?.parse().ok()?;
    let timeout = match unit {
        'H' => Duration::from_secs(amount.saturating_mul(3600)),
        'M' => Duration::from_secs(amount.saturating_mul(60)),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    };
    now.checked_add(timeout)
}

/// Marks the caller as gone when the call's future is dropped before it answered.
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<T: Clone + Send + Sync + 'static> Repeats<T> {
    /// Runs `work` as the call `key` (its caller waits until `deadline`), or answers with the
    /// first identical call's answer when that one could not answer its caller.
    pub async fn run<F>(
        self: &Arc<Self>,
        key: [u8; 32],
        deadline: Option<Instant>,
        window: Duration,
        work: F,
    ) -> Answer<T>
    where
        F: Future<Output = Answer<T>> + Send + 'static,
    {
        let mut work = Some(work);
        loop {
            let (running, sender) = {
                let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match entries.get(&key) {
                    Some(Entry::Running(receiver)) => (Some(receiver.clone()), None),
                    Some(Entry::Unanswered { answer, until }) if *until > now => {
                        return Ok(answer.clone());
                    }
                    _ => {
                        entries.remove(&key);
                        if entries.len() >= MAX_HELD {
                            entries.retain(|_, e| match e {
                                Entry::Running(_) => true,
                                Entry::Unanswered { until, .. } => *until > now,
                            });
                        }
                        if entries.len() >= MAX_HELD {
                            (None, None)
                        } else {
                            let (sender, receiver) = watch::channel(None);
                            entries.insert(key, Entry::Running(receiver));
                            (None, Some(sender))
                        }
                    }
                }
            };
            if let Some(mut receiver) = running {
                // The first is still running: its answer is this one's, unless it failed (then
                // this call is tried anew).
                let answer = match receiver.wait_for(Option::is_some).await {
                    Ok(answer) => answer.clone(),
                    Err(_) => {
                        // Its work ended without an answer (it panicked): forget it.
                        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(Entry::Running(r)) = entries.get(&key)
                            && r.has_changed().is_err()
                        {
                            entries.remove(&key);
                        }
                        None
                    }
                };
                match answer {
                    Some(Ok(answer)) => return Ok(answer),
                    _ => continue,
                }
            }
            let Some(work) = work.take() else {
                return Err(super::error::internal(
                    "a repeated call lost its work",
                    "none",
                ));
            };
            let Some(sender) = sender else {
                // Too much held: run without collapsing.
                return work.await;
            };
            let gone = Arc::new(AtomicBool::new(false));
            let waiting = Waiting(gone.clone());
            let repeats = Arc::clone(self);
            let task = tokio::spawn(async move {
                let answer = work.await;
                let unanswered =
                    gone.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() > d);
                let mut entries = repeats.entries.lock().unwrap_or_else(|p| p.into_inner());
                match (&answer, unanswered) {
                    (Ok(value), true) => {
                        entries.insert(
                            key,
                            Entry::Unanswered {
                                answer: value.clone(),
                                until: Instant::now() + window,
                            },
                        );
                    }
                    _ => {
                        entries.remove(&key);
                    }
                }
                drop(entries);
                let _ = sender.send(Some(answer.clone()));
                answer
            });
            let answer = task
                .await
                .unwrap_or_else(|e| Err(super::error::internal("the call's work failed", e)));
            drop(waiting);
            return answer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    const WINDOW: Duration = Duration::from_secs(60);

    fn counted(
        runs: &Arc<AtomicUsize>,
        answer: Answer<u32>,
    ) -> impl Future<Output = Answer<u32>> + Send + 'static {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            answer
        }
    }

    #[tokio::test]
    async fn given_a_first_that_answered_in_time_when_it_is_repeated_then_it_runs_again() {
        let repeats = Arc::new(Repeats::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let far = Some(Instant::now() + WINDOW);
        assert_eq!(
            repeats
                .run([1; 32], far, WINDOW, counted(&runs, Ok(1)))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            repeats
                .run([1; 32], far, WINDOW, counted(&runs, Ok(2)))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "two presses of run are two runs"
        );
    }

    #[tokio::test]
    async fn given_a_first_still_running_when_it_is_repeated_then_the_repeat_gets_its_answer() {
        let repeats = Arc::new(Repeats::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let first = {
            let repeats = repeats.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                repeats
                    .run([2; 32], None, WINDOW, async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = released.await;
                        Ok(7)
                    })
                    .await
            })
        };
        // The first is running once its entry is there.
        while !matches!(
            repeats.entries.lock().unwrap().get(&[2; 32]),
            Some(Entry::Running(_))
        ) {
            tokio::task::yield_now().await;
        }
        let repeat = {
            let repeats = repeats.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                repeats
                    .run([2; 32], None, WINDOW, counted(&runs, Ok(8)))
                    .await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 7);
        assert_eq!(repeat.await.unwrap().unwrap(), 7, "the first's answer");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(
            repeats.entries.lock().unwrap().is_empty(),
            "answered in time: nothing held"
        );
    }

    #[tokio::test]
    async fn given_a_first_finished_past_its_deadline_when_it_is_repeated_then_it_is_collapsed() {
        let repeats = Arc::new(Repeats::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let past = Instant::now().checked_sub(Duration::from_millis(1));
        assert_eq!(
            repeats
                .run([3; 32], past, WINDOW, counted(&runs, Ok(1)))
                .await
                .unwrap(),
            1
        );
        let again = repeats
            .run([3; 32], None, WINDOW, counted(&runs, Ok(2)))
            .await;
        assert_eq!(again.unwrap(), 1, "the first's answer");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Past the window, a new command.
        repeats
            .run([4; 32], past, Duration::ZERO, counted(&runs, Ok(1)))
            .await
            .unwrap();
        let later = repeats
            .run([4; 32], None, WINDOW, counted(&runs, Ok(5)))
            .await;
        assert_eq!(later.unwrap(), 5);
    }

    #[tokio::test]
    async fn given_a_first_whose_caller_left_when_it_finishes_then_a_repeat_gets_its_answer() {
        let repeats = Arc::new(Repeats::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        let first = {
            let repeats = repeats.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                repeats
                    .run([5; 32], None, WINDOW, async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = released.await;
                        let _ = done.send(());
                        Ok(9)
                    })
                    .await
            })
        };
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The caller hangs up; the work goes on and finishes.
        first.abort();
        let _ = first.await;
        release.send(()).unwrap();
        finished.await.unwrap();
        while matches!(
            repeats.entries.lock().unwrap().get(&[5; 32]),
            Some(Entry::Running(_))
        ) {
            tokio::task::yield_now().await;
        }
        let again = repeats
            .run([5; 32], None, WINDOW, counted(&runs, Ok(1)))
            .await;
        assert_eq!(again.unwrap(), 9);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn given_a_failed_first_when_it_is_repeated_then_it_runs_again() {
        let repeats = Arc::new(Repeats::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let past = Instant::now().checked_sub(Duration::from_millis(1));
        let failed = repeats
            .run(
                [6; 32],
                past,
                WINDOW,
                counted(&runs, Err(crate::rpc::error::rate_limited("runs"))),
            )
            .await;
        assert!(failed.is_err());
        assert_eq!(
            repeats
                .run([6; 32], None, WINDOW, counted(&runs, Ok(3)))
                .await
                .unwrap(),
            3
        );
    }

    #[test]
    fn digests_and_deadlines() {
        let mut a = crate::pb::ManualTrigger::default();
        let mut config = crate::pb::manual_trigger::Config::default();
        config.headers.insert("b".into(), "2".into());
        config.headers.insert("a".into(), "1".into());
        a.config = Some(config.clone());
        let mut reordered = crate::pb::manual_trigger::Config::default();
        reordered.headers.insert("a".into(), "1".into());
        reordered.headers.insert("b".into(), "2".into());
        let b = crate::pb::ManualTrigger {
            config: Some(reordered),
        };
        assert_eq!(
            digest("me", "m", &a),
            digest("me", "m", &b),
            "maps in any order"
        );
        assert_ne!(digest("me", "m", &a), digest("you", "m", &a));
        assert_ne!(digest("me", "m", &a), digest("me", "n", &a));

        let now = Instant::now();
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(deadline(&metadata, now), None);
        metadata.insert("grpc-timeout", "1500m".parse().unwrap());
        assert_eq!(
            deadline(&metadata, now),
            Some(now + Duration::from_millis(1500))
        );
        metadata.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(deadline(&metadata, now), Some(now + Duration::from_secs(2)));
        metadata.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(deadline(&metadata, now), None);
    }
}
