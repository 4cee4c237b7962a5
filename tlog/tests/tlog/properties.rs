//! The Merkle tree against an independent implementation written from RFC 6962 §2.1 here (the
//! recursive MTH, PATH and PROOF definitions, on plain sha2), against the Certificate
//! Transparency reference vectors, and proofs that fail for any changed byte, index or size.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tlog::{Hash, MemoryTiles, Tree, proof};

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 6962: MTH({d(0)}) = SHA-256(0x00 ‖ d(0)).
fn leaf(data: &[u8]) -> [u8; 32] {
    sha(&[&[0], data])
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    sha(&[&[1], l, r])
}

/// The largest power of two smaller than n (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[[u8; 32]], whole: bool) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], whole);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn leaves(n: usize, seed: u64) -> Vec<[u8; 32]> {
    (0..n as u64)
        .map(|i| leaf(&(i ^ seed.rotate_left(17)).to_le_bytes()))
        .collect()
}

fn built(leaves: &[[u8; 32]]) -> (Tree, MemoryTiles) {
    let mut tree = Tree::new();
    let mut tiles = MemoryTiles::default();
    for (i, l) in leaves.iter().enumerate() {
        tree.push(Hash(*l));
        // Persist at irregular points, as group commits do.
        if i % 7 == 3 {
            for (id, data) in tree.take_tiles() {
                tiles.put(id, data);
            }
        }
    }
    for (id, data) in tree.take_tiles() {
        tiles.put(id, data);
    }
    (tree, tiles)
}

fn hashes(raw: &[[u8; 32]]) -> Vec<Hash> {
    raw.iter().map(|h| Hash(*h)).collect()
}

#[test]
fn roots_match_the_certificate_transparency_vectors() {
    let data: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut tree = Tree::new();
    assert_eq!(hex::encode(tree.root().unwrap().0), roots[0]);
    for (n, d) in data.iter().enumerate() {
        tree.push(tlog_tiles::record_hash(d));
        assert_eq!(
            hex::encode(tree.root().unwrap().0),
            roots[n + 1],
            "size {}",
            n + 1
        );
    }
    // The reference inclusion proof of leaf 5 in the tree of 8 (from the same test data).
    let (_, tiles) = built(&data.iter().map(|d| leaf(d)).collect::<Vec<_>>());
    let p = proof::inclusion(&tiles, 8, 5).unwrap();
    let want = [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ];
    let got: Vec<String> = p.iter().map(|h| hex::encode(h.0)).collect();
    assert_eq!(got, want);
}

