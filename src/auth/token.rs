//! HS256 JWTs: session tokens (from `GetKey`) and API keys (minted offline by
//! `aggregator create-api-key`).
//!
//! Claims, as the official client expects them: `iss = "AvaProtocol"`, `sub` = the checksummed
//! wallet, `aud = ["<chain id>"]`, `exp`. Ours besides: `iat`; `jti` on API keys (what revocation
//! names); `roles` (`admin` or `readonly`) on API keys and on the sessions minted with them; `key`,
//! on such a session, the `jti` of its API key, so that revoking a key also ends its sessions.
//!
//! API keys minted by the original aggregator (`create-api-key`, with its `jwt_secret` imported
//! by `config from-go --import-jwt-secret`) have `roles` but no `jti`: their id is derived from
//! the key itself ([`original_key_id`]), so that they can be revoked like ours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::Address;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::keys::JwtSecret;

pub const ISSUER: &str = "AvaProtocol";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// A wallet signed in with its own signature: full rights on its own resources.
    User,
    /// An admin API key: may sign in as any wallet (`GetKey` with the key in place of a
    /// signature) and revoke API keys.
    Admin,
    /// A read-only API key: may sign in only as its subject and changes nothing.
    #[value(name = "readonly")]
    ReadOnly,
}

impl Role {
    fn claim(self) -> Option<&'static str> {
        match self {
            Self::User => None,
            Self::Admin => Some("admin"),
            Self::ReadOnly => Some("readonly"),
        }
    }

    fn from_claims(roles: &[String]) -> Result<Self, AuthError> {
        match roles {
            [] => Ok(Self::User),
            [one] if one == "admin" => Ok(Self::Admin),
            [one] if one == "readonly" => Ok(Self::ReadOnly),
            other => Err(AuthError(format!("unknown roles {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: Address,
    pub role: Role,
    /// Set for API keys.
    pub api_key_id: Option<String>,
    /// The API key a session was minted with, or the key itself.
    pub key_id: Option<String>,
    pub expires_at: u64,
}

impl Verified {
    pub fn is_api_key(&self) -> bool {
        self.api_key_id.is_some()
    }
}

/// Mints and verifies tokens for one chain with one secret.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    chain_id: u64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    pub fn new(secret: &JwtSecret, chain_id: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.bytes()),
            decoding: DecodingKey::from_secret(secret.bytes()),
            chain_id,
        }
    }

    fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError(format!("cannot sign a token: {e}")))
    }

    /// A session token for `wallet`, valid until `expires_at`.
    pub fn session(
        &self,
        wallet: Address,
        expires_at: SystemTime,
        role: Role,
        key_id: Option<String>,
    ) -> Result<String, AuthError> {
        self.sign(&Claims {
            iss: ISSUER.into(),
            sub: wallet.to_checksum(None),
            aud: vec![self.chain_id.to_string()],
            exp: seconds(expires_at),
            iat: seconds(SystemTime::now()),
            jti: None,
            roles: role.claim().map(str::to_owned).into_iter().collect(),
            key: key_id,
        })
    }

    /// An API key: returns (its id, the key).
    pub fn api_key(
        &self,
        subject: Address,
        role: Role,
        lifetime: Duration,
    ) -> Result<(String, String), AuthError> {
        if role == Role::User {
            return Err(AuthError("an API key is admin or readonly".into()));
        }
        let jti = ulid::Ulid::generate().to_string();
        let now = SystemTime::now();
        let token = self.sign(&Claims {
            iss: ISSUER.into(),
            sub: subject.to_checksum(None),
            aud: vec![self.chain_id.to_string()],
            exp: seconds(now + lifetime),
            iat: seconds(now),
            jti: Some(jti.clone()),
            roles: role.claim().map(str::to_owned).into_iter().collect(),
            key: None,
        })?;
        Ok((jti, token))
    }

    /// Checks signature, issuer, audience (our chain) and expiry. Revocation is checked by the
    /// caller against the log's projection.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[self.chain_id.to_string()]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                AuthError(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired".into()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        format!("the token is not for chain {}", self.chain_id)
                    }
                    _ => format!("invalid token: {e}"),
                })
            })?;
        let mut claims = data.claims;
        if claims.jti.is_none() && !claims.roles.is_empty() {
            claims.jti = Some(original_key_id(token));
        }
        let subject = claims
            .sub
            .parse::<Address>()
            .map_err(|_| AuthError("the token's subject is not an address".into()))?;
        Ok(Verified {
            subject,
            role: Role::from_claims(&claims.roles)?,
            key_id: claims.key.clone().or_else(|| claims.jti.clone()),
            api_key_id: claims.jti,
            expires_at: claims.exp,
        })
    }
}

