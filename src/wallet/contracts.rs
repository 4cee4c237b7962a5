//! The contracts the wallets run on: their interfaces (the calls and events the aggregator makes
//! and reads) and the committed artifacts it deploys (`aggregator chain deploy`), embedded in the
//! binary from `tests/fixtures/contracts/` where `build.mjs` and `extract-aa.mjs` write them and
//! `verify.mjs` checks them on a real node.
//!
//! - `IEntryPointV06`: `handleOps`, `getUserOpHash`, `getNonce`, `simulateHandleOp`, deposits,
//!   the `UserOperationEvent` / `UserOperationRevertReason` / `AccountDeployed` events and the
//!   `FailedOp` / `ExecutionResult` errors;
//! - `IControlledAccount`: the wallet (`execute`, `executeBatch`, `executeBatchWithValues`,
//!   `getController`, `owner`); `IControlledAccountFactory`: `createAccount`, `getAddress`,
//!   `controller`; `IVerifyingPaymaster`: `getHash`, `senderNonce`, deposits;
//! - [`Artifact`]s: creation and runtime code of the EntryPoint, the wallet factory and the
//!   paymaster; [`controlled_proxy_creation_code`] cuts the ERC1967 proxy the factory deploys
//!   wallets with out of the factory's own runtime code, for the offline derivation.

use std::sync::LazyLock;

use alloy::primitives::{Address, B256, Bytes, address};

alloy::sol! {
    /// An ERC-4337 v0.6 user operation, as the EntryPoint takes it.
    #[derive(Debug, PartialEq, Eq, Default)]
    struct UserOperation {
        address sender;
        uint256 nonce;
        bytes initCode;
        bytes callData;
        uint256 callGasLimit;
        uint256 verificationGasLimit;
        uint256 preVerificationGas;
        uint256 maxFeePerGas;
        uint256 maxPriorityFeePerGas;
        bytes paymasterAndData;
        bytes signature;
    }

    #[sol(rpc)]
    interface IEntryPointV06 {
        function handleOps(UserOperation[] calldata ops, address beneficiary) external;
        function getUserOpHash(UserOperation calldata userOp) external view returns (bytes32);
        function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
        function simulateHandleOp(UserOperation calldata op, address target, bytes calldata targetCallData) external;
        function balanceOf(address account) external view returns (uint256);
        function depositTo(address account) external payable;

        event UserOperationEvent(bytes32 indexed userOpHash, address indexed sender, address indexed paymaster, uint256 nonce, bool success, uint256 actualGasCost, uint256 actualGasUsed);
        event UserOperationRevertReason(bytes32 indexed userOpHash, address indexed sender, uint256 nonce, bytes revertReason);
        event AccountDeployed(bytes32 indexed userOpHash, address indexed sender, address factory, address paymaster);

        error FailedOp(uint256 opIndex, string reason);
        error ExecutionResult(uint256 preOpGas, uint256 paid, uint48 validAfter, uint48 validUntil, bool targetSuccess, bytes targetResult);
    }

    #[sol(rpc)]
    interface IControlledAccount {
        function execute(address dest, uint256 value, bytes calldata func) external;
        function executeBatch(address[] calldata dest, bytes[] calldata func) external;
        function executeBatchWithValues(address[] calldata dest, uint256[] calldata value, bytes[] calldata func) external;
        function getController() external view returns (address);
        function owner() external view returns (address);
    }

    #[sol(rpc)]
    interface IControlledAccountFactory {
        function createAccount(address owner, uint256 salt) external returns (address);
        function getAddress(address owner, uint256 salt) external view returns (address);
        function controller() external view returns (address);
        function accountImplementation() external view returns (address);
    }

    #[sol(rpc)]
    interface IVerifyingPaymaster {
        function getHash(UserOperation calldata userOp, uint48 validUntil, uint48 validAfter) external view returns (bytes32);
        function senderNonce(address sender) external view returns (uint256);
        function verifyingSigner() external view returns (address);
        function owner() external view returns (address);
        function deposit() external payable;
        function getDeposit() external view returns (uint256);
    }

    /// `Error(string)` and `Panic(uint256)`, the revert payloads Solidity makes.
    error Error(string message);
    error Panic(uint256 code);
}

/// The standard CREATE2 deployer ("deterministic deployment proxy", on nearly every chain and in
/// anvil at genesis): calldata `salt ‖ initcode` deploys at `CREATE2(deployer, salt, keccak(initcode))`.
pub const CREATE2_DEPLOYER: Address = address!("0x4e59b44847b379578588920ca78fbf26c0b4956c");

/// Creation and runtime code of a committed artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub bytecode: Bytes,
    /// With immutables as zero bytes (solc leaves them so).
    pub deployed_bytecode: Bytes,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactJson {
    bytecode: Bytes,
    deployed_bytecode: Bytes,
}

/// Why an embedded artifact is unusable: a defect of the build, caught by the tests.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the embedded contract artifact {name} is damaged: {why}")]
pub struct ArtifactError {
    pub name: &'static str,
    pub why: String,
}

type Loaded = Result<Artifact, ArtifactError>;

fn parse(name: &'static str, json: &str) -> Loaded {
    let parsed: ArtifactJson = serde_json::from_str(json).map_err(|e| ArtifactError {
        name,
        why: e.to_string(),
    })?;
    Ok(Artifact {
        bytecode: parsed.bytecode,
        deployed_bytecode: parsed.deployed_bytecode,
    })
}

