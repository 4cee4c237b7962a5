//! Given operators and a task, when the pool reconciles, then who watches it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use events::event::{TaskCreated, TaskDisabled};
use events::task::{BlockTriggerConfig, CronTriggerConfig, TriggerConfig};

use super::*;
use crate::domain::testing::given;

fn op(n: u8) -> Address {
    Address::repeat_byte(n)
}

fn task(id: &str, trigger: TriggerConfig) -> TaskRow {
    let mut definition = events::samples::definition();
    definition.trigger.config = Some(trigger);
    given(vec![
        TaskCreated {
            task_id: id.into(),
            owner: "0xowner".into(),
            wallet: "0xwallet".into(),
            definition,
        }
        .into(),
    ])
}

fn block_task(id: &str) -> TaskRow {
    task(id, TriggerConfig::Block(BlockTriggerConfig { interval: 5 }))
}

const BLOCKS_ONLY: Capabilities = Capabilities {
    events: false,
    blocks: true,
    time: false,
};

const TIME_ONLY: Capabilities = Capabilities {
    events: false,
    blocks: false,
    time: true,
};

#[test]
fn a_task_goes_to_k_operators_and_the_choice_is_stable() {
    let row = block_task("01JTASKA");
    let eligible: Vec<_> = (1..=5).map(|n| (op(n), Capabilities::ANY)).collect();
    let chosen = choose(&row, &eligible, 3, &BTreeSet::new());
    assert_eq!(chosen.len(), 3);
    // The same inputs in another order choose the same operators.
    let mut reversed = eligible.clone();
    reversed.reverse();
    assert_eq!(choose(&row, &reversed, 3, &BTreeSet::new()), chosen);
}

#[test]
fn an_operator_joining_moves_at_most_one_place_per_task() {
    let eligible: Vec<_> = (1..=4).map(|n| (op(n), Capabilities::ANY)).collect();
    let mut joined = eligible.clone();
    joined.push((op(9), Capabilities::ANY));
    for i in 0..50 {
        let row = block_task(&format!("01JTASK{i:03}"));
        let before = choose(&row, &eligible, 2, &BTreeSet::new());
        let after = choose(&row, &joined, 2, &BTreeSet::new());
        assert!(
            before.difference(&after).count() <= 1,
            "{before:?} → {after:?}"
        );
    }
}

#[test]
fn a_task_leaving_an_operators_capabilities_moves() {
    // Given a block task watched by an operator that watches blocks,
    let row = block_task("01JTASKB");
    let had = choose(&row, &[(op(1), BLOCKS_ONLY)], 1, &BTreeSet::new());
    assert_eq!(had, BTreeSet::from([op(1)]));
    // when that operator reconnects able to watch time only and another watches blocks,
    let eligible = [(op(1), TIME_ONLY), (op(2), BLOCKS_ONLY)];
    // then the task moves to the other one, with one event each way.
    let wanted = choose(&row, &eligible, 1, &had);
    assert_eq!(wanted, BTreeSet::from([op(2)]));
    let events = changes(&row.id, &had, &wanted, true);
    assert!(matches!(&events[..], [
        Event::OperatorAssigned(a),
        Event::OperatorUnassigned(u),
    ] if a.operator == format!("{:#x}", op(2))
        && u.operator == format!("{:#x}", op(1))
        && u.reason == "reassigned"));
}

#[test]
fn while_nobody_can_watch_a_task_it_keeps_its_operators() {
    let row = task(
        "01JTASKC",
        TriggerConfig::Cron(CronTriggerConfig {
            schedules: vec!["* * * * *".into()],
        }),
    );
    let had = BTreeSet::from([op(7)]);
    assert_eq!(choose(&row, &[(op(1), BLOCKS_ONLY)], 3, &had), had);
}

#[test]
fn an_operator_gone_less_than_the_grace_keeps_its_tasks_and_past_it_loses_them() {
    let grace = Duration::from_secs(30);
    let gone_at = Instant::now();
    let presence = |gone_since| Presence {
        connected: false,
        gone_since: Some(gone_since),
        capabilities: Capabilities::ANY,
    };
    let connected = Presence {
        connected: true,
        gone_since: None,
        capabilities: BLOCKS_ONLY,
    };
    let members = [(op(1), presence(gone_at)), (op(2), connected)];
    let at =
        |later: Duration| eligible(members.iter().map(|(a, p)| (a, *p)), grace, gone_at + later);
    assert_eq!(
        at(Duration::from_secs(29)),
        vec![(op(1), Capabilities::ANY), (op(2), BLOCKS_ONLY)]
    );
    assert_eq!(at(Duration::from_secs(30)), vec![(op(2), BLOCKS_ONLY)]);
}

#[test]
fn a_stopped_task_is_unassigned_and_its_operators_told_why() {
    let row = block_task("01JTASKD");
    assert!(watched(&row));
    let disabled = given(vec![
        TaskCreated {
            task_id: "01JTASKD".into(),
            owner: "0xowner".into(),
            wallet: "0xwallet".into(),
            definition: events::samples::definition(),
        }
        .into(),
        TaskDisabled {
            task_id: "01JTASKD".into(),
            reason: "by its owner".into(),
        }
        .into(),
    ]);
    assert!(!watched(&disabled));
    let had = BTreeSet::from([op(1)]);
    let events = changes(&row.id, &had, &BTreeSet::new(), false);
    assert!(
        matches!(&events[..], [Event::OperatorUnassigned(u)] if u.reason == "the task stopped")
    );
    assert_eq!(stop(Some(&disabled)), Stop::Disable);
    assert_eq!(stop(None), Stop::Delete);
    assert_eq!(stop(Some(&row)), Stop::Delete, "moved to another operator");
}

#[test]
fn per_task_defaults_to_three_or_every_operator() {
    assert_eq!(per_task(0, 2), 2);
    assert_eq!(per_task(0, 10), 3);
    assert_eq!(per_task(5, 2), 5);
}

#[test]
fn an_unacknowledged_message_goes_again_after_the_timeout_only() {
    let sent = Instant::now();
    let timeout = Duration::from_secs(5);
    assert!(!due_again(sent, sent + Duration::from_secs(5), timeout));
    assert!(due_again(sent, sent + Duration::from_secs(6), timeout));
    assert!(!due_again(sent, sent, timeout), "a clock that did not move");
}
