//! State survives a restart; the log verifies and the projections equal a rebuild; a projection
//! whose schema version changed is rebuilt on start-up with identical rows.

use aggregator::pb;

use crate::support::{TestServer, User, replay, simple_task};

#[tokio::test]
async fn everything_is_there_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.durability = aggregator::config::DurabilityMode::Sync;
    let mut server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    c.get_wallet(user.req(pb::GetWalletReq {
        salt: "3".into(),
        factory_address: String::new(),
    }))
    .await?;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            c.create_task(user.req(simple_task(&format!("t{i}"), &wallet)))
                .await?
                .into_inner()
                .id,
        );
    }
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: ids[0].clone(),
        enabled: false,
    }))
    .await?;
    c.cancel_task(user.req(pb::IdReq { id: ids[1].clone() }))
        .await?;
    c.delete_task(user.req(pb::IdReq { id: ids[2].clone() }))
        .await?;
    c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
        name: "k".into(),
        secret: "v".into(),
        ..Default::default()
    }))
    .await?;
    let before = snapshot(&mut c, &user).await?;

    server.restart().await?;
    let mut c = server.client().await?;
    assert_eq!(
        snapshot(&mut c, &user).await?,
        before,
        "the same answers after a restart"
    );
    // The token minted before still works (same keys directory).
    server.stop().await?;

    let data = server.config.data_dir.clone();
    let (ok, out) = replay(&data, &["verify"])?;
    assert!(ok, "{out}");
    let (ok, out) = replay(&data, &["diff"])?;
    assert!(ok, "{out}");

    // Pretend the wallets projection was written by an older schema: start-up rebuilds it.
    {
        let db = events::open_database(&data)?;
        let meta = db.keyspace(
            "projection_meta",
            events::fjall::KeyspaceCreateOptions::default,
        )?;
        let mut stale: serde_json::Value = serde_json::from_slice(&meta.get("wallets")?.unwrap())?;
        stale["version"] = serde_json::json!(0);
        meta.insert("wallets", serde_json::to_vec(&stale)?)?;
        let wallets = db.keyspace("wallets", events::fjall::KeyspaceCreateOptions::default)?;
        wallets.insert("w:garbage", "left by the old schema")?;
        db.persist(events::fjall::PersistMode::SyncAll)?;
    }
    server.restart().await?;
    let mut c = server.client().await?;
    assert_eq!(snapshot(&mut c, &user).await?, before);
    server.stop().await?;
    let (ok, out) = replay(&data, &["diff"])?;
    assert!(ok, "after the rebuild: {out}");
    Ok(())
}

/// What the user sees, as text.
async fn snapshot(
    c: &mut pb::aggregator_client::AggregatorClient<tonic::transport::Channel>,
    user: &User,
) -> anyhow::Result<String> {
    let tasks = c
        .list_tasks(user.req(pb::ListTasksReq {
            limit: 50,
            include_nodes: true,
            include_edges: true,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let wallets = c
        .list_wallets(user.req(pb::ListWalletReq::default()))
        .await?
        .into_inner();
    let wallet = c
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "0".into(),
            factory_address: String::new(),
        }))
        .await?
        .into_inner();
    let secrets = c
        .list_secrets(user.req(pb::ListSecretsReq {
            limit: 50,
            include_timestamps: true,
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(format!("{tasks:?}\n{wallets:?}\n{wallet:?}\n{secrets:?}"))
}
