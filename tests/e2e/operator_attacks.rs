//! Attacks on the operators' service, each refused with nothing executed: unknown operators,
//! unsigned, forged, stale and replayed requests, a client's token, bad BLS signatures, reports
//! for tasks an operator does not watch; and what honest operators that disagree, or report an
//! overload alone, can and cannot do.

use aggregator::pb;
use aggregator::pb::node_client::NodeClient;
use events::Event;
use events::task::TriggerKind;
use operator::client::Client;
use tonic::Code;

use crate::network::{Keys, Network, block_trigger, trigger, watched_task};

fn all_capabilities() -> pb::sync_messages_req::Capabilities {
    pb::sync_messages_req::Capabilities {
        event_monitoring: true,
        block_monitoring: true,
        time_monitoring: true,
    }
}

fn block_output(n: u64) -> serde_json::Value {
    serde_json::json!({"blockNumber": n, "blockHash": format!("0x{}", "cd".repeat(32))})
}

fn code(e: &anyhow::Error) -> Code {
    e.downcast_ref::<tonic::Status>()
        .map_or(Code::Unknown, tonic::Status::code)
}

type Operators = Vec<(Client, tonic::Streaming<pb::SyncMessagesResp>)>;

/// The task's owner: a client and the user.
type Owner = (
    pb::aggregator_client::AggregatorClient<tonic::transport::Channel>,
    crate::support::User,
);

/// A network of `n` registered operators (none started), a user and a block task assigned to
/// the operators, with clients of them all, each holding its task stream open.
async fn setup(n: usize, per_task: usize) -> anyhow::Result<(Network, String, Operators, Owner)> {
    let net = Network::new(n, |c| c.operators.per_task = per_task).await?;
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("target", &wallet, block_trigger(5))))
        .await?
        .into_inner()
        .id;
    let mut clients = Vec::new();
    for keys in &net.keys {
        let mut client = keys.client(&net.server.grpc_url()).await?;
        let stream = client.sync(all_capabilities()).await?;
        clients.push((client, stream));
    }
    let want = if per_task == 0 { n.min(3) } else { per_task };
    net.eventually("the task assigned", || {
        Ok((net.app().store.views.assigned(&id)?.len() == want).then_some(()))
    })
    .await?;
    Ok((net, id, clients, (c, user)))
}

/// An event trigger on ERC-20 transfers of one contract, at most two per block.
fn transfers_capped_at_two() -> pb::TaskTrigger {
    let query = pb::event_trigger::Query {
        addresses: vec!["0x5FbDB2315678afecb367f032d93F642f64180aa3".into()],
        topics: vec!["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef".into()],
        max_events_per_block: Some(2),
        ..Default::default()
    };
    trigger(pb::task_trigger::TriggerType::Event(pb::EventTrigger {
        config: Some(pb::event_trigger::Config {
            queries: vec![query],
            cooldown_seconds: Some(0),
        }),
    }))
}

/// `client`'s report of 50 events in `block` for that trigger's cap of two.
fn flood(client: &Client, task_id: &str, block: u64) -> pb::EventOverloadAlert {
    pb::EventOverloadAlert {
        task_id: task_id.into(),
        operator_address: format!("{:#x}", client.address()),
        block_number: block,
        events_detected: 50,
        safety_limit: 2,
        query_index: "0".into(),
        timestamp: events::now_ms(),
        details: "a flood".into(),
    }
}

