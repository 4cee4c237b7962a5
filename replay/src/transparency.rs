//! The transparency log's side of the audit (`tlog`): proof bundles written from a data
//! directory and checked with nothing else, two checkpoints checked against each other, and the
//! log checked against a checkpoint the auditor kept.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use events::LogKeyspaces;
use tlog::bundle::{self, Bundle, Trust};
use tlog::{LogVerifier, OperatorSet, TileStore};

/// A verifier key given as its text or as a file holding it.
pub fn log_key(arg: &str) -> Result<LogVerifier> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        arg.to_owned()
    };
    Ok(LogVerifier::new(&text)?)
}

/// `replay prove --execution ID`: the bundle as JSON.
pub fn prove(
    log: &LogKeyspaces,
    store: &TileStore,
    execution: &str,
    out: &mut dyn Write,
) -> Result<bool> {
    let bundle = bundle::prove(log, store, execution)?;
    serde_json::to_writer_pretty(&mut *out, &bundle)?;
    writeln!(out)?;
    Ok(true)
}

/// `replay check BUNDLE --log-key KEY [--operators FILE] [--quorum K]`.
pub fn check(
    file: &Path,
    key: &str,
    operators: Option<&Path>,
    quorum: Option<u64>,
    out: &mut dyn Write,
) -> Result<bool> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let bundle: Bundle = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an execution bundle", file.display()))?;
    let operators = operators.map(OperatorSet::load).transpose()?;
    if quorum.is_some() && operators.is_none() {
        bail!("--quorum needs --operators: a quorum of whom?");
    }
    let trust = Trust {
        log: log_key(key)?,
        operators,
        quorum,
    };
    match bundle::verify(&bundle, &trust) {
        Ok(verified) => {
            writeln!(
                out,
                "ok: execution {} of task {}: {verified}",
                bundle.execution_id, bundle.task_id
            )?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "FAILED: execution {}: {e}", bundle.execution_id)?;
            Ok(false)
        }
    }
}

/// A checkpoint file: its size and root, its signature checked when a key is given.
fn read_checkpoint(file: &Path, key: Option<&LogVerifier>) -> Result<(u64, tlog::Hash, bool)> {
    let note = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match key {
        Some(key) => {
            let opened = key
                .open(&note)
                .with_context(|| format!("checkpoint {}", file.display()))?;
            Ok((opened.size, opened.root, true))
        }
        None => {
            let (_, size, root) = tlog::checkpoint::read_unverified(&note)
                .with_context(|| format!("checkpoint {}", file.display()))?;
            Ok((size, root, false))
        }
    }
}

/// `replay consistency OLD NEW`: the data directory's tree proves OLD a prefix of NEW.
pub fn consistency(
    store: &TileStore,
    old: &Path,
    new: &Path,
    key: Option<&str>,
    out: &mut dyn Write,
) -> Result<bool> {
    let key = key.map(log_key).transpose()?;
    let (old_size, old_root, signed) = read_checkpoint(old, key.as_ref())?;
    let (new_size, new_root, _) = read_checkpoint(new, key.as_ref())?;
    let (old_size, old_root, new_size, new_root) = if old_size <= new_size {
        (old_size, old_root, new_size, new_root)
    } else {
        (new_size, new_root, old_size, old_root)
    };
    let signatures = if signed {
        "signatures checked"
    } else {
        "signatures not checked (no --log-key)"
    };
    let proof = match tlog::proof::consistency(store, old_size, new_size) {
        Ok(proof) => proof,
        Err(e) => {
            writeln!(
                out,
                "FAILED: no consistency proof from {old_size} to {new_size} leaves in this data directory: {e}"
            )?;
            return Ok(false);
        }
    };
    match tlog::proof::verify_consistency(&proof, old_size, old_root, new_size, new_root) {
        Ok(()) => {
            writeln!(
                out,
                "ok: the checkpoint of {old_size} leaves is a prefix of the one of {new_size} ({} proof hashes; {signatures})",
                proof.len()
            )?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "FAILED: {e} ({signatures})")?;
            Ok(false)
        }
    }
}

/// `replay verify --checkpoint FILE`: the log recomputed against a checkpoint kept.
pub fn against_checkpoint(
    log: &LogKeyspaces,
    store: Option<&TileStore>,
    file: &Path,
    key: Option<&str>,
    out: &mut dyn Write,
) -> Result<bool> {
    let key = key.map(log_key).transpose()?;
    let (size, root, signed) = read_checkpoint(file, key.as_ref())?;
    let finding = tlog::audit::against_checkpoint(log, store, size, root, &|_| {})?;
    let signature = if signed {
        "its signature checked"
    } else {
        "its signature not checked (no --log-key)"
    };
    match finding {
        tlog::audit::Finding::Consistent { .. } => {
            writeln!(
                out,
                "ok: checkpoint {}: {finding} ({signature})",
                file.display()
            )?;
            Ok(true)
        }
        other => {
            writeln!(out, "FAILED: checkpoint {}: {other}", file.display())?;
            Ok(false)
        }
    }
}
