//! The pulse: the last hour of the log, folded in memory into per-minute series: firings,
//! executions and failures, trigger-to-finished latencies, each operator's reports and
//! attestations, and the firings that operators reported but no quorum attested.
//!
//! - `Series`: the fold, pure (`observe` an event's meaning at a time, `view` at a time);
//! - `Pulse`: a `Series` fed by tailing the log from a cursor (`catch_up`); the first time the
//!   pulse is asked for (`view_of`: the console's page or stream, a `/metrics` scrape), it reads
//!   the log from the ULID of one hour before, so the series are rebuilt from the log itself
//!   (ULIDs sort by time) and a restart shows the same hour. Until someone asks, nothing reads
//!   the log for it: a start-up on a busy hour's log (2 M events: ~3 s of CPU) does not pay for
//!   a chart no one has looked at.
//!
//! Nothing here is a source of truth: it is derived from the log and thrown away at shutdown.
//! Latency runs from the trigger (the first operator's report of the firing, or the client's
//! `TriggerTask`) to `ExecutionFinished`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use events::event::Event;
use events::execution::FiringSource;
use events::{Envelope, Ulid};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::store::Store;

/// Minutes the series cover.
pub const WINDOW_MINUTES: u64 = 60;
const MINUTE_MS: u64 = 60_000;
const WINDOW_MS: u64 = WINDOW_MINUTES * MINUTE_MS;
/// A firing reported this long ago without a quorum counts as not reaching one.
pub const QUORUM_PATIENCE_MS: u64 = 60_000;
/// Latencies above this are recorded as this (a day).
const MAX_LATENCY_MS: u64 = 86_400_000;
/// Events read per `catch_up` call: a long backlog is read in several passes.
pub const EVENTS_PER_PASS: usize = 20_000;

/// What one event tells the pulse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A firing was accepted (`TaskTriggered`).
    Fired,
    Finished {
        failed: bool,
        latency_ms: Option<u64>,
    },
    /// An operator's report of the firing whose stream is `firing`.
    Reported { operator: String, firing: String },
    Attested {
        signers: Vec<String>,
        firing: String,
    },
}

#[derive(Debug)]
struct Minute {
    /// Minutes since the epoch.
    minute: u64,
    firings: u64,
    executions: u64,
    failures: u64,
    latency: Option<Histogram<u64>>,
    reports: HashMap<String, u64>,
    attestations: HashMap<String, u64>,
}

impl Minute {
    fn new(minute: u64) -> Self {
        Self {
            minute,
            firings: 0,
            executions: 0,
            failures: 0,
            latency: None,
            reports: HashMap::new(),
            attestations: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FiringWatch {
    first_report_ms: u64,
    attested: bool,
}

/// The per-minute series of the last hour.
#[derive(Debug, Default)]
pub struct Series {
    /// Oldest first.
    minutes: VecDeque<Minute>,
    firings: HashMap<String, FiringWatch>,
}

/// One minute of the chart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MinuteView {
    /// The minute's start (ms since the epoch).
    pub at_ms: u64,
    pub firings: u64,
    pub executions: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub firings: u64,
    pub executions: u64,
    pub failures: u64,
}

/// Trigger-to-finished latency over the window (ms); `None` without executions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OperatorActivity {
    pub reports: u64,
    pub attestations: u64,
}

/// The series as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PulseView {
    pub window_minutes: u64,
    /// `WINDOW_MINUTES` minutes, oldest first, the current one last.
    pub minutes: Vec<MinuteView>,
    pub last_hour: Totals,
    pub latency: Latency,
    /// By operator address: reports and attestations signed in the window.
    pub operators: BTreeMap<String, OperatorActivity>,
    /// Firings reported more than `QUORUM_PATIENCE_MS` ago (within the window) that no quorum
    /// has attested.
    pub awaiting_quorum: u64,
}

impl Series {
    /// Folds what an event recorded at `at_ms` says. Events older than the window before
    /// `now_ms` are ignored.
    pub fn observe(&mut self, at_ms: u64, what: Observed, now_ms: u64) {
        if at_ms + WINDOW_MS <= now_ms {
            return;
        }
        match what {
            Observed::Fired => self.minute(at_ms).firings += 1,
            Observed::Finished { failed, latency_ms } => {
                let minute = self.minute(at_ms);
                minute.executions += 1;
                if failed {
                    minute.failures += 1;
                }
                if let Some(ms) = latency_ms {
                    let histogram = minute.latency.get_or_insert_with(new_histogram);
                    histogram.saturating_record(ms.clamp(1, MAX_LATENCY_MS));
                }
            }
            Observed::Reported { operator, firing } => {
                *self.minute(at_ms).reports.entry(operator).or_default() += 1;
                self.firings.entry(firing).or_insert(FiringWatch {
                    first_report_ms: at_ms,
                    attested: false,
                });
            }
            Observed::Attested { signers, firing } => {
                let minute = self.minute(at_ms);
                for signer in signers {
                    *minute.attestations.entry(signer).or_default() += 1;
                }
                self.firings
                    .entry(firing)
                    .and_modify(|w| w.attested = true)
                    .or_insert(FiringWatch {
                        first_report_ms: at_ms,
                        attested: true,
                    });
            }
        }
        self.prune(now_ms);
    }

