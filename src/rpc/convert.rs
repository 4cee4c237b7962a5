//! Conversions between the wire types (prost) and the domain's, at the gRPC edge.
//!
//! Requests become domain values (`*_from_pb`, refusing what cannot be represented, such as a
//! NaN number); projections become responses (`*_to_pb`). A task definition round-trips exactly:
//! every trigger and node config, optional fields, maps and `Value`s, because the official client
//! parses `GetTask` strictly. The one normalisation: a trigger or node whose oneof member carries
//! no `config` message comes back with an empty one.

use std::collections::{BTreeMap, HashMap};

use events::execution::{OutputKind, Step, StepOutput};
use events::task::*;
use projections::executions::{ExecutionRow, RunStatus};
use projections::tasks::{Status, TaskRow};
use prost_types::value::Kind;
use serde_json::Value as Json;

use crate::domain::{Code, DomainError};
use crate::pb;

// ---- google.protobuf.Value ⇄ JSON ----

/// A `Value` as JSON; NaN and infinities have no JSON form and are refused.
pub fn json_from_value(value: &prost_types::Value) -> Result<Json, DomainError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n)?,
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .iter()
                .map(json_from_value)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_from_value(v)?)))
                .collect::<Result<_, DomainError>>()?,
        ),
    })
}

/// Integral numbers become JSON integers (so templates and code see `5`, not `5.0`); the wire form
/// is a double either way, so nothing is lost.
fn number(n: f64) -> Result<Json, DomainError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        #[expect(clippy::cast_possible_truncation, reason = "integral and below 2^53")]
        return Ok(Json::from(n as i64));
    }
    serde_json::Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| DomainError::invalid(format!("the number {n} has no JSON form")))
}

pub fn value_from_json(json: &Json) -> prost_types::Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        Json::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), value_from_json(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_map_from_values(
    values: &HashMap<String, prost_types::Value>,
) -> Result<BTreeMap<String, Json>, DomainError> {
    values
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_from_value(v)?)))
        .collect()
}

pub fn values_from_json_map(map: &BTreeMap<String, Json>) -> HashMap<String, prost_types::Value> {
    map.iter()
        .map(|(k, v)| (k.clone(), value_from_json(v)))
        .collect()
}

fn opt_json(value: &Option<prost_types::Value>) -> Result<Option<Json>, DomainError> {
    value.as_ref().map(json_from_value).transpose()
}