fn nothing_ran(net: &Network, task_id: &str) {
    assert!(net.executions(task_id).unwrap().is_empty());
    assert_eq!(
        net.app()
            .store
            .views
            .task(task_id)
            .unwrap()
            .unwrap()
            .execution_count,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_unsigned_forged_stale_and_client_requests_are_refused() -> anyhow::Result<()> {
    let (net, id, _clients, _) = setup(3, 0).await?;
    let grpc = net.server.grpc_url();
    let request_id = format!("{id}:10");

    // An operator nobody registered: a valid signature, but not a member.
    let stranger = Keys::random();
    let mut client = stranger.client(&grpc).await?;
    let err = client.sync(all_capabilities()).await.unwrap_err();
    assert_eq!(code(&err), Code::PermissionDenied, "{err}");
    let err = client
        .report(&id, &request_id, TriggerKind::Block, block_output(10))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::PermissionDenied, "{err}");

    let mut raw = NodeClient::connect(grpc.clone()).await?;
    let checkin = || pb::Checkin {
        address: format!("{:#x}", net.keys[0].address()),
        ..Default::default()
    };

    // Unsigned.
    let status = raw.ping(checkin()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("signed"), "{status:?}");

    // A client's token on the operators' service.
    let (mut c, user, _) = net.user().await?;
    let _ = &mut c;
    let status = raw.ping(user.req(checkin())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Forged: signed by the stranger, claiming to be a registered operator.
    let mut forged = client.signed("Ping", checkin())?;
    forged.metadata_mut().insert(
        attest::HEADER_ADDRESS,
        format!("{:#x}", net.keys[0].address()).parse()?,
    );
    let status = raw.ping(forged).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("does not match"), "{status:?}");

    // Signed for another method.
    let member = net.keys[0].client(&grpc).await?;
    let elsewhere = member.signed("HealthCheck", checkin())?;
    let status = raw.ping(elsewhere).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Stale: signed a minute ago, correctly otherwise.
    let mut stale = tonic::Request::new(checkin());
    let then = events::now_ms() - 60_000;
    let nonce = "00112233445566778899aabbccddeeff";
    let text = attest::request_text(
        "/aggregator.Node/Ping",
        net.keys[0].address(),
        then,
        nonce,
        &prost::Message::encode_to_vec(stale.get_ref()),
    );
    let signature =
        alloy::signers::SignerSync::sign_message_sync(&net.keys[0].ecdsa, text.as_bytes())?;
    let metadata = stale.metadata_mut();
    metadata.insert(
        attest::HEADER_ADDRESS,
        format!("{:#x}", net.keys[0].address()).parse()?,
    );
    metadata.insert(attest::HEADER_TIMESTAMP, then.to_string().parse()?);
    metadata.insert(attest::HEADER_NONCE, nonce.parse()?);
    metadata.insert(
        attest::HEADER_SIGNATURE,
        format!("0x{}", hex::encode(signature.as_bytes())).parse()?,
    );
    let status = raw.ping(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("window"), "{status:?}");

    // The refusals are counted.
    let metrics = reqwest_get(&format!("{}/metrics", net.server.http_url())).await?;
    for reason in ["unsigned", "bad_signature", "unknown_operator", "stale"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "no {reason} in the metrics"
        );
    }
    nothing_ran(&net, &id);
    Ok(())
}