    /// The minute bucket of `at_ms`, created in order (events are in log order, their times
    /// nearly so).
    fn minute(&mut self, at_ms: u64) -> &mut Minute {
        let minute = at_ms / MINUTE_MS;
        let position = self
            .minutes
            .iter()
            .rposition(|m| m.minute <= minute)
            .map_or(0, |i| i + 1);
        let exists = position > 0
            && self
                .minutes
                .get(position - 1)
                .is_some_and(|m| m.minute == minute);
        let index = if exists {
            position - 1
        } else {
            self.minutes.insert(position, Minute::new(minute));
            position
        };
        match self.minutes.get_mut(index) {
            Some(m) => m,
            None => unreachable!("the bucket was just found or inserted"),
        }
    }

    fn prune(&mut self, now_ms: u64) {
        let oldest = (now_ms / MINUTE_MS).saturating_sub(WINDOW_MINUTES - 1);
        while self.minutes.front().is_some_and(|m| m.minute < oldest) {
            self.minutes.pop_front();
        }
        self.firings
            .retain(|_, w| w.first_report_ms + WINDOW_MS > now_ms);
    }

    /// The series for the window ending at `now_ms`.
    pub fn view(&self, now_ms: u64) -> PulseView {
        let current = now_ms / MINUTE_MS;
        let oldest = current.saturating_sub(WINDOW_MINUTES - 1);
        let mut view = PulseView {
            window_minutes: WINDOW_MINUTES,
            ..PulseView::default()
        };
        let mut latency = new_histogram();
        for minute in oldest..=current {
            let mut row = MinuteView {
                at_ms: minute * MINUTE_MS,
                ..MinuteView::default()
            };
            if let Some(m) = self.minutes.iter().find(|m| m.minute == minute) {
                row.firings = m.firings;
                row.executions = m.executions;
                row.failures = m.failures;
                if let Some(h) = &m.latency {
                    // Same bounds and precision: adding cannot fail.
                    let _ = latency.add(h);
                }
                for (operator, n) in &m.reports {
                    view.operators.entry(operator.clone()).or_default().reports += n;
                }
                for (operator, n) in &m.attestations {
                    view.operators
                        .entry(operator.clone())
                        .or_default()
                        .attestations += n;
                }
            }
            view.last_hour.firings += row.firings;
            view.last_hour.executions += row.executions;
            view.last_hour.failures += row.failures;
            view.minutes.push(row);
        }
        let count = latency.len();
        let quantile = |q: f64| (count > 0).then(|| latency.value_at_quantile(q));
        view.latency = Latency {
            count,
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            max_ms: (count > 0).then(|| latency.max()),
        };
        view.awaiting_quorum = self
            .firings
            .values()
            .filter(|w| {
                !w.attested
                    && w.first_report_ms + QUORUM_PATIENCE_MS <= now_ms
                    && w.first_report_ms + WINDOW_MS > now_ms
            })
            .count() as u64;
        view
    }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant figures over 1 ms .. a day: about 40 KB per minute that has executions.
    match Histogram::new_with_bounds(1, MAX_LATENCY_MS, 3) {
        Ok(h) => h,
        Err(_) => unreachable!("constant, valid bounds"),
    }
}

/// A `Series` kept up to date with the log.
#[derive(Debug, Default)]
pub struct Pulse {
    series: Mutex<Series>,
    /// The last event read.
    cursor: Mutex<Option<Ulid>>,
    /// The first full read of the last hour, done when the pulse is first asked for.
    first: std::sync::OnceLock<()>,
}

impl Pulse {
    /// Whether the pulse was asked for yet (the console's worker tails the log only then).
    pub fn started(&self) -> bool {
        self.first.get().is_some()
    }

