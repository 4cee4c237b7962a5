//! Smart wallets: the address of a user's ERC-4337 v0.6 `SimpleAccount`, derived with no chain at
//! all, exactly as `SimpleAccountFactory.getAddress(owner, salt)` computes it:
//!
//! ```text
//! CREATE2(factory, bytes32(salt), keccak256(ERC1967Proxy creation code
//!         ++ abi.encode(accountImplementation, abi.encodeCall(SimpleAccount.initialize, (owner)))))
//! ```
//!
//! The proxy's creation code (`erc1967_proxy.hex`, 1985 bytes) is the one embedded in the v0.6
//! factory, cut out of its runtime code (see `tests/fixtures/contracts/README.md`): recompiling
//! OpenZeppelin's proxy gives a different metadata hash, and so different addresses. It is
//! decoded at compile time, so a damaged file fails the build rather than a request.
//!
//! Our own wallet, `ControlledAccount` (accepts the owner's or the aggregator's controller key),
//! comes from `ControlledAccountFactory`, derived the same way with the proxy creation code cut
//! out of that factory's committed artifact (`contracts`).
//!
//! Also here: parsing the salt and the factory address of the wallet requests, with the error
//! texts of the official client.
//!
//! Layout of the ERC-4337 side (user operations from the users' wallets):
//! - `contracts`: interfaces and embedded artifacts; `user_op`: building, hashing, signing;
//! - `keys`: the controller and self-bundler keys in the keys directory;
//! - `nonce`: nonce keys per step and the reservation book; `gas`: estimates and fees;
//! - `paymaster`: sponsorship by the VerifyingPaymaster; `receipt`: outcomes from the logs;
//! - `sender`: the `UserOpSender` trait, with `self_bundler` and `bundler` (an external one);
//! - `submit`: the submission protocol (journal, send, retry, recover); `deploy`: `chain deploy`;
//! - `withdraw`: what `WithdrawFunds` asks for, and its calls.

pub mod bundler;
pub mod contracts;
pub mod deploy;
pub mod gas;
pub mod keys;
pub mod nonce;
pub mod paymaster;
pub mod receipt;
pub mod self_bundler;
pub mod sender;
pub mod submit;
pub mod user_op;
pub mod withdraw;

use std::str::FromStr;

use std::sync::LazyLock;

use alloy::primitives::{Address, B256, Bytes, Keccak256, U256, address, hex};
use alloy::sol_types::{SolCall, SolValue};

alloy::sol! {
    /// The one call of `SimpleAccount` the proxy's constructor makes.
    function initialize(address anOwner);
}

/// The ERC1967Proxy creation code every v0.6 `SimpleAccountFactory` deploys accounts with.
const ERC1967_PROXY_CREATION_CODE: [u8; 1985] =
    match hex::const_decode_to_array(include_str!("erc1967_proxy.hex").as_bytes().trim_ascii()) {
        Ok(code) => code,
        Err(_) => panic!("src/wallet/erc1967_proxy.hex is not 1985 bytes of hex"),
    };

/// keccak-256 with the proxy's creation code already absorbed: every address's init code starts
/// with those 1985 bytes, so each derivation hashes only its ~200 bytes of constructor arguments
/// (CreateTask derives the owner's wallet on every call; hashing the whole code was 4.5 % of it).
static PROXY_CODE_ABSORBED: LazyLock<Keccak256> = LazyLock::new(|| {
    let mut hasher = Keccak256::new();
    hasher.update(ERC1967_PROXY_CREATION_CODE);
    hasher
});

/// The same for the proxies of a `ControlledAccountFactory` (the code its artifact embeds);
/// `None` when the artifact does not hold one, which `WalletFactory::controlled` refuses first.
static CONTROLLED_PROXY_CODE_ABSORBED: LazyLock<Option<Keccak256>> = LazyLock::new(|| {
    let code = contracts::controlled_proxy_creation_code().ok()?;
    let mut hasher = Keccak256::new();
    hasher.update(code);
    Some(hasher)
});

