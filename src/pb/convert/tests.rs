//! Every definition round-trips: `definition == from(to(definition))`, for the sample events'
//! definitions and for one definition that holds every trigger and node config.

use std::collections::BTreeMap;

use events::Event;
use events::task::*;
use serde_json::json;

use super::*;
use crate::pb;

fn round_trip(definition: &TaskDefinition) -> TaskDefinition {
    let req = pb::CreateTaskReq {
        trigger: Some(trigger_to_pb(&definition.trigger)),
        start_at: definition.start_at,
        expired_at: definition.expired_at,
        max_execution: definition.max_execution,
        name: definition.name.clone(),
        nodes: definition.nodes.iter().map(node_to_pb).collect(),
        edges: definition.edges.iter().map(edge_to_pb).collect(),
        input_variables: values_from_json_map(&definition.input_variables),
        ..Default::default()
    };
    definition_from_create(&req).unwrap()
}

fn calls() -> Vec<MethodCall> {
    vec![MethodCall {
        method_name: "balanceOf".into(),
        call_data: Some("0x70a08231".into()),
        apply_to_fields: vec!["balance".into()],
        method_params: vec!["{{settings.runner}}".into()],
    }]
}

fn triggers() -> Vec<TriggerConfig> {
    vec![
        TriggerConfig::Manual(ManualTriggerConfig {
            data: Some(json!({"x": [1, "two", null]})),
            headers: BTreeMap::from([("h".into(), "v".into())]),
            path_params: BTreeMap::from([("p".into(), "q".into())]),
            lang: 1,
        }),
        TriggerConfig::FixedTime(FixedTimeTriggerConfig {
            epochs: vec![1_764_000_000_000, 1_765_000_000_000],
        }),
        TriggerConfig::Cron(CronTriggerConfig {
            schedules: vec!["*/5 * * * *".into(), "@every 1h".into()],
        }),
        TriggerConfig::Block(BlockTriggerConfig { interval: 7 }),
        TriggerConfig::Event(EventTriggerConfig {
            queries: vec![EventQuery {
                addresses: vec!["0x5fbdb2315678afecb367f032d93f642f64180aa3".into()],
                topics: vec!["0xddf252ad".into(), String::new()],
                max_events_per_block: Some(50),
                contract_abi: vec![json!({"type": "event", "name": "Transfer", "inputs": []})],
                conditions: vec![EventCondition {
                    field_name: "value".into(),
                    operator: "gt".into(),
                    value: "100".into(),
                    field_type: "uint256".into(),
                }],
                method_calls: calls(),
            }],
            cooldown_seconds: Some(30),
        }),
    ]
}

fn runners() -> Vec<LoopRunner> {
    vec![
        LoopRunner::EthTransfer(EthTransferConfig {
            destination: "0xd".into(),
            amount: "1".into(),
        }),
        LoopRunner::ContractWrite(ContractWriteConfig {
            contract_address: "0xc".into(),
            call_data: "0x01".into(),
            contract_abi: vec![json!({"type": "function"})],
            method_calls: calls(),
            is_simulated: Some(true),
            value: Some("5".into()),
            gas_limit: None,
        }),
        LoopRunner::ContractRead(ContractReadConfig {
            contract_address: "0xc".into(),
            contract_abi: vec![json!({"type": "function"})],
            method_calls: calls(),
        }),
        LoopRunner::GraphqlDataQuery(GraphqlQueryConfig {
            url: "https://example.com/graphql".into(),
            query: "{ a }".into(),
            variables: BTreeMap::from([("v".into(), "1".into())]),
        }),
        LoopRunner::RestApi(RestApiConfig {
            url: "https://example.com".into(),
            headers: BTreeMap::from([("h".into(), "v".into())]),
            body: "{}".into(),
            method: "POST".into(),
            options: Some(json!({"timeout": 5})),
        }),
        LoopRunner::CustomCode(CustomCodeConfig {
            lang: 1,
            source: "return 1;".into(),
        }),
    ]
}

fn node_configs() -> Vec<NodeConfig> {
    let mut configs: Vec<NodeConfig> = runners()
        .into_iter()
        .map(|runner| match runner {
            LoopRunner::EthTransfer(c) => NodeConfig::EthTransfer(c),
            LoopRunner::ContractWrite(c) => NodeConfig::ContractWrite(c),
            LoopRunner::ContractRead(c) => NodeConfig::ContractRead(c),
            LoopRunner::GraphqlDataQuery(c) => NodeConfig::GraphqlQuery(c),
            LoopRunner::RestApi(c) => NodeConfig::RestApi(c),
            LoopRunner::CustomCode(c) => NodeConfig::CustomCode(c),
        })
        .collect();
    configs.push(NodeConfig::Branch(BranchConfig {
        conditions: vec![BranchCondition {
            id: "0".into(),
            condition_type: "if".into(),
            expression: "a > 1".into(),
        }],
    }));
    configs.push(NodeConfig::Filter(FilterConfig {
        expression: "value > 1".into(),
        input_variable: "list".into(),
    }));
    configs.push(NodeConfig::Balance(BalanceConfig {
        address: "0xa".into(),
        chain: "sepolia".into(),
        include_spam: true,
        include_zero_balances: false,
        min_usd_value_cents: 100,
        token_addresses: vec!["0xt".into()],
    }));
    for runner in runners() {
        configs.push(NodeConfig::Loop(LoopConfig {
            input_variable: "items".into(),
            iter_val: "value".into(),
            iter_key: "index".into(),
            execution_mode: 1,
            iteration_timeout: 3,
            runner: Some(runner),
        }));
    }
    configs
}

#[test]
fn the_sample_definitions_round_trip() {
    let mut seen = 0;
    for event in events::samples::all() {
        if let Event::TaskCreated(created) = event {
            assert_eq!(round_trip(&created.definition), created.definition);
            seen += 1;
        }
    }
    assert!(seen > 0, "the samples hold a TaskCreated");
}

#[test]
fn every_trigger_and_node_config_round_trips() {
    let mut definition = events::samples::definition();
    definition.nodes = node_configs()
        .into_iter()
        .enumerate()
        .map(|(i, config)| Node {
            id: format!("n{i}"),
            name: format!("node{i}"),
            node_type: 0,
            config: Some(config),
        })
        .collect();
    for trigger in triggers() {
        definition.trigger.config = Some(trigger);
        assert_eq!(round_trip(&definition), definition);
    }
}
