//! Execution bundles made from a real log and checked offline: the honest one verifies, after a
//! trip through JSON as a third party receives it; each kind of lie is caught and named.

use tlog::bundle::{self, Bundle, Status, Trust};
use tlog::cosign::{self, Cosigned, Refusal};
use tlog::{LogVerifier, proof};

use crate::support::{EXECUTION, ORIGIN, Ran, World};

fn trust(world: &World, operators: Option<&[usize]>, quorum: Option<u64>) -> Trust {
    Trust {
        log: LogVerifier::new(world.key.verifier().key()).unwrap(),
        operators: operators.map(|o| world.operator_set(o)),
        quorum,
    }
}

fn honest() -> (World, Bundle) {
    let world = World::new(Ran::Attested);
    let (size, note) = world.checkpoint(&[0, 1, 2]);
    let b = bundle::build(world.log.keyspaces(), &world.store, EXECUTION, &note, size).unwrap();
    (world, b)
}

fn error(bundle: &Bundle, trust: &Trust) -> String {
    bundle::verify(bundle, trust).unwrap_err().to_string()
}

#[test]
fn an_honest_bundle_verifies_from_its_json_alone() {
    let (world, made) = honest();
    let json = serde_json::to_string_pretty(&made).unwrap();
    // What a third party holds: the JSON, the log key, the operator set.
    let received: Bundle = serde_json::from_str(&json).unwrap();
    let verified = bundle::verify(&received, &trust(&world, Some(&[0, 1, 2]), None)).unwrap();
    assert_eq!(
        verified.events, 7,
        "4 execution events, 2 reports, 1 attestation"
    );
    assert_eq!(verified.cosignature.unwrap().weight, 3);
    assert_eq!(verified.attestation, Some(2));
    assert_eq!(verified.summary.status, Status::Success);
    assert_eq!(verified.summary.trigger.block_number, Some(12340));
    assert_eq!(verified.summary.steps.len(), 2);
    assert!(
        made.events.iter().all(|e| e.index > 300),
        "behind the filler events"
    );

    // Without an operator set the log's word is checked, and the report says what was not.
    let log_only = bundle::verify(&received, &trust(&world, None, None)).unwrap();
    assert!(log_only.cosignature.is_none());
    assert!(log_only.to_string().contains("not checked"), "{log_only}");
}

#[test]
fn a_changed_byte_in_any_event_is_caught_and_named() {
    let (world, made) = honest();
    let t = trust(&world, Some(&[0, 1, 2]), None);
    for n in 0..made.events.len() {
        let mut b = made.clone();
        // The step's output, a report's signature, ...: change one digit of the body.
        let body = &mut b.events[n].body;
        let at = body.rfind(|c: char| c.is_ascii_digit()).unwrap();
        let digit = body.as_bytes()[at];
        let replaced = if digit == b'9' {
            '0'
        } else {
            char::from(digit + 1)
        };
        body.replace_range(at..=at, &replaced.to_string());
        let err = error(&b, &t);
        assert!(
            err.contains(&format!("event #{n}")) && err.contains("not the event the log holds"),
            "{err}"
        );
    }
}

#[test]
fn summaries_that_the_events_do_not_back_are_refused() {
    let (world, made) = honest();
    let t = trust(&world, None, None);
    let mut b = made.clone();
    b.summary.status = Status::Failed;
    assert!(error(&b, &t).contains("the summary says status Failed, the events say Success"));
    let mut b = made.clone();
    b.summary.steps[1].output = Some(serde_json::json!({"price": 43}));
    assert!(
        error(&b, &t).contains("step 1 (node1)"),
        "{}",
        error(&b, &t)
    );
    let mut b = made.clone();
    b.summary.trigger.block_number = Some(99);
    assert!(error(&b, &t).contains("the trigger was"));
    let mut b = made;
    b.summary.steps.pop();
    assert!(error(&b, &t).contains("number of steps"));
}

#[test]
fn left_out_moved_or_foreign_events_are_refused() {
    let (world, made) = honest();
    let t = trust(&world, None, None);
    let exec = made
        .events
        .iter()
        .position(|e| e.body.contains("\"StepRecorded\""))
        .unwrap();
    let mut b = made.clone();
    b.events.remove(exec);
    assert!(
        error(&b, &t).contains("leaves events out"),
        "{}",
        error(&b, &t)
    );
    let mut b = made.clone();
    b.events[exec].index += 1;
    assert!(error(&b, &t).contains("not the event the log holds"));
    let mut b = made.clone();
    b.events.swap(0, 1);
    assert!(error(&b, &t).contains("log order"));
    let mut b = made;
    b.events.clear();
    assert!(error(&b, &t).contains("no events"));
}

