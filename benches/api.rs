//! Benchmark of the client API against a bare tonic unary echo service, in the same run.
//!
//! - authenticated `CreateTask` calls per second over gRPC with 64 concurrent clients (durable:
//!   each create is fsync'd, group-committed), against an echo service that returns the same
//!   request message, with 64 concurrent clients too;
//! - latency (p50, p99) of each at half its measured peak rate (open loop);
//! - then, on the same server with `BENCH_TASKS` tasks in its store (default 100 000, written
//!   straight into the log, 1 000 per command, spread over 1 000 owners), the latency of
//!   sequential `GetTask` and `ListTasks` calls (one call at a time, so Nagle's delay would show)
//!   by one owner who has `BENCH_OWNER_TASKS` of them (default 1 000), against the echo's
//!   sequential latency measured in the same run.
//!
//! `cargo bench --bench api`; `BENCH_SECONDS` sets each measurement's length (default 5).
//! Targets: our rate >= 0.35x the echo's, p99 <= 5 ms at half the peak rate; the issue asks for
//! the sequential figures at 1 M tasks (`BENCH_TASKS=1000000`).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aggregator::config::DurabilityMode;
use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use tonic::transport::{Channel, Server};

mod common;

use common::{env, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 64;

fn seconds() -> Duration {
    Duration::from_secs(env("BENCH_SECONDS", 5))
}

// ---- The baseline: a bare unary echo of the same message ----

mod echo {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use aggregator::pb;
    use tonic::codegen::{BoxFuture, Service, StdError, http};

    pub const PATH: &str = "/bench.Echo/Echo";

    #[derive(Clone, Default)]
    pub struct EchoServer;

    impl tonic::server::NamedService for EchoServer {
        const NAME: &'static str = "bench.Echo";
    }

    struct Echo;

    impl tonic::server::UnaryService<pb::CreateTaskReq> for Echo {
        type Response = pb::CreateTaskReq;
        type Future = BoxFuture<tonic::Response<pb::CreateTaskReq>, tonic::Status>;

        fn call(&mut self, request: tonic::Request<pb::CreateTaskReq>) -> Self::Future {
            Box::pin(async move { Ok(tonic::Response::new(request.into_inner())) })
        }
    }

    impl<B> Service<http::Request<B>> for EchoServer
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Echo, request).await)
            })
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the baseline's client has no error map: it reports a channel failure as it is"
    )]
    pub async fn call(
        channel: &mut tonic::client::Grpc<tonic::transport::Channel>,
        message: pb::CreateTaskReq,
    ) -> Result<(), tonic::Status> {
        channel
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(PATH);
        let _: tonic::Response<pb::CreateTaskReq> = channel
            .unary(
                tonic::Request::new(message),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await?;
        Ok(())
    }
}

/// Runs `op` in `clients` loops (closed loop) for the measurement length; returns calls/s.
async fn peak<F, Fut>(clients: usize, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(c, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(seconds()).await;
    let rate = (done.load(Ordering::Relaxed) - start_count) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    rate
}

/// Sends at `rate` calls/s in total (open loop, spread over the clients) and returns the
/// latencies in milliseconds, sorted.
async fn latencies<F, Fut>(clients: usize, rate: f64, op: F) -> Vec<f64>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let period = Duration::from_secs_f64(clients as f64 / rate.max(1.0));
    let deadline = Instant::now() + seconds();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                // Stagger the clients over one period.
                tokio::time::sleep(period.mul_f64(c as f64 / clients as f64)).await;
                let mut inflight = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    tick.tick().await;
                    let op = op.clone();
                    inflight.push(tokio::spawn(async move {
                        let started = Instant::now();
                        op(c, i).await;
                        started.elapsed().as_secs_f64() * 1000.0
                    }));
                    i += 1;
                }
                for f in inflight {
                    samples.push(f.await.unwrap());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    all
}

/// Runs `op` one call at a time for the measurement length; returns the latencies in
/// milliseconds, sorted.
async fn sequential<F, Fut>(op: F) -> Vec<f64>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + seconds();
    let mut samples = Vec::new();
    let mut i = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        i += 1;
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// Writes `total` tasks straight into the log, 1 000 per command; every `total / mine`-th
/// belongs to `common::OWNER`, the others to 999 other owners. Returns `common::OWNER`'s ids.
async fn fill(app: &aggregator::app::App, total: usize, mine: usize) -> Vec<String> {
    let every = (total / mine.max(1)).max(1);
    let mut ids = Vec::new();
    let mut written = 0;
    while written < total {
        let mut command = events::Command::new("system", events::now_ms());
        for i in written..(written + 1_000).min(total) {
            let id = aggregator::clock::new_id();
            let owner = if i % every == 0 && ids.len() < mine {
                ids.push(id.clone());
                common::OWNER.to_owned()
            } else {
                format!("0x{:040x}", 1 + i % 999)
            };
            let mut definition = events::samples::definition();
            definition.name = format!("bench {i}");
            command = command.append(
                events::stream::task(&id),
                events::Expected::NoStream,
                [events::event::TaskCreated {
                    task_id: id,
                    owner,
                    wallet: events::samples::WALLET.into(),
                    definition,
                }
                .into()],
            );
        }
        app.store.log.append(command).await.unwrap();
        written = (written + 1_000).min(total);
    }
    ids
}

