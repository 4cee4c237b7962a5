//! Smart wallets: derived (CREATE2, offline) for the caller and a salt, registered on first
//! `GetWallet`, hidden or shown with `SetWallet`, listed with their task counters. The salt-0
//! wallet of the default factory is always listed.

use alloy::primitives::{Address, U256};
use events::{Command, Expected};
use projections::tasks::Status as TaskStatus;
use projections::wallets::WalletRow;
use tonic::{Request, Status};

use crate::address::lower;
use crate::app::{App, AppError};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::domain::wallets::{self, WalletRequest};
use crate::domain::{Code, DomainError};
use crate::pb;
use crate::rpc::calls;
use crate::rpc::error;
use crate::store::{Decision, Loaded, Settled, Store};
use crate::wallet::{parse_factory, parse_salt};

/// A wallet named by (salt, factory) in a request, resolved.
struct Named {
    address: Address,
    salt: U256,
    factory: Address,
}

async fn resolve(app: &App, caller: &Caller, salt: &str, factory: &str) -> Result<Named, Status> {
    let owner = calls::owner_address(caller)?;
    let salt = parse_salt(salt.trim()).map_err(|e| DomainError::invalid(e.to_string()))?;
    let factory = parse_factory(factory.trim())
        .map_err(|e| DomainError::Invalid(e.to_string(), Code::InvalidAddress))?
        .unwrap_or(app.wallets.factory);
    let address = if factory == app.wallets.factory {
        app.wallets.address(owner, salt)
    } else {
        // Another factory's implementation is unknown offline: ask the factory itself.
        let chain = app.chain.as_ref().ok_or_else(|| {
            error::unconfigured(format!(
                "wallets of factory {factory} need a chain connection (ethereum.rpc_url); without one only the default factory {} is served",
                app.wallets.factory
            ))
        })?;
        chain
            .factory_address(factory, owner, salt)
            .await
            .map_err(|e| error::upstream("reading the factory's getAddress", e))?
    };
    Ok(Named {
        address,
        salt,
        factory,
    })
}

/// The task counters of one wallet, as `GetWalletResp` carries them. Cancelled tasks count as
/// disabled (the official client knows no cancelled status) and apart.
fn response(
    app: &App,
    owner: &str,
    address: Address,
    salt: &str,
    factory: Address,
    hidden: bool,
) -> Result<pb::GetWalletResp, Status> {
    let wallet = lower(address);
    let count = |status| {
        app.store
            .views
            .task_count(owner, &wallet, status)
            .map_err(error::storage)
    };
    let enabled = count(TaskStatus::Active)?;
    let disabled = count(TaskStatus::Disabled)?;
    let completed = count(TaskStatus::Completed)?;
    let failed = count(TaskStatus::Failed)?;
    let cancelled = count(TaskStatus::Cancelled)?;
    Ok(pb::GetWalletResp {
        address: address.to_checksum(None),
        salt: salt.to_owned(),
        factory_address: factory.to_checksum(None),
        is_hidden: hidden,
        total_task_count: enabled + disabled + completed + failed + cancelled,
        enabled_task_count: enabled,
        completed_task_count: completed,
        failed_task_count: failed,
        disabled_task_count: disabled + cancelled,
        cancelled_task_count: cancelled,
    })
}

fn registered(app: &App, owner: &str) -> Result<Vec<WalletRow>, Status> {
    app.store.views.wallets_of(owner).map_err(error::storage)
}

/// Registers the wallet the first time it is asked for (within the per-owner limit).
pub async fn get_wallet(
    app: &App,
    request: Request<pb::GetWalletReq>,
) -> Result<pb::GetWalletResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let named = resolve(app, &caller, &req.salt, &req.factory_address).await?;
    let wallet = lower(named.address);
    let existing = app
        .store
        .views
        .wallet(&caller.owner, &wallet)
        .map_err(error::storage)?;
    let wallet_request = WalletRequest {
        owner: caller.owner.clone(),
        address: wallet.clone(),
        salt: named.salt.to_string(),
        factory: lower(named.factory),
    };
    // A first registration is counted and appended under the owner's slot: concurrent ones see
    // each other.
    let _slot = match &existing {
        None => Some(app.owner_slots.hold(&caller.owner).await),
        Some(_) => None,
    };
    let count = registered(app, &caller.owner)?.len();
    if let Some(event) = wallets::register(
        existing.as_ref(),
        count,
        app.config.wallet.max_per_owner,
        &wallet_request,
    )? {
        if !caller.can_write() {
            return Err(error::read_only());
        }
        let command = Command::new(caller.owner.clone(), now_ms()).append(
            events::stream::wallet(&caller.owner, &wallet),
            Expected::NoStream,
            [event],
        );
        // A concurrent first GetWallet of the same wallet registered it already: same outcome.
        app.try_append(command).await.map_err(error::storage)?;
    }
    let hidden = existing.is_some_and(|w| w.hidden);
    response(
        app,
        &caller.owner,
        named.address,
        &named.salt.to_string(),
        named.factory,
        hidden,
    )
}

