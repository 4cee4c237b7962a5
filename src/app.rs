//! `App`: what every request handler shares (config, store, keys, chain, limits), and the few
//! helpers every handler uses: the clock, appending a command, loading what a caller owns.
//!
//! Reads go straight to the projections on the async runtime: fjall point reads and short scans
//! are served from its block cache in microseconds, cheaper than a hop to a blocking thread.
//! Appends wait on the log writer through a channel and never block the runtime.

use std::sync::Arc;

use alloy::primitives::Address;
use events::{Command, Committed};
use projections::tasks::TaskRow;
use tonic::Status;

use crate::auth::TokenIssuer;
use crate::chain::Chain;
use crate::config::Config;
use crate::domain::{DomainError, task};
use crate::limits::Limiter;
use crate::rpc::error;
use crate::secrets::SecretBox;
use crate::store::Store;
use crate::wallet::WalletFactory;

/// The version the sign-in message names.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct App {
    pub config: Config,
    pub store: Store,
    pub tokens: TokenIssuer,
    pub secret_box: SecretBox,
    /// The default factory (from the config), whose addresses derive offline.
    pub wallets: WalletFactory,
    pub chain: Option<Chain>,
    pub limiter: Limiter,
    pub engine: crate::engine::Engine,
    pub pool: std::sync::Arc<crate::operators::Pool>,
    pub token_directory: crate::tokens::TokenDirectory,
    /// The log's checkpoints and the operators' cosignatures of them.
    pub transparency: std::sync::Arc<crate::transparency::Transparency>,
    /// When this process opened its state (ms since the epoch).
    pub started_ms: u64,
}

pub type SharedApp = Arc<App>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// A new id for a task or an execution: a ULID from one monotonic generator, so that ids made in
/// the same millisecond still sort in creation order (lists are ordered by id).
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let generated = GENERATOR.lock().ok().and_then(|mut g| g.generate().ok());
    generated.unwrap_or_else(ulid::Ulid::generate).to_string()
}

pub fn now_ms() -> u64 {
    events::now_ms()
}

pub fn now_ms_i64() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

impl App {
    /// Appends a command, counting the events in the metrics.
    pub async fn append(&self, command: Command) -> Result<Committed, Status> {
        let committed = self
            .store
            .log
            .append(command)
            .await
            .map_err(error::storage)?;
        if !committed.deduplicated {
            metrics::counter!("events_appended_total").increment(committed.events.len() as u64);
        }
        Ok(committed)
    }

    /// Appends a command decided on state that may have moved: `Ok(None)` on a version conflict,
    /// for the caller to reload and decide again.
    pub async fn try_append(&self, command: Command) -> Result<Option<Committed>, Status> {
        match self.store.log.append(command).await {
            Ok(committed) => {
                if !committed.deduplicated {
                    metrics::counter!("events_appended_total")
                        .increment(committed.events.len() as u64);
                }
                Ok(Some(committed))
            }
            Err(events::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(error::storage(e)),
        }
    }

    /// The task `id` if `owner` owns it; NOT_FOUND ("task not found") otherwise.
    pub fn owned_task(&self, owner: &str, id: &str) -> Result<TaskRow, Status> {
        let row = self.store.views.task(id).map_err(error::storage)?;
        Ok(task::owned(row.as_ref(), owner)?.clone())
    }

    /// The owner's salt-0 wallet of the default factory: always theirs, registered or not.
    pub fn default_wallet(&self, owner: Address) -> Address {
        self.wallets.address(owner, alloy::primitives::U256::ZERO)
    }

    /// Whether `wallet` may run the owner's tasks: the salt-0 wallet, or one they registered.
    pub fn is_owners_wallet(&self, owner: Address, wallet: Address) -> Result<bool, Status> {
        if wallet == self.default_wallet(owner) {
            return Ok(true);
        }
        let row = self
            .store
            .views
            .wallet(&lower(owner), &lower(wallet))
            .map_err(error::storage)?;
        Ok(row.is_some())
    }
}

/// Addresses as events and keys store them: lower-case hex.
pub fn lower(address: Address) -> String {
    format!("{address:#x}")
}

/// Parses an address from a request, naming the field on failure.
pub fn parse_address(field: &str, text: &str) -> Result<Address, Status> {
    text.trim().parse::<Address>().map_err(|_| {
        Status::from(DomainError::Invalid(
            format!("{field} {text:?} is not an address"),
            crate::domain::Code::InvalidAddress,
        ))
    })
}
