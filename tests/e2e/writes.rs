//! Tasks that write on chain, through the aggregator over gRPC, on anvil set up by
//! `chain deploy`: an ETH transfer that deploys the user's wallet, ERC-20 `transfer` and `approve`
//! writes with the step gas fields, a write that reverts (a failed step with the reason), a loop
//! of writes (in nonce order), `RunNodeWithInputs` of writes (simulated by default, sent on
//! `is_simulated: false`, the original's validation words), and a wallet of the stock factory,
//! which the controller cannot act for.

use aggregator::config::Config;
use aggregator::pb;
use aggregator::pb::convert::value_from_json;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;
use serde_json::{Value, json};

use crate::support::{TestServer, User, run_blocking, step_output, task_of};
use crate::wallet_ops::Setup;

alloy::sol! {
    #[sol(rpc)]
    interface IToken {
        function mint(address to, uint256 amount) external;
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

pub const ETH: u128 = 1_000_000_000_000_000_000;

/// The config of an aggregator on the chain `setup` deployed, with the keys `chain deploy`
/// created.
pub fn config_on(setup: &Setup) -> anyhow::Result<(tempfile::TempDir, Config)> {
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    let printed: Config = setup.deployment.config(&setup.node.anvil.endpoint());
    config.chain_id = printed.chain_id;
    config.ethereum = printed.ethereum;
    config.wallet = printed.wallet;
    config.wallet.receipt_timeout = std::time::Duration::from_secs(30);
    config.keys_dir = setup.keys_dir.path().join("keys");
    Ok((dir, config))
}

pub fn token_abi() -> Vec<prost_types::Value> {
    [
        json!({"type": "function", "name": "transfer", "stateMutability": "nonpayable",
            "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
            "outputs": [{"name": "", "type": "bool"}]}),
        json!({"type": "function", "name": "approve", "stateMutability": "nonpayable",
            "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
            "outputs": [{"name": "", "type": "bool"}]}),
        json!({"type": "error", "name": "InsufficientBalance", "inputs": [
            {"name": "account", "type": "address"}, {"name": "balance", "type": "uint256"},
            {"name": "needed", "type": "uint256"}]}),
    ]
    .iter()
    .map(value_from_json)
    .collect()
}

pub fn write_node(
    id: &str,
    token: Address,
    calls: &[(&str, Vec<String>)],
    simulated: Option<bool>,
) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: pb::NodeType::ContractWrite as i32,
        task_type: Some(pb::task_node::TaskType::ContractWrite(
            pb::ContractWriteNode {
                config: Some(pb::contract_write_node::Config {
                    contract_address: token.to_checksum(None),
                    contract_abi: token_abi(),
                    method_calls: calls
                        .iter()
                        .map(|(name, params)| pb::contract_write_node::MethodCall {
                            method_name: (*name).into(),
                            method_params: params.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    is_simulated: simulated,
                    ..Default::default()
                }),
            },
        )),
    }
}

pub fn transfer_node(id: &str, to: &str, amount: &str) -> pb::TaskNode {
    pb::TaskNode {
        id: id.into(),
        name: id.into(),
        r#type: pb::NodeType::EthTransfer as i32,
        task_type: Some(pb::task_node::TaskType::EthTransfer(pb::EthTransferNode {
            config: Some(pb::eth_transfer_node::Config {
                destination: to.into(),
                amount: amount.into(),
            }),
        })),
    }
}

/// A chain, a server on it, a signed-in user with a funded wallet, and a token it holds.
pub struct World {
    pub setup: Setup,
    pub server: TestServer,
    pub user: User,
    pub wallet: Address,
    pub token: Address,
}

impl World {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// [`World::start`] with the server's config changed first.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let setup = Setup::start(false).await?;
        let (dir, mut config) = config_on(&setup)?;
        change(&mut config);
        let server = TestServer::start_with(dir, config).await?;
        let mut c = server.client().await?;
        let user = User::sign_in(&mut c).await?;
        let wallet: Address = user.wallet(&mut c).await?.parse()?;
        assert_eq!(
            wallet,
            setup.factory.address(user.signer.address(), U256::ZERO),
            "GetWallet derives under the ControlledAccountFactory of the config"
        );
        setup.send_eth(wallet, U256::from(ETH)).await?;
        let token = setup.token().await?;
        setup.mint(token, wallet, U256::from(1000)).await?;
        Ok(Self {
            setup,
            server,
            user,
            wallet,
            token,
        })
    }

    pub async fn balance(&self, holder: Address) -> anyhow::Result<U256> {
        Ok(IToken::new(self.token, &self.setup.node.provider)
            .balanceOf(holder)
            .call()
            .await?)
    }
}

fn step<'a>(run: &'a pb::TriggerTaskResp, name: &str) -> &'a pb::execution::Step {
    run.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {run:?}"))
}

