//! Where the pool learns of operators connected to other processes: the presence the log's
//! writer decides assignments from.
//!
//! The pool always knows the streams it holds itself (`pool::Member`'s connection, its
//! capabilities, since when it is gone). A `PresenceStore` adds the operators connected to
//! other replicas of a replicated log:
//! - `InProcess` (the fjall backend, one process): there are none; every call is a no-op, so the
//!   single node keeps its in-process presence at no cost;
//! - `cluster::KvPresence` (the jetstream backend): a KV bucket beside the stream, kept alive by
//!   the replica holding each stream (see its module for why a bucket and not the log). The
//!   value is the operator's capabilities as JSON.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use events::BoxFuture;

use crate::domain::assignment::Capabilities;

/// Operators connected to other processes, and this process's own, told to them.
pub trait PresenceStore: Send + Sync + 'static {
    /// This process holds `operator`'s stream from now on, with `capabilities`.
    fn joined(&self, operator: Address, capabilities: Capabilities);
    /// This process no longer holds `operator`'s stream.
    fn left(&self, operator: Address);
    /// The operators other processes hold now, with their capabilities and which replica.
    fn elsewhere(&self) -> BTreeMap<Address, Elsewhere>;
    /// Resolves when `elsewhere` changed (an operator appeared or left); never, in one process.
    fn changed(&self) -> BoxFuture<'_, ()>;
}

/// An operator connected to another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    pub replica: String,
    pub capabilities: Capabilities,
}

/// One process: no operator is connected anywhere else.
#[derive(Debug, Default)]
pub struct InProcess;

impl PresenceStore for InProcess {
    fn joined(&self, _: Address, _: Capabilities) {}

    fn left(&self, _: Address) {}

    fn elsewhere(&self) -> BTreeMap<Address, Elsewhere> {
        BTreeMap::new()
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// The bucket's key of an operator: its address in lowercase hex, without `0x`.
fn key(operator: Address) -> String {
    hex::encode(operator)
}

impl PresenceStore for cluster::KvPresence {
    fn joined(&self, operator: Address, capabilities: Capabilities) {
        match serde_json::to_vec(&capabilities) {
            Ok(value) => self.hold(&key(operator), value),
            Err(e) => tracing::warn!(error = %e, "encoding an operator's capabilities"),
        }
    }

    fn left(&self, operator: Address) {
        self.release(&key(operator));
    }

    fn elsewhere(&self) -> BTreeMap<Address, Elsewhere> {
        let mut elsewhere = BTreeMap::new();
        for present in self.others() {
            let (Ok(operator), Ok(capabilities)) = (
                format!("0x{}", present.operator).parse::<Address>(),
                serde_json::from_slice::<Capabilities>(&present.value),
            ) else {
                tracing::debug!(
                    key = present.operator,
                    "an unreadable presence entry, skipped"
                );
                continue;
            };
            // Held by two replicas at once (a move whose old stream has not ended yet): either
            // says it is connected; the capabilities are those of the replica named last.
            elsewhere.insert(
                operator,
                Elsewhere {
                    replica: present.replica,
                    capabilities,
                },
            );
        }
        elsewhere
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(cluster::KvPresence::changed(self))
    }
}
