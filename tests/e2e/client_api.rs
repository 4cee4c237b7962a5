//! The client API over real gRPC against a server started in the test: sign-in, wallets, tasks,
//! secrets, and the read side of executions.

use std::time::{Duration, SystemTime};

use aggregator::auth::signin::SignIn;
use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::U256;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use tonic::Code;

use crate::support::{TestServer, User, simple_task, with_key};

fn signed(signer: &PrivateKeySigner, signin: &SignIn) -> pb::GetKeyReq {
    let message = signin.message(&signer.address().to_checksum(None));
    let signature = signer.sign_message_sync(message.as_bytes()).unwrap();
    pb::GetKeyReq {
        message,
        signature: format!("0x{}", hex::encode(signature.as_bytes())),
    }
}

fn signin_for(
    signer: &PrivateKeySigner,
    issued: SystemTime,
    lifetime: Duration,
    chain_id: u64,
) -> SignIn {
    SignIn {
        uri: "https://app.avaprotocol.org".into(),
        chain_id,
        version: "0.1.0".into(),
        issued_at: issued,
        expire_at: issued + lifetime,
        wallet: signer.address(),
    }
}

#[tokio::test]
async fn sign_in_and_what_it_refuses() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let claims = user.token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims)?)?;
    assert_eq!(claims["iss"], "AvaProtocol");
    assert_eq!(claims["sub"], user.address());
    assert_eq!(claims["aud"], serde_json::json!(["31337"]));

    // The message has the original's layout.
    let message = client
        .get_signature_format(pb::GetSignatureFormatReq {
            wallet: user.address(),
        })
        .await?
        .into_inner()
        .message;
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "Please sign the below text for ownership verification."
    );
    assert_eq!(lines[3], "Chain ID: 31337");
    assert!(
        lines[5].starts_with("Issued At: ") && lines[5].ends_with('Z'),
        "{}",
        lines[5]
    );
    assert_eq!(lines[7], format!("Wallet: {}", user.address()));

    let signer = PrivateKeySigner::random();
    let now = SystemTime::now();
    let refusals = [
        (
            signin_for(&signer, now, Duration::from_secs(30 * 86400), 31337),
            "longer than the maximum",
        ),
        (
            signin_for(
                &signer,
                now + Duration::from_secs(3600),
                Duration::from_secs(3600),
                31337,
            ),
            "future",
        ),
        (
            signin_for(&signer, now, Duration::from_secs(3600), 1),
            "chain 1",
        ),
        (
            signin_for(
                &signer,
                now - Duration::from_secs(7200),
                Duration::from_secs(3600),
                31337,
            ),
            "expired",
        ),
    ];
    for (signin, reason) in refusals {
        let err = client.get_key(signed(&signer, &signin)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(
            err.message().contains("User authentication error") && err.message().contains(reason),
            "{err:?}"
        );
    }
    // Signed by someone else.
    let mut forged = signed(
        &PrivateKeySigner::random(),
        &signin_for(&signer, now, Duration::from_secs(60), 31337),
    );
    forged.message = signin_for(&signer, now, Duration::from_secs(60), 31337)
        .message(&signer.address().to_string());
    assert_eq!(
        client.get_key(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // No token, or a bad one.
    let err = client
        .list_wallets(pb::ListWalletReq::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("User authentication error"));
    let err = client
        .list_wallets(with_key(pb::ListWalletReq::default(), "a.b.c"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_signature_format(pb::GetSignatureFormatReq {
            wallet: "0x123".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    Ok(())
}

#[tokio::test]
async fn wallets_derive_register_hide_and_count() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let factory = aggregator::wallet::WalletFactory::canonical_v06();

    let w0 = client
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "0".into(),
            factory_address: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        w0.address,
        factory
            .address(user.signer.address(), U256::ZERO)
            .to_checksum(None)
    );
    assert_eq!(
        w0.factory_address,
        "0x9406Cc6185a346906296840746125a0E44976454"
    );
    let w1 = client
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "1".into(),
            factory_address: String::new(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        w1.address,
        factory
            .address(user.signer.address(), U256::from(1))
            .to_checksum(None)
    );

    let err = client
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "-1".into(),
            factory_address: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("invalid salt value: must be a non-negative integer"),
        "{err:?}"
    );
    let err = client
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "0".into(),
            factory_address: "0xnope".into(),
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("invalid factory address"), "{err:?}");

    // The limit (5 by default): salts 0 and 1 are registered, three more fit, the sixth does not.
    for salt in 2..5 {
        client
            .get_wallet(user.req(pb::GetWalletReq {
                salt: salt.to_string(),
                factory_address: String::new(),
            }))
            .await?;
    }
    let err = client
        .get_wallet(user.req(pb::GetWalletReq {
            salt: "99".into(),
            factory_address: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Hide, list, unhide.
    let hidden = client
        .set_wallet(user.req(pb::SetWalletReq {
            salt: "1".into(),
            factory_address: String::new(),
            is_hidden: true,
        }))
        .await?
        .into_inner();
    assert!(hidden.is_hidden);
    let list = client
        .list_wallets(user.req(pb::ListWalletReq::default()))
        .await?
        .into_inner();
    assert_eq!(list.items.len(), 5);
    assert_eq!(
        list.items[0].address, w0.address,
        "the salt-0 wallet comes first"
    );
    assert!(
        list.items
            .iter()
            .any(|w| w.address == w1.address && w.is_hidden)
    );
    let err = client
        .set_wallet(user.req(pb::SetWalletReq {
            salt: "77".into(),
            factory_address: String::new(),
            is_hidden: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A new user sees their salt-0 wallet before asking for it.
    let other = User::sign_in(&mut client).await?;
    let list = client
        .list_wallets(other.req(pb::ListWalletReq::default()))
        .await?
        .into_inner();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].salt, "0");

    // Counters follow the tasks.
    let id = client
        .create_task(user.req(simple_task("counted", &w0.address)))
        .await?
        .into_inner()
        .id;
    let counted = |w: pb::GetWalletResp| {
        (
            w.total_task_count,
            w.enabled_task_count,
            w.disabled_task_count,
            w.cancelled_task_count,
        )
    };
    let get0 = || {
        user.req(pb::GetWalletReq {
            salt: "0".into(),
            factory_address: String::new(),
        })
    };
    assert_eq!(
        counted(client.get_wallet(get0()).await?.into_inner()),
        (1, 1, 0, 0)
    );
    client.cancel_task(user.req(pb::IdReq { id })).await?;
    assert_eq!(
        counted(client.get_wallet(get0()).await?.into_inner()),
        (1, 0, 1, 1)
    );

    // Without a chain, GetNonce says what it needs.
    let err = client
        .get_nonce(user.req(pb::NonceRequest {
            owner: user.address(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("rpc_url"), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn task_lifecycle_over_grpc() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            client
                .create_task(user.req(simple_task(&format!("task {i}"), &wallet)))
                .await?
                .into_inner()
                .id,
        );
    }
    let task = client
        .get_task(user.req(pb::IdReq { id: ids[0].clone() }))
        .await?
        .into_inner();
    assert_eq!(task.name, "task 0");
    assert_eq!(task.status, pb::TaskStatus::Enabled as i32);
    assert_eq!(task.owner, user.address());
    assert_eq!(task.smart_wallet_address, wallet);
    assert_eq!(task.nodes.len(), 1);

    // Pages of 2, newest first, following end_cursor.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = client
            .list_tasks(user.req(pb::ListTasksReq {
                smart_wallet_address: vec![wallet.clone()],
                after: after.clone(),
                limit: 2,
                ..Default::default()
            }))
            .await?
            .into_inner();
        let info = page.page_info.unwrap();
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        assert!(
            page.items.iter().all(|t| t.nodes.is_empty()),
            "nodes only when asked for"
        );
        if !info.has_next_page {
            break;
        }
        after = info.end_cursor;
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let id = ids[1].clone();
    let reader = client.clone();
    let status = |id: String| {
        let mut c = reader.clone();
        let req = user.req(pb::IdReq { id });
        async move { c.get_task(req).await.map(|t| t.into_inner()) }
    };
    let resp = client
        .set_task_enabled(user.req(pb::SetTaskEnabledReq {
            id: id.clone(),
            enabled: false,
        }))
        .await?
        .into_inner();
    assert_eq!(
        (resp.status.as_str(), resp.previous_status.as_str()),
        ("disabled", "Enabled")
    );
    assert_eq!(
        status(id.clone()).await?.status,
        pb::TaskStatus::Disabled as i32
    );
    client
        .set_task_enabled(user.req(pb::SetTaskEnabledReq {
            id: id.clone(),
            enabled: true,
        }))
        .await?;
    assert_eq!(
        status(id.clone()).await?.status,
        pb::TaskStatus::Enabled as i32
    );

    let cancelled = client
        .cancel_task(user.req(pb::IdReq { id: id.clone() }))
        .await?
        .into_inner();
    assert_eq!(cancelled.status, "cancelled");
    let task = status(id.clone()).await?;
    assert_eq!(
        task.status,
        pb::TaskStatus::Disabled as i32,
        "cancelled shows as Disabled on the wire"
    );
    assert!(task.cancelled_at > 0);
    // Answered in-band, as the original answers a task that can no longer change.
    let refused = client
        .set_task_enabled(user.req(pb::SetTaskEnabledReq {
            id: id.clone(),
            enabled: true,
        }))
        .await?
        .into_inner();
    assert_eq!((refused.success, refused.status.as_str()), (false, "error"));
    assert!(refused.message.contains("cancelled"), "{refused:?}");

    let deleted = client
        .delete_task(user.req(pb::IdReq { id: id.clone() }))
        .await?
        .into_inner();
    assert_eq!(
        deleted.previous_status, "Disabled",
        "the contract's name of it"
    );
    let err = status(id.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("task not found"));
    // Deleting it again is answered in-band, as the original does.
    let again = client
        .delete_task(user.req(pb::IdReq { id }))
        .await?
        .into_inner();
    assert_eq!((again.success, again.status.as_str()), (false, "not_found"));

    let count = client
        .get_workflow_count(user.req(pb::GetWorkflowCountReq::default()))
        .await?
        .into_inner();
    assert_eq!(count.total, 4);
    let count = client
        .get_workflow_count(user.req(pb::GetWorkflowCountReq {
            addresses: vec![wallet.clone()],
        }))
        .await?
        .into_inner();
    assert_eq!(count.total, 4);
    Ok(())
}

#[tokio::test]
async fn a_retried_create_makes_one_task_until_it_is_deleted() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;
    let request = simple_task("retried", &wallet);
    let first = client
        .create_task(user.req(request.clone()))
        .await?
        .into_inner()
        .id;
    let again = client
        .create_task(user.req(request.clone()))
        .await?
        .into_inner()
        .id;
    assert_eq!(first, again);
    let count = client
        .get_workflow_count(user.req(pb::GetWorkflowCountReq::default()))
        .await?
        .into_inner();
    assert_eq!(count.total, 1);
    client
        .delete_task(user.req(pb::IdReq { id: first.clone() }))
        .await?;
    let third = client.create_task(user.req(request)).await?.into_inner().id;
    assert_ne!(third, first, "the first task is gone: the create proceeds");
    Ok(())
}

#[tokio::test]
async fn invalid_tasks_are_refused_with_what_is_wrong() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;
    let base = simple_task("bad", &wallet);

    let mut no_edges = base.clone();
    no_edges.edges.clear();
    let mut cron = base.clone();
    cron.trigger = Some(pb::TaskTrigger {
        name: "cronTrigger".into(),
        r#type: pb::TriggerType::Cron as i32,
        id: "trigger1".into(),
        trigger_type: Some(pb::task_trigger::TriggerType::Cron(pb::CronTrigger {
            config: Some(pb::cron_trigger::Config {
                schedules: vec!["61 * * * *".into()],
            }),
        })),
    });
    let mut past = base.clone();
    past.trigger = Some(pb::TaskTrigger {
        name: "at".into(),
        r#type: pb::TriggerType::FixedTime as i32,
        id: "trigger1".into(),
        trigger_type: Some(pb::task_trigger::TriggerType::FixedTime(
            pb::FixedTimeTrigger {
                config: Some(pb::fixed_time_trigger::Config {
                    epochs: vec![1_000],
                }),
            },
        )),
    });
    let mut no_runner = base.clone();
    no_runner.input_variables.insert(
        "settings".into(),
        value_from_json(&serde_json::json!({"name": "x"})),
    );
    let foreign = simple_task(
        "foreign",
        &aggregator::wallet::WalletFactory::canonical_v06()
            .address(PrivateKeySigner::random().address(), U256::ZERO)
            .to_checksum(None),
    );
    let mut cycle = base.clone();
    cycle.edges.push(pb::TaskEdge {
        id: "e2".into(),
        source: "node1".into(),
        target: "node1".into(),
    });

    for (request, code, words) in [
        (no_edges, "INVALID_WORKFLOW", "at least one edge"),
        (cron, "INVALID_TRIGGER_CONFIG", "61"),
        (past, "INVALID_TRIGGER_CONFIG", "not in the future"),
        (no_runner, "MISSING_REQUIRED_FIELD", "settings.runner"),
        (foreign, "INVALID_ADDRESS", "not one of your smart wallets"),
        (cycle, "INVALID_WORKFLOW", "cycle"),
    ] {
        let err = client.create_task(user.req(request)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(words), "{words}: {err:?}");
        assert_eq!(err.metadata().get("x-error-code").unwrap(), code, "{err:?}");
    }
    Ok(())
}

/// One task per trigger type, with nodes of every type: `GetTask` gives back exactly what was
/// submitted (the official client parses it strictly).
#[tokio::test]
async fn every_trigger_and_node_type_round_trips() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;
    let later = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis() as i64
        + 3_600_000;
    let triggers = crate::fixtures::every_trigger(later);
    let (nodes, edges) = crate::fixtures::every_node();
    for trigger in triggers {
        let mut request = simple_task("round trip", &wallet);
        request.trigger = Some(trigger.clone());
        request.nodes = nodes.clone();
        request.edges = edges.clone();
        request.max_execution = 3;
        request.expired_at = later + 1000;
        request.input_variables.insert(
            "extra".into(),
            value_from_json(
                &serde_json::json!({"n": 1.5, "list": [1, "a", null, true], "deep": {"x": {}}}),
            ),
        );
        let id = client
            .create_task(user.req(request.clone()))
            .await?
            .into_inner()
            .id;
        let task = client
            .get_task(user.req(pb::IdReq { id }))
            .await?
            .into_inner();
        assert_eq!(task.trigger.as_ref(), Some(&trigger));
        assert_eq!(task.nodes, nodes);
        assert_eq!(task.edges, edges);
        assert_eq!(task.input_variables, request.input_variables);
        assert_eq!((task.max_execution, task.expired_at), (3, later + 1000));
    }
    Ok(())
}

#[tokio::test]
async fn secrets_are_managed_and_never_returned() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;
    let task = client
        .create_task(user.req(simple_task("with secrets", &wallet)))
        .await?
        .into_inner()
        .id;
    let secret = |name: &str, value: &str, workflow: &str| pb::CreateOrUpdateSecretReq {
        name: name.into(),
        secret: value.into(),
        workflow_id: workflow.into(),
        org_id: String::new(),
    };
    let created = client
        .create_secret(user.req(secret("api_key", "v1", "")))
        .await?
        .into_inner();
    assert_eq!(
        (created.scope.as_str(), created.secret_name.as_str()),
        ("user", "api_key")
    );
    let created = client
        .create_secret(user.req(secret("api_key", "w1", &task)))
        .await?
        .into_inner();
    assert_eq!(created.scope, "workflow");
    // An upsert, as in the original.
    let again = client
        .create_secret(user.req(secret("api_key", "v2", "")))
        .await?
        .into_inner();
    assert_eq!((again.success, again.status.as_str()), (true, "updated"));
    let err = client
        .create_secret(user.req(pb::CreateOrUpdateSecretReq {
            org_id: "org".into(),
            ..secret("x", "y", "")
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("organisation"));
    client
        .update_secret(user.req(secret("api_key", "v2", "")))
        .await?;
    let err = client
        .update_secret(user.req(secret("nope", "v2", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    client
        .create_secret(user.req(secret("token", "t", "")))
        .await?;

    let list = client
        .list_secrets(user.req(pb::ListSecretsReq {
            limit: 10,
            include_timestamps: true,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(list.page_info.is_some());
    let names: Vec<(String, String)> = list
        .items
        .iter()
        .map(|s| (s.name.clone(), s.workflow_id.clone()))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(list.items.iter().all(|s| s.created_at > 0));
    // Nothing in a listing carries a value.
    let text = format!("{list:?}");
    assert!(!text.contains("v2") && !text.contains("w1"), "{text}");

    let page = client
        .list_secrets(user.req(pb::ListSecretsReq {
            limit: 2,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let info = page.page_info.unwrap();
    assert!(info.has_next_page);
    let rest = client
        .list_secrets(user.req(pb::ListSecretsReq {
            limit: 2,
            after: info.end_cursor,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(page.items.len() + rest.items.len(), 3);

    client
        .delete_secret(user.req(pb::DeleteSecretReq {
            name: "token".into(),
            workflow_id: String::new(),
            org_id: String::new(),
        }))
        .await?;
    let err = client
        .delete_secret(user.req(pb::DeleteSecretReq {
            name: "token".into(),
            workflow_id: String::new(),
            org_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn the_execution_read_side_answers_before_any_run() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client().await?;
    let user = User::sign_in(&mut client).await?;
    let wallet = user.wallet(&mut client).await?;
    let task = client
        .create_task(user.req(simple_task("idle", &wallet)))
        .await?
        .into_inner()
        .id;
    let list = client
        .list_executions(user.req(pb::ListExecutionsReq {
            task_ids: vec![task.clone()],
            limit: 10,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(list.items.is_empty() && list.page_info.is_some());
    let err = client
        .get_execution(user.req(pb::ExecutionReq {
            task_id: task.clone(),
            execution_id: ulid::Ulid::generate().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("execution not found"));
    let stats = client
        .get_execution_stats(user.req(pb::GetExecutionStatsReq {
            workflow_ids: vec![task.clone()],
            days: 7,
        }))
        .await?
        .into_inner();
    assert_eq!((stats.total, stats.succeeded, stats.failed), (0, 0, 0));
    let count = client
        .get_execution_count(user.req(pb::GetExecutionCountReq {
            workflow_ids: vec![task],
        }))
        .await?
        .into_inner();
    assert_eq!(count.total, 0);
    Ok(())
}
