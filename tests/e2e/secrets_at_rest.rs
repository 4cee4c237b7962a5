//! Secret values are encrypted at rest: no file of the data directory holds a secret's clear
//! bytes. Positive control: the same search finds a marker written in clear (a task's name), so
//! the search can fail.

use std::path::Path;

use aggregator::pb;

use crate::support::{TestServer, User, random_u64, simple_task};

fn files_containing(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                let bytes = std::fs::read(entry.path())?;
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path().display().to_string());
                }
            }
        }
    }
    Ok(found)
}

#[tokio::test]
async fn the_data_directory_holds_no_clear_secret() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let marker = format!("CLEAR-MARKER-{:016x}", random_u64());
    let secret = format!("SECRET-VALUE-{:016x}", random_u64());
    let task = c
        .create_task(user.req(simple_task(&marker, &wallet)))
        .await?
        .into_inner()
        .id;
    for (name, workflow) in [("user_scoped", String::new()), ("workflow_scoped", task)] {
        c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
            name: name.into(),
            secret: secret.clone(),
            workflow_id: workflow,
            org_id: String::new(),
        }))
        .await?;
    }
    c.update_secret(user.req(pb::CreateOrUpdateSecretReq {
        name: "user_scoped".into(),
        secret: format!("{secret}-v2"),
        workflow_id: String::new(),
        org_id: String::new(),
    }))
    .await?;
    server.stop().await?;

    let data = &server.config.data_dir;
    let with_marker = files_containing(data, marker.as_bytes())?;
    assert!(
        !with_marker.is_empty(),
        "positive control: the clear marker must be found in {}",
        data.display()
    );
    let with_secret = files_containing(data, secret.as_bytes())?;
    assert!(
        with_secret.is_empty(),
        "clear secret bytes found in {with_secret:?}"
    );
    // The keys live elsewhere.
    assert!(!server.config.keys_dir.starts_with(data));
    Ok(())
}
