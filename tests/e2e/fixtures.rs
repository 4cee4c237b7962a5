//! Wire-level task parts covering every trigger type and every node type, each with its optional
//! fields, maps and `Value`s set.

use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use serde_json::json;

const TOKEN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const PERSON: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

fn erc20_abi() -> Vec<prost_types::Value> {
    vec![
        value_from_json(
            &json!({"type": "function", "name": "balanceOf", "stateMutability": "view",
            "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]}),
        ),
        value_from_json(
            &json!({"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
            {"name": "from", "type": "address", "indexed": true},
            {"name": "to", "type": "address", "indexed": true},
            {"name": "value", "type": "uint256", "indexed": false}]}),
        ),
    ]
}

fn trigger(
    name: &str,
    kind: pb::TriggerType,
    member: pb::task_trigger::TriggerType,
) -> pb::TaskTrigger {
    pb::TaskTrigger {
        name: name.into(),
        r#type: kind as i32,
        id: "trigger1".into(),
        trigger_type: Some(member),
    }
}

/// One trigger of each type; fixed-time epochs at `later_ms`.
pub fn every_trigger(later_ms: i64) -> Vec<pb::TaskTrigger> {
    use pb::task_trigger::TriggerType as T;
    vec![
        trigger(
            "manualTrigger",
            pb::TriggerType::Manual,
            T::Manual(pb::ManualTrigger {
                config: Some(pb::manual_trigger::Config {
                    data: Some(value_from_json(
                        &json!({"amount": 5, "who": ["a", "b"], "ok": true, "none": null}),
                    )),
                    headers: [("X-Source".to_owned(), "test".to_owned())]
                        .into_iter()
                        .collect(),
                    path_params: [("id".to_owned(), "7".to_owned())].into_iter().collect(),
                    lang: 2,
                }),
            }),
        ),
        trigger(
            "fixedTimeTrigger",
            pb::TriggerType::FixedTime,
            T::FixedTime(pb::FixedTimeTrigger {
                config: Some(pb::fixed_time_trigger::Config {
                    epochs: vec![later_ms, later_ms + 60_000],
                }),
            }),
        ),
        trigger(
            "cronTrigger",
            pb::TriggerType::Cron,
            T::Cron(pb::CronTrigger {
                config: Some(pb::cron_trigger::Config {
                    schedules: vec!["*/5 * * * *".into(), "@every 30s".into()],
                }),
            }),
        ),
        trigger(
            "blockTrigger",
            pb::TriggerType::Block,
            T::Block(pb::BlockTrigger {
                config: Some(pb::block_trigger::Config { interval: 10 }),
            }),
        ),
        trigger(
            "eventTrigger",
            pb::TriggerType::Event,
            T::Event(pb::EventTrigger {
                config: Some(pb::event_trigger::Config {
                    queries: vec![pb::event_trigger::Query {
                        addresses: vec![TOKEN.into()],
                        topics: vec![TRANSFER_TOPIC.into(), String::new()],
                        max_events_per_block: Some(100),
                        contract_abi: erc20_abi(),
                        conditions: vec![pb::EventCondition {
                            field_name: "value".into(),
                            operator: "gt".into(),
                            value: "1000".into(),
                            field_type: "uint256".into(),
                        }],
                        method_calls: vec![pb::event_trigger::MethodCall {
                            method_name: "decimals".into(),
                            call_data: Some("0x313ce567".into()),
                            apply_to_fields: vec!["value".into()],
                            method_params: vec![],
                        }],
                    }],
                    cooldown_seconds: Some(0),
                }),
            }),
        ),
    ]
}

fn node(id: &str, name: &str, kind: pb::NodeType, member: pb::task_node::TaskType) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: name.into(),
        r#type: kind as i32,
        task_type: Some(member),
    }
}

fn edge(id: &str, source: &str, target: &str) -> pb::TaskEdge {
    pb::TaskEdge {
        id: id.into(),
        source: source.into(),
        target: target.into(),
    }
}

