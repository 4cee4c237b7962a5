//! Benchmark of the operator network's aggregator side, in one run:
//!
//! 1. BLS: blst's raw verify of one signature (the baseline), our single check
//!    (`attest::verify_digest`: decoding included), batches of 64 (`attest::verify_batch`, over
//!    blst's thread pool), the aggregator's batching verifier fed by many concurrent reports,
//!    and an attestation (aggregate two signatures, check the aggregate);
//! 2. signed reports through the aggregator over gRPC (64 in flight, durable commits): reports
//!    recorded while no quorum forms (request signature, assignment, BLS, `TriggerReported`),
//!    and firings attested (two reports each: the second aggregates, records `TriggerAttested`
//!    and queues the execution, which runs meanwhile);
//! 3. 1 000 concurrent `SyncMessages` streams (over 10 HTTP/2 connections) held against the
//!    aggregator binary in its own process, each operator pinging every 10 s: its resident
//!    memory and CPU, idle and with the streams.
//!
//! `cargo bench --bench operators`; `BENCH_REPORTS` (default 2 000), `BENCH_STREAMS` (default
//! 1 000), `BENCH_HOLD` (seconds the streams are held, default 10).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::config::{Config, DurabilityMode, OperatorMember};
use aggregator::pb;
use aggregator::pb::node_client::NodeClient;
use alloy::signers::local::PrivateKeySigner;
use blst::min_pk::{PublicKey, SecretKey, Signature};
use operator::client::{Client, registration};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAIN_ID: u64 = 31337;
const IN_FLIGHT: usize = 64;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(what: &str, per_second: f64, baseline: f64) {
    println!(
        "| {what:<58} | {per_second:>10.0} | {:>6.2}x |",
        per_second / baseline
    );
}

fn header(title: &str, unit: &str) {
    println!("\n{title}\n");
    println!("| {:<58} | {unit:>10} |  vs raw |", "measurement");
    println!("|{:-<60}|{:->11}:|{:->8}:|", "", "", "");
}

fn bls_key(i: u64) -> SecretKey {
    let mut ikm = [7u8; 32];
    ikm[..8].copy_from_slice(&i.to_le_bytes());
    attest::bls_key(&ikm).unwrap()
}

fn operator_keys(i: u64) -> (PrivateKeySigner, SecretKey) {
    (PrivateKeySigner::random(), bls_key(i))
}

fn per_second(n: usize, since: Instant) -> f64 {
    n as f64 / since.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let n = env("BENCH_REPORTS", 2_000) as usize;
    let raw = crypto(n).await;
    reports(n, raw).await;
    streams(env("BENCH_STREAMS", 1_000) as usize, env("BENCH_HOLD", 10)).await;
}

// ---- 1. BLS ----

