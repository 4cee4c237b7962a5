//! The aggregator, a separate process, is SIGKILLed in the middle of executions and started
//! again: every execution ends exactly once, no step with side effects runs twice (a web server
//! counts the requests each step makes), interrupted steps are recorded as failed, and the log
//! verifies and equals a rebuild.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aggregator::pb;
use aggregator::pb::aggregator_client::AggregatorClient;

use crate::support::{User, code_node, random_u64, replay, rest_node, task_of};
use crate::web;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub struct Process {
    pub child: Child,
    pub grpc: String,
}

pub fn start(config: &Path, grpc: &str) -> anyhow::Result<Process> {
    let child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Process {
        child,
        grpc: grpc.to_owned(),
    })
}

pub async fn connect(
    process: &Process,
) -> anyhow::Result<AggregatorClient<tonic::transport::Channel>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match AggregatorClient::connect(format!("http://{}", process.grpc)).await {
            Ok(client) => return Ok(client),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_end_once_and_side_effects_never_repeat_across_sigkill() -> anyhow::Result<()> {
    let web = web::start(None).await?;
    let dir = tempfile::tempdir()?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let config_path = dir.path().join("aggregator.yaml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir: {data}\nkeys_dir: {keys}\ngrpc:\n  listen: {grpc}\nhttp:\n  listen: 127.0.0.1:{http}\nengine:\n  concurrency: 8\n  http:\n    allow: ['127.0.0.0/8']\n",
            data = dir.path().join("data").display(),
            keys = dir.path().join("keys").display(),
            http = free_port()?,
        ),
    )?;

    let mut process = start(&config_path, &grpc)?;
    let mut c = connect(&process).await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    // Two side effects around a slow pure step: a kill lands before, during or after them.
    let nodes = vec![
        rest_node(
            "first",
            "POST",
            &web.url("/count/{{ context.executionId }}-first"),
            "{}",
        ),
        code_node(
            "work",
            "const t = Date.now(); while (Date.now() - t < 80) {} return 1;",
        ),
        rest_node(
            "second",
            "POST",
            &web.url("/count/{{ context.executionId }}-second"),
            "{}",
        ),
    ];
    let edges = vec![
        crate::support::edge("trigger1", "first"),
        crate::support::edge("first", "work"),
        crate::support::edge("work", "second"),
    ];
    let mut tasks = Vec::new();
    for i in 0..6 {
        let request = task_of(
            &format!("crash {i}"),
            &wallet,
            nodes.clone(),
            Some(edges.clone()),
        );
        tasks.push(c.create_task(user.req(request)).await?.into_inner().id);
    }

    let mut executions: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        for task in &tasks {
            for k in 0..3 {
                let mut request = user.req(pb::TriggerTaskReq {
                    task_id: task.clone(),
                    trigger_type: pb::TriggerType::Manual as i32,
                    ..Default::default()
                });
                request
                    .metadata_mut()
                    .insert("idempotency-key", format!("r{round}-{k}").parse()?);
                let id = c.trigger_task(request).await?.into_inner().execution_id;
                executions.push((task.clone(), id));
            }
        }
        tokio::time::sleep(Duration::from_millis(50 + random_u64() % 400)).await;
        process.child.kill()?; // SIGKILL
        process.child.wait()?;
        process = start(&config_path, &grpc)?;
        c = connect(&process).await?;
    }

    // Wait for every execution to end.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (task, execution) in &executions {
        loop {
            let status = c
                .get_execution_status(user.req(pb::ExecutionReq {
                    task_id: task.clone(),
                    execution_id: execution.clone(),
                }))
                .await?
                .into_inner()
                .status;
            if status != pb::ExecutionStatus::Pending as i32 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "execution {execution} never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A graceful stop, so the data directory can be opened here.
    Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()?;
    process.child.wait()?;

    let data = dir.path().join("data");
    let (ok, out) = replay(&data, &["verify"])?;
    anyhow::ensure!(ok, "{out}");
    let (ok, out) = replay(&data, &["diff"])?;
    anyhow::ensure!(ok, "{out}");

    let db = events::open_database(&data)?;
    let log = events::LogKeyspaces::open(&db)?;
    let mut interrupted = 0;
    for (_, execution) in &executions {
        let stream = log.read_stream(&events::stream::execution(execution))?;
        let finished = stream
            .iter()
            .filter(|e| matches!(e.event, events::Event::ExecutionFinished(_)))
            .count();
        anyhow::ensure!(
            finished == 1,
            "execution {execution} finished {finished} times"
        );
        let mut recorded: HashMap<String, usize> = HashMap::new();
        for e in &stream {
            if let events::Event::StepRecorded(r) = &e.event {
                *recorded.entry(r.step.id.clone()).or_default() += 1;
                if r.step.error.starts_with("interrupted") {
                    interrupted += 1;
                }
            }
        }
        for (step, count) in recorded {
            anyhow::ensure!(
                count == 1,
                "step {step} of {execution} recorded {count} times"
            );
        }
    }
    for (key, count) in web.hits.all() {
        anyhow::ensure!(count == 1, "the side effect {key} ran {count} times");
    }
    eprintln!(
        "{} executions over 3 kills, {} side effects, {interrupted} steps recorded as interrupted",
        executions.len(),
        web.hits.all().len()
    );
    Ok(())
}
