//! User operations from the users' smart wallets against the real EntryPoint v0.6 on anvil,
//! through `aggregator::wallet` alone (no server): `chain deploy` (twice: the second deploys
//! nothing), the offline derivation against `getAddress` and the deployed address, the v0.6
//! userOpHash against `EntryPoint.getUserOpHash`, the first operation deploying the wallet and
//! moving ETH, ERC-20 writes, a stranger's signature (AA24), ten parallel writes from one wallet,
//! a nonce book ahead of the chain (AA25, rebuilt), a nonce used out of band by another process
//! (skipped), a call that reverts at estimate time and one that reverts on chain, sponsorship by
//! the paymaster, and recovery after a crash on either side of the send.

use std::sync::Arc;

use aggregator::chain::Chain as ChainClient;
use aggregator::wallet::contracts::{IEntryPointV06, UserOperation};
use aggregator::wallet::deploy::{DeployOptions, Deployment, deploy};
use aggregator::wallet::keys::{ChainKey, WalletKeys, read_hex_key};
use aggregator::wallet::nonce;
use aggregator::wallet::self_bundler::SelfBundler;
use aggregator::wallet::sender::{SendError, UserOpSender};
use aggregator::wallet::submit::{
    Journal, JournalError, MemoryJournal, NotSentKind, OpRequest, Outcome, Wallets,
};
use aggregator::wallet::user_op::{self, Call};
use aggregator::wallet::{FactoryKind, WalletFactory};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use anyhow::{Context, ensure};
use events::Event;
use events::user_op::OpPurpose;

use crate::anvil::{Chain, DEV_KEY};
use crate::support::random_u64;

alloy::sol! {
    #[sol(rpc)]
    interface ITestToken {
        function mint(address to, uint256 amount) external;
        function transfer(address to, uint256 amount) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }

    #[sol(rpc)]
    interface IFactory {
        function getAddress(address owner, uint256 salt) external view returns (address);
    }
}

const ETH: u128 = 1_000_000_000_000_000_000;

/// Anvil with the contracts deployed by `chain deploy`, and the aggregator's keys.
pub struct Setup {
    pub node: Chain,
    pub chain: ChainClient,
    pub deployment: Deployment,
    pub keys: WalletKeys,
    pub factory: WalletFactory,
    pub keys_dir: tempfile::TempDir,
}

impl Setup {
    pub async fn start(paymaster: bool) -> anyhow::Result<Self> {
        let node = Chain::start()?;
        let keys_dir = tempfile::tempdir()?;
        let key_file = keys_dir.path().join("deployer.hex");
        std::fs::write(&key_file, DEV_KEY)?;
        let options = DeployOptions {
            rpc_url: node.anvil.endpoint(),
            deployer: read_hex_key(&key_file)?,
            keys_dir: keys_dir.path().join("keys"),
            paymaster_deposit: paymaster.then(|| U256::from(ETH)),
            bundler_funding: U256::from(10 * ETH),
        };
        let deployment = deploy(&options).await?;
        let keys = WalletKeys::load(&options.keys_dir)?;
        let chain = ChainClient::connect(&node.anvil.endpoint(), crate::anvil::CHAIN_ID).await?;
        let factory = WalletFactory::controlled(deployment.factory, deployment.entry_point)?;
        Ok(Self {
            node,
            chain,
            deployment,
            keys,
            factory,
            keys_dir,
        })
    }

    pub fn self_bundler(&self) -> Arc<SelfBundler> {
        Arc::new(SelfBundler::new(
            self.chain.clone(),
            self.deployment.entry_point,
            self.keys.bundler.clone(),
        ))
    }

    pub fn wallets(&self, sender: Arc<dyn UserOpSender>) -> Wallets {
        self.wallets_with(sender, self.keys.controller.clone(), None)
    }

    pub fn wallets_with(
        &self,
        sender: Arc<dyn UserOpSender>,
        controller: ChainKey,
        paymaster: Option<aggregator::wallet::paymaster::Paymaster>,
    ) -> Wallets {
        Wallets::new(
            self.chain.clone(),
            self.deployment.entry_point,
            sender,
            controller,
            paymaster,
            std::time::Duration::from_secs(60),
        )
    }

