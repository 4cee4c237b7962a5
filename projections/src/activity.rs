//! Activity: what the console reads that no other view keeps, the size of the log and every
//! execution in time order, across owners and per owner.
//!
//! Keys (keyspace `activity`):
//! - `n` → the number of events in the log (8 bytes, big-endian);
//! - `e:<execution id>` → task id: every execution, in id order (ids are ULIDs, so time order);
//! - `o:<owner>:<execution id>` → task id: the same, per owner.
//!
//! The other views key executions by task (`history:<task>:<execution>`), which answers "the runs
//! of this task" but not "the latest runs", nor "the latest runs of this owner".

use events::event::Event;
use events::{Envelope, Tx, fjall::Keyspace};

use crate::{Projection, Views};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "activity";

pub const COUNT_KEY: &[u8] = b"n";
pub const EXECUTION_PREFIX: &[u8] = b"e:";

pub fn execution_key(execution_id: &str) -> Vec<u8> {
    format!("e:{execution_id}").into_bytes()
}

pub fn owner_prefix(owner: &str) -> Vec<u8> {
    format!("o:{owner}:").into_bytes()
}

pub fn owner_execution_key(owner: &str, execution_id: &str) -> Vec<u8> {
    format!("o:{owner}:{execution_id}").into_bytes()
}

fn read_count(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| b.first_chunk::<8>())
        .map_or(0, |b| u64::from_be_bytes(*b))
}

#[derive(Clone)]
pub struct Activity {
    keyspace: Keyspace,
}

impl Activity {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }
}

impl Projection for Activity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn apply(&self, env: &Envelope, tx: &mut Tx) -> events::Result<()> {
        // The staged count: one read from fjall per batch, then from the batch's cache.
        let count = read_count(tx.get(&self.keyspace, COUNT_KEY)?.as_deref());
        tx.insert(
            &self.keyspace,
            COUNT_KEY.to_vec(),
            (count + 1).to_be_bytes(),
        );
        if let Event::ExecutionQueued(e) = &env.event {
            tx.insert(
                &self.keyspace,
                execution_key(&e.execution_id),
                e.task_id.as_bytes(),
            );
            tx.insert(
                &self.keyspace,
                owner_execution_key(&e.owner, &e.execution_id),
                e.task_id.as_bytes(),
            );
        }
        Ok(())
    }
}

/// An execution as the activity view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRef {
    pub execution_id: String,
    pub task_id: String,
}

/// The reads of this view.
impl Views {
    /// Events in the log (as far as the projections have applied them).
    pub fn event_count(&self) -> events::Result<u64> {
        Ok(read_count(self.activity.get(COUNT_KEY)?.as_deref()))
    }

    /// The latest executions across owners, newest first, older than `before` when given.
    pub fn latest_executions(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> events::Result<Vec<ExecutionRef>> {
        self.latest_under(EXECUTION_PREFIX, before, limit)
    }

    /// The latest executions of one owner's tasks, newest first, older than `before` when given.
    pub fn latest_executions_of(
        &self,
        owner: &str,
        before: Option<&str>,
        limit: usize,
    ) -> events::Result<Vec<ExecutionRef>> {
        self.latest_under(&owner_prefix(owner), before, limit)
    }

    /// The task an execution belongs to.
    pub fn execution_task(&self, execution_id: &str) -> events::Result<Option<String>> {
        Ok(self
            .activity
            .get(execution_key(execution_id))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn latest_under(
        &self,
        prefix: &[u8],
        before: Option<&str>,
        limit: usize,
    ) -> events::Result<Vec<ExecutionRef>> {
        let start = prefix.to_vec();
        let mut end = prefix.to_vec();
        match before {
            Some(id) => end.extend_from_slice(id.as_bytes()),
            // Past every id: ULIDs are Crockford base32, all below `~`.
            None => end.push(b'~'),
        }
        let mut out = Vec::with_capacity(limit.min(512));
        for guard in self.activity.range(start..end).rev().take(limit) {
            let (key, value) = guard.into_inner()?;
            out.push(ExecutionRef {
                execution_id: String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default())
                    .into_owned(),
                task_id: String::from_utf8_lossy(&value).into_owned(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use events::event::{ExecutionQueued, TaskEnabled};
    use events::{Command, Durability, Expected, Log, LogKeyspaces, LogOptions};

    use crate::Projections;

    fn queued(execution: &str, task: &str, owner: &str) -> events::Event {
        ExecutionQueued {
            execution_id: execution.into(),
            task_id: task.into(),
            owner: owner.into(),
            index: 0,
            firing: events::samples::firing(),
        }
        .into()
    }

    /// Given a log, when the commands are appended, then the views read what they hold.
    fn given(commands: Vec<Command>) -> (tempfile::TempDir, crate::Views) {
        let dir = tempfile::tempdir().unwrap();
        let db = events::open_database(dir.path()).unwrap();
        let mut projections = Projections::open(&db).unwrap();
        projections
            .catch_up(&LogKeyspaces::open(&db).unwrap(), &|_| {})
            .unwrap();
        let views = projections.views();
        let options = LogOptions {
            durability: Durability::Relaxed,
            ..LogOptions::default()
        };
        let log = Log::open(&db, options, Box::new(projections)).unwrap();
        for command in commands {
            log.append_blocking(command).unwrap();
        }
        log.shutdown();
        (dir, views)
    }

    fn run(execution: &str, task: &str, owner: &str) -> Command {
        Command::new(owner, 1).append(
            events::stream::execution(execution),
            Expected::NoStream,
            vec![queued(execution, task, owner)],
        )
    }

    #[test]
    fn executions_are_listed_newest_first_across_owners_and_per_owner() {
        let (_dir, views) = given(vec![
            run("01EXEC0000000000000000000A", "task-a", "0xalice"),
            run("01EXEC0000000000000000000B", "task-b", "0xbob"),
            run("01EXEC0000000000000000000C", "task-a", "0xalice"),
        ]);
        let ids = |refs: Vec<super::ExecutionRef>| {
            refs.into_iter()
                .map(|r| (r.execution_id, r.task_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(views.latest_executions(None, 10).unwrap()),
            vec![
                ("01EXEC0000000000000000000C".into(), "task-a".into()),
                ("01EXEC0000000000000000000B".into(), "task-b".into()),
                ("01EXEC0000000000000000000A".into(), "task-a".into()),
            ]
        );
        assert_eq!(
            ids(views
                .latest_executions(Some("01EXEC0000000000000000000C"), 1)
                .unwrap()),
            vec![("01EXEC0000000000000000000B".into(), "task-b".into())]
        );
        assert_eq!(
            ids(views.latest_executions_of("0xalice", None, 10).unwrap()),
            vec![
                ("01EXEC0000000000000000000C".into(), "task-a".into()),
                ("01EXEC0000000000000000000A".into(), "task-a".into()),
            ]
        );
        assert!(
            views
                .latest_executions_of("0xcarol", None, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            views
                .execution_task("01EXEC0000000000000000000B")
                .unwrap()
                .as_deref(),
            Some("task-b")
        );
    }

    #[test]
    fn the_count_is_every_event_appended() {
        let (_dir, views) = given(vec![
            run("01EXEC0000000000000000000A", "task-a", "0xalice"),
            Command::new("0xalice", 2).append(
                events::stream::task("task-a"),
                Expected::Any,
                vec![
                    TaskEnabled {
                        task_id: "task-a".into(),
                    }
                    .into(),
                    TaskEnabled {
                        task_id: "task-a".into(),
                    }
                    .into(),
                ],
            ),
        ]);
        assert_eq!(views.event_count().unwrap(), 3);
    }
}
