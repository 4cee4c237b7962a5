//! Executions on a replicated log: a 3-node NATS JetStream cluster and 3 aggregator replicas,
//! every replica's engine claiming executions through the log (`engine::claims`). Each task
//! calls a loopback web server twice per run (REST nodes `a` and `b`, a code node between), and
//! the server counts the calls per execution and step, and which replica made each (every
//! replica sends its own `engine.http.user_agent`).
//!
//! - A claim lapses while its claimant still runs: the replica running an execution is paused
//!   (SIGSTOP) while its REST call is held by the server; another replica takes the execution
//!   over once the claim lapses, finds the step started and unrecorded, and records it
//!   interrupted instead of calling again; the paused replica, resumed, can record nothing more
//!   of it (its appends conflict). The server saw that step once.
//! - Under a load of executions, the replica with the most calls in flight is SIGKILLed, then
//!   started again. Every execution finishes exactly once, no call is made twice for one
//!   execution's step, a step recorded as succeeded was called exactly once, executions were
//!   run by more than one replica, the killed replica's executions were finished by others, and
//!   every replica's data directory verifies and equals a rebuild (`replay verify`, `diff`).
//! - A replica stopped gracefully (SIGTERM) while its runs' calls are held releases its claims
//!   (`ExecutionReleased`): with a claim lease of 120 s, another replica takes each of them over
//!   (the log shows its claim after the release, before the lease would have run out), records
//!   the started step interrupted, and finishes it; the server saw that step once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use events::Event;
use tonic::transport::Channel;

use crate::cluster_support::{
    Replica, execution_events, jetstream_log, manual_firing, ready_cluster, scratch,
    start_replicas, verified_everywhere, writer_of,
};
use crate::support::{User, code_node, edge, rest_node, task_of};

/// How long the server takes to answer a counted call: executions are mid-step when a replica
/// is killed.
const CALL_TAKES: Duration = Duration::from_millis(150);

