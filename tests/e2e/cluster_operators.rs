//! Operators on a replicated log: a 3-node NATS JetStream cluster and 3 aggregator processes
//! (`cluster_support.rs`), five registered operators (signed clients in this process,
//! `network::Keys`), four of them each connected to one replica, the fifth never.
//!
//! - Once the fifth's grace period is over, each task goes to the two operators a single node
//!   would choose among the four connected (`domain::assignment::choose_for`), though no replica
//!   but one holds each one's stream: the writer decides from the cluster-wide presence (on its
//!   own connections alone it would choose among one or two), and each operator is told its
//!   tasks by the replica it is connected to.
//! - An operator that moves to another replica is told all its tasks again there, and no
//!   assignment moves (the log holds no `OperatorUnassigned`, and two `OperatorAssigned` per
//!   task).
//! - Two assigned operators reporting one firing to two different replicas make a quorum: the
//!   first report waits, the second attests and queues the execution.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::domain::assignment::{Capabilities, choose_for};
use aggregator::pb;
use alloy::primitives::Address;
use events::task::TriggerKind;
use tokio::task::JoinHandle;

use crate::cluster_support::{Replica, ready_cluster, scratch, start_replicas, writer_of};
use crate::network::{Keys, block_trigger, watched_task};
use crate::operator_pool::all_capabilities;
use crate::support::User;

/// The tasks an operator's stream says it watches now (told to monitor, and not told to stop),
/// acknowledging every message.
type Watching = Arc<Mutex<BTreeSet<String>>>;

/// Connects operator `keys` to the replica at `grpc` and follows its stream.
async fn connect(keys: &Keys, grpc: &str) -> anyhow::Result<(JoinHandle<()>, Watching)> {
    let mut client = keys.client(&format!("http://{grpc}")).await?;
    let mut stream = client.sync(all_capabilities()).await?;
    let watching = Watching::default();
    let seen = watching.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(message)) = stream.message().await {
            let Some(task) = message.task_metadata.as_ref().map(|m| m.task_id.clone()) else {
                continue;
            };
            if message.op == pb::MessageOp::MonitorTaskTrigger as i32 {
                seen.lock().unwrap().insert(task);
            } else {
                seen.lock().unwrap().remove(&task);
            }
            let _ = client.ack(&message.id).await;
        }
    });
    Ok((reader, watching))
}

/// Waits until `done` holds, giving up after a minute with `what` (not a timing assertion: the
/// bound only keeps a failing run from hanging).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The operators `/operators` on the replica at `http` lists.
async fn operators(http: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let body: serde_json::Value = reqwest::get(format!("http://{http}/operators"))
        .await?
        .json()
        .await?;
    Ok(body["operators"].as_array().cloned().unwrap_or_default())
}

/// The operators the replica at `http` says are connected to some replica.
async fn present(http: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(operators(http)
        .await?
        .iter()
        .filter(|o| o["connected"] == true || o["connected_elsewhere"].is_string())
        .filter_map(|o| o["address"].as_str().map(str::to_owned))
        .collect())
}

/// Whether the replica at `http` says `address` has been gone for at least `grace`.
async fn gone_for(http: &str, address: &str, grace: Duration) -> anyhow::Result<bool> {
    Ok(operators(http).await?.iter().any(|o| {
        o["address"] == address
            && o["gone_for_seconds"]
                .as_u64()
                .is_some_and(|s| s > grace.as_secs())
    }))
}

