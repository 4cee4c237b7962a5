//! Given the reports recorded on a firing's stream, when another operator reports, then what is
//! recorded and whether a quorum attests.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use serde_json::json;

use super::*;
use crate::domain::testing::envelopes;

const TASK: &str = "01JTASK";
const REQUEST: &str = "01JTASK:120";
const CHAIN: u64 = 31337;
const TWO_THIRDS: Quorum = Quorum {
    numerator: 2,
    denominator: 3,
};

fn op(n: u8) -> Address {
    Address::repeat_byte(n)
}

fn digest_of(output: &Value) -> [u8; 32] {
    let hash = attest::output_hash(output).unwrap();
    attest::firing_digest(CHAIN, TASK, REQUEST, &hash)
}

/// Operator `n`'s signed report of `output`.
fn report(n: u8, output: Value) -> Report {
    let key = attest::bls_key(&[n; 32]).unwrap();
    let digest = digest_of(&output);
    Report {
        task_id: TASK.into(),
        trigger_request_id: REQUEST.into(),
        operator: op(n),
        kind: TriggerKind::Block,
        output: Some(output),
        digest,
        bls_signature: attest::sign_digest(&key, &digest),
    }
}

fn block(number: u64) -> Value {
    json!({ "blockNumber": number, "blockHash": "0xabc" })
}

fn equal_weights(operators: &[u8]) -> BTreeMap<Address, u64> {
    operators.iter().map(|n| (op(*n), 1)).collect()
}

/// The state after `reports` were each decided on and recorded, in order.
fn given(reports: &[Report], assigned: &BTreeMap<Address, u64>) -> FiringState {
    let mut recorded = Vec::new();
    for r in reports {
        let state = fold(&envelopes("firing:t", recorded.clone()));
        if let Decision::Record { events, .. } =
            decide(&state, r, assigned, TWO_THIRDS, CHAIN).unwrap()
        {
            recorded.extend(events);
        }
    }
    fold(&envelopes("firing:t", recorded))
}

fn recorded(decision: &Decision) -> Vec<&'static str> {
    match decision {
        Decision::Record { events, .. } => events.iter().map(Event::type_name).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn two_of_three_equal_weights_attest() {
    let assigned = equal_weights(&[1, 2, 3]);
    // Given one report, no quorum yet.
    let first = decide(
        &FiringState::default(),
        &report(1, block(120)),
        &assigned,
        TWO_THIRDS,
        CHAIN,
    )
    .unwrap();
    assert_eq!(recorded(&first), ["TriggerReported"]);
    assert!(matches!(
        first,
        Decision::Record {
            attesting: None,
            ..
        }
    ));
    // When a second operator reports the same output, then the firing is attested by both.
    let state = given(&[report(1, block(120))], &assigned);
    let second = decide(&state, &report(2, block(120)), &assigned, TWO_THIRDS, CHAIN).unwrap();
    assert_eq!(recorded(&second), ["TriggerReported", "TriggerAttested"]);
    let Decision::Record { events, attesting } = second else {
        panic!("recorded")
    };
    assert_eq!(attesting, Some(Some(block(120))));
    let Some(Event::TriggerAttested(attested)) = events.last() else {
        panic!("attested")
    };
    assert_eq!(
        attested.signers,
        [format!("{:#x}", op(1)), format!("{:#x}", op(2))]
    );
    assert_eq!(attested.digest, hex::encode(digest_of(&block(120))));
    assert_eq!(attested.chain_id, CHAIN);
}

#[test]
fn disagreeing_digests_record_reports_disagreed_once() {
    let assigned = equal_weights(&[1, 2, 3]);
    let state = given(&[report(1, block(120))], &assigned);
    // When another operator reports another output, then the disagreement is recorded,
    let disagreeing = decide(&state, &report(2, block(121)), &assigned, TWO_THIRDS, CHAIN).unwrap();
    assert_eq!(
        recorded(&disagreeing),
        ["TriggerReported", "ReportsDisagreed"]
    );
    // and when that operator reports again, nothing more is.
    let state = given(&[report(1, block(120)), report(2, block(121))], &assigned);
    assert_eq!(state.disagreement.as_ref().map(BTreeMap::len), Some(2));
    assert_eq!(
        decide(&state, &report(2, block(121)), &assigned, TWO_THIRDS, CHAIN).unwrap(),
        Decision::Waiting
    );
    // A third report siding with the first forms the quorum on its digest: its output wins.
    let third = decide(&state, &report(3, block(120)), &assigned, TWO_THIRDS, CHAIN).unwrap();
    assert_eq!(
        recorded(&third),
        ["TriggerReported", "ReportsDisagreed", "TriggerAttested"]
    );
    assert!(
        matches!(third, Decision::Record { attesting: Some(Some(ref o)), .. } if *o == block(120))
    );
}

#[test]
fn an_unassigned_operators_report_weighs_nothing() {
    // Given operator 4 reported while it was assigned, and has lost the task since,
    let before = equal_weights(&[1, 2, 4]);
    let state = given(&[report(4, block(120))], &before);
    let now = equal_weights(&[1, 2, 3]);
    // when operator 1 agrees, then 1 of 3 is no quorum;
    let one = decide(&state, &report(1, block(120)), &now, TWO_THIRDS, CHAIN).unwrap();
    assert!(matches!(
        one,
        Decision::Record {
            attesting: None,
            ..
        }
    ));
    // and when operator 2 agrees too, the attestation's signers leave operator 4 out.
    let state = given(&[report(4, block(120)), report(1, block(120))], &now);
    let two = decide(&state, &report(2, block(120)), &now, TWO_THIRDS, CHAIN).unwrap();
    let Decision::Record { events, .. } = two else {
        panic!("recorded")
    };
    let Some(Event::TriggerAttested(attested)) = events.last() else {
        panic!("attested")
    };
    assert_eq!(
        attested.signers,
        [format!("{:#x}", op(1)), format!("{:#x}", op(2))]
    );
}

#[test]
fn an_attested_firing_is_fired_again_not_recorded_again() {
    let assigned = equal_weights(&[1, 2, 3]);
    let state = given(&[report(1, block(120)), report(2, block(120))], &assigned);
    let Some(attested) = &state.attested else {
        panic!("attested")
    };
    assert_eq!(attested.output, Some(block(120)));
    assert_eq!(
        decide(&state, &report(3, block(120)), &assigned, TWO_THIRDS, CHAIN).unwrap(),
        Decision::AlreadyAttested(attested.clone())
    );
}

#[test]
fn the_quorum_needs_its_share_of_the_weight_and_something_assigned() {
    assert!(TWO_THIRDS.reached(2, 3));
    assert!(!TWO_THIRDS.reached(1, 3));
    assert!(TWO_THIRDS.reached(20, 30));
    assert!(!TWO_THIRDS.reached(0, 0), "nothing assigned: never");
    assert!(
        Quorum {
            numerator: 1,
            denominator: 1
        }
        .reached(3, 3)
    );
    assert_eq!(TWO_THIRDS.to_string(), "2/3");
}