/// Sizes that cross tile boundaries (256, 65 536) more often than uniform sampling would.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..300,
        250usize..1100,
        Just(256),
        Just(257),
        Just(512),
        60_000usize..66_000
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn roots_of_every_prefix_match_the_reference(n in size(), seed in any::<u64>(), picks in prop::collection::vec(any::<prop::sample::Index>(), 1..6)) {
        let leaves = leaves(n, seed);
        let (tree, tiles) = built(&leaves);
        prop_assert_eq!(tree.root().unwrap().0, mth(&leaves));
        let reloaded = Tree::load(&tiles, n as u64).unwrap();
        prop_assert_eq!(reloaded.root().unwrap().0, mth(&leaves));
        for pick in picks {
            let k = pick.index(n) + 1;
            prop_assert_eq!(proof::root(&tiles, k as u64).unwrap().0, mth(&leaves[..k]), "prefix {}", k);
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_fail_for_any_change(n in 1usize..1100, seed in any::<u64>(), pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), bit in 0u8..8, tree_pick in any::<prop::sample::Index>()) {
        let leaves = leaves(n, seed);
        let (_, tiles) = built(&leaves);
        let size = tree_pick.index(n) + 1;
        let index = pick.index(size);
        let root = Hash(mth(&leaves[..size]));
        let p = proof::inclusion(&tiles, size as u64, index as u64).unwrap();
        prop_assert_eq!(&p, &hashes(&path(index, &leaves[..size])), "the audit path RFC 6962 defines");
        let leaf = Hash(leaves[index]);
        proof::verify_inclusion(&p, size as u64, root, index as u64, leaf).unwrap();

        if !p.is_empty() {
            let mut changed = p.clone();
            let i = at.index(changed.len());
            changed[i].0[usize::from(bit) * 4 % 32] ^= 1 << bit;
            prop_assert!(proof::verify_inclusion(&changed, size as u64, root, index as u64, leaf).is_err());
            prop_assert!(proof::verify_inclusion(&p[1..], size as u64, root, index as u64, leaf).is_err(), "a shortened proof");
        }
        let mut other_leaf = leaf;
        other_leaf.0[usize::from(bit)] ^= 0x80;
        prop_assert!(proof::verify_inclusion(&p, size as u64, root, index as u64, other_leaf).is_err());
        let mut other_root = root;
        other_root.0[31 - usize::from(bit)] ^= 1;
        prop_assert!(proof::verify_inclusion(&p, size as u64, other_root, index as u64, leaf).is_err());
        for other_index in [index.wrapping_sub(1), index + 1, index ^ 2] {
            if other_index < size && other_index != index {
                prop_assert!(proof::verify_inclusion(&p, size as u64, root, other_index as u64, leaf).is_err(), "index {}", other_index);
            }
        }
        // Another size, with the root a checkpoint of that size would carry. (With the root
        // unchanged a proof can fit another size's shape: an audit path does not commit to
        // the size, the signed checkpoint does.)
        for other_size in [size + 1, size * 2, size.saturating_sub(1)] {
            if other_size > index && other_size != size && other_size <= n {
                let other_root = Hash(mth(&leaves[..other_size]));
                prop_assert!(proof::verify_inclusion(&p, other_size as u64, other_root, index as u64, leaf).is_err(), "size {}", other_size);
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_fail_for_any_change(n in 2usize..1100, seed in any::<u64>(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let leaves = leaves(n, seed);
        let (_, tiles) = built(&leaves);
        let (x, y) = (a.index(n) + 1, b.index(n) + 1);
        let (old, new) = (x.min(y), x.max(y));
        let (old_root, new_root) = (Hash(mth(&leaves[..old])), Hash(mth(&leaves[..new])));
        let p = proof::consistency(&tiles, old as u64, new as u64).unwrap();
        if old < new {
            prop_assert_eq!(&p, &hashes(&subproof(old, &leaves[..new], true)), "the proof RFC 6962 defines");
        }
        proof::verify_consistency(&p, old as u64, old_root, new as u64, new_root).unwrap();

        if !p.is_empty() {
            let mut changed = p.clone();
            let i = at.index(changed.len());
            changed[i].0[usize::from(bit) * 3 % 32] ^= 1 << bit;
            prop_assert!(proof::verify_consistency(&changed, old as u64, old_root, new as u64, new_root).is_err());
        }
        let mut other = old_root;
        other.0[usize::from(bit)] ^= 4;
        prop_assert!(proof::verify_consistency(&p, old as u64, other, new as u64, new_root).is_err());
        let mut other = new_root;
        other.0[usize::from(bit)] ^= 4;
        prop_assert!(proof::verify_consistency(&p, old as u64, old_root, new as u64, other).is_err());
        // Other sizes, with the roots checkpoints of those sizes would carry.
        for (o, w) in [(old + 1, new), (old.saturating_sub(1), new), (old, new + 1), (old, new - 1)] {
            if o >= 1 && o <= w && w <= n && (o, w) != (old, new) {
                let (o_root, w_root) = (Hash(mth(&leaves[..o])), Hash(mth(&leaves[..w])));
                prop_assert!(proof::verify_consistency(&p, o as u64, o_root, w as u64, w_root).is_err(), "sizes {} {}", o, w);
            }
        }
        prop_assert!(proof::verify_consistency(&p, new as u64, new_root, old as u64, old_root).is_err() || old == new, "reversed");
    }
}

#[test]
fn proofs_outside_the_tree_are_errors_not_panics() {
    let leaves = leaves(300, 1);
    let (_, tiles) = built(&leaves);
    assert!(proof::inclusion(&tiles, 300, 300).is_err());
    assert!(
        proof::inclusion(&tiles, 301, 3).is_err(),
        "a size past the stored tree"
    );
    assert!(proof::consistency(&tiles, 5, 301).is_err());
    assert!(proof::consistency(&tiles, 9, 8).is_err());
    assert!(proof::root(&tiles, 301).is_err());
    let root = Hash(mth(&leaves));
    assert!(proof::verify_inclusion(&[], 0, root, 0, Hash(leaves[0])).is_err());
    assert!(proof::verify_consistency(&[root], 0, root, 5, root).is_err());
    assert!(proof::verify_consistency(&vec![root; 500], 3, root, 300, root).is_err());
}
