//! Behaviour the official client and saved workflows expect from the original aggregator, end to
//! end over gRPC: `require()` and ES `import` of lodash, dayjs and uuid in custom code, and the
//! original's in-process test host `https://mock-api.ap-aggregator.local`.

use aggregator::pb;

use crate::support::{TestServer, User, code_node, rest_node, run_blocking, step_output, task_of};

#[tokio::test]
async fn custom_code_requires_and_imports_the_originals_packages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let nodes = vec![
        code_node(
            "required",
            "const _ = require('lodash');\nconst dayjs = require('dayjs');\nconst { v4: uuidv4 } = require('uuid');\nreturn { sum: _.sum([1, 2, 3]), day: dayjs('2023-12-25').add(7, 'days').format('YYYY-MM-DD'), id: uuidv4().length };",
        ),
        code_node(
            "imported",
            "import _ from 'lodash';\nimport { v4 as uuidv4 } from 'uuid';\nreturn [_.max([4, 8, 1]), typeof uuidv4];",
        ),
    ];
    let task = c
        .create_task(user.req(task_of("modules", &wallet, nodes, None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &task).await?;
    let step = |id: &str| run.steps.iter().find(|s| s.id == id).unwrap().clone();
    let required = step("required");
    assert!(required.success, "{}", required.error);
    assert_eq!(
        step_output(&required),
        serde_json::json!({"sum": 6, "day": "2024-01-01", "id": 36})
    );
    let imported = step("imported");
    assert!(imported.success, "{}", imported.error);
    assert_eq!(step_output(&imported), serde_json::json!([8, "function"]));
    Ok(())
}

#[tokio::test]
async fn the_originals_test_host_is_answered_without_the_network() -> anyhow::Result<()> {
    // No loopback allow-list: the mock host needs no address at all.
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let nodes = vec![
        rest_node(
            "post",
            "POST",
            "https://mock-api.ap-aggregator.local/post",
            r#"{"hello": "world"}"#,
        ),
        rest_node(
            "missing",
            "GET",
            "https://mock-api.ap-aggregator.local/status/404",
            "",
        ),
    ];
    let task = c
        .create_task(user.req(task_of("mock host", &wallet, nodes, None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &task).await?;
    let step = |id: &str| run.steps.iter().find(|s| s.id == id).unwrap().clone();
    let post = step("post");
    assert!(post.success, "{}", post.error);
    let output = step_output(&post);
    assert_eq!(output["status"], 200, "{output}");
    let echoed = serde_json::to_string(&output)?;
    assert!(
        echoed.contains("world"),
        "the echo holds the body: {output}"
    );
    let missing = step("missing");
    assert!(!missing.success);
    assert_eq!(step_output(&missing)["status"], 404);
    assert_ne!(run.status, pb::ExecutionStatus::Success as i32);
    Ok(())
}
