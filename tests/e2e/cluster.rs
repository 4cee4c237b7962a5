//! Aggregator replicas on a replicated log: a 3-node NATS JetStream cluster (`nats-server`
//! processes, routes on loopback) and 3 aggregator processes with `event_log.backend: jetstream`,
//! each with its own data directory and a copy of the same keys.
//!
//! - Writes through each replica in turn land once, a replica answers its caller's read of its
//!   own write at once, and a read on any other replica sees it too (`reads: linearizable`).
//! - Under a write load through every replica: SIGKILL the writer replica, then one NATS node,
//!   then start both again. Every acknowledged command is in the log once, a new writer takes
//!   over (the fail-over time is printed), every replica lists the same tasks, and each replica's
//!   data directory verifies and its projections equal a rebuild (`replay verify`, `replay diff`).
//! - A fourth replica started on an empty data directory catches up (its rate is printed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;
use tonic::transport::Channel;

use crate::cluster_support::{
    Replica, copy_keys, events_in, manual_firing, ready_cluster, scratch, start_replicas,
    verified_everywhere, wait_for_writer, writer_of,
};
use crate::support::{User, simple_task};

/// Every task name of the user's wallet a replica lists, with how often.
async fn names(
    client: &mut AggregatorClient<Channel>,
    user: &User,
    wallet: &str,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = client
            .list_tasks(user.req(pb::ListTasksReq {
                smart_wallet_address: vec![wallet.to_owned()],
                after: after.clone(),
                limit: 100,
                ..Default::default()
            }))
            .await?
            .into_inner();
        for task in &page.items {
            *seen.entry(task.name.clone()).or_insert(0) += 1;
        }
        let info = page.page_info.unwrap_or_default();
        if !info.has_next_page {
            return Ok(seen);
        }
        after = info.end_cursor;
    }
}

/// What the write load saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    names: BTreeSet<String>,
    /// When each write was acknowledged, for the fail-over time.
    at: Vec<Instant>,
}