/// What the loopback server saw.
#[derive(Default)]
struct Calls {
    /// `<execution>/<step>` → calls.
    hits: BTreeMap<String, usize>,
    /// Replica (user agent) → calls in flight.
    in_flight: HashMap<String, usize>,
    /// Replica (user agent) → calls made.
    by_replica: BTreeMap<String, usize>,
    /// The held call: its key and who made it.
    held: Option<(String, String)>,
    /// Every held call's key → who made it (the first maker).
    holders: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Side {
    calls: Arc<Mutex<Calls>>,
    release: tokio::sync::watch::Sender<bool>,
}

fn agent(headers: &HeaderMap) -> String {
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn hit(
    State(side): State<Side>,
    Path((execution, step)): Path<(String, String)>,
    headers: HeaderMap,
) -> axum::Json<serde_json::Value> {
    let who = agent(&headers);
    let key = format!("{execution}/{step}");
    {
        let mut calls = side.calls.lock().unwrap();
        *calls.hits.entry(key.clone()).or_default() += 1;
        *calls.in_flight.entry(who.clone()).or_default() += 1;
        *calls.by_replica.entry(who.clone()).or_default() += 1;
    }
    tokio::time::sleep(CALL_TAKES).await;
    if let Some(n) = side.calls.lock().unwrap().in_flight.get_mut(&who) {
        *n -= 1;
    }
    axum::Json(serde_json::json!({ "key": key }))
}

/// Counted like `hit`; a call of step `a` is held until the test releases it.
async fn hold(
    State(side): State<Side>,
    Path((execution, step)): Path<(String, String)>,
    headers: HeaderMap,
) -> axum::Json<serde_json::Value> {
    if step != "a" {
        return hit(State(side), Path((execution, step)), headers).await;
    }
    let key = format!("{execution}/{step}");
    {
        let mut calls = side.calls.lock().unwrap();
        *calls.hits.entry(key.clone()).or_default() += 1;
        if calls.held.is_none() {
            calls.held = Some((key.clone(), agent(&headers)));
        }
        calls
            .holders
            .entry(key.clone())
            .or_insert_with(|| agent(&headers));
    }
    let mut release = side.release.subscribe();
    let _ = release.wait_for(|r| *r).await;
    axum::Json(serde_json::json!({ "key": key }))
}

async fn side_effects() -> anyhow::Result<(String, Side)> {
    let side = Side {
        calls: Arc::default(),
        release: tokio::sync::watch::Sender::new(false),
    };
    let app = axum::Router::new()
        .route("/hit/{execution}/{step}", post(hit))
        .route("/hold/{execution}/{step}", post(hold))
        .with_state(side.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, side))
}

/// A task that calls `<base>/<path>/<execution>/a`, computes, then calls `.../b`.
fn calling_task(name: &str, wallet: &str, base: &str, path: &str) -> pb::CreateTaskReq {
    let url = |step: &str| format!("{base}/{path}/{{{{ context.executionId }}}}/{step}");
    let nodes = vec![
        rest_node("a", "POST", &url("a"), "{}"),
        code_node("c", "return 1;"),
        rest_node("b", "POST", &url("b"), "{}"),
    ];
    let edges = vec![edge("trigger1", "a"), edge("a", "c"), edge("c", "b")];
    task_of(name, wallet, nodes, Some(edges))
}

async fn fire(
    client: &mut AggregatorClient<Channel>,
    user: &User,
    task_id: &str,
) -> anyhow::Result<String> {
    Ok(client
        .trigger_task(user.req(manual_firing(task_id)))
        .await?
        .into_inner()
        .execution_id)
}

/// Waits until the execution has finished, as `client`'s replica reads it.
async fn finished(
    client: &mut AggregatorClient<Channel>,
    user: &User,
    task_id: &str,
    execution_id: &str,
) -> anyhow::Result<pb::Execution> {
    finished_within(
        client,
        user,
        task_id,
        execution_id,
        Duration::from_secs(120),
    )
    .await
}

/// [`finished`], giving up after `patience`.
async fn finished_within(
    client: &mut AggregatorClient<Channel>,
    user: &User,
    task_id: &str,
    execution_id: &str,
    patience: Duration,
) -> anyhow::Result<pb::Execution> {
    let deadline = Instant::now() + patience;
    loop {
        let execution = client
            .get_execution(user.req(pb::ExecutionReq {
                task_id: task_id.into(),
                execution_id: execution_id.into(),
            }))
            .await?
            .into_inner();
        let pending = [
            pb::ExecutionStatus::Unspecified as i32,
            pb::ExecutionStatus::Pending as i32,
        ];
        if !pending.contains(&execution.status) {
            return Ok(execution);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "execution {execution_id} never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One execution's stream as the log holds it.
#[derive(Debug, Default)]
struct Stream {
    finished: usize,
    /// The claimants, in order.
    claims: Vec<String>,
    /// Each step's last record: (succeeded, error).
    steps: BTreeMap<String, (bool, String)>,
}

/// Every execution stream of a (stopped) replica's data directory.
fn executions_in(data: &std::path::Path) -> anyhow::Result<BTreeMap<String, Stream>> {
    let db = events::open_database(data)?;
    let log = events::LogKeyspaces::open(&db)?;
    let mut out: BTreeMap<String, Stream> = BTreeMap::new();
    for item in log.scan(None) {
        let (_, value) = item?;
        let envelope = events::decode(&value)?;
        let Some(id) = events::stream::execution_id_of(&envelope.stream) else {
            continue;
        };
        let stream = out.entry(id.to_owned()).or_default();
        match envelope.event {
            Event::ExecutionClaimed(c) if stream.claims.last() != Some(&c.replica) => {
                stream.claims.push(c.replica);
            }
            Event::StepRecorded(r) => {
                stream
                    .steps
                    .insert(r.step.id.clone(), (r.step.success, r.step.error.clone()));
            }
            Event::ExecutionFinished(_) => stream.finished += 1,
            _ => {}
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claim_executions_through_the_log_and_take_over_a_killed_ones()
-> anyhow::Result<()> {
    let dir = scratch("cluster executions test")?;
    let (base, side) = side_effects().await?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;
    let extra = |i: usize| {
        format!("engine:\n  http:\n    allow: [127.0.0.0/8]\n    user_agent: replica-{i}\n")
    };
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::with_config(dir.path(), i, &urls, &extra(i)))
        .collect::<Result<_, _>>()?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = User::sign_in(&mut clients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[0].log_tail()))?;
    let wallet = user.wallet(&mut clients[0]).await?;
    let mut fired: Vec<(String, String)> = Vec::new();

    // A claim lapses while its claimant still runs: the replica whose call is held is paused.
    let held_task = clients[0]
        .create_task(user.req(calling_task("held", &wallet, &base, "hold")))
        .await?
        .into_inner()
        .id;
    let held_execution = fire(&mut clients[1], &user, &held_task).await?;
    fired.push((held_task.clone(), held_execution.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (held_key, held_by) = loop {
        if let Some(held) = side.calls.lock().unwrap().held.clone() {
            break held;
        }
        anyhow::ensure!(Instant::now() < deadline, "the held task never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let paused: usize = held_by.trim_start_matches("replica-").parse()?;
    replicas[paused].signal("STOP")?;
    let other = (paused + 1) % 3;
    let taken_over = finished(&mut clients[other], &user, &held_task, &held_execution).await?;
    replicas[paused].signal("CONT")?;
    side.release.send_replace(true);
    let a = taken_over.steps.iter().find(|s| s.id == "a");
    assert!(
        a.is_some_and(|a| !a.success && a.error.starts_with("interrupted")),
        "the step the paused replica started is recorded interrupted: {:?}",
        taken_over.steps
    );
    assert_eq!(side.calls.lock().unwrap().hits.get(&held_key), Some(&1));

    // A load of executions through every replica.
    let mut tasks = Vec::new();
    for t in 0..9 {
        let id = clients[t % 3]
            .create_task(user.req(calling_task(&format!("load-{t}"), &wallet, &base, "hit")))
            .await?
            .into_inner()
            .id;
        tasks.push(id);
    }
    for round in 0..8 {
        for (t, task) in tasks.iter().enumerate() {
            let execution = fire(&mut clients[(t + round) % 3], &user, task).await?;
            fired.push((task.clone(), execution));
        }
    }
    let calls = || side.calls.lock().unwrap().hits.values().sum::<usize>();
    let wait_for_calls = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while calls() < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the calls stalled at {}",
                calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    };
    wait_for_calls(20).await?;

    // SIGKILL the replica with the most calls in flight (one holding claims on running
    // executions), then start it again. Nothing is asked between seeing the call in flight and
    // the kill (a call takes `CALL_TAKES`; a first `/metrics` scrape can take longer), so the
    // killed replica still holds that execution's claim.
    let ids = {
        let mut ids = Vec::new();
        for r in &replicas {
            ids.push(r.id().await?);
        }
        ids
    };
    let writer_before = writer_of(&replicas).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        let busiest = {
            let calls = side.calls.lock().unwrap();
            calls
                .in_flight
                .iter()
                .filter(|(_, n)| **n > 0)
                .max_by_key(|(_, n)| **n)
                .map(|(who, _)| who.clone())
        };
        if let Some(who) = busiest {
            break who.trim_start_matches("replica-").parse::<usize>()?;
        }
        anyhow::ensure!(Instant::now() < deadline, "no call in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    replicas[killed].kill()?;
    let killed_id = ids[killed].clone();
    // Twenty more calls, or all there are when fewer remain (two per execution; the held
    // one's interrupted first call may stay its only one).
    let before = calls();
    wait_for_calls((before + 20).min(2 * fired.len() - 1)).await?;
    replicas[killed].start()?;
    clients[killed] = replicas[killed].client().await?;

    // Every execution finishes, as every replica reads it.
    for (task, execution) in &fired {
        for client in clients.iter_mut() {
            finished(client, &user, task, execution).await?;
        }
    }
    for r in &mut replicas {
        r.stop()?;
    }

    // Once each, no side effect twice, run by more than one replica.
    let calls = std::mem::take(&mut *side.calls.lock().unwrap());
    let twice: Vec<_> = calls.hits.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "called twice: {twice:?}");
    let streams = executions_in(&replicas[0].data)?;
    assert_eq!(streams.len(), fired.len(), "one stream per fired execution");
    let mut finishers = BTreeSet::new();
    let mut taken_from_killed = 0;
    for (task, execution) in &fired {
        let stream = streams
            .get(execution)
            .ok_or_else(|| anyhow::anyhow!("{execution} is not in the log"))?;
        assert_eq!(stream.finished, 1, "{execution} of {task}: {stream:?}");
        let finisher = stream
            .claims
            .last()
            .ok_or_else(|| anyhow::anyhow!("{execution} was never claimed"))?;
        finishers.insert(finisher.clone());
        if stream.claims.contains(&killed_id) && *finisher != killed_id {
            taken_from_killed += 1;
        }
        for step in ["a", "b"] {
            let seen = calls
                .hits
                .get(&format!("{execution}/{step}"))
                .copied()
                .unwrap_or(0);
            match stream.steps.get(step) {
                Some((true, _)) => assert_eq!(seen, 1, "{execution}/{step} succeeded"),
                Some((false, error)) => {
                    assert!(seen <= 1, "{execution}/{step}: {error}");
                }
                None => assert_eq!(seen, 0, "{execution}/{step} never recorded"),
            }
        }
    }
    assert!(
        finishers.len() > 1,
        "executions were finished by more than one replica: {finishers:?}"
    );
    assert!(
        taken_from_killed > 0,
        "the killed replica's executions were taken over"
    );
    let held = &streams[&held_execution];
    assert!(
        held.claims.len() >= 2,
        "the held run changed hands: {held:?}"
    );

    // Every replica's data directory verifies and equals a rebuild.
    verified_everywhere(&replicas)?;
    eprintln!(
        "cluster executions: {} executions, {} calls by replica {:?}; replica {paused} paused with a call held (taken over, recorded interrupted); replica {killed} (writer before: {writer_before:?}) SIGKILLed with calls in flight: {taken_from_killed} of its executions finished by others; finished by {} replicas",
        fired.len(),
        calls.hits.values().sum::<usize>(),
        calls.by_replica,
        finishers.len()
    );
    Ok(())
}

/// A replica stopped gracefully (SIGTERM) while it runs executions releases its claims, and
/// another replica takes them at once. The claims' lease (`claim_ttl`) is 120 s here, longer
/// than this test waits for the takeover: only the release can explain it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_gracefully_releases_its_claims_and_another_takes_them_at_once()
-> anyhow::Result<()> {
    let dir = scratch("cluster release test")?;
    let (base, side) = side_effects().await?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;
    let config = |i: usize| {
        format!(
            "{}  claim_ttl: 120s\nengine:\n  http:\n    allow: [127.0.0.0/8]\n    user_agent: replica-{i}\n",
            jetstream_log(&urls, 3, "2s")
        )
    };
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::configured(dir.path(), i, &config(i)))
        .collect::<Result<_, _>>()?;
    let mut clients = start_replicas(&mut replicas).await?;
    let user = User::sign_in(&mut clients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[0].log_tail()))?;
    let wallet = user.wallet(&mut clients[0]).await?;

    // Given executions of three tasks, each held in its first call by the replica running it
    let mut fired = Vec::new();
    for (t, client) in clients.iter_mut().enumerate() {
        let task = client
            .create_task(user.req(calling_task(&format!("held-{t}"), &wallet, &base, "hold")))
            .await?
            .into_inner()
            .id;
        let execution = fire(client, &user, &task).await?;
        fired.push((task, execution));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while side.calls.lock().unwrap().holders.len() < fired.len() {
        anyhow::ensure!(Instant::now() < deadline, "the held tasks never all called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holders = side.calls.lock().unwrap().holders.clone();
    let held_by = |execution: &str| holders.get(&format!("{execution}/a")).cloned();

    // When the replica holding the first one's call is stopped gracefully (its runs outlast
    // the shutdown's grace: their calls are still held)
    let stopped: usize = held_by(&fired[0].1)
        .unwrap_or_default()
        .trim_start_matches("replica-")
        .parse()?;
    let stopped_id = replicas[stopped].id().await?;
    let its: Vec<(String, String)> = fired
        .iter()
        .filter(|(_, e)| held_by(e).as_deref() == Some(format!("replica-{stopped}").as_str()))
        .cloned()
        .collect();
    replicas[stopped].stop()?;
    let other = (stopped + 1) % 3;

    // Then another replica finishes each of its executions, well within the claims' lease
    for (task, execution) in &its {
        let done = finished_within(
            &mut clients[other],
            &user,
            task,
            execution,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {}", replicas[other].log_tail()))?;
        let a = done.steps.iter().find(|s| s.id == "a");
        assert!(
            a.is_some_and(|a| !a.success && a.error.starts_with("interrupted")),
            "the step the stopped replica started is recorded interrupted, not called again: {:?}",
            done.steps
        );
    }
    side.release.send_replace(true);
    for (task, execution) in &fired {
        finished(&mut clients[other], &user, task, execution).await?;
    }
    for r in &mut replicas {
        r.stop()?;
    }
    let stopped_log = std::fs::read_to_string(replicas[stopped].config.with_extension("log"))?;
    assert!(
        stopped_log.contains("released this replica's claims"),
        "{}",
        replicas[stopped].log_tail()
    );

    // And the log shows why: the stopped replica's claim, its release, then another replica's
    // claim granted before the first claim's lease would have lapsed
    for (_, execution) in &its {
        let events = execution_events(&replicas[other].data, execution)?;
        let mut last_lease = None;
        let mut released = false;
        let mut taken = None;
        for envelope in &events {
            match &envelope.event {
                Event::ExecutionClaimed(c) if c.replica == stopped_id => {
                    assert!(!released, "claimed again after its release: {events:?}");
                    last_lease = Some(c.lease_until_ms);
                }
                Event::ExecutionReleased(r) => {
                    assert_eq!(r.replica, stopped_id, "{events:?}");
                    released = true;
                }
                Event::ExecutionClaimed(c) if taken.is_none() => {
                    assert!(released, "taken before the release: {events:?}");
                    taken = Some((c.replica.clone(), envelope.recorded_at));
                }
                _ => {}
            }
        }
        let lease = last_lease
            .ok_or_else(|| anyhow::anyhow!("{execution}: no claim of the stopped replica"))?;
        let (by, at) = taken.ok_or_else(|| anyhow::anyhow!("{execution}: never taken over"))?;
        assert_ne!(by, stopped_id);
        assert!(
            at < lease,
            "{execution} was taken over at {at}, before the stopped replica's lease ran out at {lease}"
        );
        let calls = side.calls.lock().unwrap();
        assert_eq!(calls.hits.get(&format!("{execution}/a")), Some(&1));
        let finishes = events
            .iter()
            .filter(|e| matches!(e.event, Event::ExecutionFinished(_)))
            .count();
        assert_eq!(finishes, 1, "{execution}");
    }

    // And every replica's data directory verifies and equals a rebuild
    verified_everywhere(&replicas)?;
    eprintln!(
        "cluster release: replica {stopped} stopped holding {} of {} executions; all taken over by others before their lease ran out",
        its.len(),
        fired.len()
    );
    Ok(())
}