/// How long an operator keeps its tasks once no replica holds its stream: longer than a move
/// from one replica to another takes.
const GRACE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_on_any_replica_get_the_tasks_one_node_would_give_them() -> anyhow::Result<()> {
    let dir = scratch("cluster operators test")?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;

    let mut keys: Vec<Keys> = (0..5).map(|_| Keys::random()).collect();
    let members = serde_norway::to_string(&keys.iter().map(Keys::member).collect::<Vec<_>>())?;
    let absent = keys.pop().unwrap();
    let section = format!(
        "operators:\n  per_task: 2\n  reconcile_every: 200ms\n  ack_timeout: 2s\n  reassign_grace: {}s\n  members:\n{}",
        GRACE.as_secs(),
        members
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::with_config(dir.path(), i, &urls, &section))
        .collect::<Result<_, _>>()?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = User::sign_in(&mut clients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[0].log_tail()))?;
    let wallet = user.wallet(&mut clients[0]).await?;

    // Operator i on replica i % 3: operators 0 and 3 share replica 0.
    let mut on: Vec<usize> = (0..keys.len()).map(|i| i % 3).collect();
    let mut streams = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        streams.push(connect(k, &replicas[on[i]].grpc).await?);
    }
    let everyone: BTreeSet<String> = keys.iter().map(|k| format!("{:#x}", k.address())).collect();
    let writer = loop {
        if let Some(w) = writer_of(&replicas).await {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The writer sees the four, and the fifth's grace (from the writer's start) is over.
    let deadline = Instant::now() + Duration::from_secs(60);
    let absent = format!("{:#x}", absent.address());
    while present(&replicas[writer].http).await? != everyone
        || !gone_for(&replicas[writer].http, &absent, GRACE).await?
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the writer never saw the four, nor the fifth gone: {:?}",
            operators(&replicas[writer].http).await?
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Six block tasks, created through the replicas in turn.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let id = clients[i % 3]
            .create_task(user.req(watched_task(
                &format!("watched-{i}"),
                &wallet,
                block_trigger(5),
            )))
            .await?
            .into_inner()
            .id;
        tasks.push(id);
    }
    let eligible: Vec<(Address, Capabilities)> = keys
        .iter()
        .map(|k| (k.address(), Capabilities::ANY))
        .collect();
    let chosen: BTreeMap<String, BTreeSet<Address>> = tasks
        .iter()
        .map(|t| {
            let operators = choose_for(t, TriggerKind::Block, &eligible, 2, &BTreeSet::new());
            (t.clone(), operators)
        })
        .collect();
    let expected_of = |operator: Address| -> BTreeSet<String> {
        chosen
            .iter()
            .filter(|(_, ops)| ops.contains(&operator))
            .map(|(t, _)| t.clone())
            .collect()
    };
    for (i, k) in keys.iter().enumerate() {
        let expected = expected_of(k.address());
        let watching = streams[i].1.clone();
        eventually(
            &format!(
                "operator {i} told its tasks {expected:?} by replica {}",
                on[i]
            ),
            || *watching.lock().unwrap() == expected,
        )
        .await?;
    }

    // Operator 0 moves from replica 0 to replica 1: told everything again there.
    let (reader, _) = streams.remove(0);
    reader.abort();
    let _ = reader.await;
    on[0] = 1;
    streams.insert(0, connect(&keys[0], &replicas[on[0]].grpc).await?);
    let expected = expected_of(keys[0].address());
    let watching = streams[0].1.clone();
    eventually("operator 0 told its tasks again by replica 1", || {
        *watching.lock().unwrap() == expected
    })
    .await?;

    // A task whose two operators are on different replicas; each reports there.
    let index_of = |a: &Address| keys.iter().position(|k| k.address() == *a).unwrap();
    let (task, pair) = chosen
        .iter()
        .map(|(t, ops)| (t, ops.iter().map(index_of).collect::<Vec<_>>()))
        .find(|(_, pair)| on[pair[0]] != on[pair[1]])
        .ok_or_else(|| anyhow::anyhow!("every task's operators share a replica: {chosen:?}"))?;
    let request_id = format!("{task}:10");
    let output =
        serde_json::json!({"blockNumber": 10, "blockHash": format!("0x{}", "ab".repeat(32))});
    let mut outcomes = Vec::new();
    for &i in &pair {
        let mut client = keys[i]
            .client(&format!("http://{}", replicas[on[i]].grpc))
            .await?;
        outcomes.push(
            client
                .report(task, &request_id, TriggerKind::Block, output.clone())
                .await?,
        );
    }
    assert_eq!(outcomes[0].status, "accepted", "{:?}", outcomes[0]);
    assert_eq!(
        outcomes[1].status, "enabled",
        "the quorum, over two replicas: {:?}",
        outcomes[1]
    );
    assert!(
        outcomes[1].message.contains("attested"),
        "{:?}",
        outcomes[1]
    );

    // No assignment moved: two assignments per task, none undone, in every replica's log.
    for (reader, _) in &streams {
        reader.abort();
    }
    for r in &mut replicas {
        r.stop()?;
        let (assigned, unassigned) = assignment_events(&r.data)?;
        assert_eq!(unassigned, 0, "{}: an assignment moved", r.data.display());
        assert_eq!(assigned, 2 * tasks.len(), "{}", r.data.display());
    }
    Ok(())
}

/// The `OperatorAssigned` and `OperatorUnassigned` events of a data directory's log.
fn assignment_events(data: &std::path::Path) -> anyhow::Result<(usize, usize)> {
    let db = events::open_database(data)?;
    let log = events::LogKeyspaces::open(&db)?;
    let (mut assigned, mut unassigned) = (0, 0);
    for item in log.scan(None) {
        let (id, value) = item?;
        match events::decode_header_at(id, &value)?.event_type.as_str() {
            "OperatorAssigned" => assigned += 1,
            "OperatorUnassigned" => unassigned += 1,
            _ => {}
        }
    }
    Ok((assigned, unassigned))
}
