//! Overload: an event trigger that matched more events in one block than its cap. One
//! operator's report alone never disables a user's task: a quorum of the assigned operators,
//! and at least two of them, must report the same block (whatever `operators.per_task`), or the
//! aggregator's own count of that block's logs must confirm it (`triggers` holds the matching
//! both sides apply). A report must fit the task: an event trigger, one of its queries, more
//! events than that query's cap; each operator's report of a block is recorded once.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::Address;
use events::event::TaskDisabled;
use events::task::{Trigger, TriggerConfig};
use events::{Envelope, Event};
use projections::tasks::{Status, TaskRow};

use super::triggers::DEFAULT_EVENTS_PER_BLOCK;
use super::{Code, DomainError, DomainResult};

/// How many distinct operators must report a block for their reports alone to disable a task.
pub const MIN_REPORTERS: usize = 2;

/// What an operator reports of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overload {
    pub block_number: u64,
    pub events_detected: u32,
    pub safety_limit: u32,
    pub query_index: String,
}

/// Whether `overload` fits the task's `trigger`: an event trigger, a query at `query_index`, and
/// more events than that query's cap, which the report must name.
pub fn check(trigger: &Trigger, overload: &Overload) -> DomainResult<()> {
    let invalid = |why: String| DomainError::Invalid(why, Code::InvalidTriggerConfig);
    let Some(TriggerConfig::Event(config)) = &trigger.config else {
        return Err(DomainError::FailedPrecondition(
            "the task has no event trigger: only an event trigger can be overloaded".into(),
            Code::InvalidTriggerConfig,
        ));
    };
    let index: usize = overload.query_index.trim().parse().map_err(|_| {
        invalid(format!(
            "query_index must be the index of one of the trigger's {} queries",
            config.queries.len()
        ))
    })?;
    let Some(query) = config.queries.get(index) else {
        return Err(invalid(format!(
            "query_index {index} is past the trigger's {} queries",
            config.queries.len()
        )));
    };
    let cap = query
        .max_events_per_block
        .unwrap_or(DEFAULT_EVENTS_PER_BLOCK);
    if overload.safety_limit != cap {
        return Err(invalid(format!(
            "safety_limit {} is not the query's cap of {cap} events per block",
            overload.safety_limit
        )));
    }
    if overload.events_detected <= cap {
        return Err(invalid(format!(
            "{} events are within the query's cap of {cap}: no overload",
            overload.events_detected
        )));
    }
    Ok(())
}

/// The assigned operators that reported `block` (stream `overload:<task>`), once each.
fn reporters(history: &[Envelope], block: u64) -> BTreeSet<Address> {
    history
        .iter()
        .filter_map(|envelope| match &envelope.event {
            Event::TriggerOverloadReported(r) if r.block_number == block => {
                r.operator.parse::<Address>().ok()
            }
            _ => None,
        })
        .collect()
}

/// Whether `operator` reported `block` already (a repeat is not recorded again).
pub fn reported_before(history: &[Envelope], block: u64, operator: Address) -> bool {
    reporters(history, block).contains(&operator)
}

/// The assigned weight of the operators that reported `block`, and how many they are.
pub fn reported_weight(
    history: &[Envelope],
    block: u64,
    assigned: &BTreeMap<Address, u64>,
) -> (u64, usize) {
    let weights: Vec<u64> = reporters(history, block)
        .iter()
        .filter_map(|a| assigned.get(a).copied())
        .collect();
    (weights.iter().sum(), weights.len())
}

/// Whether an overload disabled the task already.
pub fn disabled_by_overload(row: &TaskRow) -> bool {
    row.status == Status::Disabled && row.disabled_reason.starts_with("overload")
}

