//! Per-caller rate limits (token buckets keyed by caller), configured in `limits`.
//!
//! Two buckets per caller: every method, and the costly ones (`RunTrigger`, `RunNodeWithInputs`,
//! `SimulateTask`), which run arbitrary code and requests. Before sign-in the caller is the peer's
//! IP address.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;

#[derive(Clone)]
pub struct Limiter {
    calls: Arc<DefaultKeyedRateLimiter<String>>,
    runs: Arc<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

fn positive(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Limiter {
    pub fn new(limits: &LimitsConfig) -> Self {
        let calls = Quota::per_second(positive(limits.requests_per_second))
            .allow_burst(positive(limits.burst));
        let runs = Quota::per_minute(positive(limits.runs_per_minute));
        Self {
            calls: Arc::new(RateLimiter::dashmap(calls)),
            runs: Arc::new(RateLimiter::dashmap(runs)),
        }
    }

    /// Whether `caller` may make one more call.
    pub fn allow_call(&self, caller: &str) -> bool {
        self.calls.check_key(&caller.to_owned()).is_ok()
    }

    /// Whether `caller` may run one more piece of arbitrary code or request.
    pub fn allow_run(&self, caller: &str) -> bool {
        self.runs.check_key(&caller.to_owned()).is_ok()
    }

    /// Forgets callers whose buckets are full again; run now and then to bound memory.
    pub fn prune(&self) {
        self.calls.retain_recent();
        self.runs.retain_recent();
    }

    /// Prunes every minute until the runtime stops.
    pub fn spawn_pruner(&self) {
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.prune();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_burst_is_refused_and_others_are_not() {
        let limits = LimitsConfig {
            requests_per_second: 1,
            burst: 3,
            ..LimitsConfig::default()
        };
        let limiter = Limiter::new(&limits);
        assert!((0..3).all(|_| limiter.allow_call("a")));
        assert!(!limiter.allow_call("a"));
        assert!(limiter.allow_call("b"));
    }
}
