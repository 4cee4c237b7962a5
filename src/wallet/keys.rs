//! The two chain keys of the aggregator, in the keys directory beside the JWT secret (files of
//! mode 0600, generated when absent), never in the data directory and never logged:
//!
//! - `controller.key`: signs the users' wallets' user operations (the wallets of a
//!   `ControlledAccountFactory` accept it besides the owner) and, as the VerifyingPaymaster's
//!   signer, the sponsorships;
//! - `bundler.key`: the self-bundler's account, which sends `handleOps` and is paid back by the
//!   wallets (it needs ETH for the gas up front).
//!
//! Rotating the controller key means a new factory (the controller is an immutable of its
//! implementation): see the README.

use std::path::Path;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;

use crate::auth::keys::{KeyFileError, create_private_dir, load_or_create_key, read_key};

pub const CONTROLLER_KEY_FILE: &str = "controller.key";
pub const BUNDLER_KEY_FILE: &str = "bundler.key";

/// A secp256k1 key whose secret never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct ChainKey(PrivateKeySigner);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.0.address())
    }
}

impl ChainKey {
    pub fn address(&self) -> Address {
        self.0.address()
    }

    pub fn signer(&self) -> &PrivateKeySigner {
        &self.0
    }

    pub fn from_signer(signer: PrivateKeySigner) -> Self {
        Self(signer)
    }

    fn from_file(path: &Path, bytes: &[u8; 32]) -> Result<Self, KeyFileError> {
        PrivateKeySigner::from_bytes(&B256::from(*bytes))
            .map(Self)
            .map_err(|_| KeyFileError {
                path: path.to_owned(),
                message: "not a valid secp256k1 private key".into(),
            })
    }
}

/// The controller and the self-bundler's keys.
#[derive(Debug, Clone)]
pub struct WalletKeys {
    pub controller: ChainKey,
    pub bundler: ChainKey,
}

impl WalletKeys {
    /// Loads both keys from `dir`, generating the missing ones.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyFileError> {
        create_private_dir(dir)?;
        let load = |name: &str| {
            let path = dir.join(name);
            let key = load_or_create_key(&path, read_key)?;
            ChainKey::from_file(&path, key.bytes())
        };
        Ok(Self {
            controller: load(CONTROLLER_KEY_FILE)?,
            bundler: load(BUNDLER_KEY_FILE)?,
        })
    }

    /// Loads existing keys only.
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        let load = |name: &str| {
            let path = dir.join(name);
            let key = read_key(&path)?;
            ChainKey::from_file(&path, key.bytes())
        };
        Ok(Self {
            controller: load(CONTROLLER_KEY_FILE)?,
            bundler: load(BUNDLER_KEY_FILE)?,
        })
    }
}

/// Reads a hex private key (with or without `0x`) from a file, as `chain deploy --key-file`
/// takes the deployer's.
pub fn read_hex_key(path: &Path) -> Result<ChainKey, KeyFileError> {
    let error = |message: String| KeyFileError {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let text = text.trim();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes = alloy::hex::decode(digits).map_err(|_| error("not a hex private key".into()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| error(format!("holds {} bytes, expected 32", b.len())))?;
    ChainKey::from_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = WalletKeys::load_or_create(dir.path()).unwrap();
        let again = WalletKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.controller.address(), again.controller.address());
        assert_eq!(first.bundler.address(), again.bundler.address());
        assert_ne!(first.controller.address(), first.bundler.address());
        assert_eq!(
            WalletKeys::load(dir.path()).unwrap().controller.address(),
            first.controller.address()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CONTROLLER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn debug_output_shows_the_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = WalletKeys::load_or_create(dir.path()).unwrap();
        let secret = std::fs::read_to_string(dir.path().join(CONTROLLER_KEY_FILE)).unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains(secret.trim()), "{shown}");
        assert!(shown.contains(&keys.controller.address().to_string()));
    }

    #[test]
    fn hex_key_files_are_read_with_or_without_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployer");
        let key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        for text in [format!("0x{key}\n"), key.to_owned()] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(
                read_hex_key(&path).unwrap().address(),
                "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                    .parse::<Address>()
                    .unwrap()
            );
        }
        std::fs::write(&path, "0x1234").unwrap();
        assert!(read_hex_key(&path).unwrap_err().message.contains("2 bytes"));
    }
}
