//! The aggregator, a separate process, is SIGKILLed between sending a write's user operation and
//! its receipt (anvil mines nothing meanwhile, so the kill lands exactly there), and started
//! again: it settles the operation it journaled and never sends a new one for the same step.
//!
//! - The bundle is mined after the kill: the restarted aggregator finds the receipt and sends
//!   nothing (the self-bundler's account made one transaction in all).
//! - The bundle is dropped from the node's pool after the kill: the restarted aggregator sends
//!   the identical signed operation again (same userOpHash), and it lands once.
//!
//! The same for a withdrawal, whose `WithdrawFunds` call dies with the process: the restarted
//! aggregator settles it at start (the mined one found, the dropped one sent again, identical),
//! one operation per withdrawal in the log.

use std::process::Command;
use std::time::{Duration, Instant};

use aggregator::pb;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use anyhow::ensure;

use crate::engine_crash::{connect, free_port, start};
use crate::support::{User, replay, task_of};
use crate::wallet_ops::Setup;
use crate::writes::{ETH, transfer_node};

async fn rpc(
    setup: &Setup,
    method: &'static str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    Ok(setup
        .node
        .provider
        .raw_request(method.into(), params)
        .await?)
}

async fn mine(setup: &Setup) -> anyhow::Result<()> {
    rpc(setup, "evm_mine", serde_json::json!([])).await?;
    Ok(())
}