    /// A fresh owner's wallet (salt 0), funded with `eth` ETH.
    pub async fn funded_wallet(&self, eth: u128) -> anyhow::Result<(Address, Address)> {
        let owner = PrivateKeySigner::random().address();
        let wallet = self.factory.address(owner, U256::ZERO);
        if eth > 0 {
            self.send_eth(wallet, U256::from(eth)).await?;
        }
        Ok((owner, wallet))
    }

    pub async fn send_eth(&self, to: Address, value: U256) -> anyhow::Result<()> {
        use alloy::network::TransactionBuilder;
        let tx = alloy::rpc::types::TransactionRequest::default()
            .with_to(to)
            .with_value(value);
        let receipt = self
            .node
            .provider
            .send_transaction(tx)
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status());
        Ok(())
    }

    /// Deploys `owner`'s wallet number `salt` from an anvil account (anyone may create it).
    pub async fn create_account(&self, owner: Address, salt: U256) -> anyhow::Result<()> {
        let receipt = aggregator::wallet::contracts::IControlledAccountFactory::new(
            self.factory.factory,
            &self.node.provider,
        )
        .createAccount(owner, salt)
        .send()
        .await?
        .get_receipt()
        .await?;
        ensure!(receipt.status());
        Ok(())
    }

    pub fn request(&self, owner: Address, wallet: Address, calls: Vec<Call>) -> OpRequest {
        let id = format!("exec{}", random_u64());
        OpRequest {
            purpose: OpPurpose::Step {
                step_id: "node1".into(),
                iteration: None,
            },
            owner,
            salt: U256::ZERO,
            factory: self.factory.clone(),
            wallet,
            calls,
            nonce_key: nonce::step_key(&id, "node1"),
        }
    }

    pub async fn token(&self) -> anyhow::Result<Address> {
        let args = ("Test Token".to_owned(), "TT".to_owned(), U256::from(18)).abi_encode_params();
        self.node.deploy("TestToken", &args).await
    }

    pub async fn mint(&self, token: Address, to: Address, amount: U256) -> anyhow::Result<()> {
        let receipt = ITestToken::new(token, &self.node.provider)
            .mint(to, amount)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status());
        Ok(())
    }
}

pub fn eth_call(to: Address, value: U256) -> Call {
    Call {
        to,
        value,
        data: Bytes::new(),
    }
}

pub fn token_call(token: Address, data: Vec<u8>) -> Call {
    Call {
        to: token,
        value: U256::ZERO,
        data: data.into(),
    }
}

fn landed(outcome: &Outcome) -> anyhow::Result<&events::user_op::OpReceipt> {
    match outcome {
        Outcome::Landed { receipt, .. } => Ok(receipt),
        other => anyhow::bail!("expected a landed operation, got {other:?}"),
    }
}

fn types(journal: &MemoryJournal) -> Vec<&'static str> {
    journal.events.iter().map(Event::type_name).collect()
}