/// The id of an API key minted by the original (which gives its keys no `jti`): `orig-` and the
/// first 32 hex digits of the key's SHA-256.
pub fn original_key_id(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.trim().as_bytes());
    format!("orig-{}", &hex::encode(digest)[..32])
}

/// Whether `text` can name an API key: one of ours (a ULID `jti`) or one of the original's.
pub fn is_key_id(text: &str) -> bool {
    ulid::Ulid::from_string(text).is_ok()
        || text
            .strip_prefix("orig-")
            .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&JwtSecret::from_bytes([7; 32]), 31337)
    }

    #[test]
    fn a_session_round_trips_with_the_claims_the_client_checks() {
        let wallet: Address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
            .parse()
            .unwrap();
        let token = issuer()
            .session(
                wallet,
                SystemTime::now() + Duration::from_secs(60),
                Role::User,
                None,
            )
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["iss"], "AvaProtocol");
        assert_eq!(claims["sub"], "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        assert_eq!(claims["aud"], serde_json::json!(["31337"]));
        let verified = issuer().verify(&token).unwrap();
        assert_eq!(verified.subject, wallet);
        assert_eq!(verified.role, Role::User);
        assert!(!verified.is_api_key());
    }

    #[test]
    fn wrong_chain_wrong_secret_and_expired_tokens_are_refused() {
        let wallet = Address::repeat_byte(1);
        let token = issuer()
            .session(
                wallet,
                SystemTime::now() + Duration::from_secs(60),
                Role::User,
                None,
            )
            .unwrap();
        let other_chain = TokenIssuer::new(&JwtSecret::from_bytes([7; 32]), 1);
        assert!(
            other_chain
                .verify(&token)
                .unwrap_err()
                .0
                .contains("chain 1")
        );
        let other_secret = TokenIssuer::new(&JwtSecret::from_bytes([8; 32]), 31337);
        assert!(other_secret.verify(&token).is_err());
        let expired = issuer()
            .session(
                wallet,
                SystemTime::now() - Duration::from_secs(5),
                Role::User,
                None,
            )
            .unwrap();
        assert!(issuer().verify(&expired).unwrap_err().0.contains("expired"));
    }

    #[test]
    fn an_api_key_minted_by_the_original_verifies_with_a_derived_id() {
        // As the original's create-api-key signs it: roles, no jti, no iat.
        let claims = serde_json::json!({
            "iss": "AvaProtocol",
            "sub": "0x0202020202020202020202020202020202020202",
            "aud": ["31337"],
            "exp": seconds(SystemTime::now()) + 3600,
            "roles": ["admin"],
        });
        let key = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        let verified = issuer().verify(&key).unwrap();
        assert_eq!(verified.role, Role::Admin);
        let id = verified.api_key_id.unwrap();
        assert_eq!(id, original_key_id(&key));
        assert!(is_key_id(&id) && is_key_id(&ulid::Ulid::generate().to_string()));
        assert!(!is_key_id("orig-zz") && !is_key_id("anything"));
    }

    #[test]
    fn api_keys_carry_their_role_and_id() {
        let (jti, key) = issuer()
            .api_key(
                Address::repeat_byte(2),
                Role::ReadOnly,
                Duration::from_secs(3600),
            )
            .unwrap();
        let verified = issuer().verify(&key).unwrap();
        assert_eq!(verified.role, Role::ReadOnly);
        assert_eq!(verified.api_key_id.as_deref(), Some(jti.as_str()));
        assert!(
            issuer()
                .api_key(Address::ZERO, Role::User, Duration::from_secs(1))
                .is_err()
        );
    }
}