/// The wallet's row, and the owner's registered wallets when it has none, at the version of
/// the wallet's stream.
type WalletState = (Option<WalletRow>, usize);

fn load_wallet(store: &Store, owner: &str, wallet: &str) -> events::Result<Loaded<WalletState>> {
    store.at_version(&events::stream::wallet(owner, wallet), |views| {
        let row = views.wallet(owner, wallet)?;
        let registered = match row {
            Some(_) => 0,
            None => views.wallets_of(owner)?.len(),
        };
        Ok((row, registered))
    })
}

/// What `SetWallet` decides on the loaded wallet: the domain's rule, as a command against the
/// version it was loaded at.
fn decide_visibility(
    loaded: Loaded<WalletState>,
    request: &WalletRequest,
    is_default: bool,
    limit: u32,
    hidden: bool,
) -> Result<Decision<WalletRow>, DomainError> {
    let (existing, registered) = &loaded.state;
    let (row, new_events) = wallets::set_visibility(
        existing.as_ref(),
        is_default,
        *registered,
        limit,
        request,
        hidden,
    )?;
    if new_events.is_empty() {
        return Ok(Decision::Unchanged(row));
    }
    let command = Command::new(request.owner.clone(), now_ms()).append(
        events::stream::wallet(&request.owner, &request.address),
        loaded.expected(),
        new_events,
    );
    Ok(Decision::Append(command, row))
}

pub async fn set_wallet(
    app: &App,
    request: Request<pb::SetWalletReq>,
) -> Result<pb::GetWalletResp, Status> {
    let caller = calls::writer(app, &request)?;
    let req = request.into_inner();
    let named = resolve(app, &caller, &req.salt, &req.factory_address).await?;
    let wallet_request = WalletRequest {
        owner: caller.owner.clone(),
        address: lower(named.address),
        salt: named.salt.to_string(),
        factory: lower(named.factory),
    };
    let is_default = named.salt.is_zero() && named.factory == app.wallets.factory;
    let limit = app.config.wallet.max_per_owner;
    // Counted and appended under the owner's slot: concurrent registrations see each other.
    let _slot = app.owner_slots.hold(&caller.owner).await;
    let settled = app
        .store
        .decide_and_append(
            |store| {
                Ok::<_, AppError>(load_wallet(
                    store,
                    &wallet_request.owner,
                    &wallet_request.address,
                )?)
            },
            |loaded| {
                Ok(decide_visibility(
                    loaded,
                    &wallet_request,
                    is_default,
                    limit,
                    req.is_hidden,
                )?)
            },
        )
        .await?;
    let row = match settled {
        Settled::Unchanged(row) | Settled::Appended(row, _) => row,
        Settled::Contended => {
            return Err(error::contended("wallet"));
        }
    };
    response(
        app,
        &caller.owner,
        named.address,
        &row.salt,
        named.factory,
        req.is_hidden,
    )
}