#[tokio::test]
async fn a_task_transfers_eth_and_writes_to_a_token() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let (recipient, spender) = (Address::repeat_byte(0x31), Address::repeat_byte(0x32));
    let wallet = w.wallet.to_checksum(None);
    let nodes = vec![
        transfer_node("pay", &recipient.to_checksum(None), "12345"),
        write_node(
            "token",
            w.token,
            &[
                ("transfer", vec![recipient.to_checksum(None), "300".into()]),
                ("approve", vec![spender.to_checksum(None), "77".into()]),
            ],
            None,
        ),
    ];
    let edges = vec![
        crate::support::edge("trigger1", "pay"),
        crate::support::edge("pay", "token"),
    ];
    let id = c
        .create_task(w.user.req(task_of("writes", &wallet, nodes, Some(edges))))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &w.user, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");

    // The first write deployed the wallet and moved the ETH.
    let chain = &w.setup.node.provider;
    assert!(!chain.get_code_at(w.wallet).await?.is_empty());
    assert_eq!(chain.get_balance(recipient).await?, U256::from(12345));
    let pay = step(&run, "pay");
    let out = step_output(pay);
    assert_eq!(out["transfer"]["to"], recipient.to_checksum(None));
    assert_eq!(out["transfer"]["from"], wallet);
    assert_eq!(out["transfer"]["value"], "12345");
    assert!(pay.gas_used.parse::<u64>()? > 21_000, "{pay:?}");
    assert_eq!(
        pay.total_gas_cost.parse::<u128>()?,
        pay.gas_used.parse::<u128>()? * pay.gas_price.parse::<u128>()?
    );

    // Both token methods ran, each its own user operation with a receipt.
    assert_eq!(w.balance(recipient).await?, U256::from(300));
    let allowance = IToken::new(w.token, chain)
        .allowance(w.wallet, spender)
        .call()
        .await?;
    assert_eq!(allowance, U256::from(77));
    let token = step_output(step(&run, "token"));
    let results = token.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (result, name) in results.iter().zip(["transfer", "approve"]) {
        assert_eq!(result["methodName"], name);
        assert_eq!(result["success"], true, "{result}");
        assert_eq!(result["value"], true);
        assert_eq!(result["receipt"]["status"], "0x1");
        assert!(
            result["receipt"]["transactionHash"]
                .as_str()
                .unwrap()
                .starts_with("0x")
        );
    }
    let token_step = step(&run, "token");
    assert!(token_step.gas_used.parse::<u64>()? > 0);

    // The execution carries the steps' gas as its costs (COGS per on-chain step).
    let execution = c
        .get_execution(w.user.req(pb::ExecutionReq {
            task_id: id.clone(),
            execution_id: run.execution_id.clone(),
        }))
        .await?
        .into_inner();
    let cogs: Vec<_> = execution.cogs.iter().map(|c| c.node_id.as_str()).collect();
    assert_eq!(cogs, ["pay", "token"], "{execution:?}");
    assert_eq!(
        execution.cogs[0].fee.as_ref().map(|f| f.amount.clone()),
        Some(pay.total_gas_cost.clone())
    );
    // And the original's other two fees of a finished run, from `fees:` (E7; nothing is
    // charged): the flat execution fee, the value fee of a workflow that acts on chain.
    let fee = execution.execution_fee.as_ref().unwrap();
    assert_eq!(
        (fee.amount.as_str(), fee.unit.as_str()),
        ("0.020000", "USD")
    );
    let value = execution.value_fee.as_ref().unwrap();
    assert_eq!(value.tier, pb::ExecutionTier::ExecutionTier1 as i32);
    assert_eq!(value.fee.as_ref().unwrap().amount, "0.03");
    Ok(())
}

