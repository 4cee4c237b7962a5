//! The event log as a transparency log, end to end: checkpoints and tiles over HTTP, an
//! execution's proof bundle (for its owner only) that a fresh machine verifies with the log key
//! alone; the log checked against a checkpoint kept from `/checkpoint`: its tail cut, a byte
//! flipped, an output replaced with the hash chain recomputed: each caught and named.

use std::path::Path;
use std::time::Duration;

use events::LogKeyspaces;

use crate::support::{TestServer, User, code_node, replay, run_blocking, task_of};

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Rewrites the stored events in order through `change` (body in, body out), recomputing the
/// hash chain as someone with the data directory could.
fn rewrite(data: &Path, mut change: impl FnMut(usize, &str) -> String) -> anyhow::Result<()> {
    let db = events::open_database(data)?;
    let log = LogKeyspaces::open(&db)?;
    let mut prev = events::GENESIS_HASH;
    let all: Vec<_> = log.scan(None).collect::<Result<_, _>>()?;
    for (n, (id, value)) in all.into_iter().enumerate() {
        let (_, body) = events::split_stored(&value)?;
        let body = change(n, std::str::from_utf8(body)?);
        let hash = events::chain_hash(&prev, body.as_bytes());
        let mut stored = hash.to_vec();
        stored.extend_from_slice(body.as_bytes());
        log.events.insert(id.to_bytes(), stored)?;
        prev = hash;
    }
    db.persist(events::fjall::PersistMode::SyncAll)?;
    Ok(())
}

