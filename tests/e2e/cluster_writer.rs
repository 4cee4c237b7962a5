//! What only the writer does, on replicas of a replicated log (`cluster_support`: a
//! 3-node NATS JetStream cluster and 3 aggregator processes, started by `start_replicas`), on anvil with the contracts of
//! `chain deploy` and the self-bundler's key shared by every replica:
//!
//! - a `WithdrawFunds` taken by a replica that does not write is sent by the writer: the
//!   writer's process logs the operation it sends, the others send nothing, and the bundler's
//!   account makes one transaction per withdrawal; the caller gets the writer's answer
//!   (`confirmed`, with its userOpHash) and the funds move once;
//! - a task with a write node (`ethTransfer`) created and fired through a replica that does not
//!   write runs on the writer: the execution succeeds, every claim of it in the log is the
//!   writer's, and the bundler's account makes one transaction for it;
//! - every replica serves `/checkpoint`: once writes stop, each replica's checkpoint is the same
//!   note, signed with the log key, and every replica's data directory verifies against it
//!   (`replay verify --checkpoint`).

use std::time::{Duration, Instant};

use aggregator::pb;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use events::Event;

use crate::cluster_support::{
    Replica, copy_keys, execution_events, ready_cluster, scratch, start_replicas, wait_for_writer,
};
use crate::support::{User, edge, replay, run_blocking, task_of};
use crate::wallet_ops::Setup;

const ETH: u128 = 1_000_000_000_000_000_000;

/// The YAML that puts a replica on the chain of `setup`, with a checkpoint every 200 ms (it
/// continues the `event_log` section the harness writes).
fn on_chain(setup: &Setup) -> anyhow::Result<String> {
    let printed = setup.deployment.config(&setup.node.anvil.endpoint());
    let mut wallet = printed.wallet.clone();
    wallet.receipt_timeout = Duration::from_secs(30);
    let sections = serde_norway::to_string(&serde_json::json!({
        "chain_id": printed.chain_id,
        "ethereum": printed.ethereum,
        "wallet": wallet,
    }))?;
    Ok(format!("  checkpoint_interval: 200ms\n{sections}"))
}

async fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(url).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

