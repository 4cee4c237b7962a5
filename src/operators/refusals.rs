//! Refused operator requests, counted by reason and by the registered operator they name: the
//! Prometheus counter `operator_requests_refused_total{reason}` and, for the console, the same
//! counts per operator.
//!
//! A refusal is put on an operator when the request's `x-operator-address` names a registered
//! one, whether or not the signature then verified: a stale clock or a forger using that name
//! both show up on the operator they concern. Requests naming no registered operator count
//! without one (so that made-up addresses cannot grow the map).

use std::collections::BTreeMap;
use std::sync::Mutex;

use alloy::primitives::Address;

#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<BTreeMap<(Option<Address>, &'static str), u64>>,
}

impl Refusals {
    /// Counts one refusal; `operator` is the registered operator the request named, if any.
    pub fn record(&self, operator: Option<Address>, reason: &'static str) {
        metrics::counter!("operator_requests_refused_total", "reason" => reason).increment(1);
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((operator, reason))
            .or_default() += 1;
    }

    /// Refusals naming `operator`, by reason.
    pub fn of(&self, operator: Address) -> BTreeMap<&'static str, u64> {
        self.select(Some(operator))
    }

    /// Refusals naming no registered operator, by reason.
    pub fn unattributed(&self) -> BTreeMap<&'static str, u64> {
        self.select(None)
    }

    fn select(&self, operator: Option<Address>) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((o, _), _)| *o == operator)
            .map(|((_, reason), n)| (*reason, *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_named_operator_and_apart_for_the_others() {
        let refusals = Refusals::default();
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        refusals.record(Some(a), "stale");
        refusals.record(Some(a), "stale");
        refusals.record(Some(a), "not_assigned");
        refusals.record(None, "unsigned");
        assert_eq!(
            refusals.of(a),
            BTreeMap::from([("not_assigned", 1), ("stale", 2)])
        );
        assert!(refusals.of(b).is_empty());
        assert_eq!(refusals.unattributed(), BTreeMap::from([("unsigned", 1)]));
    }
}