async fn reqwest_get(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(url).await?.text().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_report_is_refused() -> anyhow::Result<()> {
    let (net, id, clients, _) = setup(3, 0).await?;
    let (client, _) = &clients[0];
    let request_id = format!("{id}:10");
    let output = block_output(10);
    let digest = attest::firing_digest(
        31337,
        &id,
        &request_id,
        &attest::output_hash(&output).unwrap(),
    );
    let message = pb::NotifyTriggersReq {
        address: format!("{:#x}", client.address()),
        task_id: id.clone(),
        trigger_type: TriggerKind::Block.wire_number(),
        trigger_output: Some(pb::notify_triggers_req::TriggerOutput::BlockTrigger(
            pb::block_trigger::Output {
                data: Some(aggregator::pb::convert::value_from_json(&output)),
            },
        )),
        trigger_request_id: request_id.clone(),
        bls_signature: attest::sign_digest(&net.keys[0].bls_key(), &digest),
        ..Default::default()
    };
    let first = client.signed("NotifyTriggers", message)?;
    let mut again = tonic::Request::new(first.get_ref().clone());
    *again.metadata_mut() = first.metadata().clone();
    let mut raw = NodeClient::connect(net.server.grpc_url()).await?;
    let resp = raw.notify_triggers(first).await?.into_inner();
    assert_eq!(resp.status, "accepted");
    let status = raw.notify_triggers(again).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("replayed"), "{status:?}");
    nothing_ran(&net, &id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bls_signatures_and_unassigned_operators_run_nothing() -> anyhow::Result<()> {
    // Four operators, three per task: one of them does not watch the task.
    let (net, id, mut clients, _) = setup(4, 3).await?;
    let assigned = net.app().store.views.assigned(&id)?;
    let outsider = clients
        .iter()
        .position(|(c, _)| !assigned.contains(&format!("{:#x}", c.address())))
        .unwrap();
    let insider = (outsider + 1) % 4;
    let request_id = format!("{id}:10");

    let err = clients[outsider]
        .0
        .report(&id, &request_id, TriggerKind::Block, block_output(10))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("not assigned"), "{err}");

    // An assigned operator's ECDSA key with someone else's BLS key.
    let wrong_bls = Keys::random();
    let mut impostor = Client::connect(
        &net.server.grpc_url(),
        net.keys[insider].ecdsa.clone(),
        wrong_bls.bls_key(),
        31337,
    )
    .await?;
    let err = impostor
        .report(&id, &request_id, TriggerKind::Block, block_output(10))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::Unauthenticated, "{err}");
    assert!(err.to_string().contains("BLS"), "{err}");

    // The right key over another output than the one sent.
    let (client, _) = &mut clients[insider];
    let digest = attest::firing_digest(
        31337,
        &id,
        &request_id,
        &attest::output_hash(&block_output(11)).unwrap(),
    );
    let message = pb::NotifyTriggersReq {
        address: format!("{:#x}", client.address()),
        task_id: id.clone(),
        trigger_type: TriggerKind::Block.wire_number(),
        trigger_output: Some(pb::notify_triggers_req::TriggerOutput::BlockTrigger(
            pb::block_trigger::Output {
                data: Some(aggregator::pb::convert::value_from_json(&block_output(10))),
            },
        )),
        trigger_request_id: request_id.clone(),
        bls_signature: attest::sign_digest(&net.keys[insider].bls_key(), &digest),
        ..Default::default()
    };
    let mut raw = NodeClient::connect(net.server.grpc_url()).await?;
    let status = raw
        .notify_triggers(client.signed("NotifyTriggers", message)?)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    assert!(net.firing(&id, &request_id)?.is_empty(), "nothing recorded");
    nothing_ran(&net, &id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreeing_reports_run_nothing_until_a_quorum_agrees() -> anyhow::Result<()> {
    let (net, id, mut clients, _) = setup(3, 0).await?;
    let request_id = format!("{id}:10");
    let honest = block_output(10);
    let mut lying = block_output(10);
    lying["blockHash"] = serde_json::json!(format!("0x{}", "ee".repeat(32)));

    let resp = clients[0]
        .0
        .report(&id, &request_id, TriggerKind::Block, honest.clone())
        .await?;
    assert_eq!(resp.status, "accepted");
    let resp = clients[1]
        .0
        .report(&id, &request_id, TriggerKind::Block, lying)
        .await?;
    assert_eq!(resp.status, "accepted", "{}", resp.message);
    let stream = net.firing(&id, &request_id)?;
    assert!(
        stream
            .iter()
            .any(|e| matches!(e.event, Event::ReportsDisagreed(_))),
        "the disagreement is recorded"
    );
    nothing_ran(&net, &id);

    let resp = clients[2]
        .0
        .report(&id, &request_id, TriggerKind::Block, honest.clone())
        .await?;
    assert_eq!(resp.status, "enabled", "{}", resp.message);
    let runs = net.wait_runs(&id, 1).await?;
    assert_eq!(runs[0].firing.output.as_ref(), Some(&honest));
    let attested = net
        .firing(&id, &request_id)?
        .into_iter()
        .find_map(|e| match e.event {
            Event::TriggerAttested(a) => Some(a),
            _ => None,
        })
        .unwrap();
    let mut signers = attested.signers.clone();
    signers.sort();
    let mut honest_ones = vec![
        format!("{:#x}", clients[0].0.address()),
        format!("{:#x}", clients[2].0.address()),
    ];
    honest_ones.sort();
    assert_eq!(signers, honest_ones);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_for_a_stopped_task_get_the_reason() -> anyhow::Result<()> {
    let (net, id, mut clients, (mut c, user)) = setup(3, 0).await?;
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: id.clone(),
        enabled: false,
    }))
    .await?;
    let resp = clients[0]
        .0
        .report(
            &id,
            &format!("{id}:10"),
            TriggerKind::Block,
            block_output(10),
        )
        .await?;
    assert_eq!(resp.status, "disabled", "{}", resp.message);
    assert!(!resp.task_still_enabled);
    nothing_ran(&net, &id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_alone_cannot_disable_a_task_by_overload() -> anyhow::Result<()> {
    let net = Network::new(3, |_| {}).await?;
    let (mut c, user, wallet) = net.user().await?;
    let event = transfers_capped_at_two();
    let id = c
        .create_task(user.req(watched_task("noisy", &wallet, event)))
        .await?
        .into_inner()
        .id;
    let mut clients = Vec::new();
    for keys in &net.keys {
        let mut client = keys.client(&net.server.grpc_url()).await?;
        let stream = client.sync(all_capabilities()).await?;
        clients.push((client, stream));
    }
    net.eventually("the task assigned", || {
        Ok((net.app().store.views.assigned(&id)?.len() == 3).then_some(()))
    })
    .await?;
    let block = net.head().await?;
    let alert = |client: &Client| flood(client, &id, block);
    // The block has no such logs: the aggregator's own count does not confirm it.
    let message = alert(&clients[0].0);
    let resp = clients[0].0.overload(message).await?;
    assert!(!resp.task_cancelled, "{}", resp.message);
    let row = net.app().store.views.task(&id)?.unwrap();
    assert_eq!(row.status, projections::tasks::Status::Active);

    // A second assigned operator: two thirds of the weight.
    let message = alert(&clients[1].0);
    let resp = clients[1].0.overload(message).await?;
    assert!(resp.task_cancelled, "{}", resp.message);
    let row = net.app().store.views.task(&id)?.unwrap();
    assert_eq!(row.status, projections::tasks::Status::Disabled);
    assert!(
        row.disabled_reason.starts_with("overload"),
        "{}",
        row.disabled_reason
    );
    Ok(())
}

/// An aggregator that fabricates an attestation (a signer that never signed) is caught by the
/// auditor's `replay verify`, though the log's hash chain is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_catches_a_fabricated_attestation() -> anyhow::Result<()> {
    let (mut net, id, mut clients, _) = setup(3, 0).await?;
    let request_id = format!("{id}:10");
    for (client, _) in clients.iter_mut().take(2) {
        client
            .report(&id, &request_id, TriggerKind::Block, block_output(10))
            .await?;
    }
    net.wait_runs(&id, 1).await?;
    let genuine = net
        .firing(&id, &request_id)?
        .into_iter()
        .find_map(|e| match e.event {
            Event::TriggerAttested(a) => Some(a),
            _ => None,
        })
        .unwrap();
    let data = net.server.config.data_dir.clone();

    // The genuine log verifies.
    net.server.stop().await?;
    let (passed, report) = crate::support::replay(&data, &["verify"])?;
    assert!(passed, "{report}");
    assert!(
        report.contains("1 operator attestations and 2 reports"),
        "{report}"
    );

    // Another firing "attested" by the same signers with the genuine aggregate: it verifies
    // over nothing they signed.
    net.server.restart().await?;
    let mut forged = genuine.clone();
    forged.trigger_request_id = format!("{id}:15");
    forged.output = Some(block_output(15));
    let hash = attest::output_hash(&block_output(15)).unwrap();
    forged.output_hash = hex::encode(hash);
    forged.digest = hex::encode(attest::firing_digest(
        31337,
        &id,
        &forged.trigger_request_id,
        &hash,
    ));
    let command = events::Command::new("system", events::now_ms()).append(
        events::stream::firing(&id, &forged.trigger_request_id),
        events::Expected::Any,
        [forged.into()],
    );
    let committed = net.app().store.log.append(command).await?;
    net.server.stop().await?;
    let (passed, report) = crate::support::replay(&data, &["verify"])?;
    assert!(!passed, "{report}");
    assert!(
        report.contains(&committed.events[0].id.to_string())
            && report.contains("aggregate signature does not verify"),
        "{report}"
    );
    Ok(())
}

/// With one operator per task, its report alone is no quorum: only the aggregator's own count
/// could confirm it. Reports that do not fit the task are refused (no event trigger, within the
/// cap, another cap, no such query), and a repeated report is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_reports_must_fit_the_task_and_one_operator_never_suffices() -> anyhow::Result<()>
{
    let net = Network::new(2, |c| c.operators.per_task = 1).await?;
    let (mut c, user, wallet) = net.user().await?;
    let event = transfers_capped_at_two();
    let noisy = c
        .create_task(user.req(watched_task("noisy", &wallet, event)))
        .await?
        .into_inner()
        .id;
    let blocks = c
        .create_task(user.req(watched_task("blocks", &wallet, block_trigger(5))))
        .await?
        .into_inner()
        .id;
    let mut clients = Vec::new();
    for keys in &net.keys {
        let mut client = keys.client(&net.server.grpc_url()).await?;
        let stream = client.sync(all_capabilities()).await?;
        clients.push((client, stream));
    }
    let assigned = net
        .eventually("both tasks assigned", || {
            let noisy = net.app().store.views.assigned(&noisy)?;
            let blocks = net.app().store.views.assigned(&blocks)?;
            Ok((noisy.len() == 1 && blocks.len() == 1).then_some((noisy, blocks)))
        })
        .await?;
    let watcher = |assigned: &[String]| {
        clients
            .iter()
            .position(|(client, _)| format!("{:#x}", client.address()) == assigned[0])
            .unwrap()
    };
    let (of_noisy, of_blocks) = (watcher(&assigned.0), watcher(&assigned.1));
    let block = net.head().await?;
    let alert = |client: &Client, task_id: &str| flood(client, task_id, block);

    let message = alert(&clients[of_blocks].0, &blocks);
    let e = clients[of_blocks].0.overload(message).await.unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition, "{e}");
    for (tweak, why) in [
        (
            (|a: &mut pb::EventOverloadAlert| a.events_detected = 2) as fn(&mut _),
            "within the query's cap",
        ),
        (|a| a.safety_limit = 1_000, "not the query's cap"),
        (|a| a.query_index = "3".into(), "query_index"),
        (|a| a.query_index = "x".repeat(100_000), "query_index"),
    ] {
        let mut message = alert(&clients[of_noisy].0, &noisy);
        tweak(&mut message);
        let e = clients[of_noisy].0.overload(message).await.unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }

    // The one assigned operator, twice: recorded once, and the task stays active (the block has
    // no such logs, so the aggregator's own count does not confirm it).
    for _ in 0..2 {
        let message = alert(&clients[of_noisy].0, &noisy);
        let resp = clients[of_noisy].0.overload(message).await?;
        assert!(!resp.task_cancelled, "{}", resp.message);
    }
    let row = net.app().store.views.task(&noisy)?.unwrap();
    assert_eq!(row.status, projections::tasks::Status::Active);
    let reports = net
        .app()
        .store
        .log
        .read_stream(&events::stream::overload(&noisy))?;
    assert_eq!(reports.len(), 1);
    Ok(())
}