/// The canonical `SimpleAccountFactory` v0.6 (CREATE2 deployer, salt 0).
pub const CANONICAL_FACTORY_V06: Address = address!("0x9406Cc6185a346906296840746125a0E44976454");
/// The canonical EntryPoint v0.6.
pub const CANONICAL_ENTRY_POINT_V06: Address =
    address!("0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789");
/// The canonical factory's `accountImplementation()`: `CREATE(factory, nonce 1)`.
pub const CANONICAL_ACCOUNT_IMPLEMENTATION_V06: Address =
    address!("0x8ABB13360b87Be5EEb1B98647A016adD927a136c");

/// Why a wallet request's salt or factory was refused. The texts are the official client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    #[error("invalid salt value: must be a non-negative integer")]
    InvalidSalt,
    #[error("invalid salt value: must be a non-negative integer below 2^256")]
    SaltTooLarge,
    #[error("invalid factory address: {0:?}")]
    InvalidFactory(String),
}

/// Which kind of v0.6 factory: they differ in the proxy code they hash, and in who may sign for
/// their accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactoryKind {
    /// The stock `SimpleAccountFactory`: only the owner signs; the controller cannot act.
    SimpleAccount,
    /// `ControlledAccountFactory`: the owner or the factory's controller signs.
    ControlledAccount,
}

/// The wallets' side from the config: the controller and self-bundler keys of the keys
/// directory (created when absent), the sender (`wallet.bundler_url`, or the self-bundler), the
/// paymaster when configured.
pub fn open(
    config: &crate::config::Config,
    chain: crate::chain::Chain,
) -> anyhow::Result<submit::Wallets> {
    use std::sync::Arc;
    let keys = keys::WalletKeys::load_or_create(&config.keys_dir)?;
    let entry_point: Address = config.wallet.entry_point.parse()?;
    let sender: Arc<dyn sender::UserOpSender> = match &config.wallet.bundler_url {
        Some(url) => Arc::new(bundler::BundlerClient::new(
            url.clone(),
            entry_point,
            chain.clone(),
        )?),
        None => Arc::new(self_bundler::SelfBundler::new(
            chain.clone(),
            entry_point,
            keys.bundler.clone(),
        )),
    };
    let paymaster = match &config.wallet.paymaster {
        Some(address) => Some(paymaster::Paymaster::new(
            address.parse()?,
            keys.controller.clone(),
            chain.clone(),
        )),
        None => None,
    };
    tracing::info!(
        controller = %keys.controller.address(),
        bundler = %config.wallet.bundler_url.as_deref().map_or_else(
            || format!("self ({})", keys.bundler.address()),
            crate::chain::redact_url,
        ),
        "smart-wallet writes enabled"
    );
    Ok(submit::Wallets::new(
        chain,
        entry_point,
        sender,
        keys.controller,
        paymaster,
        config.wallet.receipt_timeout,
    ))
}

/// Why the `wallet:` config does not describe a usable factory.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalletConfigError {
    #[error("{0} {1:?} is not an address")]
    Address(&'static str, String),
    #[error(
        "wallet.account_implementation is {configured}, but a ControlledAccountFactory at          wallet.factory has its implementation at {derived}"
    )]
    Implementation {
        configured: Address,
        derived: Address,
    },
    #[error(transparent)]
    Artifact(#[from] contracts::ArtifactError),
}

/// A v0.6 account factory: what it takes to derive its accounts' addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletFactory {
    pub kind: FactoryKind,
    pub factory: Address,
    /// The `SimpleAccount` implementation the factory's proxies point to.
    pub account_implementation: Address,
    /// The EntryPoint the accounts accept user operations from. Not part of the address (the
    /// implementation has it built in); kept for the nonce reads and user operations.
    pub entry_point: Address,
}