#[tokio::test]
async fn deploy_is_idempotent_and_derivation_matches_the_factory() -> anyhow::Result<()> {
    let setup = Setup::start(true).await?;
    let d = &setup.deployment;
    assert!(!d.actions.is_empty());
    assert_eq!(d.controller, setup.keys.controller.address());
    // Again: everything is found where it is.
    let again = deploy(&DeployOptions {
        rpc_url: setup.node.anvil.endpoint(),
        deployer: ChainKey::from_signer(DEV_KEY.parse()?),
        keys_dir: setup.keys_dir.path().join("keys"),
        paymaster_deposit: Some(U256::from(ETH)),
        bundler_funding: U256::from(10 * ETH),
    })
    .await?;
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert_eq!((again.factory, again.paymaster), (d.factory, d.paymaster));

    // The printed config runs this chain's wallets.
    let config = d.config(&setup.node.anvil.endpoint());
    let text = serde_norway::to_string(&config)?;
    let parsed = aggregator::config::Config::from_yaml(&text, "printed")?;
    assert_eq!(parsed.wallet.factory_kind, FactoryKind::ControlledAccount);
    let from_config = WalletFactory::from_config(&parsed.wallet)?;
    assert_eq!(from_config, setup.factory);

    let factory = IFactory::new(d.factory, &setup.node.provider);
    let mut owners: Vec<Address> = setup.node.anvil.addresses()[..3].to_vec();
    owners.push(PrivateKeySigner::random().address());
    for owner in owners {
        for salt in [
            U256::ZERO,
            U256::from(1),
            U256::from(random_u64()),
            U256::MAX,
        ] {
            assert_eq!(
                setup.factory.address(owner, salt),
                factory.getAddress(owner, salt).call().await?,
                "owner {owner} salt {salt}"
            );
        }
    }

    // The first operation deploys the wallet exactly there and moves ETH.
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    ensure!(setup.node.provider.get_code_at(wallet).await?.is_empty());
    let recipient = Address::repeat_byte(0x42);
    let wallets = setup.wallets(setup.self_bundler());
    let request = setup.request(owner, wallet, vec![eth_call(recipient, U256::from(12345))]);
    let mut journal = MemoryJournal::default();
    let outcome = wallets.submit(&request, &mut journal).await?;
    let receipt = landed(&outcome)?;
    assert!(receipt.success, "{receipt:?}");
    assert!(!setup.node.provider.get_code_at(wallet).await?.is_empty());
    assert_eq!(
        setup.node.provider.get_balance(recipient).await?,
        U256::from(12345)
    );
    assert_eq!(
        types(&journal),
        ["UserOpSubmitted", "UserOpSent", "UserOpLanded"]
    );
    assert!(receipt.actual_gas_cost.parse::<u128>()? > 0);
    Ok(())
}

#[tokio::test]
async fn the_user_op_hash_is_the_entry_points() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let entry = IEntryPointV06::new(setup.deployment.entry_point, &setup.node.provider);
    for i in 0..3u64 {
        let op = UserOperation {
            sender: Address::repeat_byte(i as u8 + 1),
            nonce: nonce::compose(nonce::step_key("e", &i.to_string()), i),
            initCode: setup
                .factory
                .init_code(Address::repeat_byte(9), U256::from(i)),
            callData: user_op::call_data(&[eth_call(Address::repeat_byte(3), U256::from(i))]),
            callGasLimit: U256::from(50_000 + i),
            verificationGasLimit: U256::from(400_000),
            preVerificationGas: U256::from(48_000),
            maxFeePerGas: U256::from(3_000_000_000u64),
            maxPriorityFeePerGas: U256::from(1_000_000_000u64),
            paymasterAndData: Bytes::from(vec![7; i as usize * 10]),
            signature: user_op::dummy_signature(),
        };
        let on_chain = entry.getUserOpHash(op.clone()).call().await?;
        assert_eq!(
            user_op::hash(&op, setup.deployment.entry_point, crate::anvil::CHAIN_ID),
            on_chain
        );
    }
    Ok(())
}

