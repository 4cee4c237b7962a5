//! Balance: the native balance of an address and its balances of the listed ERC-20 tokens, read
//! from the chain (no third-party API): `[{tokenAddress, name, symbol, decimals, balance,
//! balanceFormatted}]`, the native one first with `tokenAddress` null. Zero balances are left out
//! unless `include_zero_balances`.

use alloy::primitives::Address;
use serde_json::{Value, json};

use events::task::BalanceConfig;

use super::{NodeError, NodeResult, NodeRun, chain, format_units};
use crate::engine::Tools;

pub async fn run(tools: &Tools, config: &BalanceConfig) -> NodeResult {
    let chain = chain(tools)?;
    let address: Address = config
        .address
        .parse()
        .map_err(|_| NodeError::new(format!("{:?} is not an address", config.address)))?;
    let mut balances = Vec::new();
    let native = chain
        .balance(address)
        .await
        .map_err(|e| NodeError::new(e.to_string()))?;
    if config.include_zero_balances || !native.is_zero() {
        balances.push(json!({
            "tokenAddress": null,
            "name": "Ether",
            "symbol": "ETH",
            "decimals": 18,
            "balance": native.to_string(),
            "balanceFormatted": format_units(&native.to_string(), 18),
        }));
    }
    for token in &config.token_addresses {
        let token: Address = token
            .parse()
            .map_err(|_| NodeError::new(format!("token {token:?} is not an address")))?;
        let metadata = chain
            .token_metadata(token)
            .await
            .map_err(|e| NodeError::new(format!("token {token}: {e}")))?;
        let balance = chain
            .token_balance(token, address)
            .await
            .map_err(|e| NodeError::new(format!("token {token}: {e}")))?;
        if config.include_zero_balances || !balance.is_zero() {
            balances.push(json!({
                "tokenAddress": token.to_checksum(None),
                "name": metadata.name,
                "symbol": metadata.symbol,
                "decimals": metadata.decimals,
                "balance": balance.to_string(),
                "balanceFormatted": format_units(&balance.to_string(), metadata.decimals),
            }));
        }
    }
    let log = vec![format!("{} balance(s) of {address}", balances.len())];
    Ok(NodeRun {
        output: Value::Array(balances),
        log,
        taken: None,
    })
}
