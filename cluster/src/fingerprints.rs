//! The keys every replica shares: a replica whose keys directory differs from the others' refuses
//! to start, naming the key.
//!
//! Replicas of one log must sign sessions with the same JWT secret (a token minted by one is
//! checked by another), open secrets with the same secret-encryption key, sign checkpoints with
//! the same log key, and act on chain as the same controller and bundler. A replica started with
//! a keys directory of its own (an empty one makes fresh keys) would serve, and quietly break
//! every session and secret the others made.
//!
//! The first replica to start records a fingerprint of each key file present; every later start
//! compares its own with them. A fingerprint is HMAC-SHA256 keyed by the key itself over a fixed
//! label: it tells equal keys from different ones and reveals nothing of a random key. (For a
//! JWT secret chosen by a person, imported from the original's config, it lets a guess be tested
//! offline, as every token signed with that secret already does.)
//!
//! Where: a KV bucket beside the stream (`<stream>_keys`, one entry per key file, created with
//! an atomic create so that concurrent first starts record one value; the bucket itself is
//! created race safe, `buckets`), not a subject of the
//! stream: the stream holds the log's messages and nothing else (every reader decodes each of
//! its messages as events), and the fingerprints are no event of the domain (recording them in
//! the log would put them in the transparency log's tree too).

use std::path::Path;

use std::time::Duration;

use async_nats::jetstream::kv;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::buckets::{open_bucket, patiently};
use crate::error::{Error, Result};
use crate::stream::Replicated;

/// The key files of the keys directory every replica must share, with what they are.
pub const SHARED_KEYS: [(&str, &str); 5] = [
    ("jwt.secret", "the JWT secret"),
    ("secrets.key", "the secret-encryption key"),
    ("log.key", "the log key"),
    ("controller.key", "the controller key"),
    ("bundler.key", "the bundler key"),
];

const LABEL: &[u8] = b"ava-aggregator key fingerprint v1";

/// The fingerprint of a key file's contents (hex). Hex key files are compared by the bytes they
/// hold (case and surrounding whitespace aside), other ones by their trimmed text.
pub fn fingerprint(file: &str, contents: &[u8]) -> String {
    let trimmed = contents.trim_ascii();
    let key = hex::decode(trimmed).unwrap_or_else(|_| trimmed.to_vec());
    #[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(LABEL);
    mac.update(b"\n");
    mac.update(file.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// This replica's fingerprint of each shared key file (`None`: the file is absent).
pub fn local(keys_dir: &Path) -> Result<Vec<(&'static str, Option<String>)>> {
    SHARED_KEYS
        .iter()
        .map(|(file, _)| {
            let path = keys_dir.join(file);
            match std::fs::read(&path) {
                Ok(contents) => Ok((*file, Some(fingerprint(file, &contents)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((*file, None)),
                Err(e) => Err(Error::Keys(format!("reading {}: {e}", path.display()))),
            }
        })
        .collect()
}

/// What `check` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Key files this start recorded (the first replica with them).
    pub recorded: Vec<&'static str>,
    /// Key files found equal to the recorded ones.
    pub matched: Vec<&'static str>,
}

/// The bucket of a stream's fingerprints.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_keys")
}

/// Records this replica's key fingerprints where none are recorded yet, and refuses (naming the
/// key) when one differs from the recorded one or is missing here. Call it at start-up once the
/// keys directory is complete (after the keys are loaded or created) and before serving.
/// `replicas`: the copies the NATS cluster keeps (`event_log.replicas`).
pub async fn check(replicated: &Replicated, replicas: usize, keys_dir: &Path) -> Result<Checked> {
    let mine = local(keys_dir)?;
    let store = open_bucket(
        replicated,
        &bucket(replicated.name()),
        replicas,
        Duration::ZERO,
        "the fingerprints of the keys every replica shares",
    )
    .await?;
    let mut checked = Checked::default();
    for ((file, what), (_, fingerprint)) in SHARED_KEYS.iter().zip(mine) {
        let (theirs, recorded) = patiently(|| settle(&store, file, fingerprint.as_deref()))
            .await
            .map_err(|e| Error::Stream {
                stream: bucket(replicated.name()),
                message: format!("{file}: {e}"),
            })?;
        if recorded {
            checked.recorded.push(*file);
            continue;
        }
        let Some(theirs) = theirs else { continue };
        let ours = fingerprint;
        let dir = keys_dir.display();
        let stream = replicated.name();
        match ours {
            None => {
                return Err(Error::Keys(format!(
                    "{what} ({file}) is missing from {dir}, and the replicas of stream {stream:?} have one: every replica needs a copy of the same keys directory"
                )));
            }
            Some(ours) if ours.as_bytes() != theirs.as_slice() => {
                return Err(Error::Keys(format!(
                    "{what} ({file}) in {dir} differs from the one the replicas of stream {stream:?} use (fingerprint {}…, theirs {}…): every replica needs a copy of the same keys directory; copy it from a running replica",
                    &ours[..12],
                    String::from_utf8_lossy(&theirs[..theirs.len().min(12)])
                )));
            }
            Some(_) => checked.matched.push(*file),
        }
    }
    Ok(checked)
}

/// The recorded fingerprint of `file`, recording `ours` when there is none: (the value
/// recorded before, whether this call recorded it). One attempt: a create refused because
/// another replica recorded it meanwhile reads theirs; anything else is the caller's to retry
/// (a fresh bucket's first requests can time out while the cluster elects its leader).
async fn settle(
    store: &kv::Store,
    file: &str,
    ours: Option<&str>,
) -> std::result::Result<(Option<Vec<u8>>, bool), String> {
    let recorded = store.get(file).await.map_err(|e| e.to_string())?;
    match (recorded, ours) {
        (Some(value), _) => Ok((Some(value.to_vec()), false)),
        (None, None) => Ok((None, false)),
        (None, Some(ours)) => match store.create(file, ours.to_owned().into()).await {
            Ok(_) => Ok((None, true)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                match store.get(file).await.map_err(|e| e.to_string())? {
                    Some(value) => Ok((Some(value.to_vec()), false)),
                    None => Err("recorded and gone".into()),
                }
            }
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_tells_keys_apart_and_ignores_the_file_layout() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = fingerprint("secrets.key", key.as_bytes());
        // The same key, upper case with a newline: the same fingerprint
        assert_eq!(
            a,
            fingerprint(
                "secrets.key",
                format!("{}\n", key.to_uppercase()).as_bytes()
            )
        );
        // Another key, or the same bytes in another file: another one
        assert_ne!(
            a,
            fingerprint("secrets.key", key.replace('0', "1").as_bytes())
        );
        assert_ne!(a, fingerprint("jwt.secret", key.as_bytes()));
        // It does not contain the key
        assert!(!a.contains(key) && !a.contains(&key[..16]));
        assert_eq!(a.len(), 64);
    }
}