async fn get(url: &str, key: Option<&str>) -> anyhow::Result<(u16, String)> {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.header("authkey", key);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn bundles_verify_offline_and_a_changed_log_is_caught_against_a_kept_checkpoint()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.event_log.checkpoint_interval = Duration::from_millis(100);
    let data = config.data_dir.clone();
    let mut server = TestServer::start_with(dir, config).await?;
    let http = server.http_url();
    let mut c = server.client().await?;
    let owner = User::sign_in(&mut c).await?;
    let stranger = User::sign_in(&mut c).await?;
    let wallet = owner.wallet(&mut c).await?;
    let task = c
        .create_task(owner.req(task_of(
            "proven",
            &wallet,
            vec![code_node("code", "return 40 + 2;")],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let execution = run_blocking(&mut c, &owner, &task).await?.execution_id;
    run_blocking(&mut c, &owner, &task).await?;

    // The bundle is there once a checkpoint covers the execution (one every 100 ms).
    let url = format!("{http}/proof/execution/{execution}");
    let mut bundle = String::new();
    for _ in 0..200 {
        let (status, body) = get(&url, Some(&owner.token)).await?;
        if status == 200 {
            bundle = body;
            break;
        }
        anyhow::ensure!(status == 503, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(!bundle.is_empty(), "no checkpoint covered the execution");
    assert_eq!(
        get(&url, Some(&stranger.token)).await?.0,
        404,
        "not the stranger's"
    );
    assert_eq!(get(&url, None).await?.0, 401);
    assert_eq!(
        get(&format!("{http}/proof/execution/nope"), Some(&owner.token))
            .await?
            .0,
        400
    );

    let (status, log_key) = get(&format!("{http}/log-key"), None).await?;
    assert_eq!(status, 200);
    let (status, checkpoint) = get(&format!("{http}/checkpoint"), None).await?;
    assert_eq!(status, 200);
    let size: u64 = checkpoint.lines().nth(1).unwrap_or_default().parse()?;
    let width = size % 256;
    if width > 0 {
        let path = format!("{http}/tile/0/000.p/{width}");
        let tile = reqwest::get(&path).await?.bytes().await?;
        assert_eq!(tile.len() as u64, 32 * width, "{path}");
    }
    assert_eq!(get(&format!("{http}/tile/0/000.p/0"), None).await?.0, 400);
    assert_eq!(get(&format!("{http}/tile/entries/000"), None).await?.0, 400);
    server.stop().await?;

    // A fresh machine: the bundle, the key, nothing else.
    let fresh = tempfile::tempdir()?;
    let bundle_file = fresh.path().join("bundle.json");
    std::fs::write(&bundle_file, &bundle)?;
    let kept = fresh.path().join("checkpoint.note");
    std::fs::write(&kept, &checkpoint)?;
    let key = log_key.trim();
    let bundle_arg = bundle_file.to_string_lossy().into_owned();
    let kept_arg = kept.to_string_lossy().into_owned();
    let (ok, out) = replay(
        &fresh.path().join("no-data"),
        &["check", &bundle_arg, "--log-key", key],
    )?;
    anyhow::ensure!(ok && out.contains("ok: execution"), "{out}");
    let mut altered: serde_json::Value = serde_json::from_str(&bundle)?;
    altered["summary"]["steps"][1]["output"] = serde_json::json!(43);
    let altered_file = fresh.path().join("altered.json");
    std::fs::write(&altered_file, altered.to_string())?;
    let (ok, out) = replay(
        fresh.path(),
        &["check", &altered_file.to_string_lossy(), "--log-key", key],
    )?;
    anyhow::ensure!(!ok && out.contains("step 1"), "{out}");

    let (ok, out) = replay(
        &data,
        &["verify", "--checkpoint", &kept_arg, "--log-key", key],
    )?;
    anyhow::ensure!(ok && out.contains("hash to the checkpoint's root"), "{out}");

    // Cut the tail: the last three events gone.
    let cut = fresh.path().join("cut");
    copy_dir(&data, &cut)?;
    {
        let db = events::open_database(&cut)?;
        let log = LogKeyspaces::open(&db)?;
        let last: Vec<_> = log
            .events
            .iter()
            .rev()
            .take(3)
            .map(|g| g.key())
            .collect::<Result<_, _>>()?;
        for key in last {
            log.events.remove(key)?;
        }
        db.persist(events::fjall::PersistMode::SyncAll)?;
    }
    let (ok, out) = replay(
        &cut,
        &["verify", "--checkpoint", &kept_arg, "--log-key", key],
    )?;
    anyhow::ensure!(!ok && out.contains("the log was cut"), "{out}");

    // One byte flipped in the execution's last step (the chain breaks, and the tree names it).
    let flipped = fresh.path().join("flipped");
    copy_dir(&data, &flipped)?;
    let victim = {
        let db = events::open_database(&flipped)?;
        let log = LogKeyspaces::open(&db)?;
        let mut found = None;
        for (n, item) in log.scan(None).enumerate() {
            let (id, value) = item?;
            if std::str::from_utf8(&value[32..])?.contains("\"StepRecorded\"") {
                let mut bytes = value.to_vec();
                let at = bytes.len() - 3;
                bytes[at] ^= 0x01;
                log.events.insert(id.to_bytes(), bytes)?;
                found = Some((n, id));
                break;
            }
        }
        db.persist(events::fjall::PersistMode::SyncAll)?;
        found.ok_or_else(|| anyhow::anyhow!("no step recorded"))?
    };
    let (ok, out) = replay(
        &flipped,
        &["verify", "--checkpoint", &kept_arg, "--log-key", key],
    )?;
    anyhow::ensure!(!ok, "{out}");
    anyhow::ensure!(out.contains("hash chain broken"), "{out}");
    anyhow::ensure!(
        out.contains(&format!("event #{} ({})", victim.0, victim.1)),
        "names the event: {out}"
    );

    // An output replaced and the chain recomputed: the chain holds, the checkpoint does not.
    let forged = fresh.path().join("forged");
    copy_dir(&data, &forged)?;
    let mut changed = None;
    rewrite(&forged, |n, body| {
        // The number 42 as a JSON token: a ULID or hash may hold the digits "42" too.
        let at = body
            .contains("\"StepRecorded\"")
            .then(|| number_42(body))
            .flatten();
        match at {
            Some(at) if changed.is_none() => {
                changed = Some(n);
                format!("{}43{}", &body[..at], &body[at + 2..])
            }
            _ => body.to_owned(),
        }
    })?;
    let changed = changed.ok_or_else(|| anyhow::anyhow!("no output to replace"))?;
    let (ok, out) = replay(&forged, &["verify"])?;
    anyhow::ensure!(ok, "the recomputed chain verifies: {out}");
    let (ok, out) = replay(
        &forged,
        &["verify", "--checkpoint", &kept_arg, "--log-key", key],
    )?;
    anyhow::ensure!(!ok && out.contains("history was rewritten"), "{out}");
    anyhow::ensure!(
        out.contains(&format!("event #{changed} ")),
        "names the event: {out}"
    );
    // A bundle made from the forged log does not lead to the checkpoint.
    let (ok, forged_bundle) = replay(&forged, &["prove", "--execution", &execution])?;
    anyhow::ensure!(ok, "{forged_bundle}");
    let forged_file = fresh.path().join("forged.json");
    std::fs::write(&forged_file, &forged_bundle)?;
    let (ok, out) = replay(
        fresh.path(),
        &["check", &forged_file.to_string_lossy(), "--log-key", key],
    )?;
    anyhow::ensure!(!ok && out.contains("not the event the log holds"), "{out}");
    Ok(())
}

/// Where `body` holds the number 42 standing alone (not inside a ULID, a hash or a longer number).
fn number_42(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let alone = |i: Option<&u8>| i.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'.');
    body.match_indices("42")
        .map(|(at, _)| at)
        .find(|&at| alone(at.checked_sub(1).and_then(|i| bytes.get(i))) && alone(bytes.get(at + 2)))
}