#[tokio::test]
async fn a_reverting_write_is_a_failed_step_with_its_reason() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let wallet = w.wallet.to_checksum(None);
    let too_much = write_node(
        "overdraw",
        w.token,
        &[(
            "transfer",
            vec![Address::repeat_byte(5).to_checksum(None), "5000".into()],
        )],
        None,
    );
    let id = c
        .create_task(w.user.req(task_of("revert", &wallet, vec![too_much], None)))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &w.user, &id).await?;
    // The trigger succeeded and the one node failed: a partial success, as the original.
    assert_eq!(run.status, pb::ExecutionStatus::PartialSuccess as i32);
    let overdraw = step(&run, "overdraw");
    assert!(!overdraw.success);
    assert!(
        overdraw.error.contains("InsufficientBalance(") && overdraw.error.contains("needed=5000"),
        "{}",
        overdraw.error
    );
    assert_eq!(w.balance(w.wallet).await?, U256::from(1000));
    Ok(())
}

#[tokio::test]
async fn a_loop_of_writes_runs_in_nonce_order() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let wallet = w.wallet.to_checksum(None);
    let recipients: Vec<String> = (1..=3u8)
        .map(|i| Address::repeat_byte(0x40 + i).to_checksum(None))
        .collect();
    let code = crate::support::code_node(
        "list",
        &format!("return {};", serde_json::to_string(&recipients)?),
    );
    let runner = pb::loop_node::Runner::ContractWrite(pb::ContractWriteNode {
        config: Some(pb::contract_write_node::Config {
            contract_address: w.token.to_checksum(None),
            contract_abi: token_abi(),
            method_calls: vec![pb::contract_write_node::MethodCall {
                method_name: "transfer".into(),
                method_params: vec!["{{value}}".into(), "10".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
    });
    let looped = pb::TaskNode {
        id: "each".into(),
        name: "each".into(),
        r#type: pb::NodeType::Loop as i32,
        task_type: Some(pb::task_node::TaskType::Loop(pb::LoopNode {
            config: Some(pb::loop_node::Config {
                input_variable: "{{list.data}}".into(),
                iter_val: "value".into(),
                iter_key: "index".into(),
                // Parallel asked: writes go one after the other all the same.
                execution_mode: pb::ExecutionMode::Parallel as i32,
                ..Default::default()
            }),
            runner: Some(runner),
        })),
    };
    let edges = vec![
        crate::support::edge("trigger1", "list"),
        crate::support::edge("list", "each"),
    ];
    let id = c
        .create_task(
            w.user
                .req(task_of("loop", &wallet, vec![code, looped], Some(edges))),
        )
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &w.user, &id).await?;
    assert_eq!(run.status, pb::ExecutionStatus::Success as i32, "{run:?}");
    for r in &recipients {
        assert_eq!(w.balance(r.parse()?).await?, U256::from(10));
    }
    // Three operations on the step's key: sequences 0, 1, 2 in the order of the list.
    let out = step_output(step(&run, "each"));
    let blocks: Vec<u64> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0]["blockNumber"].as_u64().unwrap())
        .collect();
    assert!(blocks.windows(2).all(|w| w[0] < w[1]), "{blocks:?}");
    Ok(())
}

#[tokio::test]
async fn run_node_with_inputs_simulates_writes_and_sends_on_request() -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w.server.client().await?;
    let wallet = w.wallet.to_checksum(None);
    let to = Address::repeat_byte(0x61);
    let settings = |runner: Option<&str>| {
        let mut s = json!({"chain_id": 31337, "name": "preview"});
        if let Some(r) = runner {
            s["runner"] = Value::from(r);
        }
        [("settings".to_owned(), value_from_json(&s))]
            .into_iter()
            .collect()
    };
    let run = |node: pb::TaskNode,
               input: std::collections::BTreeMap<String, prost_types::Value>| {
        let req = w.user.req(pb::RunNodeWithInputsReq {
            node: Some(node),
            input_variables: input,
        });
        let mut c = c.clone();
        async move { anyhow::Ok(c.run_node_with_inputs(req).await?.into_inner()) }
    };
    let write = write_node(
        "w",
        w.token,
        &[("transfer", vec![to.to_checksum(None), "1".into()])],
        None,
    );

    let missing = run(write.clone(), Default::default()).await?;
    assert!(!missing.success);
    assert_eq!(missing.error, "settings is required for contractWrite");
    let no_runner = run(write.clone(), settings(None)).await?;
    assert_eq!(
        no_runner.error,
        "settings.runner is required for contractWrite"
    );
    let other = run(
        write.clone(),
        settings(Some(&Address::repeat_byte(9).to_checksum(None))),
    )
    .await?;
    assert!(
        !other.success && other.error.contains("not a smart wallet"),
        "{}",
        other.error
    );

    // Simulated by default: the return value, nothing on chain.
    let simulated = run(write.clone(), settings(Some(&wallet))).await?;
    assert!(simulated.success, "{simulated:?}");
    assert_eq!(w.balance(to).await?, U256::ZERO);
    let context = |r: &pb::RunNodeWithInputsResp| {
        aggregator::pb::convert::json_from_value(r.execution_context.as_ref().unwrap()).unwrap()
    };
    assert_eq!(
        context(&simulated),
        json!({"chainId": 31337, "isSimulated": true, "provider": "eth_call"})
    );
    // A method the ABI lacks: error code 3000.
    let unknown = run(
        write_node("u", w.token, &[("burn", vec!["1".into()])], None),
        settings(Some(&wallet)),
    )
    .await?;
    assert!(!unknown.success);
    assert_eq!(unknown.error_code, 3000, "{unknown:?}");

    // Sent when asked.
    let sent = run(
        write_node(
            "s",
            w.token,
            &[("transfer", vec![to.to_checksum(None), "2".into()])],
            Some(false),
        ),
        settings(Some(&wallet)),
    )
    .await?;
    assert!(sent.success, "{sent:?}");
    assert_eq!(w.balance(to).await?, U256::from(2));
    assert_eq!(
        context(&sent),
        json!({"chainId": 31337, "isSimulated": false, "provider": "self_bundler"})
    );

    // An ETH transfer's simulation answers locally; a bad destination says so.
    let eth = run(
        transfer_node("e", &to.to_checksum(None), "0"),
        settings(Some(&wallet)),
    )
    .await?;
    assert!(eth.success, "{eth:?}");
    // Refused before it runs, as CreateTask refuses it, with the original's words (in-band).
    let bad = run(
        transfer_node("e", "invalid_address", "1"),
        settings(Some(&wallet)),
    )
    .await?;
    assert!(!bad.success);
    assert!(
        bad.error.starts_with("invalid destination address"),
        "{bad:?}"
    );
    assert_eq!(bad.error_code, pb::ErrorCode::InvalidNodeConfig as i32);
    Ok(())
}

