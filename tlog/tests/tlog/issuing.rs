//! Issuing checkpoints as the tree grows and gathering cosignatures onto them.

use std::collections::BTreeMap;

use tlog::cosign;
use tlog::issue::{Cosigned, Issuer};
use tlog::{LogKey, LogVerifier, TileStore, proof};

use crate::support::{ORIGIN, Ran, World, append_wallets};

fn issuer(world: &World) -> Issuer {
    let key = LogKey::from_secret(world.key.secret()).unwrap();
    Issuer::new(world.db.clone(), TileStore::open(&world.db).unwrap(), key)
}

#[test]
fn a_checkpoint_is_issued_when_the_tree_grew_and_cosigned_once_a_quorum_signed() {
    let world = World::new(Ran::Attested);
    let issuer = issuer(&world);
    assert_eq!(issuer.issue().unwrap(), None, "no tree yet");
    tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {}).unwrap();
    let first = issuer.issue().unwrap().unwrap();
    assert_eq!(first.previous, 0);
    assert_eq!(issuer.issue().unwrap(), None, "the tree did not grow");

    append_wallets(&world, 10);
    tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {}).unwrap();
    let second = issuer.issue().unwrap().unwrap();
    assert_eq!(
        (second.previous, second.size),
        (first.size, first.size + 10)
    );
    let p = issuer.consistency(first.size, second.size).unwrap();
    proof::verify_consistency(&p, first.size, first.root, second.size, second.root).unwrap();

    let text = tlog::checkpoint::note_text(&second.note).unwrap();
    let weights: BTreeMap<_, _> = world
        .operators
        .iter()
        .map(|o| (o.ecdsa.address(), 1u64))
        .collect();
    let sign = |i: usize| {
        let op = &world.operators[i];
        let signature = cosign::sign(&op.bls, &text);
        issuer.cosign(
            second.size,
            op.ecdsa.address(),
            &op.bls.sk_to_pk(),
            &signature,
            &weights,
            2,
        )
    };
    assert_eq!(
        sign(0).unwrap(),
        Cosigned::Kept {
            weight: 1,
            required: 2
        }
    );
    assert_eq!(
        sign(1).unwrap(),
        Cosigned::Aggregated {
            signers: 2,
            weight: 2
        }
    );
    assert_eq!(
        sign(2).unwrap(),
        Cosigned::Aggregated {
            signers: 3,
            weight: 3
        }
    );
    assert_eq!(
        sign(2).unwrap(),
        Cosigned::Aggregated {
            signers: 3,
            weight: 3
        },
        "again"
    );

    let stored = world.store.checkpoint(second.size).unwrap().unwrap();
    let opened = LogVerifier::new(world.key.verifier().key())
        .unwrap()
        .open(&stored)
        .unwrap();
    let quorum = world
        .operator_set(&[0, 1, 2])
        .verify(&opened.text, opened.cosignature.as_ref().unwrap(), 3)
        .unwrap();
    assert_eq!(quorum.weight, 3);
    assert_eq!(
        String::from_utf8(stored)
            .unwrap()
            .matches(&format!("{ORIGIN}/operators"))
            .count(),
        1
    );

    // A signature by another key, or of another checkpoint, is refused.
    let op = &world.operators[0];
    let other = cosign::sign(&op.bls, b"another text\n");
    assert!(
        issuer
            .cosign(
                second.size,
                op.ecdsa.address(),
                &op.bls.sk_to_pk(),
                &other,
                &weights,
                2
            )
            .is_err()
    );
    let theirs = cosign::sign(&world.operators[1].bls, &text);
    assert!(
        issuer
            .cosign(
                second.size,
                op.ecdsa.address(),
                &op.bls.sk_to_pk(),
                &theirs,
                &weights,
                2
            )
            .is_err()
    );
    assert!(
        issuer
            .cosign(
                second.size + 1,
                op.ecdsa.address(),
                &op.bls.sk_to_pk(),
                &other,
                &weights,
                2
            )
            .is_err()
    );
}

#[test]
fn a_tree_that_changed_under_a_checkpoint_is_never_signed() {
    let world = World::new(Ran::Attested);
    let issuer = issuer(&world);
    tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {}).unwrap();
    issuer.issue().unwrap().unwrap();
    // Rewrite the partial level-0 tile, as someone with the data directory could (a full
    // tile's root lives in the tile above: rewriting one is caught by the proofs through it).
    let id = tlog::TileId::new(0, 1);
    let mut tile = tlog::TileSource::tile(&world.store, id).unwrap().unwrap();
    tile[0] ^= 1;
    world
        .store
        .keyspace()
        .insert(tlog::store::tile_key(id), tile)
        .unwrap();
    append_wallets(&world, 3);
    tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {}).unwrap();
    let err = issuer.issue().unwrap_err().to_string();
    assert!(
        err.contains("refusing to sign an inconsistent checkpoint"),
        "{err}"
    );
}

#[test]
fn a_tree_whose_last_event_left_the_log_is_reported() {
    let world = World::new(Ran::Attested);
    tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {}).unwrap();
    let (last, _) = world.log.head().unwrap().unwrap();
    world
        .log
        .keyspaces()
        .events
        .remove(last.to_bytes())
        .unwrap();
    let err = tlog::follow::catch_up(&world.db, world.log.keyspaces(), &world.store, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("which the log no longer holds"), "{err}");
}