fn log_of(replica: &Replica) -> String {
    std::fs::read_to_string(replica.config.with_extension("log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_sends_every_user_operation_and_every_replica_serves_the_checkpoint()
-> anyhow::Result<()> {
    let dir = scratch("cluster test")?;
    let setup = Setup::start(false).await?;
    let extra = on_chain(&setup)?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;

    // The chain's keys (controller, self-bundler) in the first replica's keys directory; the
    // harness gives every other replica a copy of it once the first has made the rest.
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::with_config(dir.path(), i, &urls, &extra))
        .collect::<Result<_, _>>()?;
    copy_keys(&setup.keys_dir.path().join("keys"), &replicas[0].keys)?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = User::sign_in(&mut clients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[0].log_tail()))?;
    let wallet = user.wallet(&mut clients[0]).await?;
    let wallet_address: Address = wallet.parse()?;
    setup.send_eth(wallet_address, U256::from(ETH)).await?;
    let writer = wait_for_writer(&replicas).await?;
    let followers: Vec<usize> = (0..3).filter(|&i| i != writer).collect();

    // A withdrawal through each replica that does not write.
    let chain = &setup.node.provider;
    let bundler = setup.keys.bundler.address();
    let recipient = Address::repeat_byte(0x5a);
    let mut hashes = Vec::new();
    for (n, &follower) in followers.iter().enumerate() {
        let sent_before = chain.get_transaction_count(bundler).await?;
        let amount = 1000 + n as u64;
        let resp = clients[follower]
            .withdraw_funds(user.req(pb::WithdrawFundsReq {
                recipient_address: recipient.to_checksum(None),
                amount: amount.to_string(),
                token: "ETH".into(),
                smart_wallet_address: wallet.clone(),
            }))
            .await
            .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[follower].log_tail()))?
            .into_inner();
        // Then the caller has the writer's answer
        assert_eq!(resp.status, "confirmed", "{resp:?}");
        assert!(resp.success);
        assert_eq!(resp.amount, amount.to_string());
        assert!(resp.user_op_hash.starts_with("0x") && resp.user_op_hash.len() == 66);
        // And the bundler's account sent one transaction for it: the operation went out once
        assert_eq!(
            chain.get_transaction_count(bundler).await?,
            sent_before + 1,
            "withdrawal {n}"
        );
        hashes.push(resp.user_op_hash);
    }
    assert_eq!(chain.get_balance(recipient).await?, U256::from(1000 + 1001));

    // A task with a write node, created and fired through a replica that does not write: its
    // execution is claimed and run by the writer, which sends its one user operation.
    let via = followers[0];
    let paid = Address::repeat_byte(0x6b);
    let pay = crate::writes::transfer_node("pay", &paid.to_checksum(None), "777");
    let task_id = clients[via]
        .create_task(user.req(task_of(
            "pays",
            &wallet,
            vec![pay],
            Some(vec![edge("trigger1", "pay")]),
        )))
        .await?
        .into_inner()
        .id;
    let sent_before = chain.get_transaction_count(bundler).await?;
    let run = run_blocking(&mut clients[via], &user, &task_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[via].log_tail()))?;
    // Then it succeeded, as the caller of the follower reads it
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    assert_eq!(chain.get_balance(paid).await?, U256::from(777));
    // And the bundler's account sent exactly one transaction for it
    assert_eq!(
        chain.get_transaction_count(bundler).await?,
        sent_before + 1,
        "the write node's user operation went out once"
    );
    let paid_execution = run.execution_id.clone();
    let writer_id = replicas[writer].id().await?;
    // And the writer sent both; the replicas that took the calls sent nothing
    let writer_log = log_of(&replicas[writer]);
    for hash in &hashes {
        assert!(
            writer_log.contains("sending a user operation") && writer_log.contains(hash.as_str()),
            "the writer's log does not show {hash} sent"
        );
    }
    for &follower in &followers {
        let log = log_of(&replicas[follower]);
        assert!(
            !log.contains("sending a user operation"),
            "replica {follower}, which does not write, sent a user operation"
        );
    }
    // And every replica reads the withdrawals' wallet as the writer left it
    for client in &mut clients {
        let listed = client
            .list_wallets(user.req(pb::ListWalletReq::default()))
            .await?
            .into_inner();
        assert!(
            listed
                .items
                .iter()
                .any(|w| w.address.eq_ignore_ascii_case(&wallet)),
            "{listed:?}"
        );
    }

    // Every replica serves the checkpoint of the same tree, once the writes stop.
    let (status, log_key) = get(&format!("http://{}/log-key", replicas[writer].http)).await?;
    assert_eq!(status, 200);
    let log_key = log_key.trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let note = loop {
        let mut notes = Vec::new();
        for r in &replicas {
            let (status, note) = get(&format!("http://{}/checkpoint", r.http)).await?;
            notes.push((status, note));
        }
        if notes.iter().all(|(status, _)| *status == 200)
            && notes.iter().all(|(_, note)| *note == notes[0].1)
        {
            break notes.swap_remove(0).1;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replicas' checkpoints do not meet: {notes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let size: u64 = note.lines().nth(1).unwrap_or_default().parse()?;
    assert!(size > 0, "{note}");
    let kept = dir.path().join("checkpoint.note");
    std::fs::write(&kept, &note)?;
    let kept = kept.to_string_lossy().into_owned();
    for r in &mut replicas {
        r.stop()?;
    }
    // And the writer claimed that execution, and no other replica ever did (every replica's
    // copy of the log says so)
    for r in &replicas {
        let claimants: Vec<String> = execution_events(&r.data, &paid_execution)?
            .into_iter()
            .filter_map(|e| match e.event {
                Event::ExecutionClaimed(c) => Some(c.replica),
                _ => None,
            })
            .collect();
        assert!(!claimants.is_empty(), "{paid_execution} was never claimed");
        assert!(
            claimants.iter().all(|c| *c == writer_id),
            "{paid_execution} was claimed by {claimants:?}, not only by the writer {writer_id}"
        );
    }
    for r in &mut replicas {
        let (ok, out) = replay(
            &r.data,
            &["verify", "--checkpoint", &kept, "--log-key", &log_key],
        )?;
        assert!(
            ok && out.contains("hash to the checkpoint's root"),
            "{}: {out}",
            r.data.display()
        );
    }
    Ok(())
}