async fn sign_in(client: &mut AggregatorClient<Channel>) -> (String, String) {
    sign_in_as(client, PrivateKeySigner::random()).await
}

async fn sign_in_as(
    client: &mut AggregatorClient<Channel>,
    signer: PrivateKeySigner,
) -> (String, String) {
    let message = client
        .get_signature_format(pb::GetSignatureFormatReq {
            wallet: signer.address().to_checksum(None),
        })
        .await
        .unwrap()
        .into_inner()
        .message;
    let signature = signer.sign_message_sync(message.as_bytes()).unwrap();
    let token = client
        .get_key(pb::GetKeyReq {
            message,
            signature: format!("0x{}", hex::encode(signature.as_bytes())),
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    let mut request = tonic::Request::new(pb::GetWalletReq {
        salt: "0".into(),
        factory_address: String::new(),
    });
    request
        .metadata_mut()
        .insert("authkey", token.parse().unwrap());
    let wallet = client
        .get_wallet(request)
        .await
        .unwrap()
        .into_inner()
        .address;
    (token, wallet)
}

fn task_request(wallet: &str, client: usize, i: u64) -> pb::CreateTaskReq {
    use aggregator::pb::convert::value_from_json;
    let settings = serde_json::json!({ "name": format!("bench {client}-{i}"), "runner": wallet });
    pb::CreateTaskReq {
        trigger: Some(pb::TaskTrigger {
            name: "blockTrigger".into(),
            r#type: pb::TriggerType::Block as i32,
            id: "trigger1".into(),
            trigger_type: Some(pb::task_trigger::TriggerType::Block(pb::BlockTrigger {
                config: Some(pb::block_trigger::Config { interval: 10 }),
            })),
        }),
        nodes: vec![pb::TaskNode {
            id: "node1".into(),
            name: "code".into(),
            r#type: pb::NodeType::CustomCode as i32,
            task_type: Some(pb::task_node::TaskType::CustomCode(pb::CustomCodeNode {
                config: Some(pb::custom_code_node::Config {
                    lang: 1,
                    source: "return 42;".into(),
                }),
            })),
        }],
        edges: vec![pb::TaskEdge {
            id: "e1".into(),
            source: "trigger1".into(),
            target: "node1".into(),
        }],
        input_variables: [("settings".to_owned(), value_from_json(&settings))]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn main() {
    common::runtime().block_on(async_main());
}

async fn async_main() {
    // `BENCH_LOG=fjall=debug` shows the storage engine's stalls, for instance.
    if let Ok(level) = std::env::var("BENCH_LOG") {
        aggregator::telemetry::init_logging(&aggregator::config::LogConfig {
            level,
            ..Default::default()
        });
    }
    // Echo baseline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = listener.local_addr().unwrap();
    let echo_runtime = common::runtime();
    echo_runtime.spawn(
        Server::builder()
            .add_service(echo::EchoServer)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut echo_channels = Vec::new();
    for _ in 0..CLIENTS {
        let channel = Channel::from_shared(format!("http://{echo_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        echo_channels.push(tonic::client::Grpc::new(channel));
    }
    let sample = task_request("0x5FbDB2315678afecb367f032d93F642f64180aa3", 0, 0);
    let echo_op = {
        let channels = echo_channels.clone();
        move |c: usize, _i: u64| {
            let mut channel = channels[c].clone();
            let message = sample.clone();
            async move { echo::call(&mut channel, message).await.unwrap() }
        }
    };
    let only_ours = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "ours");
    let (echo_rate, echo_lat) = if only_ours {
        (f64::NAN, Vec::new())
    } else {
        let rate = peak(CLIENTS, echo_op.clone()).await;
        (rate, latencies(CLIENTS, rate / 2.0, echo_op).await)
    };

    let echo_seq = {
        let channel = echo_channels[0].clone();
        let message = task_request("0x5FbDB2315678afecb367f032d93F642f64180aa3", 0, 0);
        sequential(move |_| {
            let mut channel = channel.clone();
            let message = message.clone();
            async move { echo::call(&mut channel, message).await.unwrap() }
        })
        .await
    };
    echo_runtime.shutdown_background();

    // Our server, durable, with limits that do not throttle the benchmark.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    if std::env::var("BENCH_DURABILITY").is_ok_and(|d| d == "relaxed") {
        config.durability = DurabilityMode::Relaxed;
    }
    config.limits.tasks_per_owner = u64::MAX;
    config.limits.requests_per_second = 1_000_000;
    config.limits.burst = 1_000_000;
    // The server runs on a runtime of its own, as it would in its own process; the clients keep
    // the benchmark's.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server-rt")
        .enable_all()
        .build()
        .unwrap();
    let running = server_runtime
        .spawn(aggregator::server::start(config))
        .await
        .unwrap()
        .unwrap();
    let url = format!("http://{}", running.grpc);
    let mut users = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = AggregatorClient::connect(url.clone()).await.unwrap();
        let (token, wallet) = sign_in(&mut client).await;
        users.push((client, token, wallet));
    }
    let users = Arc::new(users);
    let create_op = {
        let users = users.clone();
        move |c: usize, i: u64| {
            let (client, token, wallet) = &users[c];
            let mut client = client.clone();
            let mut request = tonic::Request::new(task_request(wallet, c, i));
            request
                .metadata_mut()
                .insert("authkey", token.parse().unwrap());
            async move {
                client.create_task(request).await.unwrap();
            }
        }
    };
    let ours_rate = peak(CLIENTS, create_op.clone()).await;
    // Distinct requests at half the peak rate (the loop index keeps them unique).
    let offset = 1_000_000_000u64;
    let ours_lat = latencies(CLIENTS, ours_rate / 2.0, move |c, i| {
        create_op(c, i + offset)
    })
    .await;
    if std::env::var("BENCH_VERBOSE").is_ok() {
        let text = aggregator::telemetry::metrics().render();
        for line in text
            .lines()
            .filter(|l| l.contains("CreateTask") && l.contains("bucket"))
        {
            println!("{line}");
        }
    }
    // The store of `BENCH_TASKS` tasks, then one owner's sequential reads.
    let total: usize = env("BENCH_TASKS", 100_000);
    let mine: usize = env("BENCH_OWNER_TASKS", 1_000);
    let filling = Instant::now();
    let app = running.app.clone();
    let my_ids = server_runtime
        .spawn(async move { fill(&app, total, mine).await })
        .await
        .unwrap();
    let fill_seconds = filling.elapsed().as_secs_f64();
    // anvil's second account: `common::OWNER`.
    let owner_key: PrivateKeySigner =
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap();
    assert_eq!(
        owner_key.address().to_string().to_lowercase(),
        common::OWNER
    );
    let mut reader = AggregatorClient::connect(url.clone()).await.unwrap();
    let (token, _) = sign_in_as(&mut reader, owner_key).await;
    fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authkey", token.parse().unwrap());
        request
    }
    let get_seq = sequential(|i| {
        let mut client = reader.clone();
        // A stride through the owner's tasks, so reads do not hit one row.
        let id = my_ids[(i as usize * 7_919) % my_ids.len()].clone();
        let request = authed(&token, pb::IdReq { id });
        async move {
            client.get_task(request).await.unwrap();
        }
    })
    .await;
    let list_seq = sequential(|_| {
        let mut client = reader.clone();
        let request = authed(
            &token,
            pb::ListTasksReq {
                limit: 10,
                ..Default::default()
            },
        );
        async move {
            let page = client.list_tasks(request).await.unwrap().into_inner();
            assert_eq!(page.items.len(), 10);
        }
    })
    .await;
    server_runtime.spawn(running.stop()).await.unwrap().unwrap();
    server_runtime.shutdown_background();

    println!();
    println!("| measurement | CreateTask (ours, durable) | bare tonic echo | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| calls/s, {CLIENTS} concurrent clients | {ours_rate:.0} | {echo_rate:.0} | {:.2}x | >= 0.35x |",
        ours_rate / echo_rate
    );
    println!(
        "| p50 at half the peak rate (ms) | {:.2} | {:.2} | | |",
        percentile(&ours_lat, 0.5),
        percentile(&echo_lat, 0.5)
    );
    println!(
        "| p99 at half the peak rate (ms) | {:.2} | {:.2} | | <= 5 ms |",
        percentile(&ours_lat, 0.99),
        percentile(&echo_lat, 0.99)
    );
    println!("| samples | {} | {} | | |", ours_lat.len(), echo_lat.len());
    println!();
    println!(
        "Store: {total} tasks ({} of the reading owner), written in {fill_seconds:.1} s; calls one at a time:",
        my_ids.len()
    );
    println!();
    println!("| sequential call | p50 (ms) | p99 (ms) | samples |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in [
        ("bare tonic echo", &echo_seq),
        ("GetTask", &get_seq),
        ("ListTasks, 10 per page", &list_seq),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {} |",
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            samples.len()
        );
    }
    if std::env::var("BENCH_VERBOSE").is_ok() {
        for p in [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            println!(
                "p{p}: ours {:.2} ms, echo {:.2} ms",
                percentile(&ours_lat, p),
                percentile(&echo_lat, p)
            );
        }
    }
}
