//! Sorting rows by their keys' bytes, for the sorted ingestion of a rebuild's rows.
//!
//! Projection keys are long and share long prefixes (a tag, then a task id, then an execution
//! id), and a rebuild's rows lie scattered over gigabytes of memory. A comparison sort compares
//! each key about log2(n) times, and each comparison follows two keys' pointers and runs
//! through the prefix they share: in a rebuild of 4.8 M events, sorting the rows was 17 % of the
//! process's CPU, nearly all of it in `memcmp` waiting for memory.
//!
//! This is a most-significant-digit radix sort with eight-byte digits: each pass reads every key
//! of a group once, at one depth, into a small contiguous entry (the digit, how many bytes the
//! key has left, the row's index), sorts the entries by digit without following any pointer,
//! and sends on only the runs of keys still equal to the next eight bytes. Small groups are
//! finished by comparing the rest of their keys.

/// Groups this small are sorted by comparing their keys' remaining bytes.
const SMALL: usize = 16;

/// A row's place in the sort: its key's eight bytes at the group's depth (zero-padded, big
/// endian, so they order as the bytes do), how many bytes the key has from that depth (capped
/// at 9: more than the digit holds), and the row's index.
#[derive(Clone, Copy)]
struct Entry {
    digit: u64,
    rest: u8,
    index: u32,
}

/// `items` in ascending order of `key` (bytes compared lexicographically, as fjall orders keys).
pub(crate) fn sort_by_key<T>(mut items: Vec<T>, key: impl Fn(&T) -> &[u8]) -> Vec<T> {
    let Ok(count) = u32::try_from(items.len()) else {
        items.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        return items;
    };
    let mut order: Vec<Entry> = (0..count)
        .map(|index| Entry {
            digit: 0,
            rest: 0,
            index,
        })
        .collect();
    let key_of = |entry: &Entry| key(&items[entry.index as usize]);
    // Groups still to sort: (start, end, depth). A stack rather than recursion: a group of keys
    // sharing a long prefix goes eight bytes deeper per pass, however long the prefix.
    let mut groups = vec![(0, order.len(), 0)];
    while let Some((start, end, depth)) = groups.pop() {
        let group = &mut order[start..end];
        if group.len() <= SMALL {
            group.sort_unstable_by(|a, b| tail(key_of(a), depth).cmp(tail(key_of(b), depth)));
            continue;
        }
        for entry in group.iter_mut() {
            let rest = tail(key_of(entry), depth);
            let mut digit = [0u8; 8];
            let taken = rest.len().min(8);
            digit[..taken].copy_from_slice(&rest[..taken]);
            entry.digit = u64::from_be_bytes(digit);
            entry.rest = u8::try_from(rest.len().min(9)).unwrap_or(9);
        }
        // Equal digits: a key that ends within them is a prefix of (or equal to) one that goes
        // on, so fewer bytes left sorts first.
        group.sort_unstable_by_key(|entry| (entry.digit, entry.rest));
        let mut run = 0;
        while run < group.len() {
            let first = group[run];
            let mut next = run + 1;
            while next < group.len()
                && group[next].digit == first.digit
                && group[next].rest == first.rest
            {
                next += 1;
            }
            if first.rest == 9 && next - run > 1 {
                groups.push((start + run, start + next, depth + 8));
            }
            run = next;
        }
    }
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    order
        .iter()
        .filter_map(|entry| slots.get_mut(entry.index as usize).and_then(Option::take))
        .collect()
}

fn tail(key: &[u8], depth: usize) -> &[u8] {
    key.get(depth..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        sort_by_key(keys, |k| k)
    }

    #[test]
    fn keys_sharing_long_prefixes_and_prefixes_of_each_other_sort_as_bytes() {
        // Keys shaped like a rebuild's: a tag, a task id, an execution id, with some keys the
        // prefix of others and zero bytes where the padding would be.
        let mut keys = Vec::new();
        for task in 0..40u32 {
            for exec in 0..5u32 {
                keys.push(format!("h01LOGTASK{task:017}:01LOGEXEC{exec:017}").into_bytes());
                keys.push(format!("s01LOGTASK{task:017}:01LOGEXEC{exec:017}:node").into_bytes());
            }
            keys.push(format!("h01LOGTASK{task:017}").into_bytes());
            keys.push(format!("h01LOGTASK{task:017}\0").into_bytes());
            keys.push(format!("h01LOGTASK{task:017}\0\0\0\0\0\0\0\0\0").into_bytes());
        }
        keys.push(Vec::new());
        keys.push(vec![0]);
        keys.reverse();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(sorted(keys), expected);
    }

    proptest! {
        #[test]
        fn it_orders_as_a_comparison_sort(
            prefix in proptest::collection::vec(any::<u8>(), 0..24),
            suffixes in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()],
                    0..20,
                ),
                0..300,
            )
        ) {
            // A shared prefix and a small alphabet: long runs of equal digits, keys that are
            // prefixes of others, duplicates.
            let keys: Vec<Vec<u8>> = suffixes
                .into_iter()
                .map(|suffix| [prefix.clone(), suffix].concat())
                .collect();
            let mut expected = keys.clone();
            expected.sort();
            prop_assert_eq!(sorted(keys), expected);
        }
    }
}
