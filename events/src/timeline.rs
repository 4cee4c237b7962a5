//! A task's timeline: every event of the task and of what it started (its executions, the
//! firings operators reported, its assignments and overloads), in log order. `replay timeline`
//! prints it; the console's admin part shows it.

use std::collections::BTreeSet;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::keyspaces::LogKeyspaces;

impl LogKeyspaces {
    /// The streams that belong to a task: its own, its assignments and overloads, its firings,
    /// and the executions its `TaskTriggered` events name.
    pub fn task_streams(&self, task: &str) -> Result<BTreeSet<String>> {
        let mut streams = BTreeSet::from([
            crate::stream::task(task),
            crate::stream::assignment(task),
            crate::stream::overload(task),
        ]);
        for envelope in self.read_stream(&crate::stream::task(task))? {
            if let crate::Event::TaskTriggered(t) = &envelope.event {
                streams.insert(crate::stream::execution(&t.execution_id));
            }
        }
        let firing_prefix = crate::stream::firing(task, "");
        for guard in self.streams.prefix(firing_prefix.as_bytes()) {
            let key = guard.key()?;
            if let Some(end) = key.iter().position(|b| *b == 0) {
                streams.insert(
                    String::from_utf8_lossy(key.get(..end).unwrap_or_default()).into_owned(),
                );
            }
        }
        Ok(streams)
    }

    /// Every event of the task's streams, in log order (empty for an unknown task).
    pub fn task_timeline(&self, task: &str) -> Result<Vec<Envelope>> {
        let mut all = Vec::new();
        for stream in self.task_streams(task)? {
            all.extend(self.read_stream(&stream)?);
        }
        all.sort_by_key(|e| e.id);
        Ok(all)
    }
}