#[tokio::test]
async fn erc20_writes_change_the_tokens_state() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let token = setup.token().await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    setup.mint(token, wallet, U256::from(1000)).await?;
    let wallets = setup.wallets(setup.self_bundler());
    let (to, spender) = (Address::repeat_byte(0x51), Address::repeat_byte(0x52));
    let transfer = ITestToken::transferCall {
        to,
        amount: U256::from(300),
    }
    .abi_encode();
    let approve = ITestToken::approveCall {
        spender,
        amount: U256::from(77),
    }
    .abi_encode();
    // Two calls in one operation: executeBatch.
    let request = setup.request(
        owner,
        wallet,
        vec![token_call(token, transfer), token_call(token, approve)],
    );
    let outcome = wallets
        .submit(&request, &mut MemoryJournal::default())
        .await?;
    assert!(landed(&outcome)?.success);
    let erc20 = ITestToken::new(token, &setup.node.provider);
    assert_eq!(erc20.balanceOf(to).call().await?, U256::from(300));
    assert_eq!(erc20.balanceOf(wallet).call().await?, U256::from(700));
    assert_eq!(
        erc20.allowance(wallet, spender).call().await?,
        U256::from(77)
    );

    // More than the wallet holds: the estimate finds the revert, nothing is signed or sent.
    let too_much = ITestToken::transferCall {
        to,
        amount: U256::from(10_000),
    }
    .abi_encode();
    let mut journal = MemoryJournal::default();
    let outcome = wallets
        .submit(
            &setup.request(owner, wallet, vec![token_call(token, too_much)]),
            &mut journal,
        )
        .await?;
    match outcome {
        Outcome::NotSent(not_sent) => {
            assert_eq!(not_sent.why, NotSentKind::Reverted);
            // TestToken's InsufficientBalance(address,uint256,uint256) selector.
            assert!(not_sent.reason.contains("0x"), "{}", not_sent.reason);
        }
        other => anyhow::bail!("{other:?}"),
    }
    assert!(journal.events.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_strangers_signature_is_refused_and_so_is_a_stock_wallet() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    let bundler = setup.self_bundler();
    // An operation signed by a key that is neither the owner nor the controller.
    let stranger = PrivateKeySigner::random();
    let mut op = UserOperation {
        sender: wallet,
        nonce: U256::ZERO,
        initCode: setup.factory.init_code(owner, U256::ZERO),
        callData: user_op::call_data(&[eth_call(Address::repeat_byte(1), U256::from(1))]),
        callGasLimit: U256::from(100_000),
        verificationGasLimit: U256::from(1_000_000),
        preVerificationGas: U256::from(60_000),
        maxFeePerGas: U256::from(3_000_000_000u64),
        maxPriorityFeePerGas: U256::from(1_000_000_000u64),
        paymasterAndData: Bytes::new(),
        signature: Bytes::new(),
    };
    let digest = user_op::hash(&op, setup.deployment.entry_point, crate::anvil::CHAIN_ID);
    op.signature = user_op::sign(digest, &stranger)?;
    let refused = bundler.send(&op).await.unwrap_err();
    assert_eq!(refused.code(), Some("AA24"), "{refused}");
    assert!(matches!(refused, SendError::Refused { .. }));

    // A Wallets whose controller is not the factory's: refused before anything is built.
    let wallets = setup.wallets_with(bundler.clone(), ChainKey::from_signer(stranger), None);
    let outcome = wallets
        .submit(
            &setup.request(
                owner,
                wallet,
                vec![eth_call(Address::repeat_byte(1), U256::from(1))],
            ),
            &mut MemoryJournal::default(),
        )
        .await?;
    let Outcome::NotSent(not_sent) = outcome else {
        anyhow::bail!("{outcome:?}")
    };
    assert_eq!(not_sent.why, NotSentKind::NotControlled);
    assert!(
        not_sent.reason.contains("accepts the controller"),
        "{}",
        not_sent.reason
    );

    // A wallet of the stock SimpleAccountFactory: the controller cannot act, and says so.
    let mut request = setup.request(
        owner,
        wallet,
        vec![eth_call(Address::repeat_byte(1), U256::from(1))],
    );
    request.factory = WalletFactory::canonical_v06();
    let outcome = setup
        .wallets(bundler)
        .submit(&request, &mut MemoryJournal::default())
        .await?;
    let Outcome::NotSent(not_sent) = outcome else {
        anyhow::bail!("{outcome:?}")
    };
    assert_eq!(not_sent.why, NotSentKind::NotControlled);
    assert!(
        not_sent.reason.contains("stock SimpleAccountFactory"),
        "{}",
        not_sent.reason
    );
    Ok(())
}

