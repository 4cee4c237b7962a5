//! No user ever sees, changes, triggers or counts another user's tasks, executions, wallets or
//! secrets: every method, called with a second user's token on the first user's things.

use aggregator::pb;
use tonic::Code;

use crate::support::{TestServer, User, simple_task};

#[tokio::test]
async fn a_second_user_reaches_nothing_of_the_first() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let alice = User::sign_in(&mut c).await?;
    let bob = User::sign_in(&mut c).await?;
    let wallet = alice.wallet(&mut c).await?;
    let task = c
        .create_task(alice.req(simple_task("alice's", &wallet)))
        .await?
        .into_inner()
        .id;
    c.create_secret(alice.req(pb::CreateOrUpdateSecretReq {
        name: "alice_key".into(),
        secret: "s3cret".into(),
        workflow_id: task.clone(),
        org_id: String::new(),
    }))
    .await?;
    let id = || pb::IdReq { id: task.clone() };

    not_found(c.get_task(bob.req(id())).await, "GetTask");
    // As the original, these two answer an unknown task in-band.
    let disabled = c
        .set_task_enabled(bob.req(pb::SetTaskEnabledReq {
            id: task.clone(),
            enabled: false,
        }))
        .await?
        .into_inner();
    assert_eq!(
        (disabled.success, disabled.status.as_str()),
        (false, "not_found")
    );
    not_found(c.cancel_task(bob.req(id())).await, "CancelTask");
    let deleted = c.delete_task(bob.req(id())).await?.into_inner();
    assert_eq!(
        (deleted.success, deleted.status.as_str()),
        (false, "not_found")
    );
    not_found(
        c.list_executions(bob.req(pb::ListExecutionsReq {
            task_ids: vec![task.clone()],
            limit: 5,
            ..Default::default()
        }))
        .await,
        "ListExecutions",
    );
    let run = || pb::ExecutionReq {
        task_id: task.clone(),
        execution_id: ulid::Ulid::generate().to_string(),
    };
    not_found(c.get_execution(bob.req(run())).await, "GetExecution");
    not_found(
        c.get_execution_status(bob.req(run())).await,
        "GetExecutionStatus",
    );
    not_found(
        c.get_execution_count(bob.req(pb::GetExecutionCountReq {
            workflow_ids: vec![task.clone()],
        }))
        .await,
        "GetExecutionCount",
    );
    not_found(
        c.get_execution_stats(bob.req(pb::GetExecutionStatsReq {
            workflow_ids: vec![task.clone()],
            days: 7,
        }))
        .await,
        "GetExecutionStats",
    );
    not_found(
        c.trigger_task(bob.req(pb::TriggerTaskReq {
            task_id: task.clone(),
            trigger_type: pb::TriggerType::Manual as i32,
            ..Default::default()
        }))
        .await,
        "TriggerTask",
    );
    // Secrets: as in the original, a workflow id is not looked up, but the owner is part of the
    // key: what Bob stores under Alice's workflow id is his own, and her runs never see it.
    c.create_secret(bob.req(pb::CreateOrUpdateSecretReq {
        name: "x".into(),
        secret: "y".into(),
        workflow_id: task.clone(),
        org_id: String::new(),
    }))
    .await?;
    let alices = c
        .list_secrets(alice.req(pb::ListSecretsReq {
            workflow_id: task.clone(),
            limit: 50,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(alices.items.iter().all(|s| s.name != "x"), "{alices:?}");
    not_found(
        c.delete_secret(bob.req(pb::DeleteSecretReq {
            name: "alice_key".into(),
            workflow_id: task.clone(),
            org_id: String::new(),
        }))
        .await,
        "DeleteSecret",
    );
    let bobs_view = c
        .list_secrets(bob.req(pb::ListSecretsReq {
            workflow_id: task.clone(),
            limit: 5,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(
        bobs_view.items.iter().all(|s| s.name != "alice_key"),
        "{bobs_view:?}"
    );
    let bobs = c
        .list_secrets(bob.req(pb::ListSecretsReq {
            limit: 50,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(
        bobs.items.iter().all(|s| s.name == "x"),
        "only what Bob stored himself: {bobs:?}"
    );

    // Lists and counts over Alice's wallet show Bob nothing.
    let list = c
        .list_tasks(bob.req(pb::ListTasksReq {
            smart_wallet_address: vec![wallet.clone()],
            limit: 10,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(list.items.is_empty());
    let count = c
        .get_workflow_count(bob.req(pb::GetWorkflowCountReq {
            addresses: vec![wallet.clone()],
        }))
        .await?
        .into_inner();
    assert_eq!(count.total, 0);
    let all = c
        .list_executions(bob.req(pb::ListExecutionsReq {
            limit: 10,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(all.items.is_empty());

    // Bob cannot run tasks on Alice's wallet, nor read her nonce; his wallets are his own.
    let err = c
        .create_task(bob.req(simple_task("theft", &wallet)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .get_nonce(bob.req(pb::NonceRequest {
            owner: alice.address(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let bobs_wallets = c
        .list_wallets(bob.req(pb::ListWalletReq::default()))
        .await?
        .into_inner();
    assert!(bobs_wallets.items.iter().all(|w| w.address != wallet));

    // And Alice still has everything.
    let mine = c.get_task(alice.req(id())).await?.into_inner();
    assert_eq!(mine.status, pb::TaskStatus::Enabled as i32);
    Ok(())
}

fn not_found<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), Code::NotFound, "{what}: {err:?}");
}
