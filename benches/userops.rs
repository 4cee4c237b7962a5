//! Benchmark of writes from the users' smart wallets, in one run on one anvil:
//!
//! 1. the baseline: plain ETH transfers signed by one EOA and sent with consecutive nonces
//!    (`eth_sendRawTransaction`), then every receipt read, as fast as the node takes them;
//! 2. user operations through the self-bundler (`Wallets::submit`: nonce reservation, gas
//!    estimate with `eth_estimateGas` and `simulateHandleOp`, signing, the `eth_call` of
//!    `handleOps`, the bundle transaction, the receipt), `IN_FLIGHT` at once from one wallet on
//!    distinct nonce keys, journaled in memory;
//! 3. the same with one operation at a time, for the latency of one write.
//!
//! `cargo bench --bench userops`; `BENCH_OPS` (default 200) operations per row; `ANVIL` for
//! another anvil binary (default: the one in tests/node, `npm ci` there first).

#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::chain::Chain;
use aggregator::wallet::WalletFactory;
use aggregator::wallet::deploy::{DeployOptions, deploy};
use aggregator::wallet::keys::{ChainKey, WalletKeys};
use aggregator::wallet::nonce;
use aggregator::wallet::self_bundler::SelfBundler;
use aggregator::wallet::submit::{MemoryJournal, OpRequest, Outcome, Wallets};
use aggregator::wallet::user_op::Call;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::node_bindings::Anvil;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use events::user_op::OpPurpose;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const IN_FLIGHT: usize = 16;
const ETH: u128 = 1_000_000_000_000_000_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn anvil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ANVIL") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let ops = env("BENCH_OPS", 200) as usize;
    let anvil = Anvil::new()
        .path(anvil_binary())
        .host("127.0.0.1")
        .chain_id(31337)
        .try_spawn()
        .expect("anvil (set ANVIL, or npm ci in tests/node)");
    let url = anvil.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    let deployer: PrivateKeySigner = DEV_KEY.parse().unwrap();
    let deployment = deploy(&DeployOptions {
        rpc_url: url.clone(),
        deployer: ChainKey::from_signer(deployer.clone()),
        keys_dir: keys_dir.clone(),
        paymaster_deposit: None,
        bundler_funding: U256::from(100 * ETH),
    })
    .await
    .unwrap();
    let keys = WalletKeys::load(&keys_dir).unwrap();
    let chain = Chain::connect(&url, 31337).await.unwrap();
    let funder = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer))
        .connect_http(url.parse().unwrap())
        .erased();

    // 1. Plain transfers from one EOA (anvil's dev account 3).
    let eoa: PrivateKeySigner = anvil.keys()[3].clone().into();
    let eoa_wallet = EthereumWallet::from(eoa.clone());
    let fees = aggregator::wallet::gas::fees(&chain).await.unwrap();
    let first_nonce = chain
        .provider
        .get_transaction_count(eoa.address())
        .await
        .unwrap();
    let started = Instant::now();
    let mut hashes = Vec::with_capacity(ops);
    for i in 0..ops as u64 {
        let tx = TransactionRequest::default()
            .with_from(eoa.address())
            .with_to(Address::repeat_byte(0x33))
            .with_value(U256::from(1))
            .with_nonce(first_nonce + i)
            .with_chain_id(31337)
            .with_gas_limit(21_000)
            .with_max_fee_per_gas(fees.max_fee_per_gas.to::<u128>())
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas.to::<u128>());
        let envelope = tx.build(&eoa_wallet).await.unwrap();
        let pending = chain
            .provider
            .send_raw_transaction(&envelope.encoded_2718())
            .await
            .unwrap();
        hashes.push(*pending.tx_hash());
    }
    for hash in &hashes {
        loop {
            if let Some(receipt) = chain.provider.get_transaction_receipt(*hash).await.unwrap() {
                assert!(receipt.status());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let plain = ops as f64 / started.elapsed().as_secs_f64();

    // The wallet: deployed by its first operation, outside the timing.
    let bundler = Arc::new(SelfBundler::new(
        chain.clone(),
        deployment.entry_point,
        keys.bundler.clone(),
    ));
    let wallets = Arc::new(Wallets::new(
        chain.clone(),
        deployment.entry_point,
        bundler,
        keys.controller.clone(),
        None,
        Duration::from_secs(60),
    ));
    let factory = WalletFactory::controlled(deployment.factory, deployment.entry_point).unwrap();
    let owner = PrivateKeySigner::random().address();
    let wallet = factory.address(owner, U256::ZERO);
    let receipt = funder
        .send_transaction(
            TransactionRequest::default()
                .with_to(wallet)
                .with_value(U256::from(50 * ETH)),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let request = move |i: usize| OpRequest {
        purpose: OpPurpose::Step {
            step_id: format!("n{i}"),
            iteration: None,
        },
        owner,
        salt: U256::ZERO,
        factory: factory.clone(),
        wallet,
        calls: vec![Call {
            to: Address::repeat_byte(0x44),
            value: U256::from(1),
            data: Bytes::new(),
        }],
        nonce_key: nonce::step_key("bench", &i.to_string()),
    };
    let outcome = wallets
        .submit(&request(usize::MAX), &mut MemoryJournal::default())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Landed { .. }), "{outcome:?}");

    // 2. Operations, IN_FLIGHT at once.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (wallets, next) = (wallets.clone(), next.clone());
        let request = request.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    return latencies;
                }
                let one = Instant::now();
                let outcome = wallets
                    .submit(&request(i), &mut MemoryJournal::default())
                    .await
                    .unwrap();
                assert!(
                    matches!(&outcome, Outcome::Landed { receipt, .. } if receipt.success),
                    "{outcome:?}"
                );
                latencies.push(one.elapsed());
            }
        });
    }
    let mut parallel_latencies = Vec::new();
    while let Some(result) = workers.join_next().await {
        parallel_latencies.extend(result.unwrap());
    }
    let parallel = ops as f64 / started.elapsed().as_secs_f64();
    parallel_latencies.sort_unstable();

    // 3. One at a time.
    let serial_ops = ops.min(50);
    let mut serial_latencies = Vec::with_capacity(serial_ops);
    let started = Instant::now();
    for i in 0..serial_ops {
        let one = Instant::now();
        let outcome = wallets
            .submit(&request(ops + i), &mut MemoryJournal::default())
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Landed { .. }));
        serial_latencies.push(one.elapsed());
    }
    let serial = serial_ops as f64 / started.elapsed().as_secs_f64();
    serial_latencies.sort_unstable();

    println!("\nWrites on anvil ({ops} per row; anvil mines each transaction at once)\n");
    println!(
        "| {:<62} | {:>8} | {:>8} | {:>9} | {:>9} |",
        "measurement", "per s", "vs plain", "p50 ms", "p99 ms"
    );
    println!(
        "|{:-<64}|{:->9}:|{:->9}:|{:->10}:|{:->10}:|",
        "", "", "", "", ""
    );
    println!(
        "| {:<62} | {:>8.0} | {:>7.2}x | {:>9} | {:>9} |",
        "plain ETH transfers from one EOA (all sent, then receipts)", plain, 1.0, "-", "-"
    );
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "| {:<62} | {:>8.0} | {:>7.2}x | {:>9} | {:>9} |",
        format!("UserOps via the self-bundler, {IN_FLIGHT} in flight, one wallet"),
        parallel,
        parallel / plain,
        ms(percentile(&parallel_latencies, 0.5)),
        ms(percentile(&parallel_latencies, 0.99)),
    );
    println!(
        "| {:<62} | {:>8.0} | {:>7.2}x | {:>9} | {:>9} |",
        "UserOps via the self-bundler, one at a time",
        serial,
        serial / plain,
        ms(percentile(&serial_latencies, 0.5)),
        ms(percentile(&serial_latencies, 0.99)),
    );
}
