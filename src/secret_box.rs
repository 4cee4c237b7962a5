//! Secrets at rest: XChaCha20-Poly1305 under the configured key, bound to where the secret lives.
//!
//! The event log and the projections hold only `hex(nonce || ciphertext || tag)`. The associated
//! data is the secret's stream id (`secret:<org|_>:<owner>:<workflow|_>:<name>`), so a ciphertext
//! copied under another name or owner does not decrypt. Nonces are random (24 bytes: no practical
//! risk of reuse). Values are decrypted only in memory, for a run that needs them.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::auth::keys::Key;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot encrypt the secret")]
    Encrypt,
    #[error("the stored secret does not decrypt (wrong key, or moved from elsewhere)")]
    Decrypt,
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// Encrypts and decrypts secret values.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &Key) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.bytes().into()),
        }
    }

    /// `hex(nonce || ciphertext || tag)` of `value`, bound to `scope`.
    pub fn seal(&self, scope: &str, value: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value,
                    aad: scope.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    pub fn open(&self, scope: &str, sealed_hex: &str) -> Result<Vec<u8>, SecretError> {
        let sealed = hex::decode(sealed_hex).map_err(|_| SecretError::Decrypt)?;
        let (nonce, ciphertext) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(SecretError::Decrypt)?;
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::Decrypt)?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: scope.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_under_the_same_scope_and_key() {
        let sb = SecretBox::new(&Key::from_bytes([3; 32]));
        let sealed = sb.seal("secret:_:0xa:_:api", b"hunter2").unwrap();
        assert!(!sealed.contains(&hex::encode(b"hunter2")));
        assert_eq!(sb.open("secret:_:0xa:_:api", &sealed).unwrap(), b"hunter2");
        assert!(sb.open("secret:_:0xb:_:api", &sealed).is_err());
        let other = SecretBox::new(&Key::from_bytes([4; 32]));
        assert!(other.open("secret:_:0xa:_:api", &sealed).is_err());
        assert_ne!(
            sealed,
            sb.seal("secret:_:0xa:_:api", b"hunter2").unwrap(),
            "random nonces"
        );
    }
}
