//! Each node type against real servers started by the test: a web server and a GraphQL endpoint
//! on loopback (allow-listed explicitly), and templates, branches, filters and loops.

use aggregator::pb;
use serde_json::json;

use crate::support::{
    User, code_node, edge, rest_node, run_blocking, server_allowing_loopback, step_output, task_of,
};
use crate::web;

fn node(id: &str, kind: pb::NodeType, member: pb::task_node::TaskType) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: kind as i32,
        task_type: Some(member),
    }
}

#[tokio::test]
async fn code_rest_graphql_and_templates() -> anyhow::Result<()> {
    let server = server_allowing_loopback().await?;
    let web = web::start(None).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
        name: "api_key".into(),
        secret: "s3cr3t".into(),
        ..Default::default()
    }))
    .await?;

    let gql = node(
        "gql",
        pb::NodeType::GraphqlQuery,
        pb::task_node::TaskType::GraphqlQuery(pb::GraphQlQueryNode {
            config: Some(pb::graph_ql_query_node::Config {
                url: web.url("/graphql"),
                query: "query Q($id: ID!) { item(id: $id) { id name } }".into(),
                variables: [("id".to_owned(), "{{ code.data.id }}".to_owned())]
                    .into_iter()
                    .collect(),
            }),
        }),
    );
    let nodes = vec![
        code_node(
            "code",
            "console.log('computing'); return { id: 7, owner: settings.owner };",
        ),
        rest_node("get", "GET", &web.url("/json"), ""),
        rest_node(
            "post",
            "POST",
            &web.url("/echo"),
            r#"{"price": {{ get.data.data.price }}, "key": "{{ apContext.configVars.api_key }}", "who": "{{ manualTrigger.data.n }}"}"#,
        ),
        gql,
    ];
    let edges = vec![
        edge("trigger1", "code"),
        edge("code", "get"),
        edge("get", "post"),
        edge("code", "gql"),
    ];
    let id = c
        .create_task(user.req(task_of("nodes", &wallet, nodes, Some(edges))))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    assert_eq!(run.workflow_id, id);
    let steps: std::collections::HashMap<String, &pb::execution::Step> =
        run.steps.iter().map(|s| (s.name.clone(), s)).collect();
    assert_eq!(steps["manualTrigger"].r#type, "TRIGGER_TYPE_MANUAL");
    assert_eq!(steps["code"].r#type, "NODE_TYPE_CUSTOM_CODE");
    assert!(steps["code"].log.contains("computing"));
    assert_eq!(step_output(steps["code"])["id"], 7);
    assert_eq!(step_output(steps["code"])["owner"], user.address());
    let get = step_output(steps["get"]);
    assert_eq!(get["data"]["price"], 42.5, "{get}");
    assert_eq!(
        (get["status"].clone(), get["statusText"].clone()),
        (json!(200), json!("OK"))
    );
    assert_eq!(get["url"], web.url("/json"));
    assert!(get["headers"]["Content-Type"].is_string(), "{get}");
    let received = &step_output(steps["post"])["data"]["received"];
    assert_eq!(received["price"], 42.5);
    assert_eq!(
        received["key"], "***",
        "the secret reaches the template, and what the run records masks it"
    );
    assert_eq!(
        step_output(steps["gql"])["item"]["name"],
        "item 7",
        "GraphQL's data, unwrapped as the original gives it"
    );

    // A failing template names itself; the others still run; the run is a partial success with
    // a count, as the original reports it.
    let nodes = vec![
        rest_node("bad", "GET", "{{ nowhere.data }}", ""),
        code_node("fine", "return 1;"),
        rest_node("err", "GET", &web.url("/fail"), ""),
    ];
    let id = c
        .create_task(user.req(task_of("failing", &wallet, nodes, None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::PartialSuccess as i32);
    assert_eq!(run.error.as_deref(), Some("2 of 3 steps failed: bad, err"));
    let bad = run.steps.iter().find(|s| s.name == "bad").unwrap();
    assert!(
        bad.error.contains("{{ nowhere.data }}") && bad.error.contains("url"),
        "{}",
        bad.error
    );
    let err = run.steps.iter().find(|s| s.name == "err").unwrap();
    assert!(err.error.contains("HTTP 500"), "{}", err.error);
    assert!(run.steps.iter().find(|s| s.name == "fine").unwrap().success);
    Ok(())
}

#[tokio::test]
async fn branches_skip_what_they_do_not_take_and_filters_and_loops_work() -> anyhow::Result<()> {
    let server = server_allowing_loopback().await?;
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
                        id: "big".into(),
                        r#type: "if".into(),
                        expression: "numbers.data.length > 10".into(),
                    },
                    pb::branch_node::Condition {
                        id: "small".into(),
                        r#type: "else".into(),
                        expression: String::new(),
                    },
                ],
            }),
        }),
    );
    let filter = node(
        "odd",
        pb::NodeType::Filter,
        pb::task_node::TaskType::Filter(pb::FilterNode {
            config: Some(pb::filter_node::Config {
                expression: "value % 2 === 1 && index > 0".into(),
                input_variable: "numbers.data".into(),
            }),
        }),
    );
    let looped = |id: &str, mode: pb::ExecutionMode| {
        node(
            id,
            pb::NodeType::Loop,
            pb::task_node::TaskType::Loop(pb::LoopNode {
                config: Some(pb::loop_node::Config {
                    input_variable: "{{ odd.data }}".into(),
                    iter_val: "item".into(),
                    iter_key: "i".into(),
                    execution_mode: mode as i32,
                    iteration_timeout: 2000,
                }),
                runner: Some(pb::loop_node::Runner::CustomCode(pb::CustomCodeNode {
                    config: Some(pb::custom_code_node::Config {
                        lang: 1,
                        source: "return item * 10 + i;".into(),
                    }),
                })),
            }),
        )
    };
    let nodes = vec![
        code_node("numbers", "return [1, 2, 3, 4, 5];"),
        branch,
        code_node("never", "return 'big';"),
        filter,
        looped("sequential", pb::ExecutionMode::Sequential),
        looped("parallel", pb::ExecutionMode::Parallel),
    ];
    let edges = vec![
        edge("trigger1", "numbers"),
        edge("numbers", "check"),
        edge("check.big", "never"),
        edge("check.small", "odd"),
        edge("odd", "sequential"),
        edge("odd", "parallel"),
    ];
    let id = c
        .create_task(user.req(task_of("flow", &wallet, nodes, Some(edges))))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    // As the original: a branch that left a node untaken makes a partial success.
    assert_eq!(
        run.status,
        pb::ExecutionStatus::PartialSuccess as i32,
        "{run:?}"
    );
    let step = |name: &str| run.steps.iter().find(|s| s.name == name).unwrap();
    assert_eq!(
        step_output(step("check")),
        json!({ "conditionId": "check.small" }),
        "the original's <branch id>.<condition id>"
    );
    assert!(
        run.steps.iter().all(|s| s.name != "never"),
        "a node that did not run is no step"
    );
    assert_eq!(step_output(step("odd")), json!([3, 5]));
    assert_eq!(step_output(step("sequential")), json!([30, 51]));
    assert_eq!(step_output(step("parallel")), json!([30, 51]));
    assert_eq!(run.steps.len(), 6, "the trigger and the nodes that ran");

    // What the client reads back later is the same.
    let execution = c
        .get_execution(user.req(pb::ExecutionReq {
            task_id: id.clone(),
            execution_id: run.execution_id.clone(),
        }))
        .await?
        .into_inner();
    assert_eq!(execution.steps, run.steps);
    assert_eq!(execution.status, pb::ExecutionStatus::PartialSuccess as i32);
    // Our addition: what did not run, and why.
    let [skipped] = execution.skipped.as_slice() else {
        panic!("one skipped node: {:?}", execution.skipped);
    };
    assert_eq!(
        (skipped.node_id.as_str(), skipped.name.as_str()),
        ("never", "never")
    );
    assert!(
        skipped.reason.contains("took condition small"),
        "{}",
        skipped.reason
    );
    Ok(())
}

#[tokio::test]
async fn without_a_chain_eth_transfers_fail_saying_what_they_need() -> anyhow::Result<()> {
    let server = server_allowing_loopback().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    let send = node(
        "send",
        pb::NodeType::EthTransfer,
        pb::task_node::TaskType::EthTransfer(pb::EthTransferNode {
            config: Some(pb::eth_transfer_node::Config {
                destination: wallet.clone(),
                amount: "1".into(),
            }),
        }),
    );
    let id = c
        .create_task(user.req(task_of("send", &wallet, vec![send], None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    // The trigger step succeeded: a partial success, as the original reports it.
    assert_eq!(run.status, pb::ExecutionStatus::PartialSuccess as i32);
    let step = run.steps.iter().find(|s| s.name == "send").unwrap();
    assert!(
        step.error.contains("needs ethereum.rpc_url"),
        "{}",
        step.error
    );
    Ok(())
}
