//! `App`: what every request handler shares (config, store, keys, chain, limits), and the few
//! helpers every handler uses: appending a command, loading what a caller owns.
//!
//! Reads go straight to the projections on the async runtime: fjall point reads and short scans
//! are served from its block cache in microseconds, cheaper than a hop to a blocking thread.
//! Appends wait on the log writer through a channel and never block the runtime.

use std::sync::Arc;

use alloy::primitives::Address;
use events::{Command, Committed};
use projections::tasks::TaskRow;

use crate::address::lower;
use crate::auth::TokenIssuer;
use crate::chain::Chain;
use crate::config::Config;
use crate::domain::{DomainError, task};
use crate::limits::Limiter;
use crate::secret_box::SecretBox;
use crate::store::Store;
use crate::wallet::WalletFactory;

/// The version the sign-in message names.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct App {
    pub config: Config,
    pub store: Store,
    /// Signs and checks the JWTs (sessions and API keys).
    pub token_issuer: TokenIssuer,
    pub secret_box: SecretBox,
    /// The default factory (from the config), whose addresses derive offline.
    pub wallets: WalletFactory,
    pub chain: Option<Chain>,
    pub limiter: Limiter,
    /// One owner's creations that count against a quota, decided one after the other.
    pub owner_slots: crate::quota::OwnerSlots,
    pub engine: crate::engine::Engine,
    pub pool: std::sync::Arc<crate::operators::Pool>,
    /// ERC-20 metadata (`GetTokenMetadata`, and transfers' enrichment).
    pub token_directory: std::sync::Arc<crate::token_metadata::TokenDirectory>,
    /// Calls in flight or unanswered, for the client's retries (`rpc::repeats`).
    pub repeats: crate::rpc::repeats::CallRepeats,
    /// The log's checkpoints and the operators' cosignatures of them.
    pub transparency: std::sync::Arc<crate::transparency::Transparency>,
    /// When this process opened its state (ms since the epoch).
    pub started_ms: u64,
    /// On a replicated log (`event_log.backend: jetstream`): this process's replica (the
    /// writer's lease, forwarding, catching up before reads). `None` on fjall.
    pub replica: Option<std::sync::Arc<cluster::Replica>>,
}

pub type SharedApp = Arc<App>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// What the shared state's helpers fail with: a refusal by the rules, or the store. The gRPC
/// edge maps both (`rpc::error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] events::Error),
}

impl App {
    /// Whether this process writes the log: always on fjall; on a replicated log, while its
    /// replica holds the writer's lease. Timers that append and the ERC-4337 sender run only then.
    pub fn leads(&self) -> bool {
        self.replica.as_ref().is_none_or(|r| r.leading())
    }

    /// Before a read on a replica with `event_log.reads: linearizable`: waits until the local
    /// database holds the stream as of now, so the read sees every command acknowledged before
    /// it arrived, on whichever replica. Nothing to wait for on fjall or with `reads: local`.
    pub async fn caught_up(&self) -> Result<(), cluster::Error> {
        match &self.replica {
            Some(replica)
                if self.config.event_log.reads == crate::config::ReadConsistency::Linearizable =>
            {
                replica.caught_up().await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Appends a command, counting the events in the metrics.
    pub async fn append(&self, command: Command) -> events::Result<Committed> {
        self.store.append(command).await
    }

    /// Appends a command decided on state that may have moved: `Ok(None)` on a version conflict,
    /// for the caller to reload and decide again.
    pub async fn try_append(&self, command: Command) -> events::Result<Option<Committed>> {
        match self.store.append(command).await {
            Ok(committed) => Ok(Some(committed)),
            Err(events::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The task `id` if `owner` owns it; NOT_FOUND ("task not found") otherwise.
    pub fn owned_task(&self, owner: &str, id: &str) -> Result<TaskRow, AppError> {
        let row = self.store.views.task(id)?;
        Ok(task::owned(row.as_ref(), owner)?.clone())
    }

    /// The owner's salt-0 wallet of the default factory: always theirs, registered or not.
    pub fn default_wallet(&self, owner: Address) -> Address {
        self.wallets.address(owner, alloy::primitives::U256::ZERO)
    }

    /// Whether `wallet` may run the owner's tasks: the salt-0 wallet, or one they registered.
    pub fn is_owners_wallet(&self, owner: Address, wallet: Address) -> events::Result<bool> {
        if wallet == self.default_wallet(owner) {
            return Ok(true);
        }
        let row = self.store.views.wallet(&lower(owner), &lower(wallet))?;
        Ok(row.is_some())
    }
}
