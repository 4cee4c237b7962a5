//! The chain nodes against anvil with a deployed ERC-20: `contract_read` (by name and params, with
//! `apply_to_fields` decimal formatting) and `balance`; and `GetTokenMetadata`.

use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolValue;

use crate::anvil::Chain;
use crate::support::{TestServer, User, run_blocking, step_output, task_of};

alloy::sol! {
    #[sol(rpc)]
    interface ITestToken {
        function mint(address to, uint256 amount) external;
    }
}

#[tokio::test]
async fn contract_read_balance_and_token_metadata() -> anyhow::Result<()> {
    let chain = Chain::start()?;
    // uint8 encodes as a full word, like a uint256 of the same value.
    let args = ("Test Token".to_owned(), "TT".to_owned(), U256::from(6)).abi_encode_params();
    let token = chain.deploy("TestToken", &args).await?;
    let holder: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse()?;
    ITestToken::new(token, &chain.provider)
        .mint(holder, U256::from(1_500_000u64))
        .send()
        .await?
        .get_receipt()
        .await?;

    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.ethereum.rpc_url = Some(chain.anvil.endpoint());
    // The tokens a balance node naming none discovers: a second token the holder holds, and an
    // address with no code (it does not answer, and is left out).
    let args = ("Known Token".to_owned(), "KT".to_owned(), U256::from(18)).abi_encode_params();
    let known_token = chain.deploy("TestToken", &args).await?;
    ITestToken::new(known_token, &chain.provider)
        .mint(holder, U256::from(7u64))
        .send()
        .await?
        .get_receipt()
        .await?;
    let known = dir.path().join("tokens.json");
    std::fs::write(
        &known,
        serde_json::json!([
            {"address": known_token.to_checksum(None), "name": "Known Token", "symbol": "KT", "decimals": 18},
            {"address": "0x000000000000000000000000000000000000dEaD", "name": "Dead", "symbol": "DEAD", "decimals": 18},
        ])
        .to_string(),
    )?;
    config.engine.token_whitelist = Some(known);
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;

    let abi = serde_json::json!({"type": "function", "name": "balanceOf", "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "balance", "type": "uint256"}]});
    let decimals_abi = serde_json::json!({"type": "function", "name": "decimals", "stateMutability": "view",
        "inputs": [], "outputs": [{"name": "", "type": "uint8"}]});
    let read = pb::TaskNode {
        id: "read".into(),
        name: "read".into(),
        r#type: pb::NodeType::ContractRead as i32,
        task_type: Some(pb::task_node::TaskType::ContractRead(
            pb::ContractReadNode {
                config: Some(pb::contract_read_node::Config {
                    contract_address: token.to_checksum(None),
                    contract_abi: vec![value_from_json(&abi), value_from_json(&decimals_abi)],
                    // As the original: the call that provides the decimals names what they format.
                    method_calls: vec![
                        pb::contract_read_node::MethodCall {
                            call_data: None,
                            method_name: "decimals".into(),
                            apply_to_fields: vec!["balanceOf.balance".into()],
                            method_params: vec![],
                        },
                        pb::contract_read_node::MethodCall {
                            call_data: None,
                            // Templated, as the original renders it.
                            method_name: "{{ 'balance' + 'Of' }}".into(),
                            apply_to_fields: vec![],
                            method_params: vec![holder.to_checksum(None)],
                        },
                    ],
                }),
            },
        )),
    };
    let balance = pb::TaskNode {
        id: "funds".into(),
        name: "funds".into(),
        r#type: pb::NodeType::Balance as i32,
        task_type: Some(pb::task_node::TaskType::Balance(pb::BalanceNode {
            config: Some(pb::balance_node::Config {
                address: holder.to_checksum(None),
                chain: "anvil".into(),
                token_addresses: vec![token.to_checksum(None)],
                ..Default::default()
            }),
        })),
    };
    let discovered = pb::TaskNode {
        id: "discovered".into(),
        name: "discovered".into(),
        r#type: pb::NodeType::Balance as i32,
        task_type: Some(pb::task_node::TaskType::Balance(pb::BalanceNode {
            config: Some(pb::balance_node::Config {
                address: holder.to_checksum(None),
                chain: "anvil".into(),
                ..Default::default()
            }),
        })),
    };
    let id = c
        .create_task(user.req(task_of(
            "chain",
            &wallet,
            vec![read, balance, discovered],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    let read_step = run.steps.iter().find(|s| s.name == "read").unwrap();
    let read = step_output(read_step);
    assert_eq!(
        read,
        serde_json::json!({"decimals": "6", "balanceOf": "1.5"}),
        "one value per method, formatted with the providing call's decimals"
    );
    let metadata = aggregator::pb::convert::json_from_value(read_step.metadata.as_ref().unwrap())?;
    assert_eq!(metadata[1]["methodName"], "balanceOf");
    assert_eq!(metadata[1]["value"], "1500000", "the raw value");
    assert_eq!(metadata[1]["methodABI"]["name"], "balanceOf");
    assert_eq!(metadata[0]["success"], true);
    let config = aggregator::pb::convert::json_from_value(read_step.config.as_ref().unwrap())?;
    assert_eq!(
        config["methodCalls"][0]["applyToFields"][0],
        "balanceOf.balance"
    );
    let context =
        aggregator::pb::convert::json_from_value(read_step.execution_context.as_ref().unwrap())?;
    assert_eq!(
        context,
        serde_json::json!({"isSimulated": false, "provider": "chain_rpc", "chainId": 31337})
    );
    let funds = step_output(run.steps.iter().find(|s| s.name == "funds").unwrap());
    let token_entry = funds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["symbol"] == "TT")
        .unwrap();
    assert_eq!(token_entry["balance"], "1500000");
    assert_eq!(token_entry["balanceFormatted"], "1.5");
    let native = funds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["symbol"] == "ETH")
        .unwrap();
    assert_eq!(native["balanceFormatted"], "10000", "anvil's dev account");
    let discovered = step_output(run.steps.iter().find(|s| s.name == "discovered").unwrap());
    let symbols: Vec<&str> = discovered
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["symbol"].as_str())
        .collect();
    assert_eq!(
        symbols,
        ["ETH", "KT"],
        "no token named: every known token held, the silent one left out"
    );
    assert_eq!(
        native["tokenAddress"], "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE",
        "the original's native sentinel"
    );

    let meta = c
        .get_token_metadata(user.req(pb::GetTokenMetadataReq {
            address: token.to_checksum(None),
        }))
        .await?
        .into_inner();
    assert!(meta.found);
    assert_eq!(meta.source, "rpc");
    let t = meta.token.unwrap();
    assert_eq!(
        (t.name.as_str(), t.symbol.as_str(), t.decimals),
        ("Test Token", "TT", 6)
    );
    assert_eq!(t.id, format!("{token:#x}"), "the original's lower-case id");
    let again = c
        .get_token_metadata(user.req(pb::GetTokenMetadataReq {
            address: format!("{token:#x}").to_uppercase().replace("0X", "0x"),
        }))
        .await?
        .into_inner();
    assert_eq!((again.found, again.source.as_str()), (true, "cache"));
    let native = c
        .get_token_metadata(user.req(pb::GetTokenMetadataReq {
            address: "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE".into(),
        }))
        .await?
        .into_inner();
    assert_eq!(native.source, "native");
    assert_eq!(
        native.token.map(|t| (t.id, t.symbol, t.decimals)),
        Some((
            "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee".into(),
            "ETH".into(),
            18
        ))
    );
    let missing = c
        .get_token_metadata(user.req(pb::GetTokenMetadataReq {
            address: holder.to_checksum(None),
        }))
        .await?
        .into_inner();
    assert!(!missing.found);
    Ok(())
}