/// The event that disables an active task for `overload`, once a quorum reported it or the
/// chain confirmed it.
pub fn disable(row: &TaskRow, overload: &Overload, confirmed: bool) -> Option<Event> {
    if !confirmed || row.status != Status::Active {
        return None;
    }
    Some(
        TaskDisabled {
            task_id: row.id.clone(),
            reason: format!(
                "overload: {} events in block {}, more than the cap of {}",
                overload.events_detected, overload.block_number, overload.safety_limit
            ),
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use events::event::{TaskCreated, TriggerOverloadReported};

    use super::*;
    use crate::domain::testing::{envelopes, given};

    fn op(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn reported(n: u8, block: u64) -> Event {
        TriggerOverloadReported {
            task_id: "01JTASK".into(),
            operator: format!("{:#x}", op(n)),
            block_number: block,
            events_detected: 500,
            safety_limit: 100,
            query_index: "0".into(),
        }
        .into()
    }

    fn overload() -> Overload {
        Overload {
            block_number: 7,
            events_detected: 500,
            safety_limit: 100,
            query_index: "0".into(),
        }
    }

    #[test]
    fn only_the_assigned_reporters_of_that_block_count() {
        let assigned: BTreeMap<Address, u64> = [(op(1), 1), (op(2), 1), (op(3), 1)].into();
        let history = envelopes(
            "overload:01JTASK",
            vec![
                reported(1, 7),
                reported(1, 7),
                reported(2, 8),
                reported(9, 7),
            ],
        );
        assert_eq!(
            reported_weight(&history, 7, &assigned),
            (1, 1),
            "once each, assigned only"
        );
        assert_eq!(reported_weight(&history, 8, &assigned), (1, 1));
        assert!(reported_before(&history, 7, op(1)));
        assert!(!reported_before(&history, 8, op(1)));
    }

    fn event_trigger(cap: Option<u32>) -> Trigger {
        Trigger {
            config: Some(TriggerConfig::Event(events::task::EventTriggerConfig {
                queries: vec![events::task::EventQuery {
                    max_events_per_block: cap,
                    ..Default::default()
                }],
                cooldown_seconds: None,
            })),
            ..events::samples::definition().trigger
        }
    }

    #[test]
    fn a_report_must_fit_the_tasks_query_and_cap() {
        let trigger = event_trigger(Some(100));
        assert_eq!(check(&trigger, &overload()), Ok(()));
        let refused = |o: Overload, trigger: &Trigger| check(trigger, &o).unwrap_err().to_string();
        assert!(
            refused(
                Overload {
                    events_detected: 100,
                    ..overload()
                },
                &trigger
            )
            .contains("within the query's cap")
        );
        assert!(
            refused(
                Overload {
                    safety_limit: 1,
                    ..overload()
                },
                &trigger
            )
            .contains("not the query's cap")
        );
        for index in ["1", "x", &"9".repeat(3_000)] {
            let why = refused(
                Overload {
                    query_index: index.into(),
                    ..overload()
                },
                &trigger,
            );
            assert!(why.contains("query_index"), "{why}");
            assert!(why.len() < 200, "the index is not echoed");
        }
        let manual = events::samples::definition().trigger;
        assert!(refused(overload(), &manual).contains("no event trigger"));
    }

    #[test]
    fn an_active_task_is_disabled_once_confirmed_and_not_before() {
        let row = given(vec![
            TaskCreated {
                task_id: "01JTASK".into(),
                owner: "0xowner".into(),
                wallet: "0xwallet".into(),
                definition: events::samples::definition(),
            }
            .into(),
        ]);
        assert_eq!(disable(&row, &overload(), false), None);
        let Some(event) = disable(&row, &overload(), true) else {
            panic!("disabled")
        };
        let disabled = given(vec![
            TaskCreated {
                task_id: "01JTASK".into(),
                owner: "0xowner".into(),
                wallet: "0xwallet".into(),
                definition: events::samples::definition(),
            }
            .into(),
            event,
        ]);
        assert!(disabled_by_overload(&disabled));
        assert_eq!(disable(&disabled, &overload(), true), None, "not twice");
    }
}
