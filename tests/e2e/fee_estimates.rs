//! `EstimateFees` over gRPC on anvil: the gas of a workflow's on-chain nodes estimated as the user
//! operations they would send from the runner wallet (nothing sent), priced at the chain's gas
//! price, with the original's fee structure; without a price source a structured `success:
//! false`; a runner that is not the caller's wallet refused with the wallet code.

use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde_json::json;

use crate::support::{code_node, manual_trigger};
use crate::writes::{World, transfer_node, write_node};

fn request(nodes: Vec<pb::TaskNode>, runner: &str) -> pb::EstimateFeesReq {
    pb::EstimateFeesReq {
        trigger: Some(manual_trigger()),
        edges: nodes
            .iter()
            .map(|n| crate::support::edge("trigger1", &n.id))
            .collect(),
        nodes,
        runner: runner.into(),
        created_at: 0,
        expire_at: 0,
        max_execution: 0,
        input_variables: Default::default(),
    }
}

fn on_chain_nodes(w: &World) -> Vec<pb::TaskNode> {
    vec![
        transfer_node("pay", &Address::repeat_byte(0x51).to_checksum(None), "1000"),
        write_node(
            "token",
            w.token,
            &[(
                "transfer",
                vec![Address::repeat_byte(0x52).to_checksum(None), "5".into()],
            )],
            None,
        ),
        code_node("math", "return 1 + 1;"),
    ]
}

#[tokio::test]
async fn fees_are_the_gas_of_the_on_chain_nodes_at_the_chains_price() -> anyhow::Result<()> {
    let w = World::start_with(|config| config.fees.native_token_price_usd = Some(3000.0)).await?;
    let mut c = w.server.client().await?;
    let chain = &w.setup.node.provider;
    let wallet = w.wallet.to_checksum(None);

    let resp = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), &wallet)))
        .await?
        .into_inner();
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.error_code, pb::ErrorCode::Unspecified as i32);
    assert_eq!(resp.chain_id, "31337");
    let native = resp.native_token.as_ref().unwrap();
    assert_eq!((native.symbol.as_str(), native.decimals), ("ETH", 18));
    let fee = resp.execution_fee.as_ref().unwrap();
    assert_eq!(
        (fee.amount.as_str(), fee.unit.as_str()),
        ("0.020000", "USD")
    );

    // One COGS entry per on-chain node, none for the code node, and the wallet's creation as
    // an entry of its own (it has no code yet): gas × the chain's price.
    let gas_price = U256::from(chain.get_gas_price().await?);
    let nodes: Vec<&str> = resp.cogs.iter().map(|c| c.node_id.as_str()).collect();
    assert_eq!(nodes, ["pay", "token", "_wallet_creation"]);
    for cogs in &resp.cogs {
        let units: U256 = cogs.gas_units.parse()?;
        // Estimated (an operation costs more than a plain transfer), not the fallbacks.
        assert!(units > U256::from(21_000), "{cogs:?}");
        assert!(
            ![50_000u64, 150_000, 500_000].contains(&units.to::<u64>()),
            "{cogs:?}"
        );
        let fee = cogs.fee.as_ref().unwrap();
        assert_eq!(fee.unit, "WEI");
        assert_eq!(fee.amount.parse::<U256>()?, units * gas_price, "{cogs:?}");
    }
    let creation = &resp.cogs[2];
    assert_eq!(creation.cost_type, "wallet_creation");
    assert!(resp.cogs[..2].iter().all(|c| c.cost_type == "gas"));
    let undeployed_gas: Vec<U256> = resp.cogs[..2]
        .iter()
        .map(|c| c.gas_units.parse())
        .collect::<Result<_, _>>()?;
    let value = resp.value_fee.as_ref().unwrap();
    assert_eq!(value.tier, pb::ExecutionTier::ExecutionTier1 as i32);
    assert_eq!(value.fee.as_ref().unwrap().amount, "0.03");
    assert_eq!(value.fee.as_ref().unwrap().unit, "PERCENTAGE");
    // The wallet has no code yet: the answer says its first write deploys it.
    assert!(
        resp.warnings.iter().any(|w| w.contains("not deployed yet")),
        "{:?}",
        resp.warnings
    );
    // Nothing was sent.
    assert!(chain.get_code_at(w.wallet).await?.is_empty());
    assert_eq!(w.balance(w.wallet).await?, U256::from(1000));

    // Once the wallet is deployed (anyone may call createAccount), no creation entry, and the
    // nodes' gas is of the same order as before (the creation was taken out of it).
    w.setup
        .create_account(w.user.signer.address(), U256::ZERO)
        .await?;
    assert!(!chain.get_code_at(w.wallet).await?.is_empty());
    let deployed = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), &wallet)))
        .await?
        .into_inner();
    assert!(deployed.success, "{deployed:?}");
    let nodes: Vec<&str> = deployed.cogs.iter().map(|c| c.node_id.as_str()).collect();
    assert_eq!(nodes, ["pay", "token"]);
    assert!(
        !deployed.warnings.iter().any(|w| w.contains("not deployed")),
        "{:?}",
        deployed.warnings
    );
    let creation_units: U256 = creation.gas_units.parse()?;
    for (cogs, before) in deployed.cogs.iter().zip(&undeployed_gas) {
        let after: U256 = cogs.gas_units.parse()?;
        // Without the subtraction `before` would exceed `after` by the whole creation.
        assert!(
            before.abs_diff(after) < creation_units / U256::from(2),
            "{cogs:?}: {before} undeployed, creation {creation_units}"
        );
    }

    // A node whose config needs a run (a template of an earlier node's output): the fallback,
    // with a warning saying why.
    let templated = transfer_node("later", "{{math.data}}", "1");
    let resp = c
        .estimate_fees(w.user.req(request(vec![templated], &wallet)))
        .await?
        .into_inner();
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.cogs[0].gas_units, "50000");
    assert!(
        resp.warnings.iter().any(|w| w.starts_with("node later")),
        "{:?}",
        resp.warnings
    );

    // No on-chain node: no COGS, no value fee; the runner may come from settings.
    let mut off_chain = request(vec![code_node("math", "return 2;")], "");
    off_chain.input_variables.insert(
        "settings".into(),
        value_from_json(&json!({"runner": wallet, "chain_id": 31337})),
    );
    let resp = c.estimate_fees(w.user.req(off_chain)).await?.into_inner();
    assert!(resp.success, "{resp:?}");
    assert!(resp.cogs.is_empty());
    assert_eq!(
        resp.value_fee.as_ref().unwrap().tier,
        pb::ExecutionTier::Unspecified as i32
    );
    Ok(())
}

