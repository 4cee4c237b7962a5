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
    assert_eq!(output["statusText"], "OK");
    assert_eq!(output["url"], "https://mock-api.ap-aggregator.local/post");
    assert_eq!(
        output["data"]["data"]["hello"], "world",
        "the echo holds the body"
    );
    assert_eq!(output["data"]["method"], "POST");
    let missing = step("missing");
    assert!(!missing.success);
    assert_eq!(missing.error, "HTTP 404: Not Found");
    assert_eq!(step_output(&missing)["data"]["error"], "Not Found");
    assert_ne!(run.status, pb::ExecutionStatus::Success as i32);
    Ok(())
}

fn node(id: &str, kind: pb::NodeType, member: pb::task_node::TaskType) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: kind as i32,
        task_type: Some(member),
    }
}

#[tokio::test]
async fn templates_code_semantics_and_partial_success_as_in_the_original() -> anyhow::Result<()> {
    use crate::support::edge;
    use serde_json::json;

    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let branch = node(
        "check",
        pb::NodeType::Branch,
        pb::task_node::TaskType::Branch(pb::BranchNode {
            config: Some(pb::branch_node::Config {
                conditions: vec![
                    pb::branch_node::Condition {
                        id: "many".into(),
                        r#type: "if".into(),
                        expression: "{{ numbers.data.length > 3 }}".into(),
                    },
                    pb::branch_node::Condition {
                        id: "few".into(),
                        r#type: "else".into(),
                        expression: String::new(),
                    },
                ],
            }),
        }),
    );
    let filter = node(
        "big",
        pb::NodeType::Filter,
        pb::task_node::TaskType::Filter(pb::FilterNode {
            config: Some(pb::filter_node::Config {
                expression: "{{ value > 2 }}".into(),
                input_variable: "numbers.data".into(),
            }),
        }),
    );
    let nodes = vec![
        code_node("numbers", "[1, 2, 3, 4, 5]"),
        code_node(
            "templated",
            "return {{ numbers.data.length }} + {{ numbers.data.0 }};",
        ),
        branch,
        filter,
        code_node("few_only", "return 'few';"),
        code_node("boom", "throw new Error('on purpose');"),
        code_node("after_boom", "const answer = 2; answer * 21"),
    ];
    let edges = vec![
        edge("trigger1", "numbers"),
        edge("numbers", "templated"),
        edge("numbers", "check"),
        edge("check.many", "big"),
        edge("check.few", "few_only"),
        edge("numbers", "boom"),
        edge("boom", "after_boom"),
    ];
    let task = c
        .create_task(user.req(task_of("semantics", &wallet, nodes, Some(edges))))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &task).await?;
    let step = |id: &str| run.steps.iter().find(|s| s.id == id).cloned();
    assert_eq!(
        step_output(&step("numbers").unwrap()),
        json!([1, 2, 3, 4, 5]),
        "code without return gives its last expression"
    );
    assert_eq!(step_output(&step("templated").unwrap()), json!(6));
    assert_eq!(
        step_output(&step("check").unwrap()),
        json!({"conditionId": "check.many"})
    );
    assert_eq!(step_output(&step("big").unwrap()), json!([3, 4, 5]));
    assert!(step("few_only").is_none(), "an untaken node is no step");
    assert!(!step("boom").unwrap().success);
    let after = step("after_boom").expect("a failed node's successor still runs");
    assert_eq!(step_output(&after), json!(42));
    assert_eq!(run.status, pb::ExecutionStatus::PartialSuccess as i32);

    // A node that does not validate is answered in-band, with the original's code.
    let answer = c
        .run_node_with_inputs(user.req(pb::RunNodeWithInputsReq {
            node: Some(code_node("empty", "")),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(!answer.success);
    assert_eq!(
        answer.error_code,
        pb::ErrorCode::MissingRequiredField as i32
    );
    assert!(answer.execution_context.is_some());
    Ok(())
}

#[tokio::test]
async fn secrets_upsert_and_delete_without_a_workflow_as_in_the_original() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let secret = |name: &str, value: &str, workflow: &str| pb::CreateOrUpdateSecretReq {
        name: name.into(),
        secret: value.into(),
        workflow_id: workflow.into(),
        org_id: String::new(),
    };
    // Any well-formed workflow id: no task needs to exist.
    let workflow = events::Ulid::generate().to_string();
    c.create_secret(user.req(secret("only_wf", "a", &workflow)))
        .await?;
    c.create_secret(user.req(secret("only_wf", "b", &workflow)))
        .await?;
    let deleted = c
        .delete_secret(user.req(pb::DeleteSecretReq {
            name: "only_wf".into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(
        deleted.scope, "workflow",
        "the one workflow secret of that name"
    );
    // Two workflows with the name: nothing is deleted, and both are named.
    let other = events::Ulid::generate().to_string();
    c.create_secret(user.req(secret("twice", "a", &workflow)))
        .await?;
    c.create_secret(user.req(secret("twice", "b", &other)))
        .await?;
    let err = c
        .delete_secret(user.req(pb::DeleteSecretReq {
            name: "twice".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains(&workflow) && err.message().contains(&other),
        "{err:?}"
    );
    // The `ap_` prefix is the system's own, in any case: refused, nothing stored.
    let err = c
        .create_secret(user.req(secret("AP_token", "x", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("secret name cannot start with ap_"),
        "{err:?}"
    );
    let listed = c
        .list_secrets(user.req(pb::ListSecretsReq::default()))
        .await?
        .into_inner();
    assert!(listed.items.iter().all(|s| s.name != "AP_token"));
    Ok(())
}
