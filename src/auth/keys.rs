//! The key files, generated on first start into the keys directory (mode 0700, files 0600) and
//! never into the data directory: a copy of the data handed to an auditor must reveal no key.
//!
//! The JWT secret is 32 random bytes when generated here, but may be any non-empty byte string:
//! `aggregator config from-go --import-jwt-secret` writes the original aggregator's (a text of
//! its operator's choosing) so that the tokens it minted keep verifying.

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

/// The HS256 secret of tokens and API keys: any non-empty bytes, kept as hex text.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(Vec<u8>);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

impl JwtSecret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

/// The keys of one aggregator.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Signs session tokens and API keys (HS256).
    pub jwt_secret: JwtSecret,
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
            jwt_secret: JwtSecret(load_or_create_key(&dir.join(JWT_SECRET_FILE), read_any)?),
            secrets_key: load_or_create_key(&dir.join(SECRETS_KEY_FILE), read_key)?,
        })
    }

    /// Loads existing keys only (the offline `create-api-key` must sign with the server's secret,
    /// never with a fresh one).
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        Ok(Self {
            jwt_secret: JwtSecret(read_any(&dir.join(JWT_SECRET_FILE))?),
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

/// The bytes of a key file (hex text), whatever their number, but not none.
fn read_any(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| error(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|e| error(path, format!("not hex: {e}")))?;
    if bytes.is_empty() {
        return Err(error(path, "is empty"));
    }
    Ok(bytes)
}

pub(crate) fn read_key(path: &Path) -> Result<Key, KeyFileError> {
    let bytes: [u8; 32] = read_any(path)?
        .try_into()
        .map_err(|b: Vec<u8>| error(path, format!("holds {} bytes, expected 32", b.len())))?;
    Ok(Key(bytes))
}

pub(crate) fn load_or_create_key<T>(
    path: &Path,
    read: fn(&Path) -> Result<T, KeyFileError>,
) -> Result<T, KeyFileError> {
    if !path.exists() {
        let key = Key::random().map_err(|e| error(path, e))?;
        write_new(path, &key.0)?;
        tracing::info!(path = %path.display(), "generated a new key");
    }
    read(path)
}

/// Creates `path` (mode 0600) holding `bytes` as hex; fails if it exists.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| error(path, e))?;
    file.write_all(hex::encode(bytes).as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| error(path, e))
}

/// Makes `secret` the JWT secret of `dir` (created if need be). The same secret already there is
/// fine; another one is replaced only with `overwrite`, since every token it signed would stop
/// working. Returns the file written.
pub fn write_jwt_secret(
    dir: &Path,
    secret: &[u8],
    overwrite: bool,
) -> Result<PathBuf, KeyFileError> {
    if secret.is_empty() {
        return Err(error(dir, "the JWT secret to import is empty"));
    }
    create_private_dir(dir)?;
    let path = dir.join(JWT_SECRET_FILE);
    if path.exists() {
        if read_any(&path).is_ok_and(|held| held == secret) {
            return Ok(path);
        }
        if !overwrite {
            return Err(error(
                &path,
                "holds another JWT secret: the tokens and API keys it signed would stop working; pass --force to replace it",
            ));
        }
        // Written beside it, then renamed over it: a crash leaves one whole secret or the other.
        let fresh = dir.join(format!("{JWT_SECRET_FILE}.new"));
        let _ = std::fs::remove_file(&fresh);
        write_new(&fresh, secret)?;
        std::fs::rename(&fresh, &path).map_err(|e| error(&path, e))?;
    } else {
        write_new(&path, secret)?;
    }
    Ok(path)
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
        assert_ne!(first.jwt_secret.bytes(), first.secrets_key.bytes());
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
