//! The operators' stream protocol with a signed client in this process: pushed messages are sent
//! again until acknowledged (and on a reconnect), a task that stops is pushed as
//! Disable / Delete / Completed, liveness shows on `/operators` and in the metrics, and an
//! overload the aggregator's own reading of the chain confirms disables the task on one report.

use std::time::Duration;

use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;
use operator::client::Client;

use crate::network::{Network, block_trigger, trigger, watched_task};

alloy::sol! {
    #[sol(rpc)]
    interface ITestToken {
        function mint(address to, uint256 amount) external;
    }
}

pub(crate) fn all_capabilities() -> pb::sync_messages_req::Capabilities {
    pb::sync_messages_req::Capabilities {
        event_monitoring: true,
        block_monitoring: true,
        time_monitoring: true,
    }
}

/// The next pushed message about tasks, within `within` (checkpoints to cosign, pushed as the
/// log grows, are skipped).
async fn next(
    stream: &mut tonic::Streaming<pb::SyncMessagesResp>,
    within: Duration,
) -> Option<pb::SyncMessagesResp> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .ok()
            .and_then(|m| m.ok().flatten())?;
        if message.op != pb::MessageOp::CosignCheckpoint as i32 {
            return Some(message);
        }
    }
}

/// The next message for `task`, skipping others; acknowledged if `ack`.
async fn expect(
    client: &mut Client,
    stream: &mut tonic::Streaming<pb::SyncMessagesResp>,
    task: &str,
    op: pb::MessageOp,
    ack: bool,
) -> pb::SyncMessagesResp {
    loop {
        let message = next(stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no {op:?} for {task}"));
        if message.task_metadata.as_ref().map(|m| m.task_id.as_str()) != Some(task) {
            continue;
        }
        assert_eq!(message.op, op as i32, "{message:?}");
        if ack {
            assert!(client.ack(&message.id).await.unwrap());
        }
        return message;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_messages_are_resent_until_acknowledged_and_stops_are_pushed() -> anyhow::Result<()>
{
    let net = Network::new(1, |_| {}).await?;
    let mut client = net.keys[0].client(&net.server.grpc_url()).await?;
    let mut stream = client.sync(all_capabilities()).await?;
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("pushed", &wallet, block_trigger(7))))
        .await?
        .into_inner()
        .id;

    // Not acknowledged: the same message again after the timeout (2 s here).
    use pb::MessageOp as Op;
    let first = expect(&mut client, &mut stream, &id, Op::MonitorTaskTrigger, false).await;
    let metadata = first.task_metadata.clone().unwrap();
    assert_eq!(metadata.remain, -1);
    assert!(metadata.trigger.is_some());
    let again = expect(&mut client, &mut stream, &id, Op::MonitorTaskTrigger, true).await;
    assert_eq!(again.id, first.id, "the same message, sent again");
    assert!(
        next(&mut stream, Duration::from_secs(3)).await.is_none(),
        "acknowledged: nothing more"
    );
    assert!(!client.ack("01NOTAMESSAGE").await?, "an unknown id");

    // A reconnect gets its tasks again.
    let mut stream = client.sync(all_capabilities()).await?;
    expect(&mut client, &mut stream, &id, Op::MonitorTaskTrigger, true).await;

    // Disabled, enabled, deleted.
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: id.clone(),
        enabled: false,
    }))
    .await?;
    expect(&mut client, &mut stream, &id, Op::DisableTask, true).await;
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: id.clone(),
        enabled: true,
    }))
    .await?;
    expect(&mut client, &mut stream, &id, Op::MonitorTaskTrigger, true).await;
    c.delete_task(user.req(pb::IdReq { id: id.clone() }))
        .await?;
    expect(&mut client, &mut stream, &id, Op::DeleteTask, true).await;

    // Completed: its one allowed run done (fired here by its owner).
    let mut request = watched_task("once", &wallet, block_trigger(7));
    request.max_execution = 1;
    let once = c.create_task(user.req(request)).await?.into_inner().id;
    let monitor = expect(
        &mut client,
        &mut stream,
        &once,
        Op::MonitorTaskTrigger,
        true,
    )
    .await;
    assert_eq!(monitor.task_metadata.unwrap().remain, 1);
    c.trigger_task(user.req(pb::TriggerTaskReq {
        task_id: once.clone(),
        trigger_type: pb::TriggerType::Block as i32,
        trigger_output: Some(pb::trigger_task_req::TriggerOutput::BlockTrigger(
            pb::block_trigger::Output {
                data: Some(value_from_json(&serde_json::json!({"blockNumber": 7}))),
            },
        )),
        is_blocking: true,
        ..Default::default()
    }))
    .await?;
    expect(&mut client, &mut stream, &once, Op::CompletedTask, true).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_show_their_liveness() -> anyhow::Result<()> {
    let net = Network::new(2, |_| {}).await?;
    let mut client = net.keys[0].client(&net.server.grpc_url()).await?;
    let _stream = client.sync(all_capabilities()).await?;
    client
        .ping(pb::Checkin {
            address: format!("{:#x}", client.address()),
            version: "9.9.9".into(),
            block_number: 1234,
            metrics_port: 9090,
            event_count: 3,
            status: Some(pb::checkin::Status {
                uptime: 60,
                queue_depth: 5,
                last_heartbeat: None,
            }),
            ..Default::default()
        })
        .await?;
    let health = pb::node_client::NodeClient::connect(net.server.grpc_url())
        .await?
        .health_check(client.signed(
            "HealthCheck",
            pb::HealthCheckRequest {
                operator_address: format!("{:#x}", client.address()),
            },
        )?)
        .await?
        .into_inner();
    assert_eq!(health.status, "OK");

    let body: serde_json::Value = reqwest::get(format!("{}/operators", net.server.http_url()))
        .await?
        .json()
        .await?;
    let operators = body["operators"].as_array().unwrap();
    assert_eq!(operators.len(), 2, "{body}");
    let me = operators
        .iter()
        .find(|o| o["address"] == format!("{:#x}", client.address()))
        .unwrap();
    assert_eq!(me["connected"], true);
    assert_eq!(me["liveness"]["version"], "9.9.9");
    assert_eq!(me["liveness"]["block_number"], 1234);
    assert_eq!(me["liveness"]["queue_depth"], 5);
    let other = operators.iter().find(|o| o != &me).unwrap();
    assert_eq!(other["connected"], false);

    // The original's /operator: the operators that pinged, in its shape.
    let body: serde_json::Value = reqwest::get(format!("{}/operator", net.server.http_url()))
        .await?
        .json()
        .await?;
    let listed = body["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "only the one that pinged: {body}");
    let row = &listed[0];
    assert_eq!(row["address"], format!("{:#x}", client.address()));
    assert_eq!(
        (
            &row["version"],
            &row["block_number"],
            &row["metrics_port"],
            &row["event_count"]
        ),
        (
            &serde_json::json!("9.9.9"),
            &serde_json::json!(1234),
            &serde_json::json!(9090),
            &serde_json::json!(3)
        )
    );
    assert_eq!(
        row["remote_ip"], "127.0.0.1",
        "the peer, as the ping named none"
    );
    assert!(
        row["last_ping"].as_u64().unwrap() > 1_700_000_000,
        "seconds: {row}"
    );

    let metrics = reqwest::get(format!("{}/metrics", net.server.http_url()))
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("operator_block_number")
                && l.contains(&format!("{:#x}", client.address()))
                && l.ends_with(" 1234")),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_the_chain_confirms_disables_the_task_on_one_report() -> anyhow::Result<()> {
    let net = Network::new(3, |_| {}).await?;
    let args = ("Test Token".to_owned(), "TT".to_owned(), U256::from(18)).abi_encode_params();
    let token = net.chain.deploy("TestToken", &args).await?;
    let (mut c, user, wallet) = net.user().await?;
    let query = pb::event_trigger::Query {
        addresses: vec![token.to_checksum(None)],
        topics: vec!["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef".into()],
        max_events_per_block: Some(2),
        ..Default::default()
    };
    let event = trigger(pb::task_trigger::TriggerType::Event(pb::EventTrigger {
        config: Some(pb::event_trigger::Config {
            queries: vec![query],
            cooldown_seconds: Some(0),
        }),
    }));
    let id = c
        .create_task(user.req(watched_task("flood", &wallet, event)))
        .await?
        .into_inner()
        .id;
    let mut client = net.keys[0].client(&net.server.grpc_url()).await?;
    let _stream = client.sync(all_capabilities()).await?;
    net.eventually("the task assigned", || {
        Ok((net.app().store.views.assigned(&id)?.len() == 3).then_some(()))
    })
    .await?;

    // Three transfers in one block.
    let provider = &net.chain.provider;
    provider
        .raw_request::<_, serde_json::Value>("evm_setAutomine".into(), (false,))
        .await?;
    let holder: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse()?;
    let api = ITestToken::new(token, provider);
    let mut pending = Vec::new();
    for amount in [1u64, 2, 3] {
        pending.push(api.mint(holder, U256::from(amount)).send().await?);
    }
    net.mine(1).await?;
    provider
        .raw_request::<_, serde_json::Value>("evm_setAutomine".into(), (true,))
        .await?;
    let mut blocks = Vec::new();
    for p in pending {
        blocks.push(p.get_receipt().await?.block_number.unwrap());
    }
    assert!(blocks.iter().all(|b| *b == blocks[0]), "{blocks:?}");

    let resp = client
        .overload(pb::EventOverloadAlert {
            task_id: id.clone(),
            operator_address: format!("{:#x}", client.address()),
            block_number: blocks[0],
            events_detected: 3,
            safety_limit: 2,
            query_index: "0".into(),
            timestamp: events::now_ms(),
            details: "three transfers".into(),
        })
        .await?;
    assert!(resp.task_cancelled, "{}", resp.message);
    let row = net.app().store.views.task(&id)?.unwrap();
    assert_eq!(row.status, projections::tasks::Status::Disabled);
    Ok(())
}
