//! The client for external bundlers against a real one: `@pimlico/alto@0.0.20` from
//! `tests/node`, started by the test on a free loopback port in front of its own anvil (alto
//! rejects JSON-RPC batches, and a same-key nonce n+1 while n is pending; the client sends one
//! request per call and the nonce keys keep parallel writes apart).
//!
//! Receipts: in front of alto, a loopback proxy that can forget every receipt (the client finds
//! the operation in the EntryPoint's logs) or swallow the operations it is sent (never mined:
//! after `wallet.receipt_timeout` the outcome is "pending", not a failure, and the identical
//! operation sent again after a restart still lands).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aggregator::wallet::bundler::BundlerClient;
use aggregator::wallet::submit::{MemoryJournal, Outcome};
use alloy::primitives::{Address, B256, U256};
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

/// A bundler in front of alto that forwards every request, except as told.
struct Proxy {
    url: String,
    /// Answer `null` to `eth_getUserOperationReceipt` (a bundler that forgot the operation).
    forget_receipts: Arc<AtomicBool>,
    /// Take `eth_sendUserOperation` without passing it on (an operation that is never mined).
    swallow_sends: Arc<AtomicBool>,
    forgotten: Arc<AtomicUsize>,
    swallowed: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    forget_receipts: Arc<AtomicBool>,
    swallow_sends: Arc<AtomicBool>,
    forgotten: Arc<AtomicUsize>,
    swallowed: Arc<AtomicUsize>,
}

async fn proxy_call(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::Json<serde_json::Value> {
    let id = body["id"].clone();
    let answer = |result: serde_json::Value| {
        axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
    };
    match body["method"].as_str() {
        Some("eth_getUserOperationReceipt") if state.forget_receipts.load(Ordering::SeqCst) => {
            state.forgotten.fetch_add(1, Ordering::SeqCst);
            return answer(serde_json::Value::Null);
        }
        Some("eth_sendUserOperation") if state.swallow_sends.load(Ordering::SeqCst) => {
            state.swallowed.fetch_add(1, Ordering::SeqCst);
            // What a bundler answers: the operation's hash (ours does not read it).
            return answer(serde_json::Value::String(format!("{:#x}", B256::ZERO)));
        }
        _ => {}
    }
    let reply = async {
        state
            .http
            .post(&state.upstream)
            .json(&body)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
    }
    .await;
    axum::Json(reply.unwrap_or_else(|e| {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": e.to_string()}})
    }))
}

impl Proxy {
    async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            forget_receipts: Arc::default(),
            swallow_sends: Arc::default(),
            forgotten: Arc::default(),
            swallowed: Arc::default(),
        };
        let proxy = Self {
            url,
            forget_receipts: state.forget_receipts.clone(),
            swallow_sends: state.swallow_sends.clone(),
            forgotten: state.forgotten.clone(),
            swallowed: state.swallowed.clone(),
            _server: tokio::spawn(async move {
                let app = axum::Router::new()
                    .route("/", axum::routing::post(proxy_call))
                    .with_state(state);
                let _ = axum::serve(listener, app).await;
            }),
        };
        Ok(proxy)
    }
}

#[tokio::test]
async fn a_forgotten_receipt_is_found_in_the_logs_and_an_unmined_op_is_pending()
-> anyhow::Result<()> {
    let setup = Setup::start(false).await?;
    let alto = Alto::start(&setup).await?;
    let proxy = Proxy::start(&alto.url).await?;
    let client = Arc::new(BundlerClient::new(
        proxy.url.clone(),
        setup.deployment.entry_point,
        setup.chain.clone(),
    )?);
    let mut wallets = setup.wallets(client);
    let (owner, wallet) = setup.funded_wallet(1_000_000_000_000_000_000).await?;

    // The bundler forgets the operation: its outcome comes from the EntryPoint's logs.
    proxy.forget_receipts.store(true, Ordering::SeqCst);
    let first = Address::repeat_byte(0xd1);
    let mut journal = MemoryJournal::default();
    let outcome = wallets
        .submit(
            &setup.request(owner, wallet, vec![eth_call(first, U256::from(5))]),
            &mut journal,
        )
        .await?;
    let Outcome::Landed { receipt, .. } = &outcome else {
        bail!("{outcome:?}")
    };
    assert!(
        receipt.success && !receipt.tx_hash.is_empty(),
        "{receipt:?}"
    );
    assert!(proxy.forgotten.load(Ordering::SeqCst) > 0);
    assert_eq!(setup.node.provider.get_balance(first).await?, U256::from(5));
    proxy.forget_receipts.store(false, Ordering::SeqCst);

    // An operation the bundler takes and never mines: "pending" after the timeout, journaled
    // as such, not as a failure.
    proxy.swallow_sends.store(true, Ordering::SeqCst);
    wallets.receipt_timeout = Duration::from_secs(1);
    let second = Address::repeat_byte(0xd2);
    let mut journal = MemoryJournal::default();
    let outcome = wallets
        .submit(
            &setup.request(owner, wallet, vec![eth_call(second, U256::from(6))]),
            &mut journal,
        )
        .await?;
    let Outcome::Pending { user_op_hash } = outcome else {
        bail!("{outcome:?}")
    };
    assert_eq!(proxy.swallowed.load(Ordering::SeqCst), 1);
    let kinds: Vec<&str> = journal
        .events
        .iter()
        .map(|e| match e {
            Event::UserOpSubmitted(_) => "submitted",
            Event::UserOpSent(_) => "sent",
            Event::UserOpPending(_) => "pending",
            Event::UserOpRejected(_) => "rejected",
            Event::UserOpLanded(_) => "landed",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["submitted", "sent", "pending"]);
    let Event::UserOpPending(pending) = &journal.events[2] else {
        bail!("no pending")
    };
    assert_eq!(pending.user_op_hash, format!("{user_op_hash:#x}"));
    assert!(pending.waited_ms >= 1000, "{pending:?}");
    assert_eq!(setup.node.provider.get_balance(second).await?, U256::ZERO);

    // Pending is not lost: sent again, identical (as after a restart), it lands.
    proxy.swallow_sends.store(false, Ordering::SeqCst);
    wallets.receipt_timeout = Duration::from_secs(120);
    let Event::UserOpSubmitted(submitted) = &journal.events[0] else {
        bail!("no submission")
    };
    let submitted = submitted.clone();
    let outcome = wallets.recover(&submitted, None, &mut journal).await?;
    let Outcome::Landed {
        receipt,
        user_op_hash: landed,
    } = &outcome
    else {
        bail!("{outcome:?}")
    };
    assert_eq!(*landed, user_op_hash, "the same operation, not a new one");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(
        setup.node.provider.get_balance(second).await?,
        U256::from(6)
    );
    Ok(())
}