#[tokio::test]
async fn without_a_price_source_or_with_a_strangers_runner_the_answer_says_why()
-> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let wallet = w.wallet.to_checksum(None);

    // The default config has no price: success false, the reason, the arrays still there.
    let resp = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), &wallet)))
        .await?
        .into_inner();
    assert!(!resp.success);
    assert!(resp.error.contains("no price source"), "{}", resp.error);
    assert_eq!(resp.cogs.len(), 3, "two nodes and the creation: {resp:?}");
    assert!(resp.discounts.is_empty());
    assert!(
        resp.warnings.iter().any(|w| w.contains("no price source")),
        "{:?}",
        resp.warnings
    );

    // No runner at all, a malformed one, one that is not the caller's wallet.
    let none = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), "")))
        .await?
        .into_inner();
    assert!(!none.success);
    assert!(none.error.contains("runner address not found"), "{none:?}");
    let bad = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), "0xnope")))
        .await?
        .into_inner();
    assert!(bad.error.contains("invalid runner address"), "{bad:?}");
    let stranger = Address::repeat_byte(0x53).to_checksum(None);
    let other = c
        .estimate_fees(w.user.req(request(on_chain_nodes(&w), &stranger)))
        .await?
        .into_inner();
    assert!(!other.success);
    assert_eq!(
        other.error_code,
        pb::ErrorCode::SmartWalletNotFound as i32,
        "{other:?}"
    );
    // Unauthenticated callers get no estimate.
    let anonymous = c
        .estimate_fees(request(on_chain_nodes(&w), &wallet))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    Ok(())
}