async fn crypto(n: usize) -> f64 {
    let keys: Vec<SecretKey> = (0..64).map(bls_key).collect();
    let items: Vec<attest::Signed> = (0..n)
        .map(|i| {
            let key = &keys[i % keys.len()];
            let digest = attest::firing_digest(CHAIN_ID, "task", &format!("task:{i}"), &[1; 32]);
            attest::Signed {
                public_key: key.sk_to_pk(),
                digest,
                signature: attest::sign_digest(key, &digest),
            }
        })
        .collect();
    let parsed: Vec<(PublicKey, [u8; 32], Signature)> = items
        .iter()
        .map(|s| {
            (
                s.public_key,
                s.digest,
                Signature::from_bytes(&s.signature).unwrap(),
            )
        })
        .collect();

    let started = Instant::now();
    for (pk, digest, sig) in &parsed {
        let r = sig.verify(true, digest, attest::SIGNATURE_DST, &[], pk, false);
        assert_eq!(r, blst::BLST_ERROR::BLST_SUCCESS);
    }
    let raw = per_second(n, started);

    let started = Instant::now();
    for s in &items {
        attest::verify_digest(&s.public_key, &s.digest, &s.signature).unwrap();
    }
    let single = per_second(n, started);

    let started = Instant::now();
    for batch in items.chunks(64) {
        attest::verify_batch(batch).unwrap();
    }
    let batched = per_second(n, started);

    let verifier = Arc::new(aggregator::operators::verifier::Verifier::start().unwrap());
    let started = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for s in items.iter().cloned() {
        let verifier = verifier.clone();
        jobs.spawn(async move { verifier.verify(s).await.unwrap() });
    }
    while jobs.join_next().await.is_some() {}
    let verifier_rate = per_second(n, started);

    let attestations = n / 4;
    let started = Instant::now();
    for (_, digest, _) in &parsed[..attestations] {
        let digest = *digest;
        let (a, b) = (&keys[0], &keys[1]);
        let aggregate = attest::aggregate(&[
            attest::sign_digest(a, &digest),
            attest::sign_digest(b, &digest),
        ])
        .unwrap();
        attest::verify_aggregate(&[a.sk_to_pk(), b.sk_to_pk()], &digest, &aggregate).unwrap();
    }
    let aggregated = per_second(attestations, started);
    // The two signatures made inside the loop are the operators' work, not the aggregator's:
    // measured alone, so that the row can show what aggregating and checking cost.
    let started = Instant::now();
    for (_, digest, _) in &parsed[..attestations] {
        let digest = *digest;
        let _ = attest::sign_digest(&keys[0], &digest);
        let _ = attest::sign_digest(&keys[1], &digest);
    }
    let signing = started.elapsed().as_secs_f64() / attestations as f64;
    let aggregate_only = 1.0 / (1.0 / aggregated - signing).max(1e-9);

    header(
        &format!("BLS12-381 (min_pk) signatures, {n} reports, 2 cores"),
        "per second",
    );
    row("blst raw verify, one signature (baseline)", raw, raw);
    row("attest::verify_digest (decode + verify)", single, raw);
    row("attest::verify_batch, batches of 64", batched, raw);
    row(
        "aggregator's batching verifier, all reports concurrent",
        verifier_rate,
        raw,
    );
    row(
        "attestation: aggregate 2 + fast aggregate verify",
        aggregate_only,
        raw,
    );
    raw
}

// ---- 2. Reports through the aggregator ----

fn block_report(
    client: &Client,
    bls: &SecretKey,
    task_id: &str,
    block: u64,
) -> tonic::Request<pb::NotifyTriggersReq> {
    let request_id = format!("{task_id}:{block}");
    let output =
        serde_json::json!({"blockNumber": block, "blockHash": format!("0x{:064x}", block)});
    let digest = attest::firing_digest(
        CHAIN_ID,
        task_id,
        &request_id,
        &attest::output_hash(&output).unwrap(),
    );
    let message = pb::NotifyTriggersReq {
        address: format!("{:#x}", client.address()),
        task_id: task_id.to_owned(),
        trigger_type: events::task::TriggerKind::Block.wire_number(),
        trigger_output: Some(pb::notify_triggers_req::TriggerOutput::BlockTrigger(
            pb::block_trigger::Output {
                data: Some(aggregator::pb::convert::value_from_json(&output)),
            },
        )),
        trigger_request_id: request_id,
        bls_signature: attest::sign_digest(bls, &digest),
        ..Default::default()
    };
    client.signed("NotifyTriggers", message).unwrap()
}

