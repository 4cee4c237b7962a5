//! Safety of what users run: outbound HTTP never reaches loopback unless the config allow-lists it
//! (checked after DNS resolution and on redirects), and the JavaScript sandbox stops infinite
//! loops and memory bombs, and offers no host module, no file system, no network.

use aggregator::pb;

use crate::support::{
    TestServer, User, code_node, rest_node, run_blocking, server_allowing_loopback, task_of,
};
use crate::web;

async fn run_one(server: &TestServer, node: pb::TaskNode) -> anyhow::Result<pb::execution::Step> {
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let id = c
        .create_task(user.req(task_of("safety", &wallet, vec![node], None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    Ok(run.steps.into_iter().nth(1).unwrap())
}

#[tokio::test]
async fn rest_nodes_cannot_reach_loopback_unless_allowed() -> anyhow::Result<()> {
    let target = web::start(None).await?;
    let redirector = web::start(Some(target.url("/count/redirected"))).await?;
    let server = TestServer::start().await?; // nothing allow-listed
    for url in [
        target.url("/count/direct"),
        format!("http://localhost:{}/count/by-name", target.addr.port()),
        redirector.url("/redirect"),
    ] {
        let step = run_one(&server, rest_node("call", "GET", &url, "")).await?;
        assert!(!step.success, "{url} must be refused");
        assert!(
            step.error.contains("loopback") || step.error.contains("refused"),
            "{url}: {}",
            step.error
        );
    }
    assert!(
        target.hits.all().is_empty(),
        "nothing reached the loopback server: {:?}",
        target.hits.all()
    );
    assert!(redirector.hits.all().is_empty());

    // The same calls go through when loopback is allow-listed.
    let allowed = server_allowing_loopback().await?;
    let step = run_one(
        &allowed,
        rest_node("call", "GET", &target.url("/count/direct"), ""),
    )
    .await?;
    assert!(step.success, "{}", step.error);
    assert_eq!(target.hits.get("direct"), 1);
    let step = run_one(
        &allowed,
        rest_node("call", "GET", &redirector.url("/redirect"), ""),
    )
    .await?;
    assert!(step.success, "{}", step.error);
    assert_eq!(target.hits.get("redirected"), 1);
    Ok(())
}

#[tokio::test]
async fn the_sandbox_stops_loops_and_bombs_and_has_no_host_access() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.engine.js_time_limit = std::time::Duration::from_millis(500);
    config.engine.js_memory_mib = 16;
    let server = TestServer::start_with(dir, config).await?;

    let started = std::time::Instant::now();
    let step = run_one(&server, code_node("spin", "while (true) {}")).await?;
    assert!(!step.success);
    assert!(step.error.contains("limit"), "{}", step.error);
    assert!(
        !step.error.to_lowercase().contains("timeout"),
        "the official client retries on that word: {}",
        step.error
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let step = run_one(
        &server,
        code_node(
            "bomb",
            "let a = []; while (true) { a.push('x'.repeat(1 << 20)); }",
        ),
    )
    .await?;
    assert!(!step.success);
    assert!(
        step.error.to_lowercase().contains("memory"),
        "{}",
        step.error
    );

    // `require` exists (issue 9: lodash, dayjs, uuid, as the original), but reaches no host module.
    for module in ["fs", "child_process", "net", "os"] {
        let step = run_one(
            &server,
            code_node("req", &format!("return require('{module}');")),
        )
        .await?;
        assert!(!step.success, "{module}: {step:?}");
        assert!(step.error.contains("module not found"), "{}", step.error);
    }
    for (name, source) in [
        ("proc", "return typeof process;"),
        ("fetch", "return typeof fetch;"),
        ("std", "return typeof std + typeof os;"),
    ] {
        let step = run_one(&server, code_node(name, source)).await?;
        assert!(step.success, "{name}: {}", step.error);
        let out = crate::support::step_output(&step);
        assert!(out.as_str().unwrap().contains("undefined"), "{name}: {out}");
    }
    let step = run_one(&server, code_node("import", "return import('fs');")).await?;
    assert!(
        !step.success || crate::support::step_output(&step).is_null(),
        "{step:?}"
    );

    // The workers survived.
    let step = run_one(&server, code_node("after", "return 6 * 7;")).await?;
    assert_eq!(crate::support::step_output(&step), serde_json::json!(42));
    Ok(())
}
