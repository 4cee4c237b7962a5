//! Sign-in: the message to sign, the token for a signature (or for an API key), and revoking API
//! keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use events::event::ApiKeyRevoked;
use events::{Command, Expected};
use tonic::{Request, Status};

use crate::address::parse_address;
use crate::app::{App, VERSION};
use crate::auth::signin::{self, Policy, SignIn};
use crate::auth::{AuthError, Role};
use crate::clock::now_ms;
use crate::domain::DomainError;
use crate::pb;
use crate::rpc::{calls, error};

fn policy(app: &App) -> Policy {
    Policy {
        uri: app.config.auth.signin_uri.clone(),
        chain_id: app.config.chain_id,
        max_lifetime: app.config.auth.max_token_lifetime,
        clock_skew: app.config.auth.clock_skew,
    }
}

pub async fn get_signature_format(
    app: &App,
    request: Request<pb::GetSignatureFormatReq>,
) -> Result<pb::GetSignatureFormatResp, Status> {
    calls::anonymous(app, &request)?;
    let wallet_text = request.into_inner().wallet;
    let wallet = parse_address("wallet", &wallet_text)?;
    let now = SystemTime::now();
    let signin = SignIn {
        uri: app.config.auth.signin_uri.clone(),
        chain_id: app.config.chain_id,
        version: VERSION.into(),
        issued_at: now,
        expire_at: now + app.config.auth.signin_lifetime,
        wallet,
    };
    Ok(pb::GetSignatureFormatResp {
        message: signin.message(wallet_text.trim()),
    })
}

/// A session token for a signed message, or for an API key given in place of the signature (its
/// text contains a `.`): an admin key may sign in as any wallet, a read-only key only as its
/// subject, and the session keeps the key's role.
pub async fn get_key(app: &App, request: Request<pb::GetKeyReq>) -> Result<pb::KeyResp, Status> {
    calls::anonymous(app, &request)?;
    let pb::GetKeyReq { message, signature } = request.into_inner();
    let signin = signin::parse(&message)?;
    signin::check(&signin, &policy(app), SystemTime::now())?;
    let (role, key_id, expires_at) = if signature.contains('.') {
        let key = app.tokens.verify(signature.trim())?;
        let Some(jti) = key.api_key_id.clone() else {
            return Err(AuthError(
                "the signature field holds a session token, not an API key".into(),
            )
            .into());
        };
        if app.store.views.is_revoked(&jti).map_err(error::storage)? {
            return Err(AuthError("this API key has been revoked".into()).into());
        }
        if key.role == Role::ReadOnly && key.subject != signin.wallet {
            return Err(DomainError::PermissionDenied(
                "a read-only API key signs in only as its own subject".into(),
            )
            .into());
        }
        let key_expiry = UNIX_EPOCH + Duration::from_secs(key.expires_at);
        (key.role, Some(jti), signin.expire_at.min(key_expiry))
    } else {
        let signer = signin::recover(&message, &signature)?;
        if signer != signin.wallet {
            return Err(AuthError(format!(
                "the signature is by {signer}, not by the message's wallet {}",
                signin.wallet
            ))
            .into());
        }
        (Role::User, None, signin.expire_at)
    };
    let key = app
        .tokens
        .session(signin.wallet, expires_at, role, key_id)?;
    Ok(pb::KeyResp {
        address: signin.wallet.to_checksum(None),
        key,
        message: String::new(),
        expiry: expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// Admin only: records the key's `jti` as revoked; the key and every session minted with it are
/// refused from then on.
pub async fn revoke_api_key(
    app: &App,
    request: Request<pb::RevokeApiKeyReq>,
) -> Result<pb::RevokeApiKeyResp, Status> {
    let caller = calls::writer(app, &request)?;
    if !caller.is_admin() {
        return Err(DomainError::PermissionDenied(
            "revoking API keys needs an admin API key".into(),
        )
        .into());
    }
    let pb::RevokeApiKeyReq { key, jti } = request.into_inner();
    let jti =
        match (key.trim(), jti.trim()) {
            ("", "") => return Err(DomainError::invalid("give the API key or its jti").into()),
            (key, "") => app.tokens.verify(key)?.api_key_id.ok_or_else(|| {
                DomainError::invalid("that token is a session token, not an API key")
            })?,
            (_, jti) => jti.to_owned(),
        };
    if !crate::auth::token::is_key_id(&jti) {
        return Err(DomainError::invalid(format!("{jti:?} is not an API key id")).into());
    }
    let revoked_at = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    if !app.store.views.is_revoked(&jti).map_err(error::storage)? {
        let command = Command::new(caller.owner.clone(), now_ms())
            .idempotent(format!("revoke:{jti}"), None)
            .append(
                events::stream::api_key(&jti),
                Expected::Any,
                [ApiKeyRevoked { jti: jti.clone() }.into()],
            );
        app.append(command).await.map_err(error::storage)?;
    }
    Ok(pb::RevokeApiKeyResp {
        success: true,
        jti,
        revoked_at,
    })
}
