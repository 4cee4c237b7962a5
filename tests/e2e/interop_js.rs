//! The official client (`@avaprotocol/sdk-js` 2.16.0, installed from npm into `tests/js`) drives
//! the server: sign-in with a fresh key (and with an API key), wallets, tasks, secrets.
//! `tests/js/interop.mjs` prints one line per check and exits non-zero on any failure.

use std::path::PathBuf;
use std::sync::OnceLock;
use tokio::process::Command;

use crate::support::{TestServer, npm_ci};

pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

pub fn install() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = js_dir();
        npm_ci(
            &dir,
            &dir.join("node_modules/@avaprotocol/sdk-js/package.json"),
        )
        .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Runs the script with `flows` against the server; returns its output.
pub async fn run_interop(
    server: &TestServer,
    flows: &str,
    api_key: Option<&str>,
) -> anyhow::Result<String> {
    run_interop_with(server, flows, api_key, &[]).await
}

/// [`run_interop`] with more of the script's environment (the onchain flow's).
pub async fn run_interop_with(
    server: &TestServer,
    flows: &str,
    api_key: Option<&str>,
    env: &[(&str, String)],
) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(install).await??;
    let mut command = Command::new("node");
    command
        .arg("interop.mjs")
        .current_dir(js_dir())
        .env("AGGREGATOR_ENDPOINT", server.running().grpc.to_string())
        .env("CHAIN_ID", server.config.chain_id.to_string())
        .env("FLOWS", flows);
    if let Some(key) = api_key {
        command.env("API_KEY", key);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = command.output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "the official client's checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn the_official_client_works_against_this_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let keys = aggregator::auth::keys::Keys::load(&server.config.keys_dir)?;
    let (_, admin_key) =
        aggregator::auth::TokenIssuer::new(&keys.jwt_secret, server.config.chain_id).api_key(
            alloy::signers::local::PrivateKeySigner::random().address(),
            aggregator::auth::Role::Admin,
            std::time::Duration::from_secs(3600),
        )?;
    let stdout = run_interop(
        &server,
        "auth,wallets,tasks,secrets,executions,original",
        Some(&admin_key),
    )
    .await?;
    let summary = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(summary)?;
    anyhow::ensure!(
        summary["failed"] == 0 && summary["passed"].as_u64().unwrap_or(0) > 30,
        "{stdout}"
    );
    Ok(())
}

/// The official client on a chain: a contract write run as a node and in a workflow, ETH and
/// token withdrawals, a fee estimate; the balances are checked on chain afterwards.
#[tokio::test]
async fn the_official_client_writes_and_withdraws_on_chain() -> anyhow::Result<()> {
    use alloy::primitives::{Address, U256};
    use alloy::providers::Provider;
    let w = crate::writes::World::start_with(|config| {
        config.fees.native_token_price_usd = Some(3000.0);
    })
    .await?;
    let signer = alloy::signers::local::PrivateKeySigner::random();
    let wallet = w.setup.factory.address(signer.address(), U256::ZERO);
    w.setup
        .send_eth(wallet, U256::from(crate::writes::ETH))
        .await?;
    w.setup.mint(w.token, wallet, U256::from(100)).await?;
    let recipient = Address::repeat_byte(0x81);
    let stdout = run_interop_with(
        &w.server,
        "onchain",
        None,
        &[
            (
                "ONCHAIN_KEY",
                format!("0x{}", hex::encode(signer.to_bytes())),
            ),
            ("ONCHAIN_TOKEN", w.token.to_checksum(None)),
            ("ONCHAIN_RECIPIENT", recipient.to_checksum(None)),
        ],
    )
    .await?;
    anyhow::ensure!(
        stdout
            .lines()
            .filter(|l| l.starts_with("ok onchain."))
            .count()
            == 11,
        "{stdout}"
    );
    // Sent: 2 by the node run, 5 by the workflow, 7 withdrawn; the simulation sent nothing.
    let token = crate::writes::IToken::new(w.token, &w.setup.node.provider);
    assert_eq!(token.balanceOf(recipient).call().await?, U256::from(14));
    assert_eq!(token.balanceOf(wallet).call().await?, U256::from(86));
    assert_eq!(
        w.setup.node.provider.get_balance(recipient).await?,
        U256::from(4321)
    );
    Ok(())
}
