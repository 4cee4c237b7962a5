//! Watching triggers, by rules that make operators started at different moments produce the same
//! firings and the same signed outputs:
//!
//! - **block**: fires on blocks whose number is a multiple of `interval`, once the block is
//!   `confirmations` deep; output `{blockNumber, blockHash}`, id `<task>:<block>`;
//! - **event**: the logs of each confirmed block matching a query's addresses and topics
//!   (`eth_getLogs` per block, driven by the new-head subscription: no block is skipped, and after
//!   a reconnect the missed blocks are read), then the query's conditions on the ABI-decoded
//!   fields (`gt gte lt lte eq ne`); more matches in one block than the cap is reported as an
//!   overload instead of firing; the cooldown is measured in block time (the block's timestamp,
//!   the same for every operator); output `{blockNumber, blockHash, transactionHash, logIndex,
//!   address, topics, data}`, id `<task>:<tx hash>:<log index>`;
//! - **fixed time**: each epoch of the task (ms) once its time has come, id `<task>:<epoch>`;
//! - **cron**: the slots of the schedule grammar (`domain::schedule`: 5-field UTC cron, or
//!   `@every` anchored at the task's `start_at`, or its creation, the time of its ULID id); slots
//!   missed while away are caught up (up to 10 per schedule); output `{timestamp}`, id
//!   `<task>:<slot>`.
//!
//! Nothing an operator observes locally (when it saw the block) is in an output.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::json_abi::Event as AbiEvent;
use alloy::primitives::B256;
use alloy::rpc::types::{Filter, Log};
use serde_json::{Value, json};

use events::task::{EventQuery, TriggerConfig, TriggerKind};

use protocol::pb;
use protocol::schedule::Schedule;
use protocol::triggers::{abi_event, conditions_hold, filter_of};

/// A firing to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub task_id: String,
    pub trigger_request_id: String,
    pub kind: TriggerKind,
    pub output: Value,
}

/// What each watched task needs between blocks and ticks.
#[derive(Debug)]
enum State {
    Block {
        interval: u64,
    },
    Event {
        queries: Vec<(EventQuery, Option<AbiEvent>)>,
        cooldown_ms: u64,
        last_fire_ms: Option<u64>,
        cap_default: u32,
    },
    FixedTime {
        epochs: Vec<i64>,
    },
    Cron {
        schedules: Vec<Schedule>,
        anchor_ms: i64,
    },
}

#[derive(Debug)]
struct Watch {
    state: State,
    /// Blocks after this one, and times after this one, are this operator's to watch.
    since_block: u64,
    since_ms: i64,
    expired_at: i64,
}

/// The tasks an operator watches.
#[derive(Debug, Default)]
pub struct Watches {
    tasks: Mutex<HashMap<String, Watch>>,
}

/// A task's creation time: the time part of its ULID id.
pub fn created_ms(task_id: &str) -> i64 {
    ulid::Ulid::from_string(task_id).map_or(0, |u| i64::try_from(u.timestamp_ms()).unwrap_or(0))
}

impl Watches {
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts watching a task (or keeps watching it, unchanged, when it is already watched: a
    /// message sent again after a reconnect).
    pub fn monitor(
        &self,
        metadata: &pb::sync_messages_resp::TaskMetadata,
        head: u64,
        now_ms: i64,
        cooldown_default_ms: u64,
        cap_default: u32,
    ) -> Result<(), String> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.contains_key(&metadata.task_id) {
            return Ok(());
        }
        let trigger = metadata
            .trigger
            .as_ref()
            .ok_or("the message carries no trigger")?;
        let trigger = protocol::convert::trigger_from_pb(trigger).map_err(|e| e.to_string())?;
        let state = match trigger.config.ok_or("the trigger has no configuration")? {
            TriggerConfig::Block(b) => State::Block {
                interval: u64::try_from(b.interval)
                    .ok()
                    .filter(|i| *i > 0)
                    .ok_or("block interval must be positive")?,
            },
            TriggerConfig::Event(e) => State::Event {
                queries: e
                    .queries
                    .into_iter()
                    .map(|q| {
                        let abi = abi_event(&q);
                        (q, abi)
                    })
                    .collect(),
                cooldown_ms: e
                    .cooldown_seconds
                    .map_or(cooldown_default_ms, |s| u64::from(s) * 1000),
                last_fire_ms: None,
                cap_default,
            },
            TriggerConfig::FixedTime(f) => State::FixedTime { epochs: f.epochs },
            TriggerConfig::Cron(c) => State::Cron {
                schedules: c
                    .schedules
                    .iter()
                    .map(|s| Schedule::parse(s).map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?,
                anchor_ms: if metadata.start_at > 0 {
                    metadata.start_at
                } else {
                    created_ms(&metadata.task_id)
                },
            },
            TriggerConfig::Manual(_) => return Err("manual triggers are not watched".into()),
        };
        tasks.insert(
            metadata.task_id.clone(),
            Watch {
                state,
                since_block: head,
                since_ms: now_ms,
                expired_at: metadata.expired_at,
            },
        );
        Ok(())
    }

    pub fn stop(&self, task_id: &str) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }

    /// The firings due at `now_ms` for time triggers.
    pub fn tick(&self, now_ms: i64) -> Vec<Report> {
        let mut out = Vec::new();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (task_id, watch) in tasks.iter_mut() {
            let since = watch.since_ms;
            let limit = if watch.expired_at > 0 {
                now_ms.min(watch.expired_at)
            } else {
                now_ms
            };
            let mut push = |slot: i64, kind: TriggerKind| {
                out.push(Report {
                    task_id: task_id.clone(),
                    trigger_request_id: format!("{task_id}:{slot}"),
                    kind,
                    output: json!({ "timestamp": slot }),
                });
            };
            match &watch.state {
                State::FixedTime { epochs } => {
                    for &epoch in epochs.iter().filter(|e| **e > since && **e <= limit) {
                        push(epoch, TriggerKind::FixedTime);
                    }
                }
                State::Cron {
                    schedules,
                    anchor_ms,
                } => {
                    let mut slots: Vec<i64> = schedules
                        .iter()
                        .flat_map(|s| s.slots_between(since, limit, *anchor_ms, 10))
                        .collect();
                    slots.sort_unstable();
                    slots.dedup();
                    for slot in slots {
                        push(slot, TriggerKind::Cron);
                    }
                }
                _ => continue,
            }
            watch.since_ms = now_ms;
        }
        out
    }

