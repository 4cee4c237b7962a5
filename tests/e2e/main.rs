//! End-to-end scenarios, one module each, in a single test binary (every extra binary links the
//! whole dependency tree again).

#![allow(clippy::unwrap_used, reason = "tests")]

mod access;
mod anvil;
mod api_keys;
mod bundler_alto;
mod chain_deploy;
mod client_api;
mod cluster;
mod cluster_executions;
mod cluster_npm;
mod cluster_operators;
mod cluster_support;
mod cluster_writer;
mod console;
mod contract_fixtures;
mod core_crash;
mod core_tamper;
mod engine_chain;
mod engine_crash;
mod engine_nodes;
mod engine_safety;
mod engine_trigger;
mod fee_estimates;
mod fixtures;
mod hardening;
mod interop_js;
mod log_tools;
mod network;
mod nonce;
mod operator_attacks;
mod operator_pool;
mod operator_triggers;
mod ops;
mod original;
mod restart;
mod secrets_at_rest;
mod service;
mod startup_log;
mod support;
mod transparency;
mod wallet_derivation;
mod wallet_ops;
mod web;
mod wire_contract;
mod withdrawals;
mod writes;
mod writes_crash;
