//! Hardening (issue 8). One user's values can never stop the service for everyone: a node
//! output nested past `limits.max_value_depth` (custom code, a loop's iterations, a remote API's
//! body) fails its step, the execution finishes as failed, and every other user goes on writing,
//! also after a restart and after a kill in the middle of such a run.

use std::time::{Duration, Instant};

use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;
use tonic::transport::Channel;

use crate::engine_crash::{connect, free_port, start};
use crate::support::{
    TestServer, User, code_node, edge, random_u64, replay, rest_node, run_blocking,
    server_allowing_loopback, simple_task, task_of,
};
use crate::web;

/// What the reproduction runs: a value nested 124 levels deep.
const DEEP_CODE: &str = "let v = 1; for (let i = 0; i < 124; i++) v = [v]; return v;";

fn loop_node(id: &str, over: &str, source: &str) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: pb::NodeType::Loop as i32,
        task_type: Some(pb::task_node::TaskType::Loop(pb::LoopNode {
            config: Some(pb::loop_node::Config {
                input_variable: format!("{over}.data"),
                iter_val: "item".into(),
                iter_key: "index".into(),
                execution_mode: pb::ExecutionMode::Sequential as i32,
                iteration_timeout: 1000,
            }),
            runner: Some(pb::loop_node::Runner::CustomCode(pb::CustomCodeNode {
                config: Some(pb::custom_code_node::Config {
                    lang: 1,
                    source: source.into(),
                }),
            })),
        })),
    }
}

/// Creates the task and runs it once (blocking): the step of `node_id` must have failed on the
/// depth bound and the execution with it.
async fn assert_fails_on_depth(
    c: &mut AggregatorClient<Channel>,
    user: &User,
    request: pb::CreateTaskReq,
    node_id: &str,
) -> anyhow::Result<String> {
    let id = c.create_task(user.req(request)).await?.into_inner().id;
    let run = run_blocking(c, user, &id).await?;
    // The step failed; the trigger step did not: a partial success, as the original has it.
    assert_eq!(
        run.status,
        pb::ExecutionStatus::PartialSuccess as i32,
        "{run:?}"
    );
    let execution = c
        .get_execution(user.req(pb::ExecutionReq {
            task_id: id.clone(),
            execution_id: run.execution_id.clone(),
        }))
        .await?
        .into_inner();
    let step = execution
        .steps
        .iter()
        .find(|s| s.id == node_id)
        .expect("the deep node's step is recorded");
    assert!(!step.success);
    assert!(
        step.error.contains("levels deep, more than the limit of"),
        "{}",
        step.error
    );
    Ok(id)
}

