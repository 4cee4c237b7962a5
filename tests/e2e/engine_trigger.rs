//! `TriggerTask` and the firing rules: blocking and async runs, polling, dedup of client retries
//! and of firing keys (also after a restart), refusals, `max_execution`, runs of one task in order.

use std::time::Duration;

use aggregator::engine::{FireRequest, Fired};
use aggregator::pb;
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;
use tonic::Code;

use crate::support::{TestServer, User, code_node, run_blocking, step_output, task_of};

fn trigger_req(task: &str, blocking: bool) -> pb::TriggerTaskReq {
    pb::TriggerTaskReq {
        task_id: task.into(),
        trigger_type: pb::TriggerType::Manual as i32,
        is_blocking: blocking,
        ..Default::default()
    }
}

#[tokio::test]
async fn blocking_async_polling_and_the_read_side() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let id = c
        .create_task(user.req(task_of(
            "runs",
            &wallet,
            vec![code_node("code", "return 42;")],
            None,
        )))
        .await?
        .into_inner()
        .id;

    let blocking = run_blocking(&mut c, &user, &id).await?;
    assert_eq!(blocking.status, pb::ExecutionStatus::Success as i32);
    assert_eq!(step_output(&blocking.steps[1]), serde_json::json!(42));
    assert!(blocking.start_at.is_some() && blocking.end_at.is_some());

    let pending = c
        .trigger_task(user.req(trigger_req(&id, false)))
        .await?
        .into_inner();
    assert_eq!(pending.workflow_id, id);
    assert!(!pending.execution_id.is_empty());
    let status = loop {
        let status = c
            .get_execution_status(user.req(pb::ExecutionReq {
                task_id: id.clone(),
                execution_id: pending.execution_id.clone(),
            }))
            .await?
            .into_inner()
            .status;
        if status != pb::ExecutionStatus::Pending as i32 {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, pb::ExecutionStatus::Success as i32);
    let execution = c
        .get_execution(user.req(pb::ExecutionReq {
            task_id: id.clone(),
            execution_id: pending.execution_id.clone(),
        }))
        .await?
        .into_inner();
    assert_eq!(execution.index, 1);
    assert_eq!(execution.steps.len(), 2);

    let list = c
        .list_executions(user.req(pb::ListExecutionsReq {
            task_ids: vec![id.clone()],
            limit: 1,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(list.items[0].id, pending.execution_id, "newest first");
    assert!(list.page_info.unwrap().has_next_page);
    let task = c
        .get_task(user.req(pb::IdReq { id: id.clone() }))
        .await?
        .into_inner();
    assert_eq!(task.execution_count, 2);
    assert!(task.last_ran_at > 0);
    let stats = c
        .get_execution_stats(user.req(pb::GetExecutionStatsReq {
            workflow_ids: vec![id.clone()],
            days: 1,
        }))
        .await?
        .into_inner();
    assert_eq!((stats.total, stats.succeeded, stats.failed), (2, 2, 0));
    Ok(())
}

#[tokio::test]
async fn retries_and_keys_run_once_also_after_a_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let id = c
        .create_task(user.req(task_of(
            "once",
            &wallet,
            vec![code_node("code", "return 1;")],
            None,
        )))
        .await?
        .into_inner()
        .id;

    // The same request twice (a client retry): one execution.
    let first = c
        .trigger_task(user.req(trigger_req(&id, true)))
        .await?
        .into_inner();
    let again = c
        .trigger_task(user.req(trigger_req(&id, true)))
        .await?
        .into_inner();
    assert_eq!(first.execution_id, again.execution_id);
    assert_eq!(
        again.status,
        pb::ExecutionStatus::Success as i32,
        "a repeat answers the first run's result"
    );

    // An explicit idempotency key, before and after a restart.
    let keyed = || {
        let mut request = user.req(trigger_req(&id, false));
        request
            .metadata_mut()
            .insert("idempotency-key", "order-1".parse().unwrap());
        request
    };
    let keyed_first = c.trigger_task(keyed()).await?.into_inner().execution_id;
    server.restart().await?;
    let mut c = server.client().await?;
    let keyed_again = c.trigger_task(keyed()).await?.into_inner().execution_id;
    assert_eq!(keyed_first, keyed_again);

    // An operator-style firing key through the engine's entry point: once, also after a restart;
    // a client's firing of the same block does not swallow it.
    let fire = |key: &str, source: FiringSource| FireRequest {
        task_id: id.clone(),
        actor: "0xoperators".into(),
        firing: Firing {
            dedup_key: key.into(),
            source,
            kind: TriggerKind::Block,
            output: Some(serde_json::json!({"blockNumber": 100})),
            input: Default::default(),
        },
        window_ms: None,
    };
    let operators = FiringSource::Operators {
        attestation: "01TEST".into(),
    };
    let engine = server.running().app.engine.clone();
    let block = format!("{id}:100");
    let one = engine.fire(fire(&block, operators.clone())).await?;
    assert!(matches!(one, Fired::Queued { .. }));
    let two = engine.fire(fire(&block, operators.clone())).await?;
    assert_eq!(
        two,
        Fired::Deduplicated {
            execution_id: one.execution_id().to_owned()
        }
    );
    drop(engine); // it holds the store, which the restart reopens
    server.restart().await?;
    let engine = server.running().app.engine.clone();
    let three = engine.fire(fire(&block, operators)).await?;
    assert_eq!(three.execution_id(), one.execution_id());

    let mut c = server.client().await?;
    let task = c
        .get_task(user.req(pb::IdReq { id: id.clone() }))
        .await?
        .into_inner();
    assert_eq!(
        task.execution_count, 3,
        "one per distinct firing: the retried request, the key, the block"
    );
    Ok(())
}

#[tokio::test]
async fn refusals_and_max_execution() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let mut request = task_of("twice", &wallet, vec![code_node("code", "return 1;")], None);
    request.max_execution = 2;
    let id = c.create_task(user.req(request)).await?.into_inner().id;
    for _ in 0..2 {
        // Distinct requests (the trigger data differs), so no dedup.
        run_blocking(&mut c, &user, &id).await?;
    }
    let task = c
        .get_task(user.req(pb::IdReq { id: id.clone() }))
        .await?
        .into_inner();
    assert_eq!(task.status, pb::TaskStatus::Completed as i32);
    let err = run_blocking(&mut c, &user, &id)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("exhausted"), "{err:?}");

    let other = c
        .create_task(user.req(task_of(
            "off",
            &wallet,
            vec![code_node("code", "return 1;")],
            None,
        )))
        .await?
        .into_inner()
        .id;
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: other.clone(),
        enabled: false,
    }))
    .await?;
    let err = run_blocking(&mut c, &user, &other)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("disabled"), "{err:?}");
    c.cancel_task(user.req(pb::IdReq { id: other.clone() }))
        .await?;
    let err = run_blocking(&mut c, &user, &other)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert!(err.message().contains("cancelled"), "{err:?}");
    let err = run_blocking(&mut c, &user, &ulid::Ulid::generate().to_string())
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert_eq!(err.code(), Code::NotFound);

    let mut later = task_of("later", &wallet, vec![code_node("code", "return 1;")], None);
    later.start_at = aggregator::clock::now_ms_i64() + 3_600_000;
    let later = c.create_task(user.req(later)).await?.into_inner().id;
    let err = run_blocking(&mut c, &user, &later)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    assert!(err.message().contains("not_started"), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn runs_of_one_task_go_one_at_a_time_in_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let source = "const t = Date.now(); while (Date.now() - t < 30) {} return context.index;";
    let id = c
        .create_task(user.req(task_of(
            "serial",
            &wallet,
            vec![code_node("code", source)],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let mut executions = Vec::new();
    for i in 0..6 {
        let mut request = user.req(trigger_req(&id, false));
        request
            .metadata_mut()
            .insert("idempotency-key", format!("k{i}").parse().unwrap());
        executions.push(c.trigger_task(request).await?.into_inner().execution_id);
    }
    let engine = server.running().app.engine.clone();
    let mut windows = Vec::new();
    for execution in &executions {
        let row = engine.wait(&id, execution).await?;
        windows.push((row.index, row.start_at, row.end_at));
    }
    for pair in windows.windows(2) {
        let ((i, _, end), (j, start, _)) = (pair[0], pair[1]);
        assert_eq!(j, i + 1);
        assert!(
            start >= end,
            "run {j} started at {start} before run {i} ended at {end}"
        );
    }
    Ok(())
}

/// Tasks past their `expired_at` are completed by the sweep, which reads only the tasks due
/// (the expiry index): one that expires later, one that never does and a disabled one stay.
#[tokio::test]
async fn the_expiry_sweep_completes_what_expired_and_nothing_else() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.engine.expiry_sweep = Duration::from_secs(1);
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let now = aggregator::clock::now_ms_i64();
    let create = |name: &str, expired_at: i64| {
        let mut request = task_of(name, &wallet, vec![code_node("code", "return 1;")], None);
        request.expired_at = expired_at;
        let request = user.req(request);
        let mut c = c.clone();
        async move { anyhow::Ok(c.create_task(request).await?.into_inner().id) }
    };
    let soon = create("soon", now + 1_500).await?;
    let later = create("later", now + 3_600_000).await?;
    let never = create("never", 0).await?;
    let paused = create("paused", now + 1_500).await?;
    c.set_task_enabled(user.req(pb::SetTaskEnabledReq {
        id: paused.clone(),
        enabled: false,
    }))
    .await?;

    let status = |id: String| {
        let mut c = c.clone();
        let request = user.req(pb::IdReq { id });
        async move { anyhow::Ok(c.get_task(request).await?.into_inner().status) }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(soon.clone()).await? != pb::TaskStatus::Completed as i32 {
        assert!(tokio::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(later).await?, pb::TaskStatus::Enabled as i32);
    assert_eq!(status(never).await?, pb::TaskStatus::Enabled as i32);
    assert_eq!(status(paused).await?, pb::TaskStatus::Disabled as i32);
    Ok(())
}
