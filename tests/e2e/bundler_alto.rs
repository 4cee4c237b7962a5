//! The client for external bundlers against a real one: `@pimlico/alto@0.0.20` from
//! `tests/node`, started by the test on a free loopback port in front of its own anvil (alto
//! rejects JSON-RPC batches, and a same-key nonce n+1 while n is pending; the client sends one
//! request per call and the nonce keys keep parallel writes apart).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aggregator::wallet::bundler::BundlerClient;
use aggregator::wallet::submit::{MemoryJournal, Outcome};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use anyhow::{Context, bail};
use events::Event;
use tokio::process::{Child, Command};

use crate::wallet_ops::{Setup, eth_call};

/// A running alto; killed when dropped.
pub struct Alto {
    pub url: String,
    _child: Child,
}

impl Alto {
    pub async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let entry = crate::anvil::alto_entry();
        crate::anvil::anvil_binary()?; // installs tests/node when needed
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let keys = setup.node.anvil.keys();
        let hex = |i: usize| format!("0x{}", alloy::hex::encode(keys[i].to_bytes()));
        let mut child = Command::new("node")
            .arg(&entry)
            .args([
                "--entrypoints",
                &format!("{:#x}", setup.deployment.entry_point),
            ])
            .args(["--executor-private-keys", &hex(1)])
            .args(["--utility-private-key", &hex(2)])
            .args(["--rpc-url", &setup.node.anvil.endpoint()])
            .args(["--safe-mode", "false"])
            .args(["--port", &port.to_string()])
            .args(["--enable-debug-endpoints", "true"])
            .args(["--block-time", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting alto (is Node.js installed?)")?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = stderr.read_to_string(&mut err).await;
                }
                bail!("alto exited ({status}): {err}");
            }
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_supportedEntryPoints", "params": []});
            if let Ok(response) = http.post(&url).json(&body).send().await
                && let Ok(reply) = response.json::<serde_json::Value>().await
                && reply["result"].is_array()
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("alto did not answer on {url} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Self { url, _child: child })
    }
}

#[tokio::test]
async fn ops_through_a_real_bundler_land() -> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let alto = Alto::start(&setup).await?;
    let client = Arc::new(BundlerClient::new(
        alto.url.clone(),
        setup.deployment.entry_point,
        setup.chain.clone(),
    )?);
    let wallets = Arc::new(setup.wallets(client));
    let (owner, wallet) = setup.funded_wallet(2 * 1_000_000_000_000_000_000).await?;

    // The first operation deploys the wallet and moves ETH.
    let recipient = Address::repeat_byte(0xb1);
    let mut journal = MemoryJournal::default();
    let outcome = wallets
        .submit(
            &setup.request(owner, wallet, vec![eth_call(recipient, U256::from(777))]),
            &mut journal,
        )
        .await?;
    let Outcome::Landed { receipt, .. } = &outcome else {
        bail!("{outcome:?}")
    };
    assert!(receipt.success, "{receipt:?}");
    assert!(!setup.node.provider.get_code_at(wallet).await?.is_empty());
    assert_eq!(
        setup.node.provider.get_balance(recipient).await?,
        U256::from(777)
    );
    let Event::UserOpSubmitted(submitted) = &journal.events[0] else {
        bail!("no submission")
    };
    assert_eq!(submitted.sender, events::user_op::SenderKind::Bundler);

    // Five at once from the same wallet, each on its own nonce key.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5u8 {
        let wallets = wallets.clone();
        let request = setup.request(
            owner,
            wallet,
            vec![eth_call(
                Address::repeat_byte(0xc0 + i),
                U256::from(10 + u64::from(i)),
            )],
        );
        tasks.spawn(async move {
            wallets
                .submit(&request, &mut MemoryJournal::default())
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        match result?? {
            Outcome::Landed { receipt, .. } => assert!(receipt.success),
            other => bail!("{other:?}"),
        }
    }
    for i in 0..5u8 {
        assert_eq!(
            setup
                .node
                .provider
                .get_balance(Address::repeat_byte(0xc0 + i))
                .await?,
            U256::from(10 + u64::from(i))
        );
    }
    Ok(())
}
