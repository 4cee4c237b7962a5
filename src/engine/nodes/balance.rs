//! Balance: the native balance of an address and its balances of the listed ERC-20 tokens, read
//! from the chain (no third-party API): `[{tokenAddress, name, symbol, decimals, balance,
//! balanceFormatted}]`, the native one first with the original's sentinel `tokenAddress`
//! `0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE`. Zero balances are left out unless
//! `include_zero_balances`, except those of the tokens the node names (as the original: a token
//! asked for is answered). A node that names no token gets the wallet's balances of every token
//! the aggregator knows on its chain (`engine.token_whitelist` or the built-in list), where the
//! original asks an indexer for all of them. USD values need a price service this network does
//! not run: none.

use alloy::primitives::Address;
use serde_json::{Value, json};

use events::task::BalanceConfig;

use super::{NodeError, NodeResult, NodeRun, chain, format_units};
use crate::engine::Tools;
use crate::pb::ErrorCode;
use crate::token_metadata::NATIVE_TOKEN;

/// The native token's address as the original writes it.
pub const NATIVE_TOKEN_ADDRESS: &str = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE";

pub async fn run(tools: &Tools, config: &BalanceConfig) -> NodeResult {
    let chain = chain(tools)?;
    let address: Address = config.address.parse().map_err(|_| {
        NodeError::new(format!(
            "invalid ethereum address format: {}",
            config.address
        ))
    })?;
    if config.min_usd_value_cents < 0 {
        return Err(NodeError::new(format!(
            "minUsdValue must be non-negative, got {} cents",
            config.min_usd_value_cents
        ))
        .with_code(ErrorCode::InvalidNodeConfig));
    }
    let mut tokens = Vec::with_capacity(config.token_addresses.len());
    for token in &config.token_addresses {
        let token: Address = token
            .parse()
            .map_err(|_| NodeError::new(format!("token {token:?} is not an address")))?;
        if token != NATIVE_TOKEN && !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    let mut balances = Vec::new();
    let native = chain
        .balance(address)
        .await
        .map_err(|e| NodeError::new(e.to_string()))?;
    let native_asked = config
        .token_addresses
        .iter()
        .any(|t| t.parse::<Address>().is_ok_and(|t| t == NATIVE_TOKEN));
    if config.include_zero_balances || native_asked || !native.is_zero() {
        balances.push(json!({
            "tokenAddress": NATIVE_TOKEN_ADDRESS,
            "name": "Ether",
            "symbol": "ETH",
            "decimals": 18,
            "balance": native.to_string(),
            "balanceFormatted": format_units(&native.to_string(), 18),
        }));
    }
    for token in tokens {
        let metadata = chain
            .token_metadata(token)
            .await
            .map_err(|e| NodeError::new(format!("token {token}: {e}")))?;
        let balance = chain
            .token_balance(token, address)
            .await
            .map_err(|e| NodeError::new(format!("token {token}: {e}")))?;
        balances.push(token_entry(&metadata, balance));
    }
    let mut log = Vec::new();
    if config.token_addresses.is_empty() {
        // Discovered, not asked for: a zero balance is left out (unless include_zero_balances),
        // and a token that does not answer is only logged.
        for known in tools.tokens.known_tokens() {
            match chain.token_balance(known.address, address).await {
                Ok(balance) if config.include_zero_balances || !balance.is_zero() => {
                    balances.push(token_entry(&known, balance));
                }
                Ok(_) => {}
                Err(e) => log.push(format!("token {}: {e}", known.address)),
            }
        }
    }
    log.insert(0, format!("{} balance(s) of {address}", balances.len()));
    Ok(NodeRun {
        output: Value::Array(balances),
        metadata: None,
        log,
        taken: None,
    })
}

fn token_entry(metadata: &crate::chain::TokenMetadata, balance: alloy::primitives::U256) -> Value {
    json!({
        "tokenAddress": metadata.address.to_checksum(None),
        "name": metadata.name,
        "symbol": metadata.symbol,
        "decimals": metadata.decimals,
        "balance": balance.to_string(),
        "balanceFormatted": format_units(&balance.to_string(), metadata.decimals),
    })
}
