//! Authentication: who is calling.
//!
//! - `signin`: the message a wallet signs (EIP-191) to get a token, and its checks;
//! - `token`: the HS256 JWTs (session tokens and API keys), minted and verified;
//! - `keys`: the key files (JWT secret, secret-encryption key) in the keys directory.
//!
//! Every call but `GetSignatureFormat` and `GetKey` carries the `authkey` metadata header: a session
//! token from `GetKey`, or an API key. `Caller` is what the rest of the system knows of the caller.

pub mod keys;
pub mod signin;
pub mod token;

pub use token::{Role, TokenIssuer};

/// The authenticated caller of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The signed-in wallet (EOA), lower-case hex: how events and keys name owners.
    pub owner: String,
    pub role: Role,
    /// The API key this caller's token came from (or is), for revocation.
    pub key_id: Option<String>,
}

impl Caller {
    /// Whether the caller may change anything (read-only API keys may not).
    pub fn can_write(&self) -> bool {
        self.role != Role::ReadOnly
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a caller is refused; the RPC layer prefixes `User authentication error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);