/// The caller's wallets: the salt-0 wallet first, then the registered ones, filtered by factory
/// and salt when the request names them.
pub async fn list_wallets(
    app: &App,
    request: Request<pb::ListWalletReq>,
) -> Result<pb::ListWalletResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let factory_filter = parse_factory(req.factory_address.trim())
        .map_err(|e| DomainError::Invalid(e.to_string(), Code::InvalidAddress))?;
    let salt_filter = if req.salt.trim().is_empty() {
        None
    } else {
        Some(parse_salt(req.salt.trim()).map_err(|e| DomainError::invalid(e.to_string()))?)
    };
    let owner = calls::owner_address(&caller)?;
    let default = lower(app.default_wallet(owner));
    let mut rows = registered(app, &caller.owner)?;
    if !rows.iter().any(|r| r.address == default) {
        rows.insert(
            0,
            WalletRow {
                owner: caller.owner.clone(),
                address: default.clone(),
                salt: "0".into(),
                factory: lower(app.wallets.factory),
                hidden: false,
                created_at: 0,
            },
        );
    }
    rows.sort_by_key(|r| (r.address != default, r.created_at));
    let items = rows
        .into_iter()
        .filter(|r| factory_filter.is_none_or(|f| r.factory == lower(f)))
        .filter(|r| salt_filter.is_none_or(|s| r.salt == s.to_string()))
        .map(|r| pb::SmartWallet {
            address: crate::address::checksum(&r.address),
            salt: r.salt,
            factory: crate::address::checksum(&r.factory),
            is_hidden: r.hidden,
        })
        .collect();
    Ok(pb::ListWalletResp { items })
}

/// The caller's salt-0 wallet's next user-operation nonce, read from the EntryPoint.
pub async fn get_nonce(
    app: &App,
    request: Request<pb::NonceRequest>,
) -> Result<pb::NonceResp, Status> {
    let caller = calls::caller(app, &request)?;
    let owner_text = request.into_inner().owner;
    let owner = if owner_text.trim().is_empty() {
        calls::owner_address(&caller)?
    } else {
        crate::address::parse_address("owner", &owner_text)?
    };
    if lower(owner) != caller.owner {
        return Err(DomainError::PermissionDenied(
            "GetNonce answers for the caller's own wallet only".into(),
        )
        .into());
    }
    let chain = app.chain.as_ref().ok_or_else(|| {
        error::unconfigured("GetNonce reads the EntryPoint on chain: configure ethereum.rpc_url")
    })?;
    let nonce = chain
        .entry_point_nonce(app.wallets.entry_point, app.default_wallet(owner))
        .await
        .map_err(|e| error::upstream("reading the EntryPoint nonce", e))?;
    Ok(pb::NonceResp {
        nonce: nonce.to_string(),
    })
}

/// ETH or an ERC-20 out of one of the caller's wallets (`withdrawals`): the request checked
/// with the original's words, then one user operation, answered `confirmed`, `pending` or
/// `failed` with its userOpHash.
///
/// On a replicated log the withdrawal runs on the writer (`on_writer`), named by an id taken
/// here, so that handing it over again after the writer changed does not withdraw twice.
pub async fn withdraw_funds(
    app: &App,
    request: Request<pb::WithdrawFundsReq>,
) -> Result<pb::WithdrawFundsResp, Status> {
    let caller = calls::writer(app, &request)?;
    let withdrawal_id = crate::clock::new_id();
    super::on_writer::withdraw_funds(app, &caller.owner, request.into_inner(), withdrawal_id).await
}