/// Another user can still create and run a task: the store takes writes.
async fn others_still_write(server: &TestServer) -> anyhow::Result<()> {
    let mut c = server.client().await?;
    let other = User::sign_in(&mut c).await?;
    let wallet = other.wallet(&mut c).await?;
    let task = task_of(
        "fine",
        &wallet,
        vec![code_node("ok", "return {fine: true};")],
        None,
    );
    let id = c.create_task(other.req(task)).await?.into_inner().id;
    let run = run_blocking(&mut c, &other, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    let up = reqwest::get(format!("{}/up", server.http_url())).await?;
    assert_eq!(up.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_deep_value_from_code_a_loop_or_a_remote_api_fails_its_step_and_poisons_nothing()
-> anyhow::Result<()> {
    let web = web::start(None).await?;
    let mut server = server_allowing_loopback().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;

    let mut tasks = Vec::new();
    let code = task_of(
        "deep code",
        &wallet,
        vec![code_node("deep", DEEP_CODE)],
        None,
    );
    tasks.push(assert_fails_on_depth(&mut c, &user, code, "deep").await?);

    let looped = task_of(
        "deep loop",
        &wallet,
        vec![
            code_node("items", "return [1, 2, 3];"),
            loop_node("each", "items", DEEP_CODE),
        ],
        Some(vec![edge("trigger1", "items"), edge("items", "each")]),
    );
    tasks.push(assert_fails_on_depth(&mut c, &user, looped, "each").await?);

    let remote = task_of(
        "deep api",
        &wallet,
        vec![rest_node("api", "GET", &web.url("/deep/125"), "")],
        None,
    );
    tasks.push(assert_fails_on_depth(&mut c, &user, remote, "api").await?);

    others_still_write(&server).await?;
    // The same after a restart: nothing is resumed into a refusal, nothing is poisoned.
    server.restart().await?;
    others_still_write(&server).await?;
    let mut c = server.client().await?;
    for id in &tasks {
        let listed = c
            .list_executions(user.req(pb::ListExecutionsReq {
                task_ids: vec![id.clone()],
                ..Default::default()
            }))
            .await?
            .into_inner();
        assert_eq!(listed.items.len(), 1);
        assert_eq!(
            listed.items[0].status,
            pb::ExecutionStatus::PartialSuccess as i32,
            "{:?}",
            listed.items[0]
        );
    }
    let data = server.config.data_dir.clone();
    server.stop().await?;
    let (passed, out) = replay(&data, &["verify"])?;
    assert!(passed, "{out}");
    let (passed, out) = replay(&data, &["diff"])?;
    assert!(passed, "{out}");
    Ok(())
}

#[tokio::test]
async fn trigger_data_past_the_bounds_is_an_invalid_request() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let id = c
        .create_task(user.req(simple_task("data", &wallet)))
        .await?
        .into_inner()
        .id;
    let mut deep = serde_json::json!(1);
    for _ in 0..40 {
        deep = serde_json::json!([deep]);
    }
    let err = c
        .trigger_task(user.req(pb::TriggerTaskReq {
            task_id: id,
            trigger_type: pb::TriggerType::Manual as i32,
            trigger_output: Some(pb::trigger_task_req::TriggerOutput::ManualTrigger(
                pb::manual_trigger::Output {
                    data: Some(aggregator::pb::convert::value_from_json(&deep)),
                },
            )),
            is_blocking: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("levels deep"), "{}", err.message());
    others_still_write(&server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_before_its_deep_value_finishes_failed_when_resumed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let http = format!("127.0.0.1:{}", free_port()?);
    let config_path = dir.path().join("aggregator.yaml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir: {data}\nkeys_dir: {keys}\ngrpc:\n  listen: {grpc}\nhttp:\n  listen: {http}\n",
            data = dir.path().join("data").display(),
            keys = dir.path().join("keys").display(),
        ),
    )?;
    let mut process = start(&config_path, &grpc)?;
    let mut c = connect(&process).await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    // Busy for a while, so that the kill lands while the run is in flight.
    let slow_then_deep =
        format!("const until = Date.now() + 1500; while (Date.now() < until) {{}} {DEEP_CODE}");
    let id = c
        .create_task(user.req(task_of(
            "slow deep",
            &wallet,
            vec![code_node("deep", &slow_then_deep)],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let fired = c
        .trigger_task(user.req(pb::TriggerTaskReq {
            task_id: id.clone(),
            trigger_type: pb::TriggerType::Manual as i32,
            trigger_output: Some(pb::trigger_task_req::TriggerOutput::ManualTrigger(
                pb::manual_trigger::Output {
                    data: Some(aggregator::pb::convert::value_from_json(
                        &serde_json::json!({"n": random_u64() % 1000}),
                    )),
                },
            )),
            is_blocking: false,
            ..Default::default()
        }))
        .await?
        .into_inner();
    tokio::time::sleep(Duration::from_millis(400)).await;
    process.child.kill()?;
    process.child.wait()?;

    let mut process = start(&config_path, &grpc)?;
    let mut c = connect(&process).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = c
            .get_execution_status(user.req(pb::ExecutionReq {
                task_id: id.clone(),
                execution_id: fired.execution_id.clone(),
            }))
            .await?
            .into_inner()
            .status;
        if status != pb::ExecutionStatus::Pending as i32 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Finished, with its step failed (a partial success: the trigger step succeeded), or failed
    // whole when the resumed run could not record its step.
    assert!(
        status == pb::ExecutionStatus::Failed as i32
            || status == pb::ExecutionStatus::PartialSuccess as i32,
        "{status}"
    );
    let up = reqwest::get(format!("http://{http}/up")).await?;
    assert_eq!(up.status(), 200);
    let again = c.create_task(user.req(simple_task("after", &wallet))).await;
    assert!(again.is_ok(), "{again:?}");
    process.child.kill()?;
    process.child.wait()?;
    Ok(())
}

/// Read-only keys read; running code with the owner's secrets, or a request, is a change.
#[tokio::test]
async fn read_only_keys_cannot_run_nodes_triggers_or_simulations() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let key = crate::api_keys::mint(&server, "readonly", &user.address())?;
    let node = code_node("peek", "return apContext.configVars;");
    let task = task_of("ro", &wallet, vec![node.clone()], None);
    let refusals = [
        c.run_node_with_inputs(crate::support::with_key(
            pb::RunNodeWithInputsReq {
                node: Some(node),
                ..Default::default()
            },
            &key,
        ))
        .await
        .map(|_| ()),
        c.simulate_task(crate::support::with_key(
            pb::SimulateTaskReq {
                trigger: task.trigger.clone(),
                nodes: task.nodes.clone(),
                edges: task.edges.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .map(|_| ()),
        c.run_trigger(crate::support::with_key(
            pb::RunTriggerReq {
                trigger: task.trigger.clone(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .map(|_| ()),
    ];
    for refused in refusals {
        let err = refused.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    }
    Ok(())
}

/// At most `grpc.max_connections` connections; one that stays silent past the handshake timeout
/// is closed; the service still answers afterwards.
#[tokio::test]
async fn connections_are_bounded_and_silent_ones_are_closed() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.grpc.max_connections = 4;
    config.grpc.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(dir, config).await?;
    let addr = server.running().grpc;
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(tokio::net::TcpStream::connect(addr).await?);
    }
    // Every silent connection ends closed by the server (the two past the cap at once, the
    // others at the handshake timeout): a read sees the end of the stream.
    for mut stream in silent {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    others_still_write(&server).await
}

/// The data directory and everything in it is the owner's alone.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut server = TestServer::start().await?;
    others_still_write(&server).await?;
    let data = server.config.data_dir.clone();
    server.stop().await?;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&data)?, 0o700);
    let mut pending = vec![data];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                assert_eq!(mode(&path)?, 0o700, "{}", path.display());
                pending.push(path);
            } else {
                assert_eq!(mode(&path)?, 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files > 0);
    Ok(())
}

/// Item 4: a step's output is bounded after composition (a loop's array), an execution's steps
/// share one budget (steps past it are not run), and a list of large executions is cut into
/// pages that fit a message instead of failing.
#[tokio::test]
async fn executions_stay_bounded_and_listable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.limits.max_output_bytes = 64 * 1024;
    config.limits.max_execution_bytes = 512 * 1024;
    config.grpc.max_message_bytes = 1024 * 1024;
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;

    let looped = task_of(
        "big loop",
        &wallet,
        vec![
            code_node("items", "return Array.from({length: 40}, (_, i) => i);"),
            loop_node("each", "items", "return 'x'.repeat(2000);"),
        ],
        Some(vec![edge("trigger1", "items"), edge("items", "each")]),
    );
    let id = c.create_task(user.req(looped)).await?.into_inner().id;
    let run = run_blocking(&mut c, &user, &id).await?;
    let step = run.steps.iter().find(|s| s.id == "each").unwrap();
    assert!(!step.success);
    assert!(
        step.error.contains("bytes encoded, more than the limit"),
        "{}",
        step.error
    );

    // Twelve steps of 60 KB against a 512 KB budget.
    let nodes: Vec<_> = (0..12)
        .map(|i| code_node(&format!("n{i}"), "return 'y'.repeat(60000);"))
        .collect();
    let id = c
        .create_task(user.req(task_of("big steps", &wallet, nodes, None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    // Some steps ran, some did not fit: a partial success, as the original reports it.
    assert_eq!(run.status, pb::ExecutionStatus::PartialSuccess as i32);
    let ran = run.steps.iter().filter(|s| s.success).count();
    assert!(
        (6..12).contains(&ran),
        "{ran} steps ran: {:?}",
        run.steps
            .iter()
            .map(|s| (&s.id, s.success, &s.error))
            .collect::<Vec<_>>()
    );
    assert!(
        run.steps
            .iter()
            .any(|s| s.error.contains("past its limit of 524288 bytes")),
        "{:?}",
        run.steps.iter().map(|s| &s.error).collect::<Vec<_>>()
    );
    assert!(run.steps.iter().any(|s| s.error.starts_with("not run")));
    for _ in 0..3 {
        run_blocking(&mut c, &user, &id).await?;
    }
    // Four executions of ~512 KB do not fit one 1 MiB answer: pages, all of them reachable.
    let mut seen = 0;
    let mut after = String::new();
    loop {
        let page = c
            .list_executions(user.req(pb::ListExecutionsReq {
                task_ids: vec![id.clone()],
                after: after.clone(),
                limit: 10,
                ..Default::default()
            }))
            .await?
            .into_inner();
        assert!(!page.items.is_empty());
        seen += page.items.len();
        let info = page.page_info.unwrap();
        if !info.has_next_page {
            break;
        }
        assert!(page.items.len() < 4);
        after = info.end_cursor;
    }
    assert_eq!(seen, 4);
    Ok(())
}

fn cron_task(wallet: &str, schedules: Vec<String>) -> pb::CreateTaskReq {
    let mut request = task_of("cron", wallet, vec![code_node("n", "return 1;")], None);
    request.trigger = Some(pb::TaskTrigger {
        name: "cronTrigger".into(),
        r#type: pb::TriggerType::Cron as i32,
        id: "trigger1".into(),
        trigger_type: Some(pb::task_trigger::TriggerType::Cron(pb::CronTrigger {
            config: Some(pb::cron_trigger::Config { schedules }),
        })),
    });
    request
}

/// Item 3: a definition's lists are bounded (60 000 schedules used to stall every caller for
/// seconds, and every assigned operator at each tick), and repeated schedules are kept once.
#[tokio::test]
async fn long_lists_are_refused_and_repeated_schedules_kept_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let many: Vec<String> = (0..60_000)
        .map(|i| format!("{} {} {} * *", i % 60, (i / 60) % 24, (i / 1440) % 28 + 1))
        .collect();
    let err = c
        .create_task(user.req(cron_task(&wallet, many)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("more than the limit of 256"),
        "{}",
        err.message()
    );

    let twice = vec![
        "*/5 * * * *".to_owned(),
        "*/5 * * * *".to_owned(),
        "@every 30s".into(),
    ];
    let id = c
        .create_task(user.req(cron_task(&wallet, twice)))
        .await?
        .into_inner()
        .id;
    let task = c.get_task(user.req(pb::IdReq { id })).await?.into_inner();
    let Some(pb::task_trigger::TriggerType::Cron(cron)) = task.trigger.and_then(|t| t.trigger_type)
    else {
        panic!("a cron trigger");
    };
    assert_eq!(
        cron.config.unwrap().schedules,
        vec!["*/5 * * * *".to_owned(), "@every 30s".to_owned()]
    );
    Ok(())
}

/// Item 2: a secret used in a REST header and query string, a GraphQL variable, and returned by
/// custom code, never appears in clear in any response or anywhere in the data directory.
#[tokio::test]
async fn secrets_never_leave_a_run_in_clear() -> anyhow::Result<()> {
    use base64::Engine as _;
    let web = web::start(None).await?;
    let mut server = server_allowing_loopback().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let secret = format!("sk-{:016x}{:016x}/x+y", random_u64(), random_u64());
    c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
        name: "api_key".into(),
        secret: secret.clone(),
        ..Default::default()
    }))
    .await?;
    let spellings = [
        secret.clone(),
        base64::engine::general_purpose::STANDARD.encode(&secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret),
        secret.replace('/', "%2F").replace('+', "%2B"),
    ];

    let mut rest = rest_node(
        "api",
        "GET",
        &web.url("/echo-request?key={{apContext.configVars.api_key}}"),
        "",
    );
    if let Some(pb::task_node::TaskType::RestApi(r)) = &mut rest.task_type {
        r.config.as_mut().unwrap().headers.insert(
            "authorization".into(),
            "Bearer {{apContext.configVars.api_key}}".into(),
        );
    }
    let graphql = pb::TaskNode {
        id: "gql".into(),
        name: "gql".into(),
        r#type: pb::NodeType::GraphqlQuery as i32,
        task_type: Some(pb::task_node::TaskType::GraphqlQuery(
            pb::GraphQlQueryNode {
                config: Some(pb::graph_ql_query_node::Config {
                    url: web.url("/graphql"),
                    query: "query Q($id: ID!) { item(id: $id) { name } }".into(),
                    variables: [(
                        "id".to_owned(),
                        "{{apContext.configVars.api_key}}".to_owned(),
                    )]
                    .into_iter()
                    .collect(),
                }),
            },
        )),
    };
    let code = code_node(
        "code",
        "return { all: apContext.configVars, again: apContext.configVars.api_key };",
    );
    let id = c
        .create_task(user.req(task_of(
            "secret use",
            &wallet,
            vec![rest.clone(), graphql, code],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    assert!(run.steps.iter().all(|s| s.success), "{:?}", run.steps);
    let mut answers = vec![format!("{run:?}")];
    answers.push(format!(
        "{:?}",
        c.get_execution(user.req(pb::ExecutionReq {
            task_id: id.clone(),
            execution_id: run.execution_id.clone(),
        }))
        .await?
        .into_inner()
    ));
    answers.push(format!(
        "{:?}",
        c.list_executions(user.req(pb::ListExecutionsReq {
            task_ids: vec![id.clone()],
            ..Default::default()
        }))
        .await?
        .into_inner()
    ));
    answers.push(format!(
        "{:?}",
        c.run_node_with_inputs(user.req(pb::RunNodeWithInputsReq {
            node: Some(rest),
            ..Default::default()
        }))
        .await?
        .into_inner()
    ));
    // The echo did carry the secret: the mask stands where it was.
    assert!(answers[0].contains("Bearer ***"), "{}", answers[0]);
    for answer in &answers {
        for spelling in &spellings {
            assert!(
                !answer.contains(spelling.as_str()),
                "{spelling} in {answer}"
            );
        }
    }

    let data = server.config.data_dir.clone();
    server.stop().await?;
    let (passed, export) = replay(&data, &["export", "--format", "jsonl"])?;
    assert!(passed);
    assert!(
        export.contains("{{apContext.configVars.api_key}}"),
        "configs are recorded as written"
    );
    let mut pending = vec![data];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path)?;
            for spelling in &spellings {
                assert!(
                    !bytes
                        .windows(spelling.len())
                        .any(|w| w == spelling.as_bytes()),
                    "{spelling} in {}",
                    path.display()
                );
            }
        }
    }
    for spelling in &spellings {
        assert!(
            !export.contains(spelling.as_str()),
            "{spelling} in the export"
        );
    }
    Ok(())
}

/// Sends bytes as they are, to see what the server makes of a message that is not protobuf.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = prost::bytes::Buf::copy_to_bytes(buf, prost::bytes::Buf::remaining(buf));
        Ok(Some(bytes.to_vec()))
    }
}

/// A request that is not protobuf is the caller's mistake (INVALID_ARGUMENT, with its error
/// code), not the server's (INTERNAL); the server goes on serving.
#[tokio::test]
async fn a_malformed_message_is_an_invalid_argument() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let user = User::sign_in(&mut server.client().await?).await?;
    let channel = Channel::from_shared(server.grpc_url())?.connect().await?;
    for (method, bytes) in [
        // field 1 (the id) says 127 bytes follow; none do
        ("/aggregator.Aggregator/GetTask", vec![0x0a, 0x7f]),
        // a varint that never ends
        ("/aggregator.Aggregator/ListTasks", vec![0x08; 12]),
        ("/aggregator.Node/Ping", vec![0x0a, 0x7f]),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await?;
        let status = grpc
            .unary(
                user.req(bytes),
                tonic::codegen::http::uri::PathAndQuery::from_static(method),
                RawCodec,
            )
            .await
            .expect_err("bytes that are not a message are refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{method}: {status:?}"
        );
        assert!(
            status
                .message()
                .starts_with("the message is not valid protobuf"),
            "{status:?}"
        );
        assert_eq!(
            status
                .metadata()
                .get("x-error-code")
                .and_then(|v| v.to_str().ok()),
            Some("INVALID_REQUEST")
        );
    }
    others_still_write(&server).await
}

/// Counts `Ok`s, and checks every refusal is RESOURCE_EXHAUSTED.
fn granted<T>(answers: Vec<Result<T, tonic::Status>>) -> usize {
    answers
        .into_iter()
        .filter(|answer| match answer {
            Ok(_) => true,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                false
            }
        })
        .count()
}

/// Concurrent creations of one owner never pass a quota together: tasks, secrets and wallets
/// (the review's 40 concurrent CreateSecret at 190 of 200 made 230).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_stay_within_the_quotas() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.limits.tasks_per_owner = 3;
    config.limits.secrets_per_owner = 4;
    config.wallet.max_per_owner = 5;
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;

    let secrets = futures_util::future::join_all((0..24).map(|i| {
        let mut c = c.clone();
        let req = user.req(pb::CreateOrUpdateSecretReq {
            name: format!("secret_{i}"),
            secret: "value".into(),
            ..Default::default()
        });
        async move { c.create_secret(req).await }
    }))
    .await;
    assert_eq!(granted(secrets), 4, "secrets");

    let tasks = futures_util::future::join_all((0..16).map(|i| {
        let mut c = c.clone();
        let req = user.req(simple_task(&format!("task {i}"), &wallet));
        async move { c.create_task(req).await }
    }))
    .await;
    assert_eq!(granted(tasks), 3, "tasks");

    let wallets = futures_util::future::join_all((1..=20).map(|salt| {
        let mut c = c.clone();
        let req = user.req(pb::GetWalletReq {
            salt: salt.to_string(),
            ..Default::default()
        });
        async move { c.get_wallet(req).await }
    }))
    .await;
    let registered = granted(wallets);
    let listed = c
        .list_wallets(user.req(pb::ListWalletReq::default()))
        .await?
        .into_inner()
        .items
        .len();
    // The salt-0 wallet registered by `wallet()` counts against the limit too.
    assert_eq!((registered, listed), (4, 5), "wallets");
    Ok(())
}

/// A task's workflow secrets go with it, in the same command; the owner's other secrets stay,
/// and the secret can no longer be deleted by hand.
#[tokio::test]
async fn a_deleted_tasks_workflow_secrets_go_with_it() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let doomed = c
        .create_task(user.req(simple_task("doomed", &wallet)))
        .await?
        .into_inner()
        .id;
    let kept = c
        .create_task(user.req(simple_task("kept", &wallet)))
        .await?
        .into_inner()
        .id;
    for (name, workflow_id) in [
        ("api_key", doomed.as_str()),
        ("token", doomed.as_str()),
        ("api_key", kept.as_str()),
        ("api_key", ""),
    ] {
        c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
            name: name.into(),
            secret: "value".into(),
            workflow_id: workflow_id.into(),
            ..Default::default()
        }))
        .await?;
    }
    let deleted = c
        .delete_task(user.req(pb::IdReq { id: doomed.clone() }))
        .await?;
    assert!(deleted.into_inner().success);
    let mut left: Vec<(String, String)> = c
        .list_secrets(user.req(pb::ListSecretsReq::default()))
        .await?
        .into_inner()
        .items
        .into_iter()
        .map(|s| (s.name, s.workflow_id))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            ("api_key".to_owned(), String::new()),
            ("api_key".to_owned(), kept.clone())
        ]
    );
    let gone = c
        .delete_secret(user.req(pb::DeleteSecretReq {
            name: "token".into(),
            workflow_id: doomed.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("the secret went with its task");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    Ok(())
}

/// Busy JavaScript: about `ms` of a worker's time.
fn busy_code(ms: u64) -> String {
    format!("const end = Date.now() + {ms}; while (Date.now() < end) {{}} return 1;")
}

/// A server with `tweak` applied to its engine config, and a signed-in user with their wallet.
async fn server_and_user(
    tweak: impl FnOnce(&mut aggregator::config::EngineConfig),
) -> anyhow::Result<(TestServer, AggregatorClient<Channel>, User, String)> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    tweak(&mut config.engine);
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    Ok((server, c, user, wallet))
}

/// Creates `user`'s task of one custom-code node running `source`; returns its id.
async fn code_task(
    c: &mut AggregatorClient<Channel>,
    user: &User,
    wallet: &str,
    name: &str,
    source: &str,
) -> anyhow::Result<String> {
    let task = task_of(name, wallet, vec![code_node("code", source)], None);
    Ok(c.create_task(user.req(task)).await?.into_inner().id)
}

/// One user's busy scripts do not hold the JavaScript workers while another user's trivial run
/// waits: the workers serve owners in turn (the review saw a trivial run wait ~9.7 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_busy_scripts_do_not_hold_the_workers_for_another() -> anyhow::Result<()> {
    let (_server, mut c, busy, busy_wallet) = server_and_user(|e| e.js_threads = 1).await?;
    let other = User::sign_in(&mut c).await?;
    let other_wallet = other.wallet(&mut c).await?;
    let mut busy_tasks = Vec::new();
    for i in 0..6 {
        let name = format!("busy {i}");
        busy_tasks.push(code_task(&mut c, &busy, &busy_wallet, &name, &busy_code(400)).await?);
    }
    let trivial = code_task(&mut c, &other, &other_wallet, "trivial", "return 1;").await?;

    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    for id in busy_tasks {
        let (mut c, finished) = (c.clone(), finished.clone());
        let user = User {
            signer: busy.signer.clone(),
            token: busy.token.clone(),
        };
        runs.push(tokio::spawn(async move {
            let run = run_blocking(&mut c, &user, &id).await;
            finished.lock().unwrap().push("busy");
            run.map(|_| ())
        }));
    }
    // Sequencing only (no assertion on time): the busy runs are queued first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = run_blocking(&mut c, &other, &trivial).await?;
    finished.lock().unwrap().push("trivial");
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    for run in runs {
        run.await??;
    }
    let order = finished.lock().unwrap().clone();
    let at = order.iter().position(|w| *w == "trivial").unwrap();
    assert!(
        at <= 2,
        "the trivial run finished behind {at} busy ones: {order:?}"
    );
    Ok(())
}

