//! Smart-wallet addresses derived offline (`aggregator::wallet`) against the real ERC-4337 v0.6
//! contracts on anvil: the canonical factory's own `getAddress(owner, salt)`, and the address
//! `createAccount` really deploys to.

use aggregator::wallet::{
    CANONICAL_ACCOUNT_IMPLEMENTATION_V06, CANONICAL_ENTRY_POINT_V06, CANONICAL_FACTORY_V06,
    WalletFactory,
};
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;
use anyhow::ensure;

use crate::anvil::{Chain, artifact};
use crate::support::random_u64;

alloy::sol! {
    #[sol(rpc)]
    interface ISimpleAccountFactory {
        function accountImplementation() external view returns (address);
        function getAddress(address owner, uint256 salt) external view returns (address);
        function createAccount(address owner, uint256 salt) external returns (address);
    }
}

/// Deploys EntryPoint v0.6 and SimpleAccountFactory v0.6 as on public chains (CREATE2 deployer,
/// salt 0, the factory's constructor taking the EntryPoint), as `verify.mjs` does.
async fn deploy_canonical_v06(chain: &Chain) -> anyhow::Result<Address> {
    let entry_point = chain
        .deploy_create2(B256::ZERO, &artifact("EntryPoint")?.bytecode)
        .await?;
    assert_eq!(entry_point, CANONICAL_ENTRY_POINT_V06);
    let factory_init = [
        artifact("SimpleAccountFactory")?.bytecode.as_ref(),
        &entry_point.abi_encode(),
    ]
    .concat();
    let factory = chain.deploy_create2(B256::ZERO, &factory_init).await?;
    assert_eq!(factory, CANONICAL_FACTORY_V06);
    Ok(factory)
}

fn random_address() -> Address {
    Address::from_word(keccak256(
        [random_u64().to_be_bytes(), random_u64().to_be_bytes()].concat(),
    ))
}

fn salts() -> Vec<U256> {
    vec![
        U256::ZERO,
        U256::from(1),
        (U256::from(1) << 64) + U256::from(5),
        U256::from(random_u64()),
        U256::MAX,
    ]
}

#[tokio::test]
async fn derived_addresses_match_the_canonical_factory() -> anyhow::Result<()> {
    let chain = Chain::start()?;
    let factory_address = deploy_canonical_v06(&chain).await?;
    let factory = ISimpleAccountFactory::new(factory_address, &chain.provider);
    assert_eq!(
        factory.accountImplementation().call().await?,
        CANONICAL_ACCOUNT_IMPLEMENTATION_V06
    );

    let wallets = WalletFactory::canonical_v06();
    let mut owners = chain.anvil.addresses()[..3].to_vec();
    owners.push(random_address());
    for owner in owners {
        for salt in salts() {
            let on_chain = factory.getAddress(owner, salt).call().await?;
            assert_eq!(
                wallets.address(owner, salt),
                on_chain,
                "owner {owner} salt {salt}"
            );
        }
    }

    // And createAccount deploys there.
    let (owner, salt) = (random_address(), U256::from(1));
    let expected = wallets.address(owner, salt);
    ensure!(chain.provider.get_code_at(expected).await?.is_empty());
    let receipt = factory
        .createAccount(owner, salt)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "createAccount reverted");
    ensure!(
        !chain.provider.get_code_at(expected).await?.is_empty(),
        "no account at {expected}"
    );
    Ok(())
}

#[tokio::test]
async fn a_factory_elsewhere_is_derived_from_its_address() -> anyhow::Result<()> {
    // A v0.6 factory deployed with plain CREATE (as on a private chain): `v06_at` finds its
    // implementation from the factory's address alone.
    let chain = Chain::start()?;
    let entry_point = chain.deploy("EntryPoint", &[]).await?;
    let factory_address = chain
        .deploy("SimpleAccountFactory", &entry_point.abi_encode())
        .await?;
    assert_ne!(factory_address, CANONICAL_FACTORY_V06);
    let factory = ISimpleAccountFactory::new(factory_address, &chain.provider);

    let wallets = WalletFactory::v06_at(factory_address, entry_point);
    assert_eq!(
        factory.accountImplementation().call().await?,
        wallets.account_implementation
    );
    let owner = random_address();
    for salt in salts() {
        assert_eq!(
            wallets.address(owner, salt),
            factory.getAddress(owner, salt).call().await?,
            "salt {salt}"
        );
    }
    Ok(())
}