#[tokio::test]
async fn ten_parallel_writes_from_one_wallet_all_land() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let (owner, wallet) = setup.funded_wallet(5 * ETH).await?;
    let wallets = Arc::new(setup.wallets(setup.self_bundler()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10u8 {
        let wallets = wallets.clone();
        let request = setup.request(
            owner,
            wallet,
            vec![eth_call(
                Address::repeat_byte(0x60 + i),
                U256::from(1000 + u64::from(i)),
            )],
        );
        tasks.spawn(async move {
            let mut journal = MemoryJournal::default();
            wallets.submit(&request, &mut journal).await
        });
    }
    let mut landed_count = 0;
    while let Some(result) = tasks.join_next().await {
        let outcome = result??;
        assert!(landed(&outcome)?.success);
        landed_count += 1;
    }
    assert_eq!(landed_count, 10);
    for i in 0..10u8 {
        assert_eq!(
            setup
                .node
                .provider
                .get_balance(Address::repeat_byte(0x60 + i))
                .await?,
            U256::from(1000 + u64::from(i))
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_nonce_book_ahead_of_the_chain_is_resynced_and_the_op_rebuilt() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    let wallets = setup.wallets(setup.self_bundler());
    // A deployed wallet first.
    let first = setup.request(
        owner,
        wallet,
        vec![eth_call(Address::repeat_byte(7), U256::from(1))],
    );
    landed(
        &wallets
            .submit(&first, &mut MemoryJournal::default())
            .await?,
    )?;

    let request = setup.request(
        owner,
        wallet,
        vec![eth_call(Address::repeat_byte(8), U256::from(2))],
    );
    // The book believes sequences 0..3 are taken (as the original's cache did, #510).
    for _ in 0..3 {
        wallets.nonce_book().reserve(wallet, request.nonce_key, 0);
    }
    let mut journal = MemoryJournal::default();
    let outcome = wallets.submit(&request, &mut journal).await?;
    assert!(landed(&outcome)?.success);
    // The first build met AA25 in the estimate's simulation: nothing of it was journaled or
    // sent; the second, after a resync, carries the chain's sequence.
    assert_eq!(
        types(&journal),
        ["UserOpSubmitted", "UserOpSent", "UserOpLanded"]
    );
    let Event::UserOpSubmitted(rebuilt) = &journal.events[0] else {
        anyhow::bail!("no submission")
    };
    assert_eq!((rebuilt.nonce_sequence, rebuilt.attempt), (0, 2));

    // An operation sent out of band on the same key, by the owner's wallet itself: the next
    // one follows the chain.
    assert_eq!(wallets.chain_sequence(wallet, request.nonce_key).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_nonce_used_out_of_band_is_skipped_by_the_next_op() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    let ours = setup.wallets(setup.self_bundler());
    let request = |to: u8| {
        let mut r = setup.request(
            owner,
            wallet,
            vec![eth_call(Address::repeat_byte(to), U256::from(1))],
        );
        r.nonce_key = nonce::step_key("out-of-band", "node1");
        r
    };
    let sequence = |journal: &MemoryJournal| match &journal.events[0] {
        Event::UserOpSubmitted(s) => s.nonce_sequence,
        other => panic!("{other:?}"),
    };
    let mut journal = MemoryJournal::default();
    landed(&ours.submit(&request(0x21), &mut journal).await?)?;
    assert_eq!(sequence(&journal), 0);

    // Another process (a nonce book of its own) takes the next sequence of the same key: ours
    // still believes 1 is next.
    let theirs = setup.wallets(setup.self_bundler());
    let mut journal = MemoryJournal::default();
    landed(&theirs.submit(&request(0x22), &mut journal).await?)?;
    assert_eq!(sequence(&journal), 1);

    // Ours follows the chain: the next operation carries 2 and lands, first time.
    let mut journal = MemoryJournal::default();
    let outcome = ours.submit(&request(0x23), &mut journal).await?;
    assert!(landed(&outcome)?.success);
    assert_eq!(sequence(&journal), 2);
    assert_eq!(
        types(&journal),
        ["UserOpSubmitted", "UserOpSent", "UserOpLanded"]
    );
    for to in [0x21, 0x22, 0x23] {
        assert_eq!(
            setup
                .node
                .provider
                .get_balance(Address::repeat_byte(to))
                .await?,
            U256::from(1)
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_op_that_reverts_on_chain_is_landed_with_success_false_and_its_reason()
-> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let token = setup.token().await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    let wallets = Arc::new(setup.wallets(setup.self_bundler()));
    // Deploy the wallet, then hold 10 tokens.
    landed(
        &wallets
            .submit(
                &setup.request(
                    owner,
                    wallet,
                    vec![eth_call(Address::repeat_byte(1), U256::from(1))],
                ),
                &mut MemoryJournal::default(),
            )
            .await?,
    )?;
    setup.mint(token, wallet, U256::from(10)).await?;
    // Two transfers of all 10, estimated on the same state (no block mined in between): the
    // second one reverts on chain.
    setup
        .node
        .provider
        .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for to in [0x71u8, 0x72] {
        let wallets = wallets.clone();
        let data = ITestToken::transferCall {
            to: Address::repeat_byte(to),
            amount: U256::from(10),
        }
        .abi_encode();
        let request = setup.request(owner, wallet, vec![token_call(token, data)]);
        tasks.spawn(async move {
            wallets
                .submit(&request, &mut MemoryJournal::default())
                .await
        });
    }
    // Mine once both are in the pool, then keep mining.
    let provider = setup.node.provider.clone();
    let miner = tokio::spawn(async move {
        loop {
            let pending: serde_json::Value = provider
                .raw_request("eth_getBlockByNumber".into(), ("pending", false))
                .await
                .unwrap_or_default();
            if pending["transactions"]
                .as_array()
                .is_some_and(|t| t.len() >= 2)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        loop {
            let _ = provider
                .raw_request::<_, String>("evm_mine".into(), ())
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let mut receipts = Vec::new();
    while let Some(result) = tasks.join_next().await {
        receipts.push(landed(&result??)?.clone());
    }
    miner.abort();
    receipts.sort_by_key(|r| r.success);
    let (failed, succeeded) = (&receipts[0], &receipts[1]);
    assert!(succeeded.success && !failed.success, "{receipts:?}");
    assert!(!failed.tx_hash.is_empty());
    // InsufficientBalance(address,uint256,uint256): selector 0xdb42144d.
    assert!(
        failed.revert_reason.starts_with("0xdb42144d"),
        "{}",
        failed.revert_reason
    );
    Ok(())
}

#[tokio::test]
async fn a_sponsored_op_debits_the_paymasters_deposit() -> anyhow::Result<()> {
    let setup = Setup::start(true).await?;
    let paymaster_address = setup.deployment.paymaster.context("no paymaster")?;
    let paymaster = aggregator::wallet::paymaster::Paymaster::new(
        paymaster_address,
        setup.keys.controller.clone(),
        setup.chain.clone(),
    );
    let wallets = setup.wallets_with(
        setup.self_bundler(),
        setup.keys.controller.clone(),
        Some(paymaster),
    );
    let (owner, wallet) = setup.funded_wallet(0).await?;
    // The wallet holds exactly the value it sends: the gas is the paymaster's.
    setup.send_eth(wallet, U256::from(500)).await?;
    let entry = IEntryPointV06::new(setup.deployment.entry_point, &setup.node.provider);
    let before = entry.balanceOf(paymaster_address).call().await?;
    for i in 0..2u8 {
        let request = setup.request(
            owner,
            wallet,
            vec![eth_call(Address::repeat_byte(0x90 + i), U256::from(250))],
        );
        let receipt = landed(
            &wallets
                .submit(&request, &mut MemoryJournal::default())
                .await?,
        )?
        .clone();
        assert!(receipt.success);
        assert_eq!(receipt.paymaster, format!("{paymaster_address:#x}"));
    }
    let after = entry.balanceOf(paymaster_address).call().await?;
    assert!(after < before, "{before} -> {after}");
    assert_eq!(setup.node.provider.get_balance(wallet).await?, U256::ZERO);
    Ok(())
}

/// A journal that fails (as a crashing process stops) after a number of events.
struct CrashingJournal {
    inner: MemoryJournal,
    crash_after: usize,
}

impl Journal for CrashingJournal {
    /// The event is durable; the process dies right after it (no later step runs).
    async fn record(&mut self, event: Event) -> Result<(), JournalError> {
        self.inner.events.push(event);
        if self.inner.events.len() > self.crash_after {
            return Err(JournalError("crashed".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn recovery_sends_the_identical_op_or_nothing() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let (owner, wallet) = setup.funded_wallet(ETH).await?;
    let bundler = setup.self_bundler();
    let wallets = setup.wallets(bundler.clone());
    let bundler_nonce = || async {
        setup
            .node
            .provider
            .get_transaction_count(bundler.account())
            .await
    };

    // Crash right after UserOpSubmitted, before the send: recovery sends that same operation.
    let recipient = Address::repeat_byte(0xa1);
    let request = setup.request(owner, wallet, vec![eth_call(recipient, U256::from(5))]);
    let mut crashing = CrashingJournal {
        inner: MemoryJournal::default(),
        crash_after: 0,
    };
    assert!(wallets.submit(&request, &mut crashing).await.is_err());
    let Some(Event::UserOpSubmitted(submitted)) = crashing.inner.events.first().cloned() else {
        anyhow::bail!("nothing journaled")
    };
    assert_eq!(types(&crashing.inner), ["UserOpSubmitted"]);
    assert_eq!(bundler_nonce().await?, 0, "sent although its process died");
    let restarted = setup.wallets(setup.self_bundler());
    let mut journal = MemoryJournal::default();
    let outcome = restarted.recover(&submitted, None, &mut journal).await?;
    let Outcome::Landed { user_op_hash, .. } = &outcome else {
        anyhow::bail!("{outcome:?}")
    };
    assert_eq!(format!("{user_op_hash:#x}"), submitted.user_op_hash);
    assert_eq!(types(&journal), ["UserOpSent", "UserOpLanded"]);
    assert_eq!(
        setup.node.provider.get_balance(recipient).await?,
        U256::from(5)
    );
    assert_eq!(bundler_nonce().await?, 1);

    // Crash right after the send (UserOpSent durable, no receipt waited for): recovery finds
    // it on chain and sends nothing.
    let recipient = Address::repeat_byte(0xa2);
    let request = setup.request(owner, wallet, vec![eth_call(recipient, U256::from(6))]);
    let mut crashing = CrashingJournal {
        inner: MemoryJournal::default(),
        crash_after: 1,
    };
    assert!(wallets.submit(&request, &mut crashing).await.is_err());
    assert_eq!(types(&crashing.inner), ["UserOpSubmitted", "UserOpSent"]);
    let Event::UserOpSubmitted(submitted) = crashing.inner.events[0].clone() else {
        anyhow::bail!("no submission")
    };
    let Event::UserOpSent(sent) = crashing.inner.events[1].clone() else {
        anyhow::bail!("not sent")
    };
    // The count once that bundle is mined (read now, the node may not have mined it yet).
    let sent_tx = setup
        .node
        .provider
        .get_transaction_by_hash(sent.tx_hash.parse()?)
        .await?
        .context("the sent bundle is unknown to the node")?;
    let sent_before = alloy::consensus::Transaction::nonce(&sent_tx) + 1;
    for tx in [Some(sent.tx_hash.parse()?), None] {
        let mut journal = MemoryJournal::default();
        let outcome = restarted.recover(&submitted, tx, &mut journal).await?;
        assert!(landed(&outcome)?.success);
        assert_eq!(types(&journal), ["UserOpLanded"]);
    }
    assert_eq!(bundler_nonce().await?, sent_before, "sent again");
    assert_eq!(
        setup.node.provider.get_balance(recipient).await?,
        U256::from(6)
    );

    // An operation whose nonce another one used meanwhile: refused, nothing new built.
    let request = setup.request(owner, wallet, vec![eth_call(recipient, U256::from(7))]);
    let mut crashing = CrashingJournal {
        inner: MemoryJournal::default(),
        crash_after: 0,
    };
    assert!(wallets.submit(&request, &mut crashing).await.is_err());
    let Some(Event::UserOpSubmitted(stale)) = crashing.inner.events.first().cloned() else {
        anyhow::bail!("nothing journaled")
    };
    // The same key's sequence 0 taken by another operation.
    let other = OpRequest {
        nonce_key: request.nonce_key,
        ..setup.request(
            owner,
            wallet,
            vec![eth_call(Address::repeat_byte(0xa3), U256::from(1))],
        )
    };
    landed(
        &restarted
            .submit(&other, &mut MemoryJournal::default())
            .await?,
    )?;
    let mut journal = MemoryJournal::default();
    let outcome = restarted.recover(&stale, None, &mut journal).await?;
    let Outcome::NotSent(not_sent) = outcome else {
        anyhow::bail!("{outcome:?}")
    };
    assert!(
        not_sent.reason.contains("not sent again"),
        "{}",
        not_sent.reason
    );
    assert_eq!(types(&journal), ["UserOpRejected"]);
    assert_eq!(
        setup.node.provider.get_balance(recipient).await?,
        U256::from(6)
    );
    Ok(())
}
