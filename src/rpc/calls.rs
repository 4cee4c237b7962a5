//! Who is calling: the `authkey` header checked into a `Caller` (signature, issuer, chain,
//! expiry, revocation), and the per-caller rate limits.

use alloy::primitives::Address;
use tonic::{Request, Status};

use crate::address::lower;
use crate::app::App;
use crate::auth::{AuthError, Caller};
use crate::rpc::error;

/// The authenticated caller of a request, within its rate limit.
pub fn caller<T>(app: &App, request: &Request<T>) -> Result<Caller, Status> {
    let token = request
        .metadata()
        .get("authkey")
        .ok_or_else(|| AuthError("missing the authkey header: sign in with GetKey".into()))?
        .to_str()
        .map_err(|_| AuthError("the authkey header is not text".into()))?;
    let verified = app.tokens.verify(token.trim())?;
    if let Some(key) = &verified.key_id
        && app.store.views.is_revoked(key).map_err(error::storage)?
    {
        return Err(AuthError("this API key has been revoked".into()).into());
    }
    let caller = Caller {
        owner: lower(verified.subject),
        role: verified.role,
        key_id: verified.key_id,
    };
    if !app.limiter.allow_call(&caller.owner) {
        return Err(error::rate_limited("this caller"));
    }
    Ok(caller)
}

/// The caller's address (its token's subject, lower-case hex).
pub fn owner_address(caller: &Caller) -> Result<Address, Status> {
    caller
        .owner
        .parse()
        .map_err(|e| error::internal("the caller's address does not parse", e))
}

/// `caller`, for methods that change something: read-only API keys are refused.
pub fn writer<T>(app: &App, request: &Request<T>) -> Result<Caller, Status> {
    let caller = caller(app, request)?;
    if !caller.can_write() {
        return Err(error::read_only());
    }
    Ok(caller)
}

/// Rate limit of the methods called before sign-in, by peer address.
pub fn anonymous<T>(app: &App, request: &Request<T>) -> Result<(), Status> {
    let peer = request
        .remote_addr()
        .map_or_else(|| "unknown peer".to_owned(), |a| a.ip().to_string());
    if app.limiter.allow_call(&format!("peer:{peer}")) {
        Ok(())
    } else {
        Err(error::rate_limited("this address"))
    }
}
