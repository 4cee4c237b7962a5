//! Smart wallets: an owner registers a wallet by asking for it (`GetWallet`), within a limit, and
//! may hide or unhide it. The salt-0 wallet of the default factory is always the owner's: it is
//! listed even before it is registered.

use events::Event;
use events::event::{WalletHidden, WalletRegistered, WalletUnhidden};
use projections::wallets::WalletRow;

use super::{Code, DomainError, DomainResult};

/// A wallet as `GetWallet` asks for it, its address already derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRequest {
    pub owner: String,
    pub address: String,
    pub salt: String,
    pub factory: String,
}

/// `GetWallet`: registers the wallet the first time, within `limit` registered wallets.
pub fn register(
    existing: Option<&WalletRow>,
    registered: usize,
    limit: u32,
    request: &WalletRequest,
) -> DomainResult<Option<Event>> {
    if existing.is_some() {
        return Ok(None);
    }
    if registered >= limit as usize {
        return Err(DomainError::QuotaExceeded(format!(
            "an owner may have at most {limit} smart wallets; this one would be number {}",
            registered + 1
        )));
    }
    Ok(Some(
        WalletRegistered {
            owner: request.owner.clone(),
            address: request.address.clone(),
            salt: request.salt.clone(),
            factory: request.factory.clone(),
        }
        .into(),
    ))
}

/// `SetWallet`: hides or unhides a registered wallet; `None` when already so.
pub fn set_hidden(row: &WalletRow, hidden: bool) -> Option<Event> {
    if row.hidden == hidden {
        return None;
    }
    let (owner, address) = (row.owner.clone(), row.address.clone());
    Some(if hidden {
        WalletHidden { owner, address }.into()
    } else {
        WalletUnhidden { owner, address }.into()
    })
}

/// `SetWallet`: hides or unhides the wallet `request` names. The salt-0 wallet of the default
/// factory (`is_default`) is the owner's before it is registered: it is registered on the way,
/// outside the per-owner limit; any other wallet must have been registered (`GetWallet`) first.
/// Returns the row decided on and the events (none when nothing changes).
pub fn set_visibility(
    existing: Option<&WalletRow>,
    is_default: bool,
    registered: usize,
    limit: u32,
    request: &WalletRequest,
    hidden: bool,
) -> DomainResult<(WalletRow, Vec<Event>)> {
    let mut new_events = Vec::new();
    let row = match existing {
        Some(row) => row.clone(),
        None if is_default => {
            new_events.extend(register(
                None,
                registered,
                limit.saturating_add(1),
                request,
            )?);
            WalletRow {
                owner: request.owner.clone(),
                address: request.address.clone(),
                salt: request.salt.clone(),
                factory: request.factory.clone(),
                hidden: false,
                created_at: 0,
            }
        }
        None => {
            return Err(DomainError::NotFound(
                "wallet not found: call GetWallet with this salt and factory first".into(),
                Code::WalletNotFound,
            ));
        }
    };
    new_events.extend(set_hidden(&row, hidden));
    Ok((row, new_events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WalletRequest {
        WalletRequest {
            owner: "0xo".into(),
            address: "0xw".into(),
            salt: "1".into(),
            factory: "0xf".into(),
        }
    }

    #[test]
    fn registers_once_within_the_limit() {
        assert!(matches!(
            register(None, 0, 5, &request()).unwrap(),
            Some(Event::WalletRegistered(_))
        ));
        let row = WalletRow {
            owner: "0xo".into(),
            address: "0xw".into(),
            salt: "1".into(),
            factory: "0xf".into(),
            hidden: false,
            created_at: 0,
        };
        assert_eq!(register(Some(&row), 5, 5, &request()).unwrap(), None);
        assert!(matches!(
            register(None, 5, 5, &request()),
            Err(DomainError::QuotaExceeded(_))
        ));
        assert!(matches!(
            set_hidden(&row, true),
            Some(Event::WalletHidden(_))
        ));
        assert_eq!(set_hidden(&row, false), None);
    }
}
