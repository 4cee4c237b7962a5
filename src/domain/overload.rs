//! Overload: an event trigger that matched more events in one block than its cap. One
//! operator's report alone never disables a user's task: a quorum of the assigned operators
//! must report the same block, or the aggregator's own count of that block's logs must confirm
//! it (`triggers` holds the matching both sides apply).

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::Address;
use events::event::TaskDisabled;
use events::{Envelope, Event};
use projections::tasks::{Status, TaskRow};

/// What an operator reports of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overload {
    pub block_number: u64,
    pub events_detected: u32,
    pub safety_limit: u32,
    pub query_index: String,
}

/// The assigned weight of the operators that reported `block` (stream `overload:<task>`).
pub fn reported_weight(history: &[Envelope], block: u64, assigned: &BTreeMap<Address, u64>) -> u64 {
    let mut reporters = BTreeSet::new();
    for envelope in history {
        if let Event::TriggerOverloadReported(r) = &envelope.event
            && r.block_number == block
            && let Ok(address) = r.operator.parse::<Address>()
        {
            reporters.insert(address);
        }
    }
    reporters.iter().filter_map(|a| assigned.get(a)).sum()
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
            1,
            "once each, assigned only"
        );
        assert_eq!(reported_weight(&history, 8, &assigned), 1);
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
