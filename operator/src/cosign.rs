//! Cosigning the aggregator's log checkpoints.
//!
//! A checkpoint pushed on the task stream (op `CosignCheckpoint`) is opened with the pinned log
//! key (`log_key` in the config, or the first key the aggregator named, pinned in the state
//! file), then held to `tlog::cosign::may_cosign` against the last checkpoint this operator
//! cosigned: the same log, never another root for a size, never a smaller tree, a valid
//! consistency proof from the last one (asked for when the push carries one from another size).
//! The state file is written (and fsync'd) before the signature leaves, so that a crash between
//! the two can only cost a signature, never allow a second root for a size.

use std::path::Path;

use tlog::LogVerifier;
use tlog::cosign::{Cosigned, Refusal};

use super::client::Client;
use super::config::OperatorConfig;
use protocol::pb;

/// Checks, records and cosigns one pushed checkpoint; refusals are logged, never signed.
pub async fn checkpoint(
    config: &OperatorConfig,
    client: &mut Client,
    pushed: &pb::CheckpointToCosign,
) {
    match cosign(config, client, pushed).await {
        Ok(message) => tracing::info!(%message, "checkpoint cosigned"),
        Err(e) => {
            metrics::counter!("operator_cosign_refusals_total").increment(1);
            tracing::error!(error = %e, "checkpoint not cosigned");
        }
    }
}

async fn cosign(
    config: &OperatorConfig,
    client: &mut Client,
    pushed: &pb::CheckpointToCosign,
) -> anyhow::Result<String> {
    let state = read_state(&config.state_file).await?;
    let key = config
        .log_key
        .clone()
        .or_else(|| state.as_ref().map(|s| s.log_key.clone()))
        .unwrap_or_else(|| pushed.log_key.clone());
    if !pushed.log_key.is_empty() && pushed.log_key.trim() != key.trim() {
        anyhow::bail!(
            "the aggregator names log key {}, this operator holds {key}: refusing a new log key",
            pushed.log_key
        );
    }
    let opened = LogVerifier::new(&key)?.open(pushed.note.as_bytes())?;
    let proof = hashes(&pushed.consistency_proof)?;
    let root = opened.root.to_string();
    match tlog::cosign::may_cosign(state.as_ref(), &opened, pushed.previous_size, &proof) {
        Ok(()) => {}
        Err(Refusal::NeedProof { from }) => {
            let answer = client.cosign(opened.size, &root, None, from).await?;
            let proof = hashes(&answer.consistency_proof)?;
            tlog::cosign::may_cosign(state.as_ref(), &opened, from, &proof)?;
        }
        Err(refusal) => return Err(refusal.into()),
    }
    let signed = Cosigned {
        origin: opened.origin.clone(),
        log_key: key.trim().to_owned(),
        size: opened.size,
        root: root.clone(),
    };
    write_state(&config.state_file, &signed).await?;
    let signature = tlog::cosign::sign(client.bls(), &opened.text);
    let answer = client
        .cosign(opened.size, &root, Some(signature), opened.size)
        .await?;
    if !answer.accepted {
        anyhow::bail!(
            "the aggregator did not take the cosignature: {}",
            answer.message
        );
    }
    Ok(answer.message)
}

fn hashes(raw: &[Vec<u8>]) -> anyhow::Result<Vec<tlog::Hash>> {
    raw.iter()
        .map(|h| {
            let bytes: [u8; 32] = h
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("a proof hash of {} bytes", h.len()))?;
            Ok(tlog::Hash(bytes))
        })
        .collect()
}

/// The last checkpoint cosigned, if any. An unreadable file is an error: signing on without it
/// could sign a second root for a size.
pub async fn read_state(path: &Path) -> anyhow::Result<Option<Cosigned>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not a cosigning state file: {e}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Replaces the state file atomically: a new file, fsync'd, renamed over the old one, the
/// directory fsync'd.
pub async fn write_state(path: &Path, state: &Cosigned) -> anyhow::Result<()> {
    let path = path.to_owned();
    let bytes = serde_json::to_vec_pretty(state)?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })
    .await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_state_file_round_trips_and_a_damaged_one_stops_signing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/cosigned.json");
        assert_eq!(read_state(&path).await.unwrap(), None);
        let state = Cosigned {
            origin: "o/1".into(),
            log_key: "k".into(),
            size: 9,
            root: tlog::EMPTY_HASH.to_string(),
        };
        write_state(&path, &state).await.unwrap();
        assert_eq!(read_state(&path).await.unwrap(), Some(state));
        std::fs::write(&path, b"{").unwrap();
        assert!(read_state(&path).await.is_err());
    }
}
