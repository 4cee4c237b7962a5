//! `aggregator chain deploy` as a user runs it: the binary against anvil, twice. The first run
//! deploys and prints a config whose wallet section names what it deployed; the second deploys
//! nothing and prints the same config; the keys it created stay in the keys directory.

use std::process::Command;

use aggregator::config::Config;
use aggregator::wallet::keys::{BUNDLER_KEY_FILE, CONTROLLER_KEY_FILE};
use aggregator::wallet::{FactoryKind, WalletFactory};
use alloy::primitives::Address;
use alloy::providers::Provider;
use anyhow::ensure;

use crate::anvil::{Chain, DEV_KEY};

fn deploy(
    url: &str,
    key_file: &std::path::Path,
    keys: &std::path::Path,
) -> anyhow::Result<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["--keys-dir", keys.to_str().unwrap()])
        .args(["chain", "deploy", "--rpc-url", url])
        .args(["--key-file", key_file.to_str().unwrap()])
        .args(["--paymaster-deposit", "1000000000000000000"])
        .output()?;
    let stderr = String::from_utf8(out.stderr)?;
    ensure!(out.status.success(), "chain deploy failed: {stderr}");
    Ok((String::from_utf8(out.stdout)?, stderr))
}

#[tokio::test]
async fn chain_deploy_prints_a_config_for_the_chain_and_is_idempotent() -> anyhow::Result<()> {
    let chain = Chain::start()?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("deployer.key");
    std::fs::write(&key_file, format!("{DEV_KEY}\n"))?;
    let keys = dir.path().join("keys");

    let (printed, log) = deploy(&chain.anvil.endpoint(), &key_file, &keys)?;
    ensure!(log.contains("deployed ControlledAccountFactory"), "{log}");
    let config = Config::from_yaml(&printed, "printed")?;
    assert_eq!(config.chain_id, crate::anvil::CHAIN_ID);
    assert_eq!(
        config.ethereum.rpc_url.as_deref(),
        Some(chain.anvil.endpoint().as_str())
    );
    assert_eq!(config.wallet.factory_kind, FactoryKind::ControlledAccount);
    assert_eq!(config.keys_dir, keys);
    for file in [CONTROLLER_KEY_FILE, BUNDLER_KEY_FILE] {
        ensure!(keys.join(file).exists(), "{file} not created");
    }
    // What the config names is on chain.
    let factory = WalletFactory::from_config(&config.wallet)?;
    for address in [
        factory.factory,
        factory.account_implementation,
        factory.entry_point,
        config
            .wallet
            .paymaster
            .as_deref()
            .unwrap_or_default()
            .parse::<Address>()?,
    ] {
        ensure!(
            !chain.provider.get_code_at(address).await?.is_empty(),
            "no code at {address}"
        );
    }
    // Nothing printed reveals a key.
    let controller_key = std::fs::read_to_string(keys.join(CONTROLLER_KEY_FILE))?;
    ensure!(!printed.contains(controller_key.trim()) && !log.contains(controller_key.trim()));

    let (again, log) = deploy(&chain.anvil.endpoint(), &key_file, &keys)?;
    ensure!(log.contains("everything was deployed already"), "{log}");
    assert_eq!(again, printed);
    Ok(())
}