#[tokio::test]
async fn the_controller_cannot_act_for_a_stock_factory_wallet() -> anyhow::Result<()> {
    // The default config: the canonical SimpleAccountFactory, deployed as on public chains.
    let setup = Setup::start(false).await?;
    let factory_init = [
        crate::anvil::artifact("SimpleAccountFactory")?
            .bytecode
            .as_ref(),
        &setup.deployment.entry_point.abi_encode(),
    ]
    .concat();
    setup
        .node
        .deploy_create2(alloy::primitives::B256::ZERO, &factory_init)
        .await?;
    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.ethereum.rpc_url = Some(setup.node.anvil.endpoint());
    config.keys_dir = setup.keys_dir.path().join("keys");
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    setup.send_eth(wallet.parse()?, U256::from(ETH)).await?;
    let id = c
        .create_task(user.req(task_of(
            "stock",
            &wallet,
            vec![transfer_node(
                "pay",
                &Address::repeat_byte(1).to_checksum(None),
                "1",
            )],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let run = run_blocking(&mut c, &user, &id).await?;
    let pay = step(&run, "pay");
    assert!(!pay.success);
    assert!(
        pay.error.contains("stock SimpleAccountFactory"),
        "{}",
        pay.error
    );
    assert!(
        setup
            .node
            .provider
            .get_code_at(wallet.parse()?)
            .await?
            .is_empty()
    );
    Ok(())
}