impl WalletFactory {
    /// The canonical v0.6 deployment, as on every public chain.
    pub fn canonical_v06() -> Self {
        Self::new(
            CANONICAL_FACTORY_V06,
            CANONICAL_ACCOUNT_IMPLEMENTATION_V06,
            CANONICAL_ENTRY_POINT_V06,
        )
    }

    /// A stock v0.6 factory from configuration. The proxy code is the same for every one.
    pub fn new(factory: Address, account_implementation: Address, entry_point: Address) -> Self {
        Self {
            kind: FactoryKind::SimpleAccount,
            factory,
            account_implementation,
            entry_point,
        }
    }

    /// A v0.6 factory whose implementation is the one its constructor created: the first
    /// contract a contract creates is at `CREATE(factory, nonce 1)` (EIP-161 starts contract
    /// nonces at 1), so only the factory's address is needed.
    pub fn v06_at(factory: Address, entry_point: Address) -> Self {
        Self::new(factory, factory.create(1), entry_point)
    }

    /// The configured default factory.
    pub fn from_config(config: &crate::config::WalletConfig) -> Result<Self, WalletConfigError> {
        let address = |name: &'static str, text: &str| {
            text.parse::<Address>()
                .map_err(|_| WalletConfigError::Address(name, text.to_owned()))
        };
        let factory = address("wallet.factory", &config.factory)?;
        let entry_point = address("wallet.entry_point", &config.entry_point)?;
        let implementation = address(
            "wallet.account_implementation",
            &config.account_implementation,
        )?;
        match config.factory_kind {
            FactoryKind::SimpleAccount => Ok(Self::new(factory, implementation, entry_point)),
            FactoryKind::ControlledAccount => {
                let controlled = Self::controlled(factory, entry_point)?;
                if controlled.account_implementation != implementation {
                    return Err(WalletConfigError::Implementation {
                        configured: implementation,
                        derived: controlled.account_implementation,
                    });
                }
                Ok(controlled)
            }
        }
    }

    /// A `ControlledAccountFactory` at `factory`: its implementation is its constructor's first
    /// creation, and its proxy code the one embedded in the committed artifact.
    pub fn controlled(
        factory: Address,
        entry_point: Address,
    ) -> Result<Self, contracts::ArtifactError> {
        // The proxy code must be there: its hash state is what `address` starts from.
        contracts::controlled_proxy_creation_code()?;
        Ok(Self {
            kind: FactoryKind::ControlledAccount,
            factory,
            account_implementation: factory.create(1),
            entry_point,
        })
    }

    /// Where `aggregator chain deploy` puts the `ControlledAccountFactory` of `controller`
    /// (CREATE2 deployer, salt 0): one factory per (EntryPoint, controller).
    pub fn controlled_factory_address(
        entry_point: Address,
        controller: Address,
    ) -> Result<Address, contracts::ArtifactError> {
        Ok(contracts::create2_address(&controlled_factory_init_code(
            entry_point,
            controller,
        )?))
    }

    /// The factory's part of a user operation's `initCode`: `factory ‖ createAccount(owner, salt)`.
    pub fn init_code(&self, owner: Address, salt: U256) -> Bytes {
        let call = contracts::IControlledAccountFactory::createAccountCall { owner, salt };
        [self.factory.as_slice(), &call.abi_encode()]
            .concat()
            .into()
    }

    /// The counterfactual address of `owner`'s account number `salt`: what the factory's
    /// `getAddress(owner, salt)` returns, and where `createAccount(owner, salt)` deploys.
    pub fn address(&self, owner: Address, salt: U256) -> Address {
        let initialize = initializeCall { anOwner: owner }.abi_encode();
        let constructor_args =
            (self.account_implementation, Bytes::from(initialize)).abi_encode_params();
        let absorbed = match self.kind {
            FactoryKind::SimpleAccount => Some(&*PROXY_CODE_ABSORBED),
            FactoryKind::ControlledAccount => CONTROLLED_PROXY_CODE_ABSORBED.as_ref(),
        };
        // (`controlled` refused a factory without its proxy code, so `absorbed` is there.)
        let mut init_code_hash = absorbed.cloned().unwrap_or_default();
        init_code_hash.update(&constructor_args);
        self.factory
            .create2(B256::from(salt), init_code_hash.finalize())
    }
}

