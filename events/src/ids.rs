//! The log's one monotonic ULID generator.

use std::time::{SystemTime, UNIX_EPOCH};

use ulid::Ulid;

/// Strictly increasing ULIDs, also across restarts (seeded with the last stored one) and when the
/// wall clock steps back: then the last ULID is incremented instead.
#[derive(Debug)]
pub(crate) struct MonotonicUlids {
    last: Ulid,
}

impl MonotonicUlids {
    pub fn after(last: Ulid) -> Self {
        Self { last }
    }

    /// The last ULID handed out or observed.
    pub fn last(&self) -> Ulid {
        self.last
    }

    /// Takes note of a ULID another writer handed out: the next one comes after it.
    pub fn observe(&mut self, id: Ulid) {
        self.last = self.last.max(id);
    }

    pub fn next(&mut self) -> Ulid {
        let candidate = Ulid::from_parts(now_ms(), Ulid::generate().random());
        let id = if candidate > self.last {
            candidate
        } else {
            self.last
                .increment()
                .unwrap_or_else(|_| Ulid::from_parts(self.last.timestamp_ms() + 1, 0))
        };
        self.last = id;
        id
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back_even_after_a_future_seed() {
        let future = Ulid::from_parts(now_ms() + 3_600_000, u128::MAX >> 48);
        let mut ids = MonotonicUlids::after(future);
        let mut prev = future;
        for _ in 0..10_000 {
            let id = ids.next();
            assert!(id > prev, "{id} after {prev}");
            prev = id;
        }
    }
}