/// A graph with one node of each of the ten types (a branch with two conditions, a loop with a
/// runner), and the edges that connect them without a cycle.
pub fn every_node() -> (Vec<pb::TaskNode>, Vec<pb::TaskEdge>) {
    use pb::task_node::TaskType as T;
    let nodes = vec![
        node(
            "code",
            "code",
            pb::NodeType::CustomCode,
            T::CustomCode(pb::CustomCodeNode {
                config: Some(pb::custom_code_node::Config {
                    lang: 1,
                    source: "return [1, 2, 3];".into(),
                }),
            }),
        ),
        node(
            "branch",
            "branch",
            pb::NodeType::Branch,
            T::Branch(pb::BranchNode {
                config: Some(pb::branch_node::Config {
                    conditions: vec![
                        pb::branch_node::Condition {
                            id: "big".into(),
                            r#type: "if".into(),
                            expression: "code.data.length > 2".into(),
                        },
                        pb::branch_node::Condition {
                            id: "small".into(),
                            r#type: "else".into(),
                            expression: String::new(),
                        },
                    ],
                }),
            }),
        ),
        node(
            "rest",
            "rest",
            pb::NodeType::RestApi,
            T::RestApi(pb::RestApiNode {
                config: Some(pb::rest_api_node::Config {
                    url: "https://example.com/api/{{ code.data[0] }}".into(),
                    headers: [("Content-Type".to_owned(), "application/json".to_owned())]
                        .into_iter()
                        .collect(),
                    body: "{\"x\": 1}".into(),
                    method: "POST".into(),
                    options: Some(value_from_json(&json!({"summarize": false}))),
                }),
            }),
        ),
        node(
            "gql",
            "gql",
            pb::NodeType::GraphqlQuery,
            T::GraphqlQuery(pb::GraphQlQueryNode {
                config: Some(pb::graph_ql_query_node::Config {
                    url: "https://example.com/graphql".into(),
                    query: "query Q($id: ID!) { item(id: $id) { name } }".into(),
                    variables: [("id".to_owned(), "1".to_owned())].into_iter().collect(),
                }),
            }),
        ),
        node(
            "filter",
            "filter",
            pb::NodeType::Filter,
            T::Filter(pb::FilterNode {
                config: Some(pb::filter_node::Config {
                    expression: "value > 1".into(),
                    input_variable: "code.data".into(),
                }),
            }),
        ),
        node(
            "loop",
            "loop",
            pb::NodeType::Loop,
            T::Loop(pb::LoopNode {
                config: Some(pb::loop_node::Config {
                    input_variable: "code.data".into(),
                    iter_val: "item".into(),
                    iter_key: "index".into(),
                    execution_mode: pb::ExecutionMode::Parallel as i32,
                    iteration_timeout: 1000,
                }),
                runner: Some(pb::loop_node::Runner::CustomCode(pb::CustomCodeNode {
                    config: Some(pb::custom_code_node::Config {
                        lang: 1,
                        source: "return item * 2;".into(),
                    }),
                })),
            }),
        ),
        node(
            "read",
            "read",
            pb::NodeType::ContractRead,
            T::ContractRead(pb::ContractReadNode {
                config: Some(pb::contract_read_node::Config {
                    contract_address: TOKEN.into(),
                    contract_abi: erc20_abi(),
                    method_calls: vec![pb::contract_read_node::MethodCall {
                        call_data: None,
                        method_name: "balanceOf".into(),
                        apply_to_fields: vec!["balanceOf".into()],
                        method_params: vec![PERSON.into()],
                    }],
                }),
            }),
        ),
        node(
            "balance",
            "balance",
            pb::NodeType::Balance,
            T::Balance(pb::BalanceNode {
                config: Some(pb::balance_node::Config {
                    address: PERSON.into(),
                    chain: "anvil".into(),
                    include_spam: true,
                    include_zero_balances: true,
                    min_usd_value_cents: 5,
                    token_addresses: vec![TOKEN.into()],
                }),
            }),
        ),
        node(
            "send",
            "send",
            pb::NodeType::EthTransfer,
            T::EthTransfer(pb::EthTransferNode {
                config: Some(pb::eth_transfer_node::Config {
                    destination: PERSON.into(),
                    amount: "1000".into(),
                }),
            }),
        ),
        node(
            "write",
            "write",
            pb::NodeType::ContractWrite,
            T::ContractWrite(pb::ContractWriteNode {
                config: Some(pb::contract_write_node::Config {
                    contract_address: TOKEN.into(),
                    call_data: "0xa9059cbb".into(),
                    contract_abi: erc20_abi(),
                    method_calls: vec![pb::contract_write_node::MethodCall {
                        call_data: Some("0xa9059cbb".into()),
                        method_name: "transfer".into(),
                        apply_to_fields: vec![],
                        method_params: vec![PERSON.into(), "1".into()],
                    }],
                    is_simulated: Some(true),
                    value: Some("0".into()),
                    gas_limit: Some("100000".into()),
                }),
            }),
        ),
    ];
    let edges = vec![
        edge("e1", "trigger1", "code"),
        edge("e2", "code", "branch"),
        edge("e3", "branch.big", "rest"),
        edge("e4", "branch.small", "gql"),
        edge("e5", "rest", "filter"),
        edge("e6", "filter", "loop"),
        edge("e7", "code", "read"),
        edge("e8", "read", "balance"),
        edge("e9", "balance", "send"),
        edge("e10", "send", "write"),
    ];
    (nodes, edges)
}