    /// Tasks with block or event triggers, and their filters, for the chain loop.
    pub fn chain_tasks(&self) -> Vec<(String, Option<u64>, Vec<Filter>)> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .iter()
            .filter_map(|(id, w)| match &w.state {
                State::Block { interval } => Some((id.clone(), Some(*interval), Vec::new())),
                State::Event { queries, .. } => Some((
                    id.clone(),
                    None,
                    queries.iter().map(|(q, _)| filter_of(q)).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// What block `number` (with its hash and time) fires for the block triggers.
    pub fn block(&self, number: u64, hash: B256) -> Vec<Report> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .iter()
            .filter_map(|(id, w)| match w.state {
                State::Block { interval }
                    if number > w.since_block && number.is_multiple_of(interval) =>
                {
                    Some(Report {
                        task_id: id.clone(),
                        trigger_request_id: format!("{id}:{number}"),
                        kind: TriggerKind::Block,
                        output: json!({ "blockNumber": number, "blockHash": format!("{hash:#x}") }),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// What an event task's logs of one block (`logs[i]` for query `i`) fire, or an overload
    /// (query index, matches, cap) when a query matched more than its cap.
    pub fn event_block(
        &self,
        task_id: &str,
        number: u64,
        hash: B256,
        timestamp_ms: u64,
        logs: &[Vec<Log>],
    ) -> EventOutcome {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(watch) = tasks.get_mut(task_id) else {
            return EventOutcome::default();
        };
        if number <= watch.since_block {
            return EventOutcome::default();
        }
        let State::Event {
            queries,
            cooldown_ms,
            last_fire_ms,
            cap_default,
        } = &mut watch.state
        else {
            return EventOutcome::default();
        };
        let mut outcome = EventOutcome::default();
        let mut matched: Vec<&Log> = Vec::new();
        for (index, ((query, abi), logs)) in queries.iter().zip(logs).enumerate() {
            let hits: Vec<&Log> = logs
                .iter()
                .filter(|log| conditions_hold(query, abi.as_ref(), log))
                .collect();
            let cap = query.max_events_per_block.unwrap_or(*cap_default);
            if hits.len() > cap as usize {
                outcome.overload = Some((index, hits.len(), cap));
                return outcome;
            }
            matched.extend(hits);
        }
        matched.sort_by_key(|l| (l.transaction_index, l.log_index));
        for log in matched {
            if last_fire_ms.is_some_and(|last| timestamp_ms < last + *cooldown_ms) {
                continue;
            }
            *last_fire_ms = Some(timestamp_ms);
            let tx = log
                .transaction_hash
                .map(|h| format!("{h:#x}"))
                .unwrap_or_default();
            let index = log.log_index.unwrap_or_default();
            outcome.reports.push(Report {
                task_id: task_id.to_owned(),
                trigger_request_id: format!("{task_id}:{tx}:{index}"),
                kind: TriggerKind::Event,
                output: json!({
                    "blockNumber": number,
                    "blockHash": format!("{hash:#x}"),
                    "transactionHash": tx,
                    "logIndex": index,
                    "address": log.address().to_checksum(None),
                    "topics": log.topics().iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(),
                    "data": format!("0x{}", hex::encode(log.data().data.as_ref())),
                }),
            });
        }
        outcome
    }
}

#[derive(Debug, Default)]
pub struct EventOutcome {
    pub reports: Vec<Report>,
    pub overload: Option<(usize, usize, u32)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(
        task_id: &str,
        trigger: pb::TaskTrigger,
        start_at: i64,
    ) -> pb::sync_messages_resp::TaskMetadata {
        pb::sync_messages_resp::TaskMetadata {
            task_id: task_id.into(),
            remain: -1,
            expired_at: 0,
            trigger: Some(trigger),
            start_at,
        }
    }

    fn cron(schedule: &str) -> pb::TaskTrigger {
        pb::TaskTrigger {
            name: "cron".into(),
            r#type: pb::TriggerType::Cron as i32,
            id: "t".into(),
            trigger_type: Some(pb::task_trigger::TriggerType::Cron(pb::CronTrigger {
                config: Some(pb::cron_trigger::Config {
                    schedules: vec![schedule.into()],
                }),
            })),
        }
    }

    /// Operators that start watching at different moments report the same slots with the same
    /// outputs (the digests they sign are then equal).
    #[test]
    fn late_starters_report_identical_slots() {
        let task = "01JG2F0000000000000000TASK";
        let start = 1_764_000_000_000;
        let early = Watches::default();
        let late = Watches::default();
        early
            .monitor(
                &metadata(task, cron("@every 2s"), start),
                0,
                start + 100,
                0,
                100,
            )
            .unwrap();
        late.monitor(
            &metadata(task, cron("@every 2s"), start),
            0,
            start + 3_500,
            0,
            100,
        )
        .unwrap();
        let a = early.tick(start + 10_000);
        let b = late.tick(start + 10_000);
        let common: Vec<&Report> = a.iter().filter(|r| b.contains(r)).collect();
        assert_eq!(b.len(), 4, "{b:?}");
        assert_eq!(common.len(), 4);
        assert_eq!(b[0].trigger_request_id, format!("{task}:{}", start + 4_000));
        assert_eq!(b[0].output, json!({ "timestamp": start + 4_000 }));
        assert!(early.tick(start + 10_000).is_empty(), "nothing twice");
    }

    #[test]
    fn blocks_fire_on_multiples_of_the_interval_after_registration() {
        let w = Watches::default();
        let trigger = pb::TaskTrigger {
            name: "b".into(),
            r#type: pb::TriggerType::Block as i32,
            id: "t".into(),
            trigger_type: Some(pb::task_trigger::TriggerType::Block(pb::BlockTrigger {
                config: Some(pb::block_trigger::Config { interval: 5 }),
            })),
        };
        w.monitor(&metadata("task", trigger, 0), 12, 0, 0, 100)
            .unwrap();
        assert!(w.block(10, B256::ZERO).is_empty(), "before registration");
        assert!(w.block(14, B256::ZERO).is_empty());
        let fired = w.block(15, B256::ZERO);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].trigger_request_id, "task:15");
    }
}
