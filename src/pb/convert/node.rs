//! Nodes and edges: `TaskNode` ⇄ `Node` (every node config, the loop's runners), `TaskEdge` ⇄
//! `Edge`. Each config's two directions sit side by side.

use events::task::*;

use crate::domain::DomainError;
use crate::pb;
use protocol::convert::{json_list, opt_json, sorted, unsorted, value_from_json};
use protocol::convert::{method_calls_from_pb, method_calls_to_pb};

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
        method_calls: method_calls_from_pb(&c.method_calls),
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
        method_calls: method_calls_from_pb(&c.method_calls),
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
            method_calls: method_calls_to_pb(&c.method_calls),
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
            method_calls: method_calls_to_pb(&c.method_calls),
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