    /// The series now; the first call reads the last hour of the log first (blocking reads: off
    /// the async runtime), and concurrent first callers wait for that read.
    pub fn view_of(&self, store: &Store) -> PulseView {
        self.first.get_or_init(|| {
            loop {
                match self.catch_up(store) {
                    Ok(read) if read >= EVENTS_PER_PASS => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "the pulse could not read the log");
                        break;
                    }
                }
            }
        });
        self.view()
    }

    /// Reads the events appended since the last call (from one hour ago at the first), at most
    /// `EVENTS_PER_PASS` of them. Returns how many it read: `EVENTS_PER_PASS` means there is more.
    pub fn catch_up(&self, store: &Store) -> events::Result<usize> {
        let now = events::now_ms();
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let from = cursor.unwrap_or_else(|| Ulid::from_parts(now.saturating_sub(WINDOW_MS), 0));
        let mut observed = Vec::new();
        let mut read = 0usize;
        for item in store.log.keyspaces().scan(Some(from)) {
            let (id, value) = item?;
            if Some(id) == *cursor {
                continue;
            }
            read += 1;
            *cursor = Some(id);
            let header = events::decode_header_at(id, &value)?;
            if matches!(
                header.event_type.as_str(),
                "TaskTriggered" | "ExecutionFinished" | "TriggerReported" | "TriggerAttested"
            ) {
                let envelope = events::decode_at(id, &value)?;
                if let Some(what) = meaning(store, &envelope) {
                    observed.push((envelope.recorded_at, what));
                }
            }
            if read >= EVENTS_PER_PASS {
                break;
            }
        }
        drop(cursor);
        if !observed.is_empty() {
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            for (at, what) in observed {
                series.observe(at, what, now);
            }
        }
        Ok(read)
    }

    /// The series as read so far (`view_of` reads the last hour first).
    pub fn view(&self) -> PulseView {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .view(events::now_ms())
    }
}

/// What an event means for the series.
fn meaning(store: &Store, envelope: &Envelope) -> Option<Observed> {
    match &envelope.event {
        Event::TaskTriggered(_) => Some(Observed::Fired),
        Event::ExecutionFinished(e) => Some(Observed::Finished {
            failed: e.outcome == events::execution::ExecutionOutcome::Failed,
            latency_ms: latency(store, &e.task_id, &e.execution_id, envelope.recorded_at),
        }),
        Event::TriggerReported(e) => Some(Observed::Reported {
            operator: e.operator.clone(),
            firing: envelope.stream.clone(),
        }),
        Event::TriggerAttested(e) => Some(Observed::Attested {
            signers: e.signers.clone(),
            firing: envelope.stream.clone(),
        }),
        _ => None,
    }
}

