//! Tampering with one stored event through the storage API (so fjall's own checksums stay valid):
//! `replay verify` names that event; a clean store verifies and diffs clean.

use events::event::{ApiKeyRevoked, TaskCreated};
use events::{Command, Durability, Expected};

use crate::support::{open_store, replay};

#[test]
fn replay_verify_names_the_tampered_event() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path(), Durability::Relaxed)?;
    for i in 0..200 {
        let task_id = format!("01TAMPER{i:018}");
        let command = Command::new("0xowner", events::now_ms())
            .append(
                events::stream::task(&task_id),
                Expected::NoStream,
                vec![
                    TaskCreated {
                        task_id: task_id.clone(),
                        owner: "0xowner".into(),
                        wallet: "0xwallet".into(),
                        definition: events::samples::definition(),
                    }
                    .into(),
                ],
            )
            .append(
                events::stream::api_key(&format!("jti{i}")),
                Expected::NoStream,
                vec![
                    ApiKeyRevoked {
                        jti: format!("jti{i}"),
                    }
                    .into(),
                ],
            );
        store.log.append_blocking(command)?;
    }
    store.close()?;
    drop(store);

    let (ok, out) = replay(dir.path(), &["verify"])?;
    anyhow::ensure!(ok, "a clean store must verify: {out}");
    let (ok, out) = replay(dir.path(), &["diff"])?;
    anyhow::ensure!(ok, "a clean store must diff clean: {out}");

    // Rewrite the 123rd event: same length, one character changed in the payload.
    let victim = {
        let db = events::open_database(dir.path())?;
        let ks = events::LogKeyspaces::open(&db)?;
        let (id, value) = ks.scan(None).nth(123).unwrap()?;
        let mut bytes = value.to_vec();
        let body = std::str::from_utf8(&bytes[32..])?.to_owned();
        let forged = body
            .replacen("0xwallet", "0xWALLET", 1)
            .replacen("jti", "JTI", 1);
        anyhow::ensure!(forged != body, "the forgery changed nothing");
        bytes.truncate(32);
        bytes.extend_from_slice(forged.as_bytes());
        ks.events.insert(id.to_bytes(), bytes)?;
        db.persist(events::fjall::PersistMode::SyncAll)?;
        id
    };
    let (ok, out) = replay(dir.path(), &["verify"])?;
    anyhow::ensure!(!ok, "verify must fail after tampering: {out}");
    anyhow::ensure!(
        out.contains(&victim.to_string()) && out.contains("#123"),
        "verify must name event #123 ({victim}): {out}"
    );
    Ok(())
}
