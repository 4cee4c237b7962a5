//! The definitions of the tasks the engine runs, kept decoded between runs.
//!
//! A task's definition is the one its `TaskCreated` event holds, the first event of its stream:
//! no event changes it afterwards (a task is enabled, disabled, completed or deleted, never
//! edited), and task ids are never reused, so a definition read once stays the task's for good.
//! Every run used to read that event from the log and decode its JSON again; runs of a task now
//! share one decoded copy. Whether the task still exists (and may run) is not cached: the run
//! reads the task's row each time.
//!
//! The cache is bounded by the definitions' encoded size (`CAPACITY_BYTES`); what falls out is
//! read from the log again at its next run.

use std::sync::Arc;

use events::task::TaskDefinition;

use crate::store::Store;

/// Encoded bytes of definitions kept; a definition is at most `limits.max_values_bytes`-ish,
/// most are a few KiB: thousands of tasks' runs skip the log read.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

/// Entries the cache is shaped for (quick_cache sizes its tables from it); weights bound it.
const ESTIMATED_ITEMS: usize = 8192;

/// A definition's weight: its encoded size, so that the bound is in bytes.
#[derive(Clone)]
struct Encoded;

impl quick_cache::Weighter<String, (u64, Arc<TaskDefinition>)> for Encoded {
    fn weight(&self, key: &String, value: &(u64, Arc<TaskDefinition>)) -> u64 {
        value.0.saturating_add(key.len() as u64).max(1)
    }
}

/// The decoded definitions of tasks, by task id.
pub struct Definitions {
    cache: quick_cache::sync::Cache<String, (u64, Arc<TaskDefinition>), Encoded>,
}

impl Default for Definitions {
    fn default() -> Self {
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                ESTIMATED_ITEMS,
                CAPACITY_BYTES,
                Encoded,
            ),
        }
    }
}

impl Definitions {
    /// The task's definition, from the cache or its `TaskCreated` event; `None` if the task's
    /// stream has no such event (never created here, or not yet replicated: not remembered).
    pub fn get(
        &self,
        store: &Store,
        task_id: &str,
    ) -> Result<Option<Arc<TaskDefinition>>, events::Error> {
        if let Some((_, definition)) = self.cache.get(task_id) {
            return Ok(Some(definition));
        }
        let Some(envelope) = store.log.first_event(&events::stream::task(task_id))? else {
            return Ok(None);
        };
        let events::Event::TaskCreated(created) = envelope.event else {
            return Ok(None);
        };
        let weight = encoded_len(&created.definition);
        let definition = Arc::new(created.definition);
        self.cache
            .insert(task_id.to_owned(), (weight, Arc::clone(&definition)));
        Ok(Some(definition))
    }
}

/// The definition's JSON size, counted without building it.
fn encoded_len(definition: &TaskDefinition) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, definition) {
        Ok(()) => count.0,
        // Not encodable (it was decoded, so this does not happen): weighs the whole cache, so
        // that it is not kept.
        Err(_) => CAPACITY_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_weighs_its_encoded_size() {
        let definition = events::samples::definition();
        let encoded = serde_json::to_vec(&definition).unwrap_or_default();
        assert!(!encoded.is_empty());
        assert_eq!(encoded_len(&definition), encoded.len() as u64);
    }
}