macro_rules! artifact {
    ($static:ident, $name:literal) => {
        static $static: LazyLock<Loaded> = LazyLock::new(|| {
            parse(
                $name,
                include_str!(concat!("../../tests/fixtures/contracts/", $name, ".json")),
            )
        });
    };
}

artifact!(ENTRY_POINT, "EntryPoint");
artifact!(FACTORY, "ControlledAccountFactory");
artifact!(PAYMASTER, "OwnedVerifyingPaymaster");

/// ERC-4337 EntryPoint v0.6, the package's canonical build (it lands on
/// `0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789` through [`CREATE2_DEPLOYER`] with salt 0).
pub fn entry_point() -> Result<&'static Artifact, ArtifactError> {
    ENTRY_POINT.as_ref().map_err(Clone::clone)
}

/// `ControlledAccountFactory`, constructor `(entryPoint, controller)`.
pub fn controlled_factory() -> Result<&'static Artifact, ArtifactError> {
    FACTORY.as_ref().map_err(Clone::clone)
}

/// `OwnedVerifyingPaymaster`, constructor `(entryPoint, verifyingSigner, owner)`.
pub fn paymaster() -> Result<&'static Artifact, ArtifactError> {
    PAYMASTER.as_ref().map_err(Clone::clone)
}

static PROXY: LazyLock<Result<Bytes, ArtifactError>> = LazyLock::new(|| {
    let factory = FACTORY.as_ref().map_err(Clone::clone)?;
    embedded_creation_code(&factory.deployed_bytecode)
        .map(Bytes::copy_from_slice)
        .ok_or_else(|| ArtifactError {
            name: "ControlledAccountFactory",
            why: "no single embedded ERC1967Proxy creation code in its runtime code".into(),
        })
});

/// The `type(ERC1967Proxy).creationCode` that `ControlledAccountFactory.getAddress` hashes: cut
/// out of the factory's runtime code, so that derivation follows the committed artifact (a fresh
/// compile of the proxy differs in its metadata hash, and so would the addresses).
pub fn controlled_proxy_creation_code() -> Result<&'static Bytes, ArtifactError> {
    PROXY.as_ref().map_err(Clone::clone)
}

/// The one creation code embedded in `runtime`. Legacy codegen starts the creation code of a
/// contract whose constructor takes arguments with
/// `6080604052 604051 61LLLL 38 03 80 61LLLL 83 39` (`PUSH2 LLLL`: its own length, after which
/// the constructor arguments are appended), which is what is searched for.
fn embedded_creation_code(runtime: &[u8]) -> Option<&[u8]> {
    const HEAD: [u8; 8] = [0x60, 0x80, 0x60, 0x40, 0x52, 0x60, 0x40, 0x51];
    let mut found = None;
    for start in 0..runtime.len().saturating_sub(19) {
        let window = runtime.get(start..start + 19)?;
        let (head, rest) = window.split_at(8);
        if head != HEAD {
            continue;
        }
        // rest: 61 LL LL 38 03 80 61 LL LL 83 39
        let shape = [
            rest[0], rest[3], rest[4], rest[5], rest[6], rest[9], rest[10],
        ];
        if shape != [0x61, 0x38, 0x03, 0x80, 0x61, 0x83, 0x39] || rest[1..3] != rest[7..9] {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        found = Some(runtime.get(start..start + length)?);
    }
    found
}

/// Where `init_code` lands when sent through [`CREATE2_DEPLOYER`] with salt 0.
pub fn create2_address(init_code: &[u8]) -> Address {
    CREATE2_DEPLOYER.create2_from_code(B256::ZERO, init_code)
}

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ControlledVectors {
        proxy_creation_code_hash: B256,
    }

    #[test]
    fn every_embedded_artifact_parses() {
        for artifact in [entry_point(), controlled_factory(), paymaster()] {
            let artifact = artifact.unwrap();
            assert!(!artifact.bytecode.is_empty() && !artifact.deployed_bytecode.is_empty());
        }
    }

    #[test]
    fn the_proxy_is_the_one_verify_mjs_cut_out_and_checked_on_anvil() {
        let vectors: ControlledVectors = serde_json::from_str(include_str!(
            "../../tests/fixtures/contracts/controlled-wallet-vectors.json"
        ))
        .unwrap();
        let proxy = controlled_proxy_creation_code().unwrap();
        assert_eq!(keccak256(proxy), vectors.proxy_creation_code_hash);
        assert_eq!(proxy.len(), 1255);
    }

    #[test]
    fn the_stock_factory_embeds_the_stock_proxy() {
        // The same cut applied to the canonical SimpleAccountFactory gives the proxy that
        // `extract-aa.mjs` committed: the search is the one both scripts use.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Json {
            deployed_bytecode: Bytes,
        }
        let stock: Json = serde_json::from_str(include_str!(
            "../../tests/fixtures/contracts/SimpleAccountFactory.json"
        ))
        .unwrap();
        let cut = embedded_creation_code(&stock.deployed_bytecode).unwrap();
        assert_eq!(
            keccak256(cut),
            "0x2ef949a1ea043e392e2f802f6c9ec056aff8e49b896b4888b937c948d1f9f9fe"
                .parse::<B256>()
                .unwrap()
        );
    }

    #[test]
    fn the_entry_point_lands_on_the_canonical_address() {
        assert_eq!(
            create2_address(&entry_point().unwrap().bytecode),
            super::super::CANONICAL_ENTRY_POINT_V06
        );
    }
}