fn json_list(values: &[prost_types::Value]) -> Result<Vec<Json>, DomainError> {
    values.iter().map(json_from_value).collect()
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

// ---- Triggers ----

pub fn trigger_from_pb(t: &pb::TaskTrigger) -> Result<Trigger, DomainError> {
    use pb::task_trigger::TriggerType as T;
    let config = match &t.trigger_type {
        None => None,
        Some(T::Manual(m)) => {
            let c = m.config.clone().unwrap_or_default();
            Some(TriggerConfig::Manual(ManualTriggerConfig {
                data: opt_json(&c.data)?,
                headers: sorted(&c.headers),
                path_params: sorted(&c.path_params),
                lang: c.lang,
            }))
        }
        Some(T::FixedTime(f)) => Some(TriggerConfig::FixedTime(FixedTimeTriggerConfig {
            epochs: f.config.clone().unwrap_or_default().epochs,
        })),
        Some(T::Cron(c)) => Some(TriggerConfig::Cron(CronTriggerConfig {
            schedules: c.config.clone().unwrap_or_default().schedules,
        })),
        Some(T::Block(b)) => Some(TriggerConfig::Block(BlockTriggerConfig {
            interval: b.config.unwrap_or_default().interval,
        })),
        Some(T::Event(e)) => {
            let c = e.config.clone().unwrap_or_default();
            Some(TriggerConfig::Event(EventTriggerConfig {
                queries: c
                    .queries
                    .iter()
                    .map(|q| {
                        Ok(EventQuery {
                            addresses: q.addresses.clone(),
                            topics: q.topics.clone(),
                            max_events_per_block: q.max_events_per_block,
                            contract_abi: json_list(&q.contract_abi)?,
                            conditions: q
                                .conditions
                                .iter()
                                .map(|c| EventCondition {
                                    field_name: c.field_name.clone(),
                                    operator: c.operator.clone(),
                                    value: c.value.clone(),
                                    field_type: c.field_type.clone(),
                                })
                                .collect(),
                            method_calls: q
                                .method_calls
                                .iter()
                                .map(|m| MethodCall {
                                    method_name: m.method_name.clone(),
                                    call_data: m.call_data.clone(),
                                    apply_to_fields: m.apply_to_fields.clone(),
                                    method_params: m.method_params.clone(),
                                })
                                .collect(),
                        })
                    })
                    .collect::<Result<_, DomainError>>()?,
                cooldown_seconds: c.cooldown_seconds,
            }))
        }
    };
    Ok(Trigger {
        id: t.id.clone(),
        name: t.name.clone(),
        trigger_type: t.r#type,
        config,
    })
}

pub fn trigger_to_pb(t: &Trigger) -> pb::TaskTrigger {
    use pb::task_trigger::TriggerType as T;
    let trigger_type = t.config.as_ref().map(|config| match config {
        TriggerConfig::Manual(c) => T::Manual(pb::ManualTrigger {
            config: Some(pb::manual_trigger::Config {
                data: c.data.as_ref().map(value_from_json),
                headers: unsorted(&c.headers),
                path_params: unsorted(&c.path_params),
                lang: c.lang,
            }),
        }),
        TriggerConfig::FixedTime(c) => T::FixedTime(pb::FixedTimeTrigger {
            config: Some(pb::fixed_time_trigger::Config {
                epochs: c.epochs.clone(),
            }),
        }),
        TriggerConfig::Cron(c) => T::Cron(pb::CronTrigger {
            config: Some(pb::cron_trigger::Config {
                schedules: c.schedules.clone(),
            }),
        }),
        TriggerConfig::Block(c) => T::Block(pb::BlockTrigger {
            config: Some(pb::block_trigger::Config {
                interval: c.interval,
            }),
        }),
        TriggerConfig::Event(c) => T::Event(pb::EventTrigger {
            config: Some(pb::event_trigger::Config {
                queries: c
                    .queries
                    .iter()
                    .map(|q| pb::event_trigger::Query {
                        addresses: q.addresses.clone(),
                        topics: q.topics.clone(),
                        max_events_per_block: q.max_events_per_block,
                        contract_abi: q.contract_abi.iter().map(value_from_json).collect(),
                        conditions: q
                            .conditions
                            .iter()
                            .map(|c| pb::EventCondition {
                                field_name: c.field_name.clone(),
                                operator: c.operator.clone(),
                                value: c.value.clone(),
                                field_type: c.field_type.clone(),
                            })
                            .collect(),
                        method_calls: q
                            .method_calls
                            .iter()
                            .map(|m| pb::event_trigger::MethodCall {
                                method_name: m.method_name.clone(),
                                call_data: m.call_data.clone(),
                                apply_to_fields: m.apply_to_fields.clone(),
                                method_params: m.method_params.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                cooldown_seconds: c.cooldown_seconds,
            }),
        }),
    });
    pb::TaskTrigger {
        name: t.name.clone(),
        r#type: t.trigger_type,
        id: t.id.clone(),
        trigger_type,
    }
}

// ---- Nodes ----

fn read_calls(calls: &[pb::contract_read_node::MethodCall]) -> Vec<MethodCall> {
    calls
        .iter()
        .map(|m| MethodCall {
            method_name: m.method_name.clone(),
            call_data: m.call_data.clone(),
            apply_to_fields: m.apply_to_fields.clone(),
            method_params: m.method_params.clone(),
        })
        .collect()
}

fn write_calls(calls: &[pb::contract_write_node::MethodCall]) -> Vec<MethodCall> {
    calls
        .iter()
        .map(|m| MethodCall {
            method_name: m.method_name.clone(),
            call_data: m.call_data.clone(),
            apply_to_fields: m.apply_to_fields.clone(),
            method_params: m.method_params.clone(),
        })
        .collect()
}

fn eth_transfer_from(n: &pb::EthTransferNode) -> EthTransferConfig {
    let c = n.config.clone().unwrap_or_default();
    EthTransferConfig {
        destination: c.destination,
        amount: c.amount,
    }
}

fn contract_write_from(n: &pb::ContractWriteNode) -> Result<ContractWriteConfig, DomainError> {
    let c = n.config.clone().unwrap_or_default();
    Ok(ContractWriteConfig {
        contract_address: c.contract_address,
        call_data: c.call_data,
        contract_abi: json_list(&c.contract_abi)?,
        method_calls: write_calls(&c.method_calls),
        is_simulated: c.is_simulated,
        value: c.value,
        gas_limit: c.gas_limit,
    })
}

fn contract_read_from(n: &pb::ContractReadNode) -> Result<ContractReadConfig, DomainError> {
    let c = n.config.clone().unwrap_or_default();
    Ok(ContractReadConfig {
        contract_address: c.contract_address,
        contract_abi: json_list(&c.contract_abi)?,
        method_calls: read_calls(&c.method_calls),
    })
}

fn graphql_from(n: &pb::GraphQlQueryNode) -> GraphqlQueryConfig {
    let c = n.config.clone().unwrap_or_default();
    GraphqlQueryConfig {
        url: c.url,
        query: c.query,
        variables: sorted(&c.variables),
    }
}

fn rest_from(n: &pb::RestApiNode) -> Result<RestApiConfig, DomainError> {
    let c = n.config.clone().unwrap_or_default();
    Ok(RestApiConfig {
        url: c.url,
        headers: sorted(&c.headers),
        body: c.body,
        method: c.method,
        options: opt_json(&c.options)?,
    })
}

fn code_from(n: &pb::CustomCodeNode) -> CustomCodeConfig {
    let c = n.config.clone().unwrap_or_default();
    CustomCodeConfig {
        lang: c.lang,
        source: c.source,
    }
}

pub fn node_from_pb(n: &pb::TaskNode) -> Result<Node, DomainError> {
    use pb::task_node::TaskType as T;
    let config = match &n.task_type {
        None => None,
        Some(T::EthTransfer(x)) => Some(NodeConfig::EthTransfer(eth_transfer_from(x))),
        Some(T::ContractWrite(x)) => Some(NodeConfig::ContractWrite(contract_write_from(x)?)),
        Some(T::ContractRead(x)) => Some(NodeConfig::ContractRead(contract_read_from(x)?)),
        Some(T::GraphqlQuery(x)) => Some(NodeConfig::GraphqlQuery(graphql_from(x))),
        Some(T::RestApi(x)) => Some(NodeConfig::RestApi(rest_from(x)?)),
        Some(T::CustomCode(x)) => Some(NodeConfig::CustomCode(code_from(x))),
        Some(T::Branch(x)) => Some(NodeConfig::Branch(BranchConfig {
            conditions: x
                .config
                .clone()
                .unwrap_or_default()
                .conditions
                .into_iter()
                .map(|c| BranchCondition {
                    id: c.id,
                    condition_type: c.r#type,
                    expression: c.expression,
                })
                .collect(),
        })),
        Some(T::Filter(x)) => {
            let c = x.config.clone().unwrap_or_default();
            Some(NodeConfig::Filter(FilterConfig {
                expression: c.expression,
                input_variable: c.input_variable,
            }))
        }
        Some(T::Balance(x)) => {
            let c = x.config.clone().unwrap_or_default();
            Some(NodeConfig::Balance(BalanceConfig {
                address: c.address,
                chain: c.chain,
                include_spam: c.include_spam,
                include_zero_balances: c.include_zero_balances,
                min_usd_value_cents: c.min_usd_value_cents,
                token_addresses: c.token_addresses,
            }))
        }
        Some(T::Loop(x)) => {
            use pb::loop_node::Runner as R;
            let c = x.config.clone().unwrap_or_default();
            let runner = match &x.runner {
                None => None,
                Some(R::EthTransfer(r)) => Some(LoopRunner::EthTransfer(eth_transfer_from(r))),
                Some(R::ContractWrite(r)) => {
                    Some(LoopRunner::ContractWrite(contract_write_from(r)?))
                }
                Some(R::ContractRead(r)) => Some(LoopRunner::ContractRead(contract_read_from(r)?)),
                Some(R::GraphqlDataQuery(r)) => Some(LoopRunner::GraphqlDataQuery(graphql_from(r))),
                Some(R::RestApi(r)) => Some(LoopRunner::RestApi(rest_from(r)?)),
                Some(R::CustomCode(r)) => Some(LoopRunner::CustomCode(code_from(r))),
            };
            Some(NodeConfig::Loop(LoopConfig {
                input_variable: c.input_variable,
                iter_val: c.iter_val,
                iter_key: c.iter_key,
                execution_mode: c.execution_mode,
                iteration_timeout: c.iteration_timeout,
                runner,
            }))
        }
    };
    Ok(Node {
        id: n.id.clone(),
        name: n.name.clone(),
        node_type: n.r#type,
        config,
    })
}

fn eth_transfer_to(c: &EthTransferConfig) -> pb::EthTransferNode {
    pb::EthTransferNode {
        config: Some(pb::eth_transfer_node::Config {
            destination: c.destination.clone(),
            amount: c.amount.clone(),
        }),
    }
}

fn contract_write_to(c: &ContractWriteConfig) -> pb::ContractWriteNode {
    pb::ContractWriteNode {
        config: Some(pb::contract_write_node::Config {
            contract_address: c.contract_address.clone(),
            call_data: c.call_data.clone(),
            contract_abi: c.contract_abi.iter().map(value_from_json).collect(),
            method_calls: c
                .method_calls
                .iter()
                .map(|m| pb::contract_write_node::MethodCall {
                    call_data: m.call_data.clone(),
                    method_name: m.method_name.clone(),
                    apply_to_fields: m.apply_to_fields.clone(),
                    method_params: m.method_params.clone(),
                })
                .collect(),
            is_simulated: c.is_simulated,
            value: c.value.clone(),
            gas_limit: c.gas_limit.clone(),
        }),
    }
}

fn contract_read_to(c: &ContractReadConfig) -> pb::ContractReadNode {
    pb::ContractReadNode {
        config: Some(pb::contract_read_node::Config {
            contract_address: c.contract_address.clone(),
            contract_abi: c.contract_abi.iter().map(value_from_json).collect(),
            method_calls: c
                .method_calls
                .iter()
                .map(|m| pb::contract_read_node::MethodCall {
                    call_data: m.call_data.clone(),
                    method_name: m.method_name.clone(),
                    apply_to_fields: m.apply_to_fields.clone(),
                    method_params: m.method_params.clone(),
                })
                .collect(),
        }),
    }
}

fn graphql_to(c: &GraphqlQueryConfig) -> pb::GraphQlQueryNode {
    pb::GraphQlQueryNode {
        config: Some(pb::graph_ql_query_node::Config {
            url: c.url.clone(),
            query: c.query.clone(),
            variables: unsorted(&c.variables),
        }),
    }
}

fn rest_to(c: &RestApiConfig) -> pb::RestApiNode {
    pb::RestApiNode {
        config: Some(pb::rest_api_node::Config {
            url: c.url.clone(),
            headers: unsorted(&c.headers),
            body: c.body.clone(),
            method: c.method.clone(),
            options: c.options.as_ref().map(value_from_json),
        }),
    }
}

fn code_to(c: &CustomCodeConfig) -> pb::CustomCodeNode {
    pb::CustomCodeNode {
        config: Some(pb::custom_code_node::Config {
            lang: c.lang,
            source: c.source.clone(),
        }),
    }
}

pub fn node_to_pb(n: &Node) -> pb::TaskNode {
    use pb::task_node::TaskType as T;
    let task_type = n.config.as_ref().map(|config| match config {
        NodeConfig::EthTransfer(c) => T::EthTransfer(eth_transfer_to(c)),
        NodeConfig::ContractWrite(c) => T::ContractWrite(contract_write_to(c)),
        NodeConfig::ContractRead(c) => T::ContractRead(contract_read_to(c)),
        NodeConfig::GraphqlQuery(c) => T::GraphqlQuery(graphql_to(c)),
        NodeConfig::RestApi(c) => T::RestApi(rest_to(c)),
        NodeConfig::CustomCode(c) => T::CustomCode(code_to(c)),
        NodeConfig::Branch(c) => T::Branch(pb::BranchNode {
            config: Some(pb::branch_node::Config {
                conditions: c
                    .conditions
                    .iter()
                    .map(|c| pb::branch_node::Condition {
                        id: c.id.clone(),
                        r#type: c.condition_type.clone(),
                        expression: c.expression.clone(),
                    })
                    .collect(),
            }),
        }),
        NodeConfig::Filter(c) => T::Filter(pb::FilterNode {
            config: Some(pb::filter_node::Config {
                expression: c.expression.clone(),
                input_variable: c.input_variable.clone(),
            }),
        }),
        NodeConfig::Balance(c) => T::Balance(pb::BalanceNode {
            config: Some(pb::balance_node::Config {
                address: c.address.clone(),
                chain: c.chain.clone(),
                include_spam: c.include_spam,
                include_zero_balances: c.include_zero_balances,
                min_usd_value_cents: c.min_usd_value_cents,
                token_addresses: c.token_addresses.clone(),
            }),
        }),
        NodeConfig::Loop(c) => {
            use pb::loop_node::Runner as R;
            T::Loop(pb::LoopNode {
                config: Some(pb::loop_node::Config {
                    input_variable: c.input_variable.clone(),
                    iter_val: c.iter_val.clone(),
                    iter_key: c.iter_key.clone(),
                    execution_mode: c.execution_mode,
                    iteration_timeout: c.iteration_timeout,
                }),
                runner: c.runner.as_ref().map(|r| match r {
                    LoopRunner::EthTransfer(r) => R::EthTransfer(eth_transfer_to(r)),
                    LoopRunner::ContractWrite(r) => R::ContractWrite(contract_write_to(r)),
                    LoopRunner::ContractRead(r) => R::ContractRead(contract_read_to(r)),
                    LoopRunner::GraphqlDataQuery(r) => R::GraphqlDataQuery(graphql_to(r)),
                    LoopRunner::RestApi(r) => R::RestApi(rest_to(r)),
                    LoopRunner::CustomCode(r) => R::CustomCode(code_to(r)),
                }),
            })
        }
    });
    pb::TaskNode {
        id: n.id.clone(),
        name: n.name.clone(),
        r#type: n.node_type,
        task_type,
    }
}

pub fn edge_from_pb(e: &pb::TaskEdge) -> Edge {
    Edge {
        id: e.id.clone(),
        source: e.source.clone(),
        target: e.target.clone(),
    }
}

pub fn edge_to_pb(e: &Edge) -> pb::TaskEdge {
    pb::TaskEdge {
        id: e.id.clone(),
        source: e.source.clone(),
        target: e.target.clone(),
    }
}

/// The definition a `CreateTaskReq` submits (the name is resolved by the domain).
pub fn definition_from_create(req: &pb::CreateTaskReq) -> Result<TaskDefinition, DomainError> {
    let trigger = req.trigger.as_ref().ok_or_else(|| {
        DomainError::Invalid("the task has no trigger".into(), Code::MissingRequiredField)
    })?;
    Ok(TaskDefinition {
        name: req.name.clone(),
        trigger: trigger_from_pb(trigger)?,
        nodes: req
            .nodes
            .iter()
            .map(node_from_pb)
            .collect::<Result<_, _>>()?,
        edges: req.edges.iter().map(edge_from_pb).collect(),
        input_variables: json_map_from_values(&req.input_variables)?,
        start_at: req.start_at,
        expired_at: req.expired_at,
        max_execution: req.max_execution,
    })
}

// ---- Tasks ----

/// The wire status: a cancelled task is `Disabled` (5) with `cancelled_at` set (the official
/// client rejects any value outside 0, 1, 2, 4, 5); a running one is `Running` (4).
pub fn task_status(row: &TaskRow) -> pb::TaskStatus {
    if row.running > 0 {
        return pb::TaskStatus::Running;
    }
    match row.status {
        Status::Active => pb::TaskStatus::Enabled,
        Status::Disabled | Status::Cancelled => pb::TaskStatus::Disabled,
        Status::Completed => pb::TaskStatus::Completed,
        Status::Failed => pb::TaskStatus::Failed,
    }
}

/// A task from its row and definition; nodes and edges only when asked for (`ListTasks`).
pub fn task_to_pb(
    row: &TaskRow,
    definition: &TaskDefinition,
    nodes: bool,
    edges: bool,
) -> pb::Task {
    pb::Task {
        id: row.id.clone(),
        owner: checksum(&row.owner),
        smart_wallet_address: checksum(&row.wallet),
        start_at: row.start_at,
        expired_at: row.expired_at,
        name: row.name.clone(),
        completed_at: row.completed_at,
        max_execution: row.max_execution,
        execution_count: row.execution_count,
        last_ran_at: row.last_ran_at,
        status: task_status(row) as i32,
        trigger: Some(trigger_to_pb(&definition.trigger)),
        nodes: if nodes {
            definition.nodes.iter().map(node_to_pb).collect()
        } else {
            Vec::new()
        },
        edges: if edges {
            definition.edges.iter().map(edge_to_pb).collect()
        } else {
            Vec::new()
        },
        input_variables: values_from_json_map(&definition.input_variables),
        cancelled_at: row.cancelled_at,
    }
}

/// Addresses are stored lower-case; the wire shows them checksummed, as the original does.
pub fn checksum(address: &str) -> String {
    address
        .parse::<alloy::primitives::Address>()
        .map_or_else(|_| address.to_owned(), |a| a.to_checksum(None))
}

// ---- Executions ----

pub fn execution_status(status: RunStatus) -> pb::ExecutionStatus {
    match status {
        RunStatus::Pending | RunStatus::Running => pb::ExecutionStatus::Pending,
        RunStatus::Success => pb::ExecutionStatus::Success,
        RunStatus::Failed => pb::ExecutionStatus::Failed,
        RunStatus::PartialSuccess => pb::ExecutionStatus::PartialSuccess,
    }
}

pub fn execution_to_pb(row: &ExecutionRow) -> pb::Execution {
    pb::Execution {
        id: row.id.clone(),
        start_at: if row.start_at == 0 {
            row.queued_at
        } else {
            row.start_at
        },
        end_at: row.end_at,
        status: execution_status(row.status) as i32,
        error: row.error.clone(),
        index: row.index,
        execution_fee: None,
        cogs: Vec::new(),
        value_fee: None,
        steps: ran_steps_to_pb(&row.steps),
        skipped: skipped_to_pb(&row.steps),
    }
}

/// The steps of the nodes that ran, as the original lists them (a skipped node is no step).
pub fn ran_steps_to_pb(steps: &[Step]) -> Vec<pb::execution::Step> {
    steps
        .iter()
        .filter(|s| !s.skipped)
        .map(step_to_pb)
        .collect()
}

/// The nodes that did not run, and why (our addition to `Execution`).
pub fn skipped_to_pb(steps: &[Step]) -> Vec<pb::execution::SkippedNode> {
    steps
        .iter()
        .filter(|s| s.skipped)
        .map(|s| pb::execution::SkippedNode {
            node_id: s.id.clone(),
            name: s.name.clone(),
            reason: s.log.clone(),
        })
        .collect()
}

pub fn output_to_pb(output: &StepOutput) -> pb::execution::step::OutputData {
    use pb::execution::step::OutputData as O;
    let data = output.data.as_ref().map(value_from_json);
    match output.kind {
        OutputKind::BlockTrigger => O::BlockTrigger(pb::block_trigger::Output { data }),
        OutputKind::FixedTimeTrigger => {
            O::FixedTimeTrigger(pb::fixed_time_trigger::Output { data })
        }
        OutputKind::CronTrigger => O::CronTrigger(pb::cron_trigger::Output { data }),
        OutputKind::EventTrigger => O::EventTrigger(pb::event_trigger::Output { data }),
        OutputKind::ManualTrigger => O::ManualTrigger(pb::manual_trigger::Output { data }),
        OutputKind::EthTransfer => O::EthTransfer(pb::eth_transfer_node::Output { data }),
        OutputKind::Graphql => O::Graphql(pb::graph_ql_query_node::Output { data }),
        OutputKind::ContractRead => O::ContractRead(pb::contract_read_node::Output { data }),
        OutputKind::ContractWrite => O::ContractWrite(pb::contract_write_node::Output { data }),
        OutputKind::CustomCode => O::CustomCode(pb::custom_code_node::Output { data }),
        OutputKind::RestApi => O::RestApi(pb::rest_api_node::Output { data }),
        OutputKind::Branch => O::Branch(pb::branch_node::Output { data }),
        OutputKind::Filter => O::Filter(pb::filter_node::Output { data }),
        OutputKind::Loop => O::Loop(pb::loop_node::Output { data }),
        OutputKind::Balance => O::Balance(pb::balance_node::Output { data }),
    }
}

pub fn step_to_pb(s: &Step) -> pb::execution::Step {
    pb::execution::Step {
        id: s.id.clone(),
        r#type: s.step_type.clone(),
        name: s.name.clone(),
        success: s.success,
        error: s.error.clone(),
        error_code: s.error_code,
        log: s.log.clone(),
        inputs: s.inputs.clone(),
        config: s.config.as_ref().map(value_from_json),
        metadata: s.metadata.as_ref().map(value_from_json),
        execution_context: s.execution_context.as_ref().map(value_from_json),
        gas_used: s.gas_used.clone(),
        gas_price: s.gas_price.clone(),
        total_gas_cost: s.total_gas_cost.clone(),
        start_at: s.start_at,
        end_at: s.end_at,
        output_data: s.output.as_ref().map(output_to_pb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_nan_is_refused() {
        let json = serde_json::json!({"a": [1.5, "x", null, true, {"b": -2}], "c": {}});
        assert_eq!(json_from_value(&value_from_json(&json)).unwrap(), json);
        let nan = prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert!(json_from_value(&nan).is_err());
    }
}
