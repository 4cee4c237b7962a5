//! `EstimateFees`: the gas of a workflow's on-chain nodes, estimated as the user operations
//! they would send from the runner wallet on the chain as it is (`Wallets::estimate`: nothing
//! signed or sent), then priced with the original's fee structure (`domain::fees`).
//!
//! A node whose config cannot be resolved yet (templates that name earlier nodes' outputs) or
//! whose call would revert now gets the original's conservative fallback, with a warning
//! saying why.
//!
//! A runner wallet without code yet gets its creation as a COGS entry of its own, as the
//! original lists it (`_wallet_creation`, cost type `wallet_creation`): `eth_estimateGas` of the
//! factory's `createAccount` with a fifth more, or the original's fallback of 500 000 gas. Each
//! node's operation is estimated as it would be sent then, `initCode` included, so that
//! creation is taken out of each node's gas (a run deploys the wallet once, not per node).

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use serde_json::{Map, Value};

use events::task::{LoopRunner, NodeConfig, TaskDefinition};

use super::Engine;
use super::nodes::write::{WriteEnv, WriteMode};
use super::template::Templates;
use crate::config::FeesConfig;
use crate::domain::fees::{self, FeeEstimate, NodeGas};
use crate::wallet::nonce;
use crate::wallet::submit::OpRequest;
use crate::wallet::user_op::Call;

/// Why a fee estimate has no answer at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeeError {
    #[error("runner address not found in request or input_variables")]
    NoRunner,
    #[error("invalid runner address format: {0}")]
    BadRunner(String),
    #[error("{0} is not a smart wallet of the signed-in owner (GetWallet registers it)")]
    NotOwned(String),
    #[error("fee estimates read the chain: the aggregator has no ethereum.rpc_url configured")]
    NoChain,
    #[error("reading the chain failed: {0}")]
    Chain(String),
    #[error(transparent)]
    Store(#[from] events::Error),
}

/// The calls a write node's config makes, when it can be resolved now.
fn calls_of(config: &NodeConfig) -> Result<Vec<Call>, String> {
    let one = |c: &NodeConfig| -> Result<Vec<Call>, String> {
        match c {
            NodeConfig::EthTransfer(t) => {
                let (to, value) = super::nodes::eth_transfer_parts(t).map_err(|e| e.message)?;
                Ok(vec![Call {
                    to,
                    value,
                    data: Default::default(),
                }])
            }
            NodeConfig::ContractWrite(w) => {
                super::nodes::contract_write_calls(w).map_err(|e| e.message)
            }
            _ => Ok(Vec::new()),
        }
    };
    match config {
        NodeConfig::Loop(l) => match &l.runner {
            Some(LoopRunner::EthTransfer(t)) => one(&NodeConfig::EthTransfer(t.clone())),
            Some(LoopRunner::ContractWrite(w)) => one(&NodeConfig::ContractWrite(w.clone())),
            _ => Ok(Vec::new()),
        },
        other => one(other),
    }
}

/// The original's conservative gas of a wallet's creation when the factory cannot estimate it.
pub const FALLBACK_WALLET_CREATION_GAS: u64 = 500_000;

/// The gas of deploying the runner wallet: the factory's `createAccount` as `eth_estimateGas`
/// measures it with a fifth more (the original's margin), or the fallback with why.
async fn creation_gas(
    chain: &crate::chain::Chain,
    target: &super::nodes::write::WriteTarget,
) -> NodeGas {
    let init_code = target.factory.init_code(target.owner, target.salt);
    let call = TransactionRequest::default()
        .with_to(target.factory.factory)
        .with_input(init_code.slice(20..));
    let (gas_units, fallback) = match chain.provider.estimate_gas(call).await {
        Ok(gas) => (U256::from(gas) + U256::from(gas / 5), None),
        Err(e) => (
            U256::from(FALLBACK_WALLET_CREATION_GAS),
            Some(format!(
                "the factory {} could not estimate createAccount: {e}",
                target.factory.factory
            )),
        ),
    };
    NodeGas {
        node_id: fees::WALLET_CREATION_NODE.into(),
        cost_type: "wallet_creation",
        gas_units,
        fallback,
    }
}

fn fallback_gas(config: &NodeConfig) -> u64 {
    match config {
        NodeConfig::EthTransfer(_) => fees::FALLBACK_ETH_TRANSFER_GAS,
        NodeConfig::Loop(_) => fees::FALLBACK_LOOP_GAS,
        _ => fees::FALLBACK_CONTRACT_WRITE_GAS,
    }
}

