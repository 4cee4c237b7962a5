//! The original's fee structure (`fee_estimator.go`), as `EstimateFees` answers it: per
//! execution, a flat **execution fee** (USD), the **COGS** of each on-chain node (gas × the
//! chain's gas price, in wei), and a **value fee** (a percentage by tier: a workflow with
//! on-chain nodes is tier 1 in the rule-based classification, one without none). No totals: the
//! client computes them.
//!
//! The price source is the configured `fees.native_token_price_usd`: without it the USD figures
//! cannot be tied to the chain's currency, and the answer is `success: false` with the reason,
//! the COGS still listed and the `discounts` and `warnings` arrays present.

use alloy::primitives::U256;

use crate::config::FeesConfig;

/// The gas one on-chain node takes, estimated or assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGas {
    pub node_id: String,
    /// `gas` for a node's own operations, `wallet_creation` for deploying the wallet.
    pub cost_type: &'static str,
    pub gas_units: U256,
    /// `None`: estimated from the chain; `Some(why)`: a conservative fallback, and why.
    pub fallback: Option<String>,
}

/// The tiers of the value fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Unspecified,
    One,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueFee {
    pub tier: Tier,
    /// Percent, as text with two decimals (`0.03`).
    pub percentage: String,
    pub value_base: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cogs {
    pub node_id: String,
    pub cost_type: &'static str,
    pub wei: U256,
    pub gas_units: U256,
}

/// What `EstimateFees` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct FeeEstimate {
    pub success: bool,
    pub error: String,
    pub chain_id: u64,
    pub native_symbol: String,
    /// USD, six decimals.
    pub execution_fee_usd: String,
    pub cogs: Vec<Cogs>,
    pub value_fee: ValueFee,
    pub warnings: Vec<String>,
    pub pricing_model: &'static str,
}

/// The COGS entry of the runner wallet's creation, as the original names it.
pub const WALLET_CREATION_NODE: &str = "_wallet_creation";

/// Conservative gas of a node the chain could not estimate (the original's fallbacks).
pub const FALLBACK_CONTRACT_WRITE_GAS: u64 = 150_000;
pub const FALLBACK_ETH_TRANSFER_GAS: u64 = 50_000;
pub const FALLBACK_LOOP_GAS: u64 = 300_000;

/// The value fee of a workflow with or without on-chain nodes (the original's rule-based V1).
pub fn value_fee(rates: &FeesConfig, has_on_chain_nodes: bool) -> ValueFee {
    if has_on_chain_nodes {
        ValueFee {
            tier: Tier::One,
            percentage: format!("{:.2}", rates.tier1_percentage),
            value_base: "input_token_value",
            reason: "V1 default: workflow contains on-chain execution nodes",
        }
    } else {
        ValueFee {
            tier: Tier::Unspecified,
            percentage: "0".into(),
            value_base: "",
            reason: "Workflow has no on-chain execution nodes — no value-capture fee",
        }
    }
}

/// The estimate of a workflow whose on-chain nodes take `gas`, at `gas_price` wei per gas.
pub fn estimate(
    rates: &FeesConfig,
    chain_id: u64,
    gas_price: U256,
    gas: &[NodeGas],
    has_on_chain_nodes: bool,
) -> FeeEstimate {
    let cogs = gas
        .iter()
        .map(|g| Cogs {
            node_id: g.node_id.clone(),
            cost_type: g.cost_type,
            wei: g.gas_units.saturating_mul(gas_price),
            gas_units: g.gas_units,
        })
        .collect();
    let mut warnings: Vec<String> = gas
        .iter()
        .filter_map(|g| {
            g.fallback.as_ref().map(|why| {
                format!(
                    "node {}: gas not estimated ({why}); a conservative {} is used",
                    g.node_id, g.gas_units
                )
            })
        })
        .collect();
    let (success, error) = match rates.native_token_price_usd {
        Some(price) if price > 0.0 => (true, String::new()),
        _ => {
            warnings.push(
                "USD amounts are not converted to the chain's currency: no price source".into(),
            );
            (
                false,
                format!(
                    "no price source is configured for {} (fees.native_token_price_usd): the USD fees cannot be priced in the chain's currency",
                    rates.native_token_symbol
                ),
            )
        }
    };
    FeeEstimate {
        success,
        error,
        chain_id,
        native_symbol: rates.native_token_symbol.clone(),
        execution_fee_usd: format!("{:.6}", rates.execution_fee_usd),
        cogs,
        value_fee: value_fee(rates, has_on_chain_nodes),
        warnings,
        pricing_model: "v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, gas: u64, fallback: Option<&str>) -> NodeGas {
        NodeGas {
            node_id: id.into(),
            cost_type: "gas",
            gas_units: U256::from(gas),
            fallback: fallback.map(str::to_owned),
        }
    }

    #[test]
    fn given_a_price_when_estimating_then_cogs_are_gas_times_price() {
        let rates = FeesConfig {
            native_token_price_usd: Some(3000.0),
            ..FeesConfig::default()
        };
        let e = estimate(
            &rates,
            31337,
            U256::from(2_000_000_000u64),
            &[node("w", 100_000, None)],
            true,
        );
        assert!(e.success, "{}", e.error);
        assert_eq!(e.execution_fee_usd, "0.020000");
        assert_eq!(e.cogs[0].wei, U256::from(200_000_000_000_000u64));
        assert_eq!(e.value_fee.tier, Tier::One);
        assert_eq!(e.value_fee.percentage, "0.03");
        assert!(e.warnings.is_empty());
    }

    #[test]
    fn given_no_price_source_then_the_answer_says_so_with_the_arrays() {
        let e = estimate(
            &FeesConfig::default(),
            1,
            U256::from(1),
            &[node("t", 50_000, Some("a template"))],
            true,
        );
        assert!(!e.success);
        assert!(e.error.contains("no price source"), "{}", e.error);
        assert_eq!(e.cogs.len(), 1);
        assert_eq!(e.warnings.len(), 2, "{:?}", e.warnings);
    }

    #[test]
    fn without_on_chain_nodes_there_is_no_value_fee() {
        let v = value_fee(&FeesConfig::default(), false);
        assert_eq!((v.tier, v.percentage.as_str()), (Tier::Unspecified, "0"));
    }
}
