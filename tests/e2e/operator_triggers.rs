//! The operator network end to end: anvil, the aggregator and operator processes. Each firing a
//! quorum of operators attests runs exactly once, for block, event, cron and fixed-time
//! triggers, when an operator dies and when the aggregator restarts between reports.

use std::collections::BTreeSet;
use std::time::Duration;

use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolValue;
use events::Event;
use events::execution::FiringSource;

use crate::network::{Heads, Keys, Network, Run, block_trigger, trigger, watched_task};

alloy::sol! {
    #[sol(rpc)]
    interface ITestToken {
        function mint(address to, uint256 amount) external;
    }
}

/// Every run came from an attestation recorded in the log, signed by at least `signers`.
fn assert_attested(net: &Network, task_id: &str, runs: &[Run], signers: usize) {
    for run in runs {
        assert!(
            matches!(run.firing.source, FiringSource::Operators { .. }),
            "{:?}",
            run.firing
        );
        let stream = net.firing(task_id, &run.firing.dedup_key).unwrap();
        let attested: Vec<_> = stream
            .iter()
            .filter_map(|e| match &e.event {
                Event::TriggerAttested(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(attested.len(), 1, "one attestation per firing: {stream:#?}");
        assert!(
            attested[0].signers.len() >= signers,
            "{:?}",
            attested[0].signers
        );
        assert_eq!(
            run.row.status,
            projections::executions::RunStatus::Success,
            "{:?}",
            run.row
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_trigger_fires_every_n_blocks_once_though_three_operators_report()
-> anyhow::Result<()> {
    let mut net = Network::new(3, |_| {}).await?;
    // Two follow new heads by subscription, one by polling.
    net.start_operator(0, Heads::Subscription).await?;
    net.start_operator(1, Heads::Subscription).await?;
    net.start_operator(2, Heads::Polling).await?;
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("blocks", &wallet, block_trigger(3))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 3).await?;

    let start = net.head().await?;
    let end = net.mine(9).await?;
    let expected: Vec<u64> = (start + 1..=end).filter(|b| b % 3 == 0).collect();
    assert_eq!(expected.len(), 3);
    let runs = net.wait_runs(&id, expected.len()).await?;
    let mut blocks: Vec<u64> = runs
        .iter()
        .map(|r| r.output("blockNumber").as_u64().unwrap())
        .collect();
    blocks.sort_unstable();
    assert_eq!(blocks, expected);
    assert_attested(&net, &id, &runs, 2);

    // All three reported each firing (the last one was answered `deduplicated`).
    net.eventually("every operator's report of every firing", || {
        let logs: Vec<String> = (0..3)
            .map(|i| std::fs::read_to_string(&net.operators[i].as_ref().unwrap().log).unwrap())
            .collect();
        Ok(expected
            .iter()
            .all(|b| {
                logs.iter()
                    .all(|log| log.contains(&format!("request={id}:{b} ")))
            })
            .then_some(()))
    })
    .await?;

    // An auditor checks every attestation offline, from the log alone.
    let data = net.server.config.data_dir.clone();
    net.server.stop().await?;
    let (passed, report) = crate::support::replay(&data, &["verify"])?;
    assert!(passed, "{report}");
    assert!(
        report
            .contains("ok: 3 operator attestations and 6 reports verified against 3 registrations"),
        "{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erc20_transfer_with_a_condition_fires_only_for_matching_transfers() -> anyhow::Result<()>
{
    let mut net = Network::new(3, |_| {}).await?;
    for i in 0..3 {
        net.start_operator(i, Heads::Subscription).await?;
    }
    let args = ("Test Token".to_owned(), "TT".to_owned(), U256::from(18)).abi_encode_params();
    let token = net.chain.deploy("TestToken", &args).await?;
    let (mut c, user, wallet) = net.user().await?;
    let transfer = serde_json::json!({"type": "event", "name": "Transfer", "anonymous": false,
        "inputs": [{"name": "from", "type": "address", "indexed": true},
                   {"name": "to", "type": "address", "indexed": true},
                   {"name": "value", "type": "uint256", "indexed": false}]});
    let query = pb::event_trigger::Query {
        addresses: vec![token.to_checksum(None)],
        topics: vec!["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef".into()],
        max_events_per_block: None,
        contract_abi: vec![value_from_json(&transfer)],
        conditions: vec![pb::EventCondition {
            field_name: "value".into(),
            operator: "gt".into(),
            value: "1000".into(),
            field_type: "uint256".into(),
        }],
        method_calls: Vec::new(),
    };
    let event = trigger(pb::task_trigger::TriggerType::Event(pb::EventTrigger {
        config: Some(pb::event_trigger::Config {
            queries: vec![query],
            cooldown_seconds: Some(0),
        }),
    }));
    let id = c
        .create_task(user.req(watched_task("transfers", &wallet, event)))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 3).await?;

    let holder: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse()?;
    let token_api = ITestToken::new(token, &net.chain.provider);
    let mut matching = BTreeSet::new();
    for amount in [500u64, 5000, 1000, 2000] {
        let receipt = token_api
            .mint(holder, U256::from(amount))
            .send()
            .await?
            .get_receipt()
            .await?;
        if amount > 1000 {
            matching.insert(format!("{:#x}", receipt.transaction_hash));
        }
    }
    let runs = net.wait_runs(&id, 2).await?;
    let fired: BTreeSet<String> = runs
        .iter()
        .map(|r| r.output("transactionHash").as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fired, matching, "only the transfers of more than 1000");
    assert_attested(&net, &id, &runs, 2);
    for run in &runs {
        assert_eq!(run.output("address"), token.to_checksum(None));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_and_fixed_time_triggers_fire_on_time() -> anyhow::Result<()> {
    let mut net = Network::new(3, |_| {}).await?;
    for i in 0..3 {
        net.start_operator(i, Heads::Polling).await?;
    }
    let (mut c, user, wallet) = net.user().await?;
    let cron = c
        .create_task(user.req(watched_task(
            "every 2s",
            &wallet,
            trigger(pb::task_trigger::TriggerType::Cron(pb::CronTrigger {
                config: Some(pb::cron_trigger::Config {
                    schedules: vec!["@every 2s".into()],
                }),
            })),
        )))
        .await?
        .into_inner()
        .id;
    let now = aggregator::clock::now_ms_i64();
    let epochs = vec![now + 4_000, now + 6_000];
    let fixed = c
        .create_task(user.req(watched_task(
            "twice",
            &wallet,
            trigger(pb::task_trigger::TriggerType::FixedTime(
                pb::FixedTimeTrigger {
                    config: Some(pb::fixed_time_trigger::Config {
                        epochs: epochs.clone(),
                    }),
                },
            )),
        )))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&cron, 3).await?;
    net.wait_watched(&fixed, 3).await?;

    let runs = net.wait_runs(&fixed, 2).await?;
    let mut slots: Vec<i64> = runs
        .iter()
        .map(|r| r.output("timestamp").as_i64().unwrap())
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, epochs);
    for run in &runs {
        let slot = run.output("timestamp").as_i64().unwrap();
        let late = run.row.queued_at - slot;
        assert!(
            (0..2_000).contains(&late),
            "queued {late} ms after its time"
        );
    }
    assert_attested(&net, &fixed, &runs, 2);

    // The cron task: by now several slots, each once, two seconds apart, each on time.
    let runs = net
        .eventually("three cron runs", || {
            let runs = net.executions(&cron)?;
            Ok((runs.iter().filter(|r| r.finished()).count() >= 3).then_some(runs))
        })
        .await?;
    let mut slots: Vec<i64> = runs
        .iter()
        .map(|r| r.output("timestamp").as_i64().unwrap())
        .collect();
    slots.sort_unstable();
    let distinct: BTreeSet<i64> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot ran twice: {slots:?}");
    let anchor = operator::watch::created_ms(&cron);
    for (slot, run) in slots.iter().zip(&runs) {
        assert_eq!(
            (slot - anchor) % 2_000,
            0,
            "slot {slot} is not on the schedule"
        );
        let late = run.row.queued_at - run.output("timestamp").as_i64().unwrap();
        assert!(
            (0..2_000).contains(&late),
            "queued {late} ms after its slot"
        );
    }
    assert_attested(
        &net,
        &cron,
        &runs.into_iter().filter(Run::finished).collect::<Vec<_>>(),
        2,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operators_tasks_keep_firing_by_quorum_then_move() -> anyhow::Result<()> {
    let mut net = Network::new(4, |_| {}).await?;
    for i in 0..4 {
        net.start_operator(i, Heads::Polling).await?;
    }
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("survives", &wallet, block_trigger(2))))
        .await?
        .into_inner()
        .id;
    let first = net.wait_watched(&id, 3).await?;
    let keys = net.keys.clone();
    let index_of = |address: &str| {
        keys.iter()
            .position(|k| format!("{:#x}", k.address()) == address)
            .unwrap()
    };
    let victim = index_of(&first[0]);
    net.kill_operator(victim).await;

    // The two others still hold a quorum (2 of 3).
    let start = net.head().await?;
    let end = net.mine(4).await?;
    let expected: Vec<u64> = (start + 1..=end).filter(|b| b % 2 == 0).collect();
    let runs = net.wait_runs(&id, expected.len()).await?;
    assert_attested(&net, &id, &runs, 2);

    // After the grace period the task moves to the fourth operator.
    let victim_address = first[0].clone();
    let moved = net
        .eventually("the task to move", || {
            let assigned = net.app().store.views.assigned(&id)?;
            Ok((assigned.len() == 3 && !assigned.contains(&victim_address)).then_some(assigned))
        })
        .await?;
    net.wait_watched(&id, 3).await?;
    let newcomer = moved.iter().find(|a| !first.contains(a)).unwrap().clone();

    // A second original dies: the newcomer and the last original still hold a quorum.
    let second = first
        .iter()
        .find(|a| **a != victim_address && moved.contains(a))
        .unwrap();
    net.kill_operator(index_of(second)).await;
    let start = net.head().await?;
    let end = net.mine(4).await?;
    let more: Vec<u64> = (start + 1..=end).filter(|b| b % 2 == 0).collect();
    let runs = net.wait_runs(&id, expected.len() + more.len()).await?;
    assert_attested(&net, &id, &runs, 2);
    let last = runs.last().unwrap();
    let attestation = net
        .firing(&id, &last.firing.dedup_key)?
        .into_iter()
        .find_map(|e| match e.event {
            Event::TriggerAttested(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert!(
        attestation.signers.contains(&newcomer),
        "the newcomer signs the later firings: {:?}",
        attestation.signers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_restart_between_reports_runs_each_firing_once() -> anyhow::Result<()> {
    let mut net = Network::new(3, |_| {}).await?;
    for i in 0..3 {
        net.start_operator(i, Heads::Subscription).await?;
    }
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("restarts", &wallet, block_trigger(1))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 3).await?;

    // Blocks mined, and the aggregator restarted while their reports arrive.
    let start = net.head().await?;
    net.mine(3).await?;
    net.server.restart().await?;
    let end = net.mine(3).await?;
    let runs = net.wait_runs(&id, usize::try_from(end - start)?).await?;
    let blocks: BTreeSet<u64> = runs
        .iter()
        .map(|r| r.output("blockNumber").as_u64().unwrap())
        .collect();
    assert_eq!(blocks, (start + 1..=end).collect());
    assert_attested(&net, &id, &runs, 2);

    // And once more, with the executions settled: nothing runs twice.
    net.server.restart().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(net.executions(&id)?.len(), runs.len());
    Ok(())
}

/// The same, deterministically: signed reports from this process, the aggregator restarted
/// between the first and the second, and after the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_spans_an_aggregator_restart() -> anyhow::Result<()> {
    let mut net = Network::new(3, |_| {}).await?;
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("spans", &wallet, block_trigger(5))))
        .await?
        .into_inner()
        .id;
    let request_id = format!("{id}:10");
    let output =
        serde_json::json!({"blockNumber": 10, "blockHash": format!("0x{}", "ab".repeat(32))});
    // The port stays the same across restarts.
    let grpc = net.server.grpc_url();
    let all_keys = net.keys.clone();
    let report = |i: usize| {
        let keys = all_keys[i].clone();
        let grpc = grpc.clone();
        let (id, request_id, output) = (id.clone(), request_id.clone(), output.clone());
        async move {
            let mut client = keys.client(&grpc).await?;
            let _stream = client
                .sync(pb::sync_messages_req::Capabilities {
                    event_monitoring: true,
                    block_monitoring: true,
                    time_monitoring: true,
                })
                .await?;
            client
                .report(&id, &request_id, events::task::TriggerKind::Block, output)
                .await
        }
    };
    net.eventually("the task assigned to the three", || {
        Ok((net.app().store.views.assigned(&id)?.len() == 3).then_some(()))
    })
    .await?;

    assert_eq!(report(0).await?.status, "accepted");
    net.server.restart().await?;
    assert_eq!(
        report(1).await?.status,
        "enabled",
        "the quorum, across the restart"
    );
    assert_eq!(report(2).await?.status, "deduplicated");
    net.server.restart().await?;
    assert_eq!(report(0).await?.status, "deduplicated");
    let runs = net.wait_runs(&id, 1).await?;
    assert_eq!(runs[0].firing.dedup_key, request_id);
    assert_attested(&net, &id, &runs, 2);
    Ok(())
}

/// The golden test of the firing rules: operators started at different moments (different
/// heads, different clocks of arrival) sign identical digests. With a quorum of all three, a
/// firing runs only when the three agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_started_at_different_moments_sign_identical_digests() -> anyhow::Result<()> {
    let mut net = Network::new(3, |c| {
        c.operators.quorum_numerator = 1;
        c.operators.quorum_denominator = 1;
        // The late operators keep their assignments while they are not there yet.
        c.operators.reassign_grace = Duration::from_secs(60);
    })
    .await?;
    let (mut c, user, wallet) = net.user().await?;
    let cron = c
        .create_task(user.req(watched_task(
            "every 2s",
            &wallet,
            trigger(pb::task_trigger::TriggerType::Cron(pb::CronTrigger {
                config: Some(pb::cron_trigger::Config {
                    schedules: vec!["@every 2s".into()],
                }),
            })),
        )))
        .await?
        .into_inner()
        .id;
    let blocks = c
        .create_task(user.req(watched_task("even blocks", &wallet, block_trigger(2))))
        .await?
        .into_inner()
        .id;
    net.start_operator(0, Heads::Subscription).await?;
    net.mine(3).await?;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    net.start_operator(1, Heads::Polling).await?;
    net.mine(3).await?;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    net.start_operator(2, Heads::Subscription).await?;
    net.wait_watched(&cron, 3).await?;
    net.wait_watched(&blocks, 3).await?;

    let start = net.head().await?;
    let end = net.mine(4).await?;
    let expected: Vec<u64> = (start + 1..=end).filter(|b| b % 2 == 0).collect();
    // Only the blocks all three watched: the earlier ones lack a signer and never run.
    let block_runs = net.wait_runs(&blocks, expected.len()).await?;
    let cron_runs = net
        .eventually("two cron runs", || {
            let runs = net.executions(&cron)?;
            Ok((runs.iter().filter(|r| r.finished()).count() >= 2).then_some(runs))
        })
        .await?;
    for (task, runs) in [(&blocks, &block_runs), (&cron, &cron_runs)] {
        for run in runs.iter().filter(|r| r.finished()) {
            let stream = net.firing(task, &run.firing.dedup_key)?;
            let digests: BTreeSet<String> = stream
                .iter()
                .filter_map(|e| match &e.event {
                    Event::TriggerReported(r) => Some(r.digest.clone()),
                    _ => None,
                })
                .collect();
            let reporters = stream
                .iter()
                .filter(|e| matches!(e.event, Event::TriggerReported(_)))
                .count();
            assert_eq!(reporters, 3, "{stream:#?}");
            assert_eq!(digests.len(), 1, "identical digests: {digests:?}");
            assert!(
                !stream
                    .iter()
                    .any(|e| matches!(e.event, Event::ReportsDisagreed(_)))
            );
        }
        assert_attested(
            &net,
            task,
            &runs
                .iter()
                .filter(|r| r.finished())
                .cloned()
                .collect::<Vec<_>>(),
            3,
        );
    }
    Ok(())
}

alloy::sol! {
    #[sol(rpc)]
    interface IOperatorRegistry {
        function register(address operator, bytes blsPublicKey, bytes proofOfPossession, uint256 weight) external;
        function deregister(address operator) external;
    }
}

/// The operator set from a registry contract on the chain: registered operators fire; one the
/// contract deregisters is refused from then on and its tasks move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_set_comes_from_the_registry_contract() -> anyhow::Result<()> {
    let chain = crate::anvil::Chain::start()?;
    let registry = chain.deploy("OperatorRegistry", &[]).await?;
    let keys: Vec<Keys> = (0..3).map(|_| Keys::random()).collect();
    let contract = IOperatorRegistry::new(registry, &chain.provider);
    for k in &keys {
        let bls = k.bls_key();
        contract
            .register(
                k.address(),
                bls.sk_to_pk().to_bytes().to_vec().into(),
                attest::proof_of_possession(&bls).into(),
                U256::from(1),
            )
            .send()
            .await?
            .get_receipt()
            .await?;
    }
    let mut net = Network::on_chain(chain, keys, |c| {
        c.operators.members = Vec::new();
        c.operators.registry_contract = Some(format!("{registry:#x}"));
        c.operators.registry_refresh = Duration::from_millis(300);
    })
    .await?;
    let registered = net.app().store.views.operators()?;
    assert_eq!(registered.iter().filter(|r| r.active).count(), 3);
    for i in 0..3 {
        net.start_operator(i, Heads::Polling).await?;
    }
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("registry", &wallet, block_trigger(1))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 3).await?;
    let start = net.head().await?;
    let end = net.mine(2).await?;
    net.wait_runs(&id, usize::try_from(end - start)?).await?;

    // The contract drops operator 2.
    let gone = net.keys[2].address();
    IOperatorRegistry::new(registry, &net.chain.provider)
        .deregister(gone)
        .send()
        .await?
        .get_receipt()
        .await?;
    let gone_text = format!("{gone:#x}");
    net.eventually("the deregistration recorded", || {
        let rows = net.app().store.views.operators()?;
        Ok(rows
            .iter()
            .any(|r| r.address == gone_text && !r.active)
            .then_some(()))
    })
    .await?;
    let mut client = net.keys[2].client(&net.server.grpc_url()).await?;
    let err = client
        .sync(pb::sync_messages_req::Capabilities::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        tonic::Code::PermissionDenied
    );
    net.eventually("the task to leave the deregistered operator", || {
        let assigned = net.app().store.views.assigned(&id)?;
        Ok((assigned.len() == 2 && !assigned.contains(&gone_text)).then_some(()))
    })
    .await?;
    let before = net.executions(&id)?.len();
    let start = net.head().await?;
    let end = net.mine(2).await?;
    let runs = net
        .wait_runs(&id, before + usize::try_from(end - start)?)
        .await?;
    let last = runs.last().unwrap();
    let attested = net
        .firing(&id, &last.firing.dedup_key)?
        .into_iter()
        .find_map(|e| match e.event {
            Event::TriggerAttested(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert!(!attested.signers.contains(&gone_text));
    Ok(())
}

/// Operators cosign the log's checkpoints on anvil: the aggregate line appears on
/// `/checkpoint`, each operator keeps the checkpoint it cosigned in its state file, and the proof
/// bundle of an operator-fired execution verifies against the auditor's own operator set
/// (cosignature quorum and the trigger's attestation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_cosign_checkpoints_and_a_bundle_of_their_firing_verifies() -> anyhow::Result<()>
{
    let mut net = Network::new(3, |config| {
        config.event_log.checkpoint_interval = Duration::from_millis(200);
    })
    .await?;
    for i in 0..3 {
        net.start_operator(i, Heads::Subscription).await?;
    }
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("cosigned", &wallet, block_trigger(2))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 3).await?;
    net.mine(3).await?;
    let runs = net.wait_runs(&id, 1).await?;
    let execution = runs[0].row.id.clone();

    let http = net.server.http_url();
    let origin = net.server.running().app.transparency.verifier_key.clone();
    let origin = origin.split('+').next().unwrap_or_default().to_owned();
    let client = reqwest::Client::new();
    let mut bundle = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let response = client
            .get(format!("{http}/proof/execution/{execution}"))
            .header("authkey", &user.token)
            .send()
            .await?;
        if response.status().as_u16() == 200 {
            let body = response.text().await?;
            let value: serde_json::Value = serde_json::from_str(&body)?;
            let note = value["checkpoint"].as_str().unwrap_or_default();
            if note.contains(&format!("\u{2014} {origin}/operators ")) {
                bundle = body;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        !bundle.is_empty(),
        "no cosigned checkpoint covered the execution"
    );
    let checkpoint = reqwest::get(format!("{http}/checkpoint"))
        .await?
        .text()
        .await?;
    assert!(checkpoint.contains("/operators "), "{checkpoint}");

    let key = reqwest::get(format!("{http}/log-key"))
        .await?
        .text()
        .await?;
    let members = net.server.config.operators.members.clone();
    let dir = tempfile::tempdir()?;
    let members_file = dir.path().join("operators.yaml");
    std::fs::write(&members_file, serde_norway::to_string(&members)?)?;
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, &bundle)?;
    let (passed, report) = crate::support::replay(
        dir.path(),
        &[
            "check",
            &bundle_file.to_string_lossy(),
            "--log-key",
            key.trim(),
            "--operators",
            &members_file.to_string_lossy(),
        ],
    )?;
    assert!(passed, "{report}");
    assert!(
        report.contains("cosigned by") && report.contains("trigger attested by"),
        "{report}"
    );
    // Without one of the operators the auditor trusts, the cosignature cannot be checked.
    std::fs::write(&members_file, serde_norway::to_string(&members[..1])?)?;
    let (passed, report) = crate::support::replay(
        dir.path(),
        &[
            "check",
            &bundle_file.to_string_lossy(),
            "--log-key",
            key.trim(),
            "--operators",
            &members_file.to_string_lossy(),
        ],
    )?;
    assert!(
        !passed && report.contains("not in the operator set given"),
        "{report}"
    );

    for i in 0..3 {
        let state = net.dir.path().join(format!("operator-{i}-cosigned.json"));
        let state: tlog::cosign::Cosigned = serde_json::from_slice(&std::fs::read(&state)?)?;
        assert!(state.size > 0, "operator {i} cosigned nothing");
        assert_eq!(state.log_key, key.trim());
    }
    Ok(())
}