impl Engine {
    /// Estimates what a run of `definition` from `runner` (or `settings.runner`) would cost.
    pub async fn estimate_fees(
        &self,
        owner: &str,
        definition: &TaskDefinition,
        runner: &str,
        rates: &FeesConfig,
    ) -> Result<FeeEstimate, FeeError> {
        let runner = if runner.is_empty() {
            definition
                .input_variables
                .get("settings")
                .and_then(|s| s.get("runner"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        } else {
            runner.to_owned()
        };
        if runner.is_empty() {
            return Err(FeeError::NoRunner);
        }
        if runner.parse::<Address>().is_err() {
            return Err(FeeError::BadRunner(runner));
        }
        let Some(chain) = self.inner.tools.chain.as_ref() else {
            return Err(FeeError::NoChain);
        };
        let env: WriteEnv = self
            .write_env(owner, &runner, WriteMode::Simulation)?
            .ok_or_else(|| {
                if self.inner.tools.writes.is_none() {
                    FeeError::NoChain
                } else {
                    FeeError::NotOwned(runner.clone())
                }
            })?;
        let gas_price = U256::from(
            chain
                .provider
                .get_gas_price()
                .await
                .map_err(|e| FeeError::Chain(e.to_string()))?,
        );
        let vars: Map<String, Value> = definition
            .input_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let templates = Templates {
            vars: &vars,
            sandbox: &self.inner.tools.sandbox,
        };
        let wallet = env.target.wallet;
        let has_writes = definition
            .nodes
            .iter()
            .any(|n| n.config.as_ref().is_some_and(super::nodes::is_write));
        // Only a run that writes deploys the wallet.
        let creation = if has_writes
            && !env
                .wallets
                .deployed(wallet)
                .await
                .map_err(|e| FeeError::Chain(e.reason))?
        {
            Some(creation_gas(chain, &env.target).await)
        } else {
            None
        };
        let creation_units = creation.as_ref().map_or(U256::ZERO, |c| c.gas_units);
        let mut gas = Vec::new();
        let mut on_chain = false;
        for node in &definition.nodes {
            let Some(config) = &node.config else { continue };
            if !super::nodes::is_write(config) {
                continue;
            }
            on_chain = true;
            let fallback = |why: String| NodeGas {
                node_id: node.id.clone(),
                cost_type: "gas",
                gas_units: U256::from(fallback_gas(config)),
                fallback: Some(why),
            };
            let rendered = match templates.node(config).await {
                Ok(rendered) => rendered,
                Err(e) => {
                    gas.push(fallback(format!("its config is resolved at run time: {e}")));
                    continue;
                }
            };
            let calls = match calls_of(&rendered) {
                Ok(calls) if !calls.is_empty() => calls,
                Ok(_) => {
                    gas.push(fallback("it makes no call".into()));
                    continue;
                }
                Err(e) => {
                    gas.push(fallback(e));
                    continue;
                }
            };
            let mut units = U256::ZERO;
            let mut failed = None;
            for (i, call) in calls.into_iter().enumerate() {
                let request = OpRequest {
                    purpose: events::user_op::OpPurpose::Step {
                        step_id: node.id.clone(),
                        iteration: Some(i as u32),
                    },
                    owner: env.target.owner,
                    salt: env.target.salt,
                    factory: env.target.factory.clone(),
                    wallet,
                    calls: vec![call],
                    nonce_key: nonce::step_key("fee-estimate", &node.id),
                };
                match env.wallets.estimate(&request).await {
                    Ok(op) => {
                        units += op.callGasLimit + op.verificationGasLimit + op.preVerificationGas;
                    }
                    Err(e) => {
                        failed = Some(e.reason);
                        break;
                    }
                }
            }
            gas.push(match failed {
                None => NodeGas {
                    node_id: node.id.clone(),
                    cost_type: "gas",
                    gas_units: units.saturating_sub(creation_units),
                    fallback: None,
                },
                Some(why) => fallback(why),
            });
        }
        if let Some(creation) = creation {
            gas.push(creation);
        }
        let mut estimate = fees::estimate(rates, chain.chain_id, gas_price, &gas, on_chain);
        if creation_units > U256::ZERO {
            estimate.warnings.push(format!(
                "the wallet {wallet} is not deployed yet: the first write deploys it ({} below)",
                fees::WALLET_CREATION_NODE
            ));
        }
        Ok(estimate)
    }
}