/// `WithdrawFunds` for `owner` (signed in, not read-only), on the process that writes the log.
pub async fn withdraw_funds_as(
    app: &App,
    owner: &str,
    req: pb::WithdrawFundsReq,
    withdrawal_id: &str,
) -> Result<pb::WithdrawFundsResp, Status> {
    use crate::wallet::withdraw::{self, WithdrawError};
    use crate::withdrawals::WithdrawFailure;
    let withdrawal = withdraw::parse(
        req.recipient_address.trim(),
        req.amount.trim(),
        req.token.trim(),
    )
    .map_err(|e| DomainError::invalid(e.to_string()))?;
    let wallet_text = req.smart_wallet_address.trim();
    if wallet_text.is_empty() {
        return Err(DomainError::invalid(
            "smart wallet address is required - must be obtained from getWallet() call first",
        )
        .into());
    }
    let wallet: Address = wallet_text.parse().map_err(|_| {
        DomainError::Invalid(
            "invalid smart wallet address format".into(),
            Code::InvalidAddress,
        )
    })?;
    if app
        .store
        .views
        .wallet(owner, &lower(wallet))
        .map_err(error::storage)?
        .is_none()
    {
        return Err(DomainError::Invalid(
            format!(
                "invalid smart wallet address: smart wallet address {} not found for owner {}",
                wallet.to_checksum(None),
                owner
            ),
            Code::WalletNotFound,
        )
        .into());
    }
    let env = app
        .engine
        .write_env(
            owner,
            &lower(wallet),
            crate::engine::nodes::write::WriteMode::Run,
        )
        .map_err(error::storage)?
        .ok_or_else(|| {
            error::unconfigured(
                "WithdrawFunds sends a user operation from the wallet: configure ethereum.rpc_url",
            )
        })?;
    let now = now_ms();
    let withdrawn = match crate::withdrawals::withdraw(
        &app.store,
        &env.wallets,
        &env.target,
        withdrawal,
        now,
        withdrawal_id,
    )
    .await
    {
        Ok(withdrawn) => withdrawn,
        Err(WithdrawFailure::Refused(e @ WithdrawError::InsufficientBalance { .. })) => {
            return Err(
                DomainError::FailedPrecondition(e.to_string(), Code::InsufficientBalance).into(),
            );
        }
        Err(WithdrawFailure::Refused(e)) => {
            return Err(DomainError::invalid(e.to_string()).into());
        }
        Err(WithdrawFailure::Chain(detail)) => {
            return Err(error::upstream("WithdrawFunds", detail));
        }
        Err(WithdrawFailure::Store(e)) => return Err(error::storage(e)),
    };
    Ok(pb::WithdrawFundsResp {
        success: withdrawn.status != "failed",
        status: withdrawn.status.into(),
        message: withdrawn.message,
        user_op_hash: withdrawn.user_op_hash,
        transaction_hash: withdrawn.transaction_hash,
        submitted_at: i64::try_from(now / 1000).unwrap_or(i64::MAX),
        smart_wallet_address: wallet.to_checksum(None),
        recipient_address: req.recipient_address,
        amount: withdrawn.amount.to_string(),
        token: req.token,
    })
}

#[cfg(test)]
mod tests {
    use events::{Durability, Event};

    use super::*;

    const OWNER: &str = "0x00000000000000000000000000000000000000aa";
    const WALLET: &str = "0x00000000000000000000000000000000000000bb";

    fn salt_zero() -> WalletRequest {
        WalletRequest {
            owner: OWNER.into(),
            address: WALLET.into(),
            salt: "0".into(),
            factory: "0x00000000000000000000000000000000000000cc".into(),
        }
    }

    /// A `GetWallet` of the same wallet, registering it.
    fn registration() -> Command {
        let event = wallets::register(None, 0, 5, &salt_zero())
            .unwrap()
            .unwrap();
        Command::new(OWNER, now_ms()).append(
            events::stream::wallet(OWNER, WALLET),
            Expected::NoStream,
            [event],
        )
    }

    /// Given the owner's salt-0 wallet, not registered yet; when `SetWallet` hides it (which
    /// registers it on the way) and a concurrent `GetWallet` registers it after `SetWallet`
    /// loaded the wallet but before its append lands; then the stream holds one registration,
    /// not two, and the wallet ends hidden.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_registration_landing_while_set_wallet_decides_is_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Durability::Relaxed).unwrap();
        let request = salt_zero();
        let mut raced = false;
        let settled = store
            .decide_and_append(
                |store| load_wallet(store, OWNER, WALLET),
                |loaded| {
                    if !raced {
                        raced = true;
                        tokio::task::block_in_place(|| {
                            tokio::runtime::Handle::current().block_on(store.append(registration()))
                        })?;
                    }
                    decide_visibility(loaded, &request, true, 5, true)
                        .map_err(|e| events::Error::Corrupt(e.to_string()))
                },
            )
            .await
            .unwrap();
        assert!(matches!(settled, Settled::Appended(_, _)));

        let history = store
            .log
            .read_stream(&events::stream::wallet(OWNER, WALLET))
            .unwrap();
        let registrations = history
            .iter()
            .filter(|e| matches!(e.event, Event::WalletRegistered(_)))
            .count();
        assert_eq!(registrations, 1, "{history:#?}");
        assert!(matches!(
            history.last().map(|e| &e.event),
            Some(Event::WalletHidden(_))
        ));
        assert!(store.views.wallet(OWNER, WALLET).unwrap().unwrap().hidden);
        tokio::task::block_in_place(|| store.close()).unwrap();
    }
}