/// From the trigger to `finished_at`: the firing's first report for operator firings, the
/// queueing of the run for a client's.
fn latency(store: &Store, task_id: &str, execution_id: &str, finished_at: u64) -> Option<u64> {
    let views = &store.views;
    let trigger = views.trigger(task_id, execution_id).ok().flatten()?;
    let reported = match trigger.firing.source {
        FiringSource::Operators { .. } => store
            .log
            .first_event(&events::stream::firing(task_id, &trigger.firing.dedup_key))
            .ok()
            .flatten()
            .map(|e| e.recorded_at),
        FiringSource::Client => None,
    };
    let start = match reported {
        Some(at) => at,
        None => u64::try_from(
            views
                .execution(task_id, execution_id)
                .ok()
                .flatten()?
                .queued_at,
        )
        .ok()?,
    };
    Some(finished_at.saturating_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_000_000_000;

    /// Given a log with firings of the last hour; when the pulse is not asked for, then it has
    /// read nothing; when it is asked for the first time, then it shows the hour's firings.
    #[test]
    fn the_pulse_reads_the_last_hour_when_first_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), events::Durability::Relaxed).unwrap();
        for i in 0..3i64 {
            let task = format!("01PULSETASK{i:015}");
            let command = events::Command::new(events::samples::OWNER, events::now_ms()).append(
                events::stream::task(&task),
                events::Expected::NoStream,
                vec![
                    events::event::TaskCreated {
                        task_id: task.clone(),
                        owner: events::samples::OWNER.into(),
                        wallet: events::samples::WALLET.into(),
                        definition: events::samples::definition(),
                    }
                    .into(),
                    events::event::TaskTriggered {
                        task_id: task.clone(),
                        execution_id: format!("01PULSEEXEC{i:015}"),
                        index: 0,
                        dedup_key: format!("{task}:0"),
                    }
                    .into(),
                ],
            );
            store.log.append_blocking(command).unwrap();
        }
        let pulse = Pulse::default();
        assert!(!pulse.started());
        assert_eq!(pulse.view().last_hour.firings, 0);
        assert_eq!(pulse.view_of(&store).last_hour.firings, 3);
        assert!(pulse.started());
        store.close().unwrap();
    }

    fn reported(operator: &str, firing: &str) -> Observed {
        Observed::Reported {
            operator: operator.into(),
            firing: firing.into(),
        }
    }

    fn finished(failed: bool, latency_ms: u64) -> Observed {
        Observed::Finished {
            failed,
            latency_ms: Some(latency_ms),
        }
    }

    #[test]
    fn firings_executions_and_failures_land_in_the_minute_they_happened() {
        let mut series = Series::default();
        series.observe(NOW - 90_000, Observed::Fired, NOW);
        series.observe(NOW - 90_000, finished(false, 10), NOW);
        series.observe(NOW, Observed::Fired, NOW);
        series.observe(NOW, finished(true, 20), NOW);
        series.observe(NOW, finished(false, 30), NOW);
        let view = series.view(NOW);
        assert_eq!(view.minutes.len() as u64, WINDOW_MINUTES);
        let last = view.minutes.last().unwrap();
        assert_eq!(last.at_ms, NOW / MINUTE_MS * MINUTE_MS);
        assert_eq!((last.firings, last.executions, last.failures), (1, 2, 1));
        let earlier = &view.minutes[view.minutes.len() - 2];
        assert!(earlier.firings + view.minutes[view.minutes.len() - 3].firings == 1);
        assert_eq!(
            view.last_hour,
            Totals {
                firings: 2,
                executions: 3,
                failures: 1
            }
        );
    }

    #[test]
    fn what_is_older_than_the_window_is_not_counted() {
        let mut series = Series::default();
        series.observe(NOW - WINDOW_MS - 1, Observed::Fired, NOW);
        series.observe(NOW - 5 * MINUTE_MS, Observed::Fired, NOW);
        assert_eq!(series.view(NOW).last_hour.firings, 1);
        // An hour later, the second one has left the window too.
        assert_eq!(series.view(NOW + WINDOW_MS).last_hour.firings, 0);
    }

    #[test]
    fn latency_percentiles_cover_the_window() {
        let mut series = Series::default();
        for ms in 1..=100 {
            series.observe(NOW - (ms % 7) * MINUTE_MS, finished(false, ms * 10), NOW);
        }
        let latency = series.view(NOW).latency;
        assert_eq!(latency.count, 100);
        let p50 = latency.p50_ms.unwrap();
        let p99 = latency.p99_ms.unwrap();
        assert!((495..=505).contains(&p50), "{p50}");
        assert!((985..=995).contains(&p99), "{p99}");
        assert_eq!(latency.max_ms, Some(1000));
        assert_eq!(Series::default().view(NOW).latency.p50_ms, None);
    }

    #[test]
    fn reports_and_attestations_are_counted_per_operator() {
        let mut series = Series::default();
        series.observe(NOW, reported("0xa", "firing:t:1"), NOW);
        series.observe(NOW, reported("0xb", "firing:t:1"), NOW);
        series.observe(
            NOW,
            Observed::Attested {
                signers: vec!["0xa".into(), "0xb".into()],
                firing: "firing:t:1".into(),
            },
            NOW,
        );
        series.observe(NOW, reported("0xa", "firing:t:2"), NOW);
        let view = series.view(NOW);
        assert_eq!(
            view.operators["0xa"],
            OperatorActivity {
                reports: 2,
                attestations: 1
            }
        );
        assert_eq!(view.operators["0xb"].attestations, 1);
    }

    #[test]
    fn a_firing_without_quorum_counts_once_its_patience_ran_out() {
        let mut series = Series::default();
        series.observe(NOW, reported("0xa", "firing:t:1"), NOW);
        series.observe(NOW, reported("0xa", "firing:t:2"), NOW);
        series.observe(
            NOW + 1_000,
            Observed::Attested {
                signers: vec!["0xa".into()],
                firing: "firing:t:2".into(),
            },
            NOW + 1_000,
        );
        assert_eq!(series.view(NOW + 1_000).awaiting_quorum, 0);
        assert_eq!(series.view(NOW + QUORUM_PATIENCE_MS).awaiting_quorum, 1);
        // A late report after the attestation does not make it wait again.
        series.observe(
            NOW + 2_000,
            reported("0xb", "firing:t:2"),
            NOW + QUORUM_PATIENCE_MS,
        );
        assert_eq!(series.view(NOW + QUORUM_PATIENCE_MS).awaiting_quorum, 1);
        // Out of the window, it is forgotten.
        assert_eq!(series.view(NOW + WINDOW_MS).awaiting_quorum, 0);
    }
}
