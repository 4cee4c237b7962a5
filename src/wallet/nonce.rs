//! Nonces that parallel writes cannot collide on.
//!
//! A v0.6 nonce is `key (192 bits) ‖ sequence (64 bits)`, and the EntryPoint keeps one sequence
//! per (wallet, key). Each purpose gets a key of its own, derived from what it is for (the
//! execution and node ids of a step, the id of a withdrawal), so that:
//! - different executions, and different nodes of one execution, never share a sequence (the
//!   original used key 0 for everything: two writes from one wallet took the same nonce);
//! - a resumed run derives the same key again and finds, in the chain's sequence for it, how far
//!   its own operations got;
//! - the writes of one loop share the loop node's key: their sequences are the iterations' order.
//!
//! The [`NonceBook`] reserves sequences before signing, so two operations built at once on one
//! key (which the keys make rare) still get distinct nonces; on AA25 or a dropped operation the
//! caller resyncs the entry from the chain (the original's cache ran ahead of the chain and
//! wedged the wallet until a restart).

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::{Address, U256, aliases::U192, keccak256};

/// The nonce key of a step: the first 24 bytes of
/// `keccak256("ava-nonce-key-v1" ‖ 0 ‖ execution id ‖ 0 ‖ node id)`.
pub fn step_key(execution_id: &str, node_id: &str) -> U192 {
    derive(&["step", execution_id, node_id])
}

/// The nonce key of a withdrawal.
pub fn withdrawal_key(withdrawal_id: &str) -> U192 {
    derive(&["withdrawal", withdrawal_id])
}

fn derive(parts: &[&str]) -> U192 {
    let mut input = b"ava-nonce-key-v1".to_vec();
    for part in parts {
        input.push(0);
        input.extend_from_slice(part.as_bytes());
    }
    let digest = keccak256(&input);
    U192::from_be_slice(&digest[..24])
}

/// `key ‖ sequence`, the nonce a user operation carries.
pub fn compose(key: U192, sequence: u64) -> U256 {
    (U256::from(key) << 64) | U256::from(sequence)
}

/// The key and the sequence of a nonce.
pub fn split(nonce: U256) -> (U192, u64) {
    let sequence = nonce.as_limbs()[0];
    (U192::from(nonce >> 64), sequence)
}

/// The next sequence to hand out per (wallet, key), never behind what the chain says.
#[derive(Debug, Default)]
pub struct NonceBook {
    next: Mutex<HashMap<(Address, U192), u64>>,
}

impl NonceBook {
    /// Reserves the next sequence of `(wallet, key)`, given the chain's next one (from
    /// `EntryPoint.getNonce`): the larger of the chain's and the book's, so that a sequence
    /// reserved and not yet on chain is not handed out twice.
    pub fn reserve(&self, wallet: Address, key: U192, on_chain: u64) -> u64 {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = next.entry((wallet, key)).or_insert(on_chain);
        let sequence = (*slot).max(on_chain);
        *slot = sequence.saturating_add(1);
        sequence
    }

    /// Forgets what the book reserved beyond the chain: after AA25 (the chain moved on, or the
    /// book ran ahead of it) or an operation that will never land.
    pub fn resync(&self, wallet: Address, key: U192, on_chain: u64) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        next.insert((wallet, key), on_chain);
    }

    /// Drops the entry of a key whose purpose is done (its sequence lives on chain).
    pub fn release(&self, wallet: Address, key: U192) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        next.remove(&(wallet, key));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct_per_purpose() {
        assert_eq!(step_key("01JEXEC", "node1"), step_key("01JEXEC", "node1"));
        assert_ne!(step_key("01JEXEC", "node1"), step_key("01JEXEC", "node2"));
        assert_ne!(step_key("01JEXEC", "node1"), step_key("01JEXED", "node1"));
        // No ambiguity from concatenation.
        assert_ne!(step_key("ab", "c"), step_key("a", "bc"));
        assert_ne!(withdrawal_key("x"), step_key("x", ""));
        assert_ne!(step_key("01JEXEC", "node1"), U192::ZERO);
    }

    #[test]
    fn given_a_fresh_key_when_reserving_twice_then_the_sequences_follow() {
        let book = NonceBook::default();
        let (wallet, key) = (Address::repeat_byte(1), step_key("e", "n"));
        assert_eq!(book.reserve(wallet, key, 0), 0);
        assert_eq!(book.reserve(wallet, key, 0), 1);
        // The chain caught up past the book (an op sent out of band): the chain wins.
        assert_eq!(book.reserve(wallet, key, 5), 5);
        assert_eq!(book.reserve(wallet, key, 5), 6);
        // Another key and another wallet have sequences of their own.
        assert_eq!(book.reserve(wallet, step_key("e", "m"), 0), 0);
        assert_eq!(book.reserve(Address::repeat_byte(2), key, 0), 0);
    }

    #[test]
    fn given_a_book_ahead_of_the_chain_when_resyncing_then_it_follows_the_chain() {
        let book = NonceBook::default();
        let (wallet, key) = (Address::repeat_byte(1), U192::from(9));
        for _ in 0..3 {
            book.reserve(wallet, key, 0);
        }
        // Two of the three never landed (AA25 on the third): back to what the chain says.
        book.resync(wallet, key, 1);
        assert_eq!(book.reserve(wallet, key, 1), 1);
        book.release(wallet, key);
        assert_eq!(book.reserve(wallet, key, 0), 0);
    }

    #[test]
    fn parallel_reservations_never_collide() {
        let book = std::sync::Arc::new(NonceBook::default());
        let (wallet, key) = (Address::repeat_byte(3), U192::from(1));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let book = book.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .map(|_| book.reserve(wallet, key, 0))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..800).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn compose_and_split_are_inverse(key in any::<[u8; 24]>(), sequence in any::<u64>()) {
            let key = U192::from_be_bytes(key);
            prop_assert_eq!(split(compose(key, sequence)), (key, sequence));
        }
    }
}
