//! The log key: `log.key` in the keys directory (mode 0600), the signed-note private key text
//! `PRIVATE+KEY+<origin>+<key id>+<base64>`. Generated on first start with the configured
//! origin (`event_log.origin`, or `ava-aggregator/<chain id>` when unset); afterwards the key
//! names the log, and a configured origin that differs is an error rather than a silent new log.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tlog::LogKey;

pub const LOG_KEY_FILE: &str = "log.key";

pub fn path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(LOG_KEY_FILE)
}

/// The key in `keys_dir`, made if missing. `origin`: the configured one, if any, and the one to
/// name a new key with.
pub fn load_or_create(keys_dir: &Path, origin: (Option<&str>, String)) -> anyhow::Result<LogKey> {
    let file = path(keys_dir);
    let (configured, default) = origin;
    if !file.exists() {
        std::fs::create_dir_all(keys_dir)
            .with_context(|| format!("creating {}", keys_dir.display()))?;
        let key = LogKey::generate(configured.unwrap_or(&default))?;
        write_new(&file, key.secret())?;
        tracing::info!(path = %file.display(), origin = key.origin(), verifier = key.verifier().key(), "generated the log key");
        return Ok(key);
    }
    let key = load(keys_dir)?;
    if let Some(configured) = configured
        && configured != key.origin()
    {
        bail!(
            "{} signs for the log {:?}, and event_log.origin is {configured:?}: set event_log.origin to {:?}, or move the key aside to start a new log (its auditors would see a new log)",
            file.display(),
            key.origin(),
            key.origin()
        );
    }
    Ok(key)
}

/// The key in `keys_dir`, which must exist.
pub fn load(keys_dir: &Path) -> anyhow::Result<LogKey> {
    let file = path(keys_dir);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    LogKey::from_secret(&text).with_context(|| format!("{}", file.display()))
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_names_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create(dir.path(), (None, "ava-aggregator/31337".into())).unwrap();
        assert_eq!(made.origin(), "ava-aggregator/31337");
        let again = load_or_create(dir.path(), (None, "other/1".into())).unwrap();
        assert_eq!(again.verifier().key(), made.verifier().key());
        let err = load_or_create(dir.path(), (Some("example.com/log"), "x".into())).unwrap_err();
        assert!(err.to_string().contains("event_log.origin"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