/// Sends `requests` (each a group sent in order) with `IN_FLIGHT` groups at a time; returns
/// the statuses.
async fn send(
    channels: &[Channel],
    groups: Vec<Vec<tonic::Request<pb::NotifyTriggersReq>>>,
) -> Vec<String> {
    let queue = Arc::new(tokio::sync::Mutex::new(groups.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let queue = queue.clone();
        let mut node = NodeClient::new(channels[w % channels.len()].clone());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let Some(group) = queue.lock().await.next() else {
                    return statuses;
                };
                for request in group {
                    let resp = node.notify_triggers(request).await.unwrap().into_inner();
                    statuses.push(resp.status);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(statuses) = workers.join_next().await {
        all.extend(statuses.unwrap());
    }
    all
}

async fn reports(n: usize, raw: f64) {
    let operators: Vec<(PrivateKeySigner, SecretKey)> = (0..3).map(operator_keys).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        keys_dir: dir.path().join("keys"),
        durability: DurabilityMode::Sync,
        ..Config::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.log.level = "warn".into();
    config.operators.reconcile_every = Duration::from_millis(100);
    config.operators.members = operators
        .iter()
        .map(|(e, b)| registration(e, b, CHAIN_ID, 1).unwrap())
        .collect();
    let running = aggregator::server::start(config).await.unwrap();
    let app = running.app.clone();

    // Tasks with block triggers, straight into the log.
    let owner = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    let mut tasks = Vec::new();
    for i in 0..64 {
        let id = aggregator::clock::new_id();
        let mut definition = events::samples::definition();
        definition.name = format!("bench {i}");
        let command = events::Command::new(owner, events::now_ms()).append(
            events::stream::task(&id),
            events::Expected::NoStream,
            [events::event::TaskCreated {
                task_id: id.clone(),
                owner: owner.into(),
                wallet: events::samples::WALLET.into(),
                definition,
            }
            .into()],
        );
        app.store.log.append(command).await.unwrap();
        tasks.push(id);
    }
    let url = format!("http://{}", running.grpc);
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let clients: Vec<Client> = operators
        .iter()
        .enumerate()
        .map(|(i, (e, b))| {
            Client::with_channel(channels[i % 4].clone(), e.clone(), b.clone(), CHAIN_ID)
        })
        .collect();
    let mut streams = Vec::new();
    for client in &clients {
        let mut client = client.clone();
        streams.push(
            client
                .sync(pb::sync_messages_req::Capabilities {
                    event_monitoring: true,
                    block_monitoring: true,
                    time_monitoring: true,
                })
                .await
                .unwrap(),
        );
    }
    loop {
        let assigned = tasks
            .iter()
            .all(|t| app.store.views.assigned(t).unwrap().len() == 3);
        if assigned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reports that form no quorum: operator 0 alone, distinct firings.
    let groups: Vec<_> = (0..n)
        .map(|i| {
            let task = &tasks[i % tasks.len()];
            vec![block_report(
                &clients[0],
                &operators[0].1,
                task,
                10 * (i as u64 + 1),
            )]
        })
        .collect();
    let started = Instant::now();
    let statuses = send(&channels, groups).await;
    let recorded = per_second(n, started);
    assert!(
        statuses.iter().all(|s| s == "accepted"),
        "{:?}",
        &statuses[..3]
    );

    // Firings attested: operators 1 and 2 report each (other firings than above).
    let firings = n / 2;
    let groups: Vec<_> = (0..firings)
        .map(|i| {
            let task = &tasks[i % tasks.len()];
            let block = 10 * (n as u64 + i as u64 + 1);
            vec![
                block_report(&clients[1], &operators[1].1, task, block),
                block_report(&clients[2], &operators[2].1, task, block),
            ]
        })
        .collect();
    let started = Instant::now();
    let statuses = send(&channels, groups).await;
    let attested = per_second(firings, started);
    let enabled = statuses.iter().filter(|s| *s == "enabled").count();
    assert_eq!(enabled, firings, "every firing queued once");

    header(
        &format!("Signed reports through the aggregator over gRPC, {IN_FLIGHT} in flight, durable"),
        "per second",
    );
    row("blst raw verify, one signature (baseline)", raw, raw);
    row("reports recorded, no quorum yet", recorded, raw);
    row(
        "firings attested (2 reports each), executions running",
        attested,
        raw,
    );
    row("  the same in reports", 2.0 * attested, raw);
    drop(streams);
    drop(app);
    running.stop().await.unwrap();
}

// ---- 3. Streams held ----

/// (resident KiB, CPU seconds) of a process.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    (rss, ticks / 100.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn metric(http: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

async fn streams(count: usize, hold: u64) {
    let started = Instant::now();
    let operators: Vec<(PrivateKeySigner, SecretKey)> = (0..count as u64)
        .map(|i| operator_keys(1_000 + i))
        .collect();
    let members: Vec<OperatorMember> = operators
        .iter()
        .map(|(e, b)| registration(e, b, CHAIN_ID, 1).unwrap())
        .collect();
    let keygen = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let mut config = Config {
        data_dir: dir.path().join("data"),
        keys_dir: dir.path().join("keys"),
        ..Config::default()
    };
    config.grpc.listen = format!("127.0.0.1:{grpc}").parse().unwrap();
    config.http.listen = format!("127.0.0.1:{http}").parse().unwrap();
    config.log.level = "warn".into();
    config.operators.members = members;
    let path = dir.path().join("aggregator.yaml");
    std::fs::write(&path, serde_norway::to_string(&config).unwrap()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("--config")
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let http_url = format!("http://127.0.0.1:{http}");
    while reqwest::get(format!("{http_url}/up")).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let window = Duration::from_secs(hold);
    let (idle_rss, cpu0) = usage(pid);
    tokio::time::sleep(window).await;
    let (_, cpu1) = usage(pid);
    let idle_cpu = (cpu1 - cpu0) / window.as_secs_f64();

    let connections = count.div_ceil(100).max(1);
    let url = format!("http://127.0.0.1:{grpc}");
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let opening = Instant::now();
    let mut holders = tokio::task::JoinSet::new();
    for (i, (e, b)) in operators.iter().enumerate() {
        let mut client = Client::with_channel(
            channels[i % connections].clone(),
            e.clone(),
            b.clone(),
            CHAIN_ID,
        );
        let mut stream = client
            .sync(pb::sync_messages_req::Capabilities {
                event_monitoring: true,
                block_monitoring: true,
                time_monitoring: true,
            })
            .await
            .unwrap();
        holders.spawn(async move {
            // Ping every 10 s (spread), and keep the stream read.
            let offset = Duration::from_millis((i as u64 * 10_000) / count as u64);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let checkin = pb::Checkin {
                            address: format!("{:#x}", client.address()),
                            version: "bench".into(),
                            ..Default::default()
                        };
                        let _ = client.ping(checkin).await;
                    }
                    message = stream.message() => {
                        if !matches!(message, Ok(Some(_))) {
                            return;
                        }
                    }
                }
            }
        });
    }
    while metric(&http_url, "operators_connected").await != Some(count as f64) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let opened = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, cpu0) = usage(pid);
    tokio::time::sleep(window).await;
    let (busy_rss, cpu1) = usage(pid);
    let busy_cpu = (cpu1 - cpu0) / window.as_secs_f64();

    println!(
        "\n{count} SyncMessages streams over {connections} HTTP/2 connections, held {hold} s, one ping per operator every 10 s (aggregator binary, own process)\n"
    );
    println!("| state | resident memory | CPU (share of one core) |");
    println!("|---|---:|---:|");
    println!(
        "| idle, {count} operators registered (baseline) | {:.1} MiB | {:.1} % |",
        idle_rss as f64 / 1024.0,
        idle_cpu * 100.0
    );
    println!(
        "| {count} streams open | {:.1} MiB | {:.1} % |",
        busy_rss as f64 / 1024.0,
        busy_cpu * 100.0
    );
    println!(
        "| per stream | {:.1} KiB | |",
        busy_rss.saturating_sub(idle_rss) as f64 / count as f64
    );
    println!(
        "\n(keys and registrations for {count} operators made in {:.1} s; all streams open in {:.1} s)",
        keygen.as_secs_f64(),
        opened.as_secs_f64()
    );
    holders.abort_all();
    let _ = child.kill().await;
}