/// Each owner has a budget of JavaScript time per minute: past it their scripts fail at once
/// with a message that says so, and another owner's still run.
#[tokio::test]
async fn an_owner_past_their_javascript_budget_is_stopped_and_others_are_not() -> anyhow::Result<()>
{
    let (server, mut c, busy, busy_wallet) =
        server_and_user(|e| e.js_owner_budget = Duration::from_millis(500)).await?;
    let spin = code_task(&mut c, &busy, &busy_wallet, "spin", &busy_code(300)).await?;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let run = run_blocking(&mut c, &busy, &spin).await?;
        statuses.push(run.status);
        last = Some(run);
    }
    let success = pb::ExecutionStatus::Success as i32;
    assert_eq!(statuses[..2], [success, success]);
    assert_ne!(statuses[2], success, "the third run's script did not run");
    let last = last.unwrap();
    assert!(
        last.steps
            .iter()
            .any(|s| s.error.contains("JavaScript time")),
        "{last:?}"
    );
    others_still_write(&server).await
}

/// One owner's queued and running executions are bounded: a firing beyond the bound is refused
/// with RESOURCE_EXHAUSTED before anything is recorded; another owner still fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_queued_executions_are_bounded() -> anyhow::Result<()> {
    let (server, mut c, busy, busy_wallet) = server_and_user(|e| e.owner_pending = 2).await?;
    let slow = code_task(&mut c, &busy, &busy_wallet, "slow", &busy_code(1500)).await?;
    let fire = |task_id: &str| pb::TriggerTaskReq {
        task_id: task_id.into(),
        trigger_type: pb::TriggerType::Manual as i32,
        trigger_output: Some(pb::trigger_task_req::TriggerOutput::ManualTrigger(
            pb::manual_trigger::Output {
                data: Some(aggregator::pb::convert::value_from_json(
                    &serde_json::json!({"n": random_u64()}),
                )),
            },
        )),
        is_blocking: false,
        ..Default::default()
    };
    c.trigger_task(busy.req(fire(&slow))).await?;
    c.trigger_task(busy.req(fire(&slow))).await?;
    let refused = c
        .trigger_task(busy.req(fire(&slow)))
        .await
        .expect_err("a third while two are pending");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("queued or running"),
        "{refused:?}"
    );
    others_still_write(&server).await
}
