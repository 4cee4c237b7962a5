//! A real Ethereum node for the scenarios: each test starts its own anvil on a free loopback
//! port (so tests running in parallel never share a chain), with helpers to deploy the contract
//! fixtures of `tests/fixtures/contracts/` directly or through the standard CREATE2 deployer.
//!
//! The anvil binary comes from the npm package `@foundry-rs/anvil` in `tests/node`; on a fresh
//! clone the first test to need it runs `npm ci` there, so plain `cargo test` works. Set `ANVIL`
//! to use another binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, Bytes, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail, ensure};

/// The chain id the scenarios run on (anvil's default, set explicitly so that signatures made
/// for it are stable).
pub const CHAIN_ID: u64 = 31337;

/// The first dev account of the standard test mnemonic (10 000 ETH on anvil).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The standard CREATE2 deployer (Arachnid's "deterministic deployment proxy"), which anvil has
/// at genesis: calldata `salt (32 bytes) ‖ initcode` deploys at
/// `CREATE2(deployer, salt, keccak256(initcode))`, as on every public chain.
pub const CREATE2_DEPLOYER: Address = address!("0x4e59b44847b379578588920ca78fbf26c0b4956c");

/// A running anvil and a provider that signs with [`DEV_KEY`]. Dropping it stops anvil.
pub struct Chain {
    /// Sends from `anvil.addresses()[0]`, the account of [`DEV_KEY`].
    pub provider: DynProvider,
    /// The node: its endpoints (`endpoint_url()`, `ws_endpoint_url()`) for code under test that
    /// connects by itself, and the other dev accounts (`addresses()`, `keys()`).
    pub anvil: AnvilInstance,
}

impl Chain {
    /// Starts anvil on a free loopback port (anvil binds port 0, the OS picks one).
    pub fn start() -> anyhow::Result<Self> {
        let anvil = Anvil::new()
            .path(anvil_binary()?)
            .host("127.0.0.1")
            .chain_id(CHAIN_ID)
            .try_spawn()
            .context("starting anvil")?;
        let signer: PrivateKeySigner = DEV_KEY.parse()?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(anvil.endpoint_url())
            .erased();
        Ok(Self { provider, anvil })
    }

    /// Deploys `tests/fixtures/contracts/<name>.json` with plain CREATE from the dev account;
    /// `constructor_args` is the ABI encoding of the constructor's arguments (empty if none).
    pub async fn deploy(&self, name: &str, constructor_args: &[u8]) -> anyhow::Result<Address> {
        let init_code = [artifact(name)?.bytecode.as_ref(), constructor_args].concat();
        let tx = TransactionRequest::default().with_deploy_code(init_code);
        let receipt = self
            .provider
            .send_transaction(tx)
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "deploying {name} reverted");
        receipt
            .contract_address
            .with_context(|| format!("deploying {name}: no contract address in the receipt"))
    }

    /// Deploys `init_code` through [`CREATE2_DEPLOYER`] with `salt` and returns where it landed
    /// (checked: the deployer does not revert when the creation fails, it just returns nothing).
    pub async fn deploy_create2(&self, salt: B256, init_code: &[u8]) -> anyhow::Result<Address> {
        let expected = CREATE2_DEPLOYER.create2_from_code(salt, init_code);
        let data = [salt.as_slice(), init_code].concat();
        let tx = TransactionRequest::default()
            .with_to(CREATE2_DEPLOYER)
            .with_input(data);
        let receipt = self
            .provider
            .send_transaction(tx)
            .await?
            .get_receipt()
            .await?;
        ensure!(
            receipt.status(),
            "CREATE2 deployment to {expected} reverted"
        );
        let code = self.provider.get_code_at(expected).await?;
        ensure!(
            !code.is_empty(),
            "CREATE2 deployment to {expected}: no code there"
        );
        Ok(expected)
    }
}

/// A contract fixture: `tests/fixtures/contracts/<name>.json` (`{abi, bytecode, deployedBytecode}`).
/// For typed calls, declare the interface with `alloy::sol!` (or load the ABI with
/// `sol!(#[sol(rpc)] Name, "tests/fixtures/contracts/Name.json")`).
pub struct Artifact {
    /// The creation code.
    pub bytecode: Bytes,
}

pub fn artifact(name: &str) -> anyhow::Result<Artifact> {
    #[derive(serde::Deserialize)]
    struct Json {
        bytecode: Bytes,
    }
    let path = repo_path("tests/fixtures/contracts").join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: Json =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Artifact {
        bytecode: json.bytecode,
    })
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The anvil binary: `$ANVIL`, or the npm package's, installed on first use.
pub fn anvil_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ANVIL") {
        return Ok(PathBuf::from(path));
    }
    // Once per test process: the tests of this binary run in parallel, and two `npm ci` in one
    // folder would trip over each other. The others wait here for the first.
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| install_anvil().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn install_anvil() -> anyhow::Result<PathBuf> {
    let node_dir = repo_path("tests/node");
    let binary = npm_anvil_path(&node_dir)?;
    // The newest package of tests/node: a checkout installed before it was added gets it too.
    crate::support::npm_ci(&node_dir, &alto_entry())?;
    crate::support::npm_ci(&node_dir, &binary)?;
    Ok(binary)
}

/// The ERC-4337 bundler `@pimlico/alto` of tests/node (its command-line entry, run with node).
pub fn alto_entry() -> PathBuf {
    repo_path("tests/node/node_modules/@pimlico/alto/esm/cli/alto.js")
}

/// Where `@foundry-rs/anvil` puts its binary: a package per platform, named as Node names them.
fn npm_anvil_path(node_dir: &Path) -> anyhow::Result<PathBuf> {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no @foundry-rs/anvil package for {other}: set ANVIL"),
    };
    let exe = if os == "win32" { "anvil.exe" } else { "anvil" };
    Ok(node_dir
        .join("node_modules/@foundry-rs")
        .join(format!("anvil-{os}-{arch}"))
        .join("bin")
        .join(exe))
}