#[test]
fn the_checkpoint_must_be_the_log_keys_and_cosigned_by_a_quorum_of_the_auditors_set() {
    let (world, made) = honest();
    let stranger = tlog::LogKey::generate(ORIGIN).unwrap();
    let t = Trust {
        log: LogVerifier::new(stranger.verifier().key()).unwrap(),
        operators: None,
        quorum: None,
    };
    assert!(error(&made, &t).contains("not signed by the log key"));

    assert!(
        error(&made, &trust(&world, Some(&[0, 1]), None)).contains("not in the operator set given"),
        "a cosigner the auditor does not know"
    );
    assert!(error(&made, &trust(&world, Some(&[0, 1, 2]), Some(4))).contains("no quorum"));

    // Cosigned by one of three: below the default two thirds.
    let (size, note) = world.checkpoint(&[2]);
    let one = bundle::build(world.log.keyspaces(), &world.store, EXECUTION, &note, size).unwrap();
    let err = error(&one, &trust(&world, Some(&[0, 1, 2]), None));
    assert!(
        err.contains("no quorum: 1 operators holding weight 1 of 3"),
        "{err}"
    );
    bundle::verify(&one, &trust(&world, Some(&[0, 1, 2]), Some(1))).unwrap();

    // Not cosigned at all: the aggregator's word alone (on a grown log, so another text).
    crate::support::append_wallets(&world, 3);
    let (size, note) = world.checkpoint(&[]);
    let none = bundle::build(world.log.keyspaces(), &world.store, EXECUTION, &note, size).unwrap();
    assert!(
        error(&none, &trust(&world, Some(&[0, 1, 2]), None)).contains("no operators' cosignature")
    );

    // A cosignature line moved onto another checkpoint does not verify there.
    let mut moved = made.clone();
    let line = made.checkpoint.lines().last().unwrap().to_owned();
    moved.checkpoint = format!("{}{line}\n", none.checkpoint);
    assert!(error(&moved, &trust(&world, Some(&[0, 1, 2]), None)).contains("does not verify"));
}

#[test]
fn an_execution_that_ran_on_an_unattested_output_is_caught() {
    let world = World::new(Ran::OtherOutput);
    let (size, note) = world.checkpoint(&[0, 1, 2]);
    let b = bundle::build(world.log.keyspaces(), &world.store, EXECUTION, &note, size).unwrap();
    let err = error(&b, &trust(&world, None, None));
    assert!(err.contains("output the operators did not attest"), "{err}");
}

#[test]
fn an_attestation_must_verify_against_the_auditors_keys() {
    let (world, made) = honest();
    // The auditor's set names the same addresses with other BLS keys.
    let impostors: Vec<_> = [7u8, 8, 9]
        .iter()
        .zip(&world.operators)
        .map(|(seed, op)| {
            let bls = attest::bls_key(&[*seed; 32]).unwrap();
            cosign::Member {
                address: op.address(),
                bls_public_key: hex::encode(bls.sk_to_pk().to_bytes()),
                proof_of_possession: hex::encode(attest::proof_of_possession(&bls)),
                ecdsa_binding: String::new(),
                weight: 1,
            }
        })
        .collect();
    let t = Trust {
        log: LogVerifier::new(world.key.verifier().key()).unwrap(),
        operators: Some(tlog::OperatorSet::new(&impostors).unwrap()),
        quorum: Some(0),
    };
    let err = error(&made, &t);
    assert!(
        err.contains("cosignature") && err.contains("does not verify"),
        "{err}"
    );
}

#[test]
fn a_bundle_needs_its_events_in_a_checkpoint() {
    let world = World::new(Ran::Attested);
    let (size, note) = world.checkpoint(&[]);
    let err = bundle::build(
        world.log.keyspaces(),
        &world.store,
        EXECUTION,
        &note,
        size - 1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("newer than the latest checkpoint"), "{err}");
    assert!(
        bundle::build(
            world.log.keyspaces(),
            &world.store,
            "01JG2G0000000000000000NONE",
            &note,
            size
        )
        .unwrap_err()
        .to_string()
        .contains("no execution")
    );
}

#[test]
fn an_operator_cosigns_consistent_growth_only() {
    let world = World::new(Ran::Attested);
    let verifier = LogVerifier::new(world.key.verifier().key()).unwrap();
    let (size, note) = world.checkpoint(&[]);
    let first = verifier.open(&note).unwrap();
    assert_eq!(cosign::may_cosign(None, &first, 0, &[]), Ok(()));
    let state = Cosigned {
        origin: first.origin.clone(),
        log_key: verifier.key().into(),
        size: first.size,
        root: first.root.to_string(),
    };
    assert_eq!(
        cosign::may_cosign(Some(&state), &first, 0, &[]),
        Ok(()),
        "the same again"
    );

    // The log grows; the proof from the cosigned size convinces.
    crate::support::append_wallets(&world, 40);
    let (new_size, new_note) = world.checkpoint(&[]);
    let grown = verifier.open(&new_note).unwrap();
    let p = proof::consistency(&world.store, size, new_size).unwrap();
    assert_eq!(cosign::may_cosign(Some(&state), &grown, size, &p), Ok(()));
    assert_eq!(
        cosign::may_cosign(Some(&state), &grown, size - 1, &p),
        Err(Refusal::NeedProof { from: size })
    );
    let mut bad = p.clone();
    bad[0].0[0] ^= 1;
    assert!(matches!(
        cosign::may_cosign(Some(&state), &grown, size, &bad),
        Err(Refusal::Inconsistent { .. })
    ));

    // A second root for the cosigned size: a fork.
    let forked_note = world.key.sign(size, grown.root).unwrap();
    let forked = verifier.open(&forked_note).unwrap();
    assert!(matches!(
        cosign::may_cosign(Some(&state), &forked, size, &[]),
        Err(Refusal::Fork { .. })
    ));
    // A smaller tree than the one cosigned.
    let later = Cosigned {
        size: grown.size,
        root: grown.root.to_string(),
        ..state.clone()
    };
    assert!(matches!(
        cosign::may_cosign(Some(&later), &first, size, &[]),
        Err(Refusal::Rollback { .. })
    ));
}
