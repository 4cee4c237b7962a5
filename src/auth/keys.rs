//! The key files, generated on first start into the keys directory (mode 0700, files 0600) and
//! never into the data directory: a copy of the data handed to an auditor must reveal no key.

use std::io::Write;
use std::path::{Path, PathBuf};

/// 32 random bytes, kept as hex text.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// The keys of one aggregator.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Signs session tokens and API keys (HS256).
    pub jwt_secret: Key,
    /// Encrypts secrets at rest (ChaCha20-Poly1305).
    pub secrets_key: Key,
}

pub const JWT_SECRET_FILE: &str = "jwt.secret";
pub const SECRETS_KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyFileError {
    pub path: PathBuf,
    pub message: String,
}

impl Keys {
    /// Loads the keys from `dir`, generating missing ones.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyFileError> {
        create_private_dir(dir)?;
        Ok(Self {
            jwt_secret: load_or_create_key(&dir.join(JWT_SECRET_FILE))?,
            secrets_key: load_or_create_key(&dir.join(SECRETS_KEY_FILE))?,
        })
    }

    /// Loads existing keys only (the offline `create-api-key` must sign with the server's secret,
    /// never with a fresh one).
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        Ok(Self {
            jwt_secret: read_key(&dir.join(JWT_SECRET_FILE))?,
            secrets_key: read_key(&dir.join(SECRETS_KEY_FILE))?,
        })
    }
}

fn error(path: &Path, message: impl std::fmt::Display) -> KeyFileError {
    KeyFileError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), KeyFileError> {
    std::fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| error(dir, e))?;
    }
    Ok(())
}

pub(crate) fn read_key(path: &Path) -> Result<Key, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| error(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|e| error(path, format!("not hex: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| error(path, format!("holds {} bytes, expected 32", b.len())))?;
    Ok(Key(bytes))
}

pub(crate) fn load_or_create_key(path: &Path) -> Result<Key, KeyFileError> {
    if path.exists() {
        return read_key(path);
    }
    let key = Key::random().map_err(|e| error(path, e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| error(path, e))?;
    file.write_all(hex::encode(key.0).as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| error(path, e))?;
    tracing::info!(path = %path.display(), "generated a new key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_with_private_modes_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let first = Keys::load_or_create(&keys_dir).unwrap();
        let again = Keys::load_or_create(&keys_dir).unwrap();
        assert_eq!(first.jwt_secret, again.jwt_secret);
        assert_ne!(first.jwt_secret, first.secrets_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys_dir.join(JWT_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(Keys::load(&dir.path().join("elsewhere")).is_err());
    }
}