/// Creation code and constructor arguments of the `ControlledAccountFactory` of `controller`.
pub fn controlled_factory_init_code(
    entry_point: Address,
    controller: Address,
) -> Result<Vec<u8>, contracts::ArtifactError> {
    let code = &contracts::controlled_factory()?.bytecode;
    Ok([
        code.as_ref(),
        &(entry_point, controller).abi_encode_params(),
    ]
    .concat())
}

/// Parses a wallet request's salt: a decimal integer, `0` to `2^256 - 1`. Empty means 0, the
/// default salt: the official client sends "0" for it, and an unset proto3 string arrives empty.
pub fn parse_salt(text: &str) -> Result<U256, WalletError> {
    if text.is_empty() {
        return Ok(U256::ZERO);
    }
    // Digits only: no sign, no spaces, no `0x`, no `_` (ruint's parsers are more lenient).
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WalletError::InvalidSalt);
    }
    U256::from_str_radix(text, 10).map_err(|_| WalletError::SaltTooLarge)
}

/// Parses a wallet request's factory address: empty means the default factory (`None`);
/// otherwise 40 hex digits, with or without `0x`, in any case.
pub fn parse_factory(text: &str) -> Result<Option<Address>, WalletError> {
    if text.is_empty() {
        return Ok(None);
    }
    Address::from_str(text)
        .map(Some)
        .map_err(|_| WalletError::InvalidFactory(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::keccak256;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// `tests/fixtures/contracts/wallet-vectors.json`, checked against the factory on anvil by
    /// `verify.mjs`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Vectors {
        factory: Address,
        entry_point: Address,
        account_implementation: Address,
        vectors: Vec<Vector>,
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        owner: Address,
        salt: String,
        address: Address,
    }

    fn vectors() -> Result<Vectors, serde_json::Error> {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/contracts/wallet-vectors.json"
        ))
    }

    #[test]
    fn every_fixture_vector_matches() -> TestResult {
        let fixture = vectors()?;
        let factory = WalletFactory::canonical_v06();
        assert_eq!(factory.factory, fixture.factory);
        assert_eq!(factory.entry_point, fixture.entry_point);
        assert_eq!(
            factory.account_implementation,
            fixture.account_implementation
        );
        assert_eq!(fixture.vectors.len(), 9);
        for v in &fixture.vectors {
            let salt = parse_salt(&v.salt)?;
            assert_eq!(
                factory.address(v.owner, salt),
                v.address,
                "owner {} salt {}",
                v.owner,
                v.salt
            );
        }
        Ok(())
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ControlledVectors {
        factory: Address,
        entry_point: Address,
        controller: Address,
        account_implementation: Address,
        vectors: Vec<Vector>,
    }

    #[test]
    fn every_controlled_fixture_vector_matches() -> TestResult {
        let fixture: ControlledVectors = serde_json::from_str(include_str!(
            "../../tests/fixtures/contracts/controlled-wallet-vectors.json"
        ))?;
        assert_eq!(
            WalletFactory::controlled_factory_address(fixture.entry_point, fixture.controller)?,
            fixture.factory
        );
        let factory = WalletFactory::controlled(fixture.factory, fixture.entry_point)?;
        assert_eq!(factory.kind, FactoryKind::ControlledAccount);
        assert_eq!(
            factory.account_implementation,
            fixture.account_implementation
        );
        assert_eq!(fixture.vectors.len(), 9);
        for v in &fixture.vectors {
            let salt = parse_salt(&v.salt)?;
            assert_eq!(factory.address(v.owner, salt), v.address, "{}", v.salt);
            // The stock derivation gives other addresses for the same factory and owner.
            let stock = WalletFactory::new(
                factory.factory,
                factory.account_implementation,
                factory.entry_point,
            );
            assert_ne!(stock.address(v.owner, salt), v.address);
        }
        Ok(())
    }

    #[test]
    fn the_embedded_proxy_code_is_the_factorys() {
        // The hash README.md and verify.mjs state for ERC1967Proxy.json's creation code.
        assert_eq!(
            keccak256(ERC1967_PROXY_CREATION_CODE),
            "0x2ef949a1ea043e392e2f802f6c9ec056aff8e49b896b4888b937c948d1f9f9fe"
                .parse::<B256>()
                .unwrap()
        );
    }

    #[test]
    fn the_implementation_is_the_factorys_first_creation() -> TestResult {
        assert_eq!(
            CANONICAL_FACTORY_V06.create(1),
            CANONICAL_ACCOUNT_IMPLEMENTATION_V06
        );
        let derived = WalletFactory::v06_at(CANONICAL_FACTORY_V06, CANONICAL_ENTRY_POINT_V06);
        assert_eq!(derived, WalletFactory::canonical_v06());
        Ok(())
    }

    #[test]
    fn another_factory_gives_other_addresses() -> TestResult {
        let owner = vectors()?.vectors[0].owner;
        let canonical = WalletFactory::canonical_v06();
        let other = WalletFactory::v06_at(Address::repeat_byte(0x42), CANONICAL_ENTRY_POINT_V06);
        assert_ne!(
            canonical.address(owner, U256::ZERO),
            other.address(owner, U256::ZERO)
        );
        assert_ne!(
            canonical.address(owner, U256::ZERO),
            canonical.address(owner, U256::from(1))
        );
        Ok(())
    }

    #[test]
    fn salts_parse_as_non_negative_decimal_integers() -> TestResult {
        assert_eq!(parse_salt("")?, U256::ZERO);
        assert_eq!(parse_salt("0")?, U256::ZERO);
        assert_eq!(parse_salt("1")?, U256::from(1));
        assert_eq!(parse_salt("007")?, U256::from(7));
        assert_eq!(
            parse_salt("18446744073709551621")?,
            (U256::from(1) << 64) + U256::from(5)
        );
        assert_eq!(parse_salt(&U256::MAX.to_string())?, U256::MAX);
        Ok(())
    }

    #[test]
    fn bad_salts_get_the_official_error_text() {
        for text in [
            "-1", "-0", "+1", "abc", "1.5", "1e3", " 1", "1 ", "0x10", "١",
        ] {
            let error = parse_salt(text);
            assert_eq!(error, Err(WalletError::InvalidSalt), "{text:?}");
            let message = error.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains("invalid salt value: must be a non-negative integer"),
                "{message}"
            );
        }
        // 2^256 does not fit a bytes32 salt.
        let too_large =
            "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        let error = parse_salt(too_large);
        assert_eq!(error, Err(WalletError::SaltTooLarge));
        assert!(error.err().is_some_and(|e| {
            e.to_string()
                .contains("invalid salt value: must be a non-negative integer")
        }));
    }

    #[test]
    fn factories_parse_with_empty_as_the_default() -> TestResult {
        assert_eq!(parse_factory("")?, None);
        for text in [
            "0x9406Cc6185a346906296840746125a0E44976454",
            "0x9406cc6185a346906296840746125a0e44976454",
            "9406Cc6185a346906296840746125a0E44976454",
        ] {
            assert_eq!(parse_factory(text)?, Some(CANONICAL_FACTORY_V06), "{text}");
        }
        for text in [
            "0x9406Cc6185a346906296840746125a0E4497645",
            "0x9406Cc6185a346906296840746125a0E4497645400",
            "0xZZ06Cc6185a346906296840746125a0E44976454",
            "factory",
            "0x",
            " 0x9406Cc6185a346906296840746125a0E44976454",
        ] {
            let error = parse_factory(text).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|m| m.contains("invalid factory address")),
                "{text:?}: {error:?}"
            );
        }
        Ok(())
    }
}