/// Waits until the node's pool holds a transaction (the bundle).
async fn until_pending(setup: &Setup) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value = rpc(setup, "txpool_status", serde_json::json!([])).await?;
        let pending = status["pending"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .or_else(|| status["pending"].as_u64())
            .unwrap_or(0);
        if pending > 0 {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "no bundle was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_done(
    c: &mut aggregator::pb::aggregator_client::AggregatorClient<tonic::transport::Channel>,
    user: &User,
    task: &str,
    execution: &str,
) -> anyhow::Result<pb::Execution> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = c
            .get_execution(user.req(pb::ExecutionReq {
                task_id: task.into(),
                execution_id: execution.into(),
            }))
            .await?
            .into_inner();
        if run.status != pb::ExecutionStatus::Pending as i32 {
            return Ok(run);
        }
        ensure!(
            Instant::now() < deadline,
            "execution {execution} never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(setup: &Setup, dir: &std::path::Path, grpc: &str) -> anyhow::Result<std::path::PathBuf> {
    let mut config = setup.deployment.config(&setup.node.anvil.endpoint());
    config.data_dir = dir.join("data");
    config.keys_dir = setup.keys_dir.path().join("keys");
    config.grpc.listen = grpc.parse()?;
    config.http.listen = format!("127.0.0.1:{}", free_port()?).parse()?;
    config.wallet.receipt_timeout = Duration::from_secs(60);
    let path = dir.join("aggregator.yaml");
    std::fs::write(&path, serde_norway::to_string(&config)?)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_killed_between_send_and_receipt_is_sent_at_most_once() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let dir = tempfile::tempdir()?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let config_path = config(&setup, dir.path(), &grpc)?;
    let mut process = start(&config_path, &grpc)?;
    let mut c = connect(&process).await?;
    let user = User::sign_in(&mut c).await?;
    let wallet_text = user.wallet(&mut c).await?;
    let wallet: Address = wallet_text.parse()?;
    setup.send_eth(wallet, U256::from(ETH)).await?;
    let bundler = setup.keys.bundler.address();
    rpc(&setup, "evm_setAutomine", serde_json::json!([false])).await?;

    let mut outcomes = Vec::new();
    for (case, recipient) in [("mined", 0xd1u8), ("dropped", 0xd2)] {
        let recipient = Address::repeat_byte(recipient);
        let task = c
            .create_task(user.req(task_of(
                case,
                &wallet_text,
                vec![transfer_node("pay", &recipient.to_checksum(None), "1000")],
                None,
            )))
            .await?
            .into_inner()
            .id;
        let execution = c
            .trigger_task(user.req(pb::TriggerTaskReq {
                task_id: task.clone(),
                trigger_type: pb::TriggerType::Manual as i32,
                ..Default::default()
            }))
            .await?
            .into_inner()
            .execution_id;
        until_pending(&setup).await?;
        process.child.kill()?; // SIGKILL, the bundle in the pool, no receipt seen
        process.child.wait()?;
        if case == "dropped" {
            rpc(&setup, "anvil_dropAllTransactions", serde_json::json!([])).await?;
        }
        mine(&setup).await?;
        // Mined from now on as the restarted aggregator sends.
        rpc(&setup, "evm_setAutomine", serde_json::json!([true])).await?;
        process = start(&config_path, &grpc)?;
        c = connect(&process).await?;
        let run = wait_done(&mut c, &user, &task, &execution).await?;
        ensure!(
            run.status == pb::ExecutionStatus::Success as i32,
            "{case}: {run:?}"
        );
        ensure!(
            setup.node.provider.get_balance(recipient).await? == U256::from(1000),
            "{case}: the transfer did not land exactly once"
        );
        outcomes.push((case, execution));
        rpc(&setup, "evm_setAutomine", serde_json::json!([false])).await?;
    }
    rpc(&setup, "evm_setAutomine", serde_json::json!([true])).await?;
    // One bundle per case went on chain: the mined one, and the identical resend of the dropped
    // one (its first transaction never made it).
    let sent = setup.node.provider.get_transaction_count(bundler).await?;
    ensure!(sent == 2, "the self-bundler sent {sent} transactions");

    Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()?;
    process.child.wait()?;
    let data = dir.path().join("data");
    let (ok, out) = replay(&data, &["verify"])?;
    ensure!(ok, "{out}");
    let db = events::open_database(&data)?;
    let log = events::LogKeyspaces::open(&db)?;
    for (case, execution) in outcomes {
        let stream = log.read_stream(&events::stream::execution(&execution))?;
        let submitted: Vec<_> = stream
            .iter()
            .filter_map(|e| match &e.event {
                events::Event::UserOpSubmitted(s) => Some(s.user_op_hash.clone()),
                _ => None,
            })
            .collect();
        ensure!(
            submitted.len() == 1,
            "{case}: {} operations built for one step",
            submitted.len()
        );
        let landed = stream
            .iter()
            .filter(|e| matches!(&e.event, events::Event::UserOpLanded(l) if l.user_op_hash == submitted[0]))
            .count();
        ensure!(landed == 1, "{case}: landed {landed} times");
        let sends = stream
            .iter()
            .filter(|e| matches!(e.event, events::Event::UserOpSent(_)))
            .count();
        // The kill may land before or after the first UserOpSent was journaled; the dropped
        // operation's resend is journaled in any case.
        if case == "dropped" {
            ensure!((1..=2).contains(&sends), "{case}: sent {sends} times");
        } else {
            ensure!(sends <= 1, "{case}: sent {sends} times");
        }
    }
    Ok(())
}

/// The names of the log's withdrawal streams.
fn withdrawal_streams(log: &events::LogKeyspaces) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for item in log.streams.prefix(b"withdrawal:") {
        let key = item.key()?;
        let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
        let name = String::from_utf8_lossy(&key[..end]).into_owned();
        if names.last() != Some(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_killed_between_send_and_receipt_is_settled_at_the_next_start()
-> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let dir = tempfile::tempdir()?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let config_path = config(&setup, dir.path(), &grpc)?;
    let mut process = start(&config_path, &grpc)?;
    let mut c = connect(&process).await?;
    let user = User::sign_in(&mut c).await?;
    let wallet_text = user.wallet(&mut c).await?;
    let wallet: Address = wallet_text.parse()?;
    setup.send_eth(wallet, U256::from(ETH)).await?;
    let bundler = setup.keys.bundler.address();

    for (case, recipient) in [("mined", 0xe1u8), ("dropped", 0xe2)] {
        let recipient = Address::repeat_byte(recipient);
        rpc(&setup, "evm_setAutomine", serde_json::json!([false])).await?;
        let request = user.req(pb::WithdrawFundsReq {
            recipient_address: recipient.to_checksum(None),
            amount: "777".into(),
            token: "ETH".into(),
            smart_wallet_address: wallet_text.clone(),
        });
        let mut caller = c.clone();
        // Answers only once the process is gone: no receipt comes while nothing is mined.
        let call = tokio::spawn(async move { caller.withdraw_funds(request).await });
        until_pending(&setup).await?;
        process.child.kill()?;
        process.child.wait()?;
        ensure!(call.await?.is_err(), "{case}: answered with nothing mined");
        if case == "dropped" {
            rpc(&setup, "anvil_dropAllTransactions", serde_json::json!([])).await?;
        }
        mine(&setup).await?;
        rpc(&setup, "evm_setAutomine", serde_json::json!([true])).await?;
        process = start(&config_path, &grpc)?;
        c = connect(&process).await?;
        // The restarted aggregator settles the open withdrawal by itself.
        let deadline = Instant::now() + Duration::from_secs(60);
        while setup.node.provider.get_balance(recipient).await? != U256::from(777) {
            ensure!(
                Instant::now() < deadline,
                "{case}: the withdrawal never landed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The mined bundle, and the identical resend of the dropped one.
    let sent = setup.node.provider.get_transaction_count(bundler).await?;
    ensure!(sent == 2, "the self-bundler sent {sent} transactions");

    // Settled in the log too: one operation per withdrawal, landed once (the settling is
    // journaled just after the receipt is seen: wait for it before stopping).
    let data = dir.path().join("data");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        Command::new("kill")
            .args(["-TERM", &process.child.id().to_string()])
            .status()?;
        process.child.wait()?;
        let db = events::open_database(&data)?;
        let log = events::LogKeyspaces::open(&db)?;
        let streams = withdrawal_streams(&log)?;
        ensure!(streams.len() == 2, "{streams:?}");
        let mut settled = 0;
        for stream in &streams {
            let events = log.read_stream(stream)?;
            let submitted = events
                .iter()
                .filter(|e| matches!(e.event, events::Event::UserOpSubmitted(_)))
                .count();
            ensure!(submitted == 1, "{stream}: {submitted} operations built");
            let landed = events
                .iter()
                .filter(|e| matches!(e.event, events::Event::UserOpLanded(_)))
                .count();
            ensure!(landed <= 1, "{stream}: landed {landed} times");
            settled += landed;
        }
        drop(log);
        drop(db);
        if settled == 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the withdrawals were not settled in the log"
        );
        process = start(&config_path, &grpc)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out) = replay(&data, &["verify"])?;
    ensure!(ok, "{out}");
    Ok(())
}
