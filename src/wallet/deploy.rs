//! `aggregator chain deploy`: makes a chain ready for the users' wallets, idempotently, and
//! prints the config that runs on it.
//!
//! 1. The controller and self-bundler keys in the keys directory (created when absent).
//! 2. EntryPoint v0.6 through the CREATE2 deployer with salt 0 (so at its canonical address; its
//!    runtime code cannot be set instead, it has an immutable `senderCreator`).
//! 3. The `ControlledAccountFactory` of (EntryPoint, controller) through the CREATE2 deployer.
//! 4. Optionally the `OwnedVerifyingPaymaster` of (EntryPoint, controller, the deployer's
//!    account) through the CREATE2 deployer, and its EntryPoint deposit topped up.
//! 5. The self-bundler's account topped up from the deployer's.
//!
//! What exists is found at its deterministic address and left alone, so running it twice deploys
//! nothing the second time.

use std::path::PathBuf;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolValue;
use anyhow::{Context, bail, ensure};

use super::contracts::{self, CREATE2_DEPLOYER, IEntryPointV06};
use super::keys::{ChainKey, WalletKeys};
use super::{CANONICAL_ENTRY_POINT_V06, FactoryKind, WalletFactory, controlled_factory_init_code};
use crate::config::Config;

/// What to deploy and with what.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub rpc_url: String,
    /// Pays for everything.
    pub deployer: ChainKey,
    pub keys_dir: PathBuf,
    /// Deploy a paymaster and keep its deposit at least this (wei); `None`: no paymaster.
    pub paymaster_deposit: Option<U256>,
    /// Keep the self-bundler's account at least this (wei).
    pub bundler_funding: U256,
}

/// What the chain holds afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub chain_id: u64,
    pub entry_point: Address,
    pub factory: Address,
    pub account_implementation: Address,
    pub paymaster: Option<Address>,
    pub controller: Address,
    pub bundler: Address,
    /// What this run deployed or sent (empty when everything was there already).
    pub actions: Vec<String>,
}

impl Deployment {
    /// The defaults with this chain's values filled in.
    pub fn config(&self, rpc_url: &str) -> Config {
        let mut config = Config {
            chain_id: self.chain_id,
            ..Config::default()
        };
        config.ethereum.rpc_url = Some(rpc_url.to_owned());
        config.wallet.factory = self.factory.to_checksum(None);
        config.wallet.factory_kind = FactoryKind::ControlledAccount;
        config.wallet.account_implementation = self.account_implementation.to_checksum(None);
        config.wallet.entry_point = self.entry_point.to_checksum(None);
        config.wallet.paymaster = self.paymaster.map(|p| p.to_checksum(None));
        config
    }
}

/// Deploys what is missing.
pub async fn deploy(options: &DeployOptions) -> anyhow::Result<Deployment> {
    let keys = WalletKeys::load_or_create(&options.keys_dir)?;
    let url = options
        .rpc_url
        .parse()
        .with_context(|| format!("--rpc-url {:?} is not a URL", options.rpc_url))?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(options.deployer.signer().clone()))
        .connect_http(url)
        .erased();
    let chain_id = provider
        .get_chain_id()
        .await
        .context("asking the node for its chain id")?;
    let mut actions = Vec::new();
    let deployer = Deployer {
        provider: &provider,
    };

    ensure!(
        !provider.get_code_at(CREATE2_DEPLOYER).await?.is_empty(),
        "this chain has no CREATE2 deployer at {CREATE2_DEPLOYER} (the deterministic deployment \
         proxy); deploy it first (see https://github.com/Arachnid/deterministic-deployment-proxy)"
    );

    let entry_point = deployer
        .create2(
            "EntryPoint v0.6",
            &contracts::entry_point()?.bytecode,
            &mut actions,
        )
        .await?;
    ensure!(
        entry_point == CANONICAL_ENTRY_POINT_V06,
        "the EntryPoint landed at {entry_point}, not {CANONICAL_ENTRY_POINT_V06}"
    );

    let controller = keys.controller.address();
    let factory_init = controlled_factory_init_code(entry_point, controller)?;
    let factory = deployer
        .create2("ControlledAccountFactory", &factory_init, &mut actions)
        .await?;
    let wallets = WalletFactory::controlled(factory, entry_point)?;
    let implementation = super::contracts::IControlledAccountFactory::new(factory, &provider)
        .accountImplementation()
        .call()
        .await?;
    ensure!(
        implementation == wallets.account_implementation,
        "the factory's implementation is {implementation}, expected {}",
        wallets.account_implementation
    );

    let paymaster = match options.paymaster_deposit {
        None => None,
        Some(deposit) => {
            let owner = options.deployer.address();
            let init = [
                contracts::paymaster()?.bytecode.as_ref(),
                &(entry_point, controller, owner).abi_encode_params(),
            ]
            .concat();
            let paymaster = deployer
                .create2("OwnedVerifyingPaymaster", &init, &mut actions)
                .await?;
            let entry = IEntryPointV06::new(entry_point, &provider);
            let held = entry.balanceOf(paymaster).call().await?;
            if held < deposit {
                let top_up = deposit - held;
                let receipt = entry
                    .depositTo(paymaster)
                    .value(top_up)
                    .send()
                    .await?
                    .get_receipt()
                    .await?;
                ensure!(receipt.status(), "depositing for the paymaster reverted");
                actions.push(format!(
                    "deposited {top_up} wei for the paymaster {paymaster}"
                ));
            }
            Some(paymaster)
        }
    };

    let bundler = keys.bundler.address();
    let balance = provider.get_balance(bundler).await?;
    if balance < options.bundler_funding {
        let top_up = options.bundler_funding - balance;
        let tx = TransactionRequest::default()
            .with_to(bundler)
            .with_value(top_up);
        let receipt = provider.send_transaction(tx).await?.get_receipt().await?;
        ensure!(
            receipt.status(),
            "funding the self-bundler's account failed"
        );
        actions.push(format!(
            "sent {top_up} wei to the self-bundler's account {bundler}"
        ));
    }

    Ok(Deployment {
        chain_id,
        entry_point,
        factory,
        account_implementation: wallets.account_implementation,
        paymaster,
        controller,
        bundler,
        actions,
    })
}

struct Deployer<'a> {
    provider: &'a DynProvider,
}

impl Deployer<'_> {
    /// Deploys `init_code` through the CREATE2 deployer with salt 0 unless it is there already.
    async fn create2(
        &self,
        name: &str,
        init_code: &[u8],
        actions: &mut Vec<String>,
    ) -> anyhow::Result<Address> {
        let address = contracts::create2_address(init_code);
        if !self.provider.get_code_at(address).await?.is_empty() {
            return Ok(address);
        }
        let data: Bytes = [[0u8; 32].as_slice(), init_code].concat().into();
        let tx = TransactionRequest::default()
            .with_to(CREATE2_DEPLOYER)
            .with_input(data);
        let receipt = self
            .provider
            .send_transaction(tx)
            .await
            .with_context(|| format!("sending the deployment of {name}"))?
            .get_receipt()
            .await?;
        if !receipt.status() || self.provider.get_code_at(address).await?.is_empty() {
            bail!("deploying {name} to {address} failed");
        }
        actions.push(format!(
            "deployed {name} at {address} (gas {})",
            receipt.gas_used
        ));
        Ok(address)
    }
}