/// Creates tasks through the replicas in turn (each retried with its idempotency key on the
/// next replica until acknowledged, as a client behind a load balancer does) until `stop`.
async fn load(
    worker: usize,
    grpcs: Vec<String>,
    user: Arc<User>,
    wallet: String,
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut next = worker;
    let mut i = 0;
    while !*stop.borrow() {
        let name = format!("load-{worker}-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let grpc = &grpcs[next % grpcs.len()];
            next += 1;
            let attempt = async {
                let mut client = AggregatorClient::connect(format!("http://{grpc}")).await?;
                let mut request = user.req(simple_task(&name, &wallet));
                request
                    .metadata_mut()
                    .insert("idempotency-key", name.parse()?);
                anyhow::Ok(client.create_task(request).await?.into_inner().id)
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if Instant::now() > deadline => {
                    anyhow::bail!("{name} was never acknowledged: {e}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let mut acked = acknowledged.lock().unwrap();
        acked.names.insert(name);
        acked.at.push(Instant::now());
        drop(acked);
        i += 1;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_nats_cluster_serve_the_same_log_and_survive_losing_the_writer()
-> anyhow::Result<()> {
    let dir = scratch("cluster test")?;
    let (mut nodes, urls) = ready_cluster(dir.path()).await?;

    // The first replica makes the keys; the others get a copy of them.
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::new(dir.path(), i, &urls))
        .collect::<Result<_, _>>()?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = User::sign_in(&mut clients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[0].log_tail()))?;
    let wallet = user.wallet(&mut clients[0]).await?;

    // Writes through each replica in turn: its caller reads it there at once, and so does a
    // caller of the next replica.
    for round in 0..2 {
        for i in 0..3 {
            let name = format!("turn-{round}-{i}");
            let id = clients[i]
                .create_task(user.req(simple_task(&name, &wallet)))
                .await
                .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[i].log_tail()))?
                .into_inner()
                .id;
            for j in [i, (i + 1) % 3] {
                let task = clients[j]
                    .get_task(user.req(pb::IdReq { id: id.clone() }))
                    .await?
                    .into_inner();
                assert_eq!(task.name, name, "replica {j} reads what replica {i} wrote");
            }
        }
    }
    // Every replica lists the same six tasks.
    for (j, client) in clients.iter_mut().enumerate() {
        let listed = names(client, &user, &wallet).await?;
        assert_eq!(listed.len(), 6, "replica {j}: {listed:?}");
        assert!(listed.values().all(|&n| n == 1), "replica {j}: {listed:?}");
    }

    // A write load through every replica.
    let user = Arc::new(user);
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let grpcs: Vec<String> = replicas.iter().map(|r| r.grpc.clone()).collect();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            tokio::spawn(load(
                w,
                grpcs.clone(),
                user.clone(),
                wallet.clone(),
                acknowledged.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let acked = || acknowledged.lock().unwrap().names.len();
    let wait_for_acks = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked() < n {
            anyhow::ensure!(Instant::now() < deadline, "the load stalled at {}", acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    };
    wait_for_acks(30).await?;

    // SIGKILL the writer replica.
    let writer = writer_of(&replicas)
        .await
        .ok_or_else(|| anyhow::anyhow!("no replica says it writes the log"))?;
    let before = acked();
    let killed_at = Instant::now();
    replicas[writer].kill()?;
    let new_writer = loop {
        if let Some(w) = writer_of(&replicas).await {
            break w;
        }
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no replica took the writer's lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took_over = killed_at.elapsed();
    wait_for_acks(before + 10).await?;
    let first_write_after = {
        let acked = acknowledged.lock().unwrap();
        acked
            .at
            .iter()
            .filter(|at| **at > killed_at)
            .min()
            .map(|at| at.duration_since(killed_at))
    };
    assert_ne!(new_writer, writer);

    // Then one NATS node; the load goes on with the two left.
    let node = (killed_at.elapsed().as_millis() % 3) as usize;
    nodes[node].kill()?;
    let before = acked();
    wait_for_acks(before + 10).await?;

    // Both start again.
    nodes[node].start()?;
    replicas[writer].start()?;
    clients[writer] = replicas[writer].client().await?;
    let before = acked();
    wait_for_acks(before + 10).await?;
    stop.send_replace(true);
    for worker in workers {
        worker.await??;
    }

    // Every acknowledged command is in the log once, on every replica.
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let mut expected: BTreeSet<String> = acknowledged.names.clone();
    for round in 0..2 {
        for i in 0..3 {
            expected.insert(format!("turn-{round}-{i}"));
        }
    }
    for (j, client) in clients.iter_mut().enumerate() {
        let listed = names(client, &user, &wallet).await?;
        let twice: Vec<_> = listed.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "replica {j} lists twice: {twice:?}");
        let listed: BTreeSet<String> = listed.into_keys().collect();
        let lost: Vec<_> = expected.difference(&listed).collect();
        assert!(lost.is_empty(), "replica {j} lost acknowledged {lost:?}");
        let extra: Vec<_> = listed.difference(&expected).collect();
        assert!(
            extra.is_empty(),
            "replica {j} lists unacknowledged {extra:?}"
        );
    }

    // A fourth replica, empty, catches up.
    let mut fourth = Replica::new(dir.path(), 3, &urls)?;
    copy_keys(&replicas[0].keys, &fourth.keys)?;
    let joined = Instant::now();
    fourth.start()?;
    let mut client = fourth.client().await?;
    let listed = names(&mut client, &user, &wallet).await?;
    let caught_up = joined.elapsed();
    assert_eq!(listed.len(), expected.len());

    // Each replica's data directory verifies, and its projections equal a rebuild.
    replicas.push(fourth);
    let mut events = 0;
    for r in &mut replicas {
        r.stop()?;
        events = events_in(&r.data)?;
    }
    verified_everywhere(&replicas)?;
    eprintln!(
        "cluster: {} acknowledged writes under load; writer replica {writer} SIGKILLed: replica {new_writer} took the lease after {took_over:?}, first write acknowledged after the kill at {first_write_after:?}; NATS node {node} SIGKILLed and restarted; a fourth replica caught up with {events} events in {caught_up:?} ({:.0} events/s, start-up included)",
        acknowledged.names.len(),
        events as f64 / caught_up.as_secs_f64()
    );
    Ok(())
}

/// A writer paused past its lease (SIGSTOP) while calls to it queue up, then resumed. Another
/// replica took the lease meanwhile. The resumed one stops writing by its own clock before its
/// campaign notices: it decides and publishes nothing on what it held before the pause, so no
/// replica ever has a publish refused (the stream never saw two writers). The calls queued to it
/// are answered from the current state: each task created through another replica during the
/// pause is read and fired there, and its own writes land once. Every replica then lists the
/// same tasks and equals a rebuild of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_past_its_lease_resumes_without_writing() -> anyhow::Result<()> {
    let dir = scratch("paused writer test")?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::new(dir.path(), i, &urls))
        .collect::<Result<_, _>>()?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = Arc::new(User::sign_in(&mut clients[0]).await?);
    let wallet = user.wallet(&mut clients[0]).await?;
    let writer = wait_for_writer(&replicas).await?;

    // Pause the writer past its lease (2 s): another replica takes it.
    replicas[writer].signal("STOP")?;
    let others: Vec<usize> = (0..3).filter(|&i| i != writer).collect();
    let paused_at = Instant::now();
    'taken: loop {
        for &i in &others {
            if replicas[i].writes().await {
                break 'taken;
            }
        }
        anyhow::ensure!(
            paused_at.elapsed() < Duration::from_secs(30),
            "no other replica took the writer's lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut expected = BTreeSet::new();
    let mut during = Vec::new();
    for k in 0..4 {
        let name = format!("during-{k}");
        let id = clients[others[k % 2]]
            .create_task(user.req(simple_task(&name, &wallet)))
            .await?
            .into_inner()
            .id;
        expected.insert(name.clone());
        during.push((name, id));
    }

    // Calls to the paused replica queue meanwhile: a read and a firing of each of those tasks,
    // and a write of its own.
    let queued: Vec<_> = during
        .into_iter()
        .enumerate()
        .map(|(k, (name, id))| {
            let (mut client, user, wallet) =
                (clients[writer].clone(), user.clone(), wallet.clone());
            tokio::spawn(async move {
                let task = client
                    .get_task(user.req(pb::IdReq { id: id.clone() }))
                    .await?
                    .into_inner();
                anyhow::ensure!(task.name == name, "read {name} as {}", task.name);
                client.trigger_task(user.req(manual_firing(&id))).await?;
                let own = format!("queued-{k}");
                client
                    .create_task(user.req(simple_task(&own, &wallet)))
                    .await?;
                anyhow::Ok(own)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[writer].signal("CONT")?;
    for call in queued {
        let own = call
            .await?
            .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[writer].log_tail()))?;
        expected.insert(own);
    }

    // Every replica lists each task once.
    for (j, client) in clients.iter_mut().enumerate() {
        let listed = names(client, &user, &wallet).await?;
        assert!(listed.values().all(|&n| n == 1), "replica {j}: {listed:?}");
        let listed: BTreeSet<String> = listed.into_keys().collect();
        assert_eq!(listed, expected, "replica {j}");
    }
    for r in &mut replicas {
        r.stop()?;
    }
    for (j, r) in replicas.iter().enumerate() {
        let log = std::fs::read_to_string(r.config.with_extension("log"))?;
        assert!(
            !log.contains("the stream refused this writer's publish"),
            "replica {j} (replica {writer} was paused) published as a second writer: {}",
            r.log_tail()
        );
    }
    verified_everywhere(&replicas)?;
    Ok(())
}
