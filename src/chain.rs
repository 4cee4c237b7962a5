//! The Ethereum JSON-RPC connection, when one is configured: the reads the aggregator makes of
//! the chain (EntryPoint nonces, a non-default factory's `getAddress`).

use alloy::primitives::{Address, B256, Bytes, U256, aliases::U192};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;

alloy::sol! {
    #[sol(rpc)]
    interface IEntryPoint {
        function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
    }

    #[sol(rpc)]
    interface ISimpleAccountFactory {
        function getAddress(address owner, uint256 salt) external view returns (address);
    }

    #[sol(rpc)]
    interface IERC20 {
        function name() external view returns (string);
        function symbol() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
    }
}

/// An ERC-20's metadata as its contract answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMetadata {
    pub address: Address,
    pub name: String,
    pub symbol: String,
    pub decimals: u8,
}

/// A connected chain.
#[derive(Clone)]
pub struct Chain {
    pub provider: DynProvider,
    pub chain_id: u64,
    pub url: String,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.chain_id)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("invalid RPC URL {}", redact_url(.0))]
    Url(String),
    #[error(
        "the node at {} answers chain id {actual}, the config says {expected}",
        redact_url(url)
    )]
    WrongChain {
        url: String,
        expected: u64,
        actual: u64,
    },
    /// The node's own answer to the call (a revert, an unknown method): shown as it is.
    #[error("JSON-RPC call failed: {0}")]
    Rpc(String),
    /// The node could not be reached, or answered something that is not JSON-RPC. The detail
    /// is logged (its URL redacted), not carried: it reaches clients in responses and steps.
    #[error("the chain node did not answer; retry later")]
    Unreachable,
}

impl Chain {
    /// Connects over HTTP and checks that the node serves the configured chain.
    pub async fn connect(url: &str, expected_chain_id: u64) -> Result<Self, ChainError> {
        let parsed = url.parse().map_err(|_| ChainError::Url(url.to_owned()))?;
        let provider = ProviderBuilder::new().connect_http(parsed).erased();
        let actual = provider
            .get_chain_id()
            .await
            .map_err(|e| rpc_failure(url, &e))?;
        if actual != expected_chain_id {
            return Err(ChainError::WrongChain {
                url: url.to_owned(),
                expected: expected_chain_id,
                actual,
            });
        }
        Ok(Self {
            provider,
            chain_id: actual,
            url: url.to_owned(),
        })
    }

    /// The account's next user-operation nonce (key 0) at `entry_point`.
    pub async fn entry_point_nonce(
        &self,
        entry_point: Address,
        sender: Address,
    ) -> Result<U256, ChainError> {
        IEntryPoint::new(entry_point, &self.provider)
            .getNonce(sender, U192::ZERO)
            .call()
            .await
            .map_err(|e| contract_error(&self.url, e))
    }

    /// `eth_call` of `data` on `to` at the latest block.
    pub async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, ChainError> {
        let tx = TransactionRequest::default().to(to).input(data.into());
        self.provider
            .call(tx)
            .await
            .map_err(|e| rpc_error(&self.url, e))
    }

    /// The native balance of an address, in wei.
    pub async fn balance(&self, address: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(address)
            .await
            .map_err(|e| rpc_error(&self.url, e))
    }

    pub async fn token_balance(&self, token: Address, owner: Address) -> Result<U256, ChainError> {
        IERC20::new(token, &self.provider)
            .balanceOf(owner)
            .call()
            .await
            .map_err(|e| contract_error(&self.url, e))
    }

    /// `name()`, `symbol()`, `decimals()` of an ERC-20.
    pub async fn token_metadata(&self, token: Address) -> Result<TokenMetadata, ChainError> {
        let erc20 = IERC20::new(token, &self.provider);
        let rpc = |e| contract_error(&self.url, e);
        Ok(TokenMetadata {
            address: token,
            name: erc20.name().call().await.map_err(rpc)?,
            symbol: erc20.symbol().call().await.map_err(rpc)?,
            decimals: erc20.decimals().call().await.map_err(rpc)?,
        })
    }

    /// The latest block's number and hash.
    pub async fn latest_block(&self) -> Result<(u64, B256), ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| rpc_error(&self.url, e))?
            .ok_or_else(|| ChainError::Rpc("the node has no latest block".into()))?;
        Ok((block.header.number, block.header.hash))
    }

    /// The latest block's number.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| rpc_error(&self.url, e))
    }

    /// The logs matching `filter`.
    pub async fn logs(
        &self,
        filter: &alloy::rpc::types::Filter,
    ) -> Result<Vec<alloy::rpc::types::Log>, ChainError> {
        self.provider
            .get_logs(filter)
            .await
            .map_err(|e| rpc_error(&self.url, e))
    }

    /// A factory's own `getAddress(owner, salt)`.
    pub async fn factory_address(
        &self,
        factory: Address,
        owner: Address,
        salt: U256,
    ) -> Result<Address, ChainError> {
        ISimpleAccountFactory::new(factory, &self.provider)
            .getAddress(owner, salt)
            .call()
            .await
            .map_err(|e| contract_error(&self.url, e))
    }
}

/// A failed JSON-RPC call as it may be shown to a client: only the node's own error answer
/// passes; anything else is logged, redacted, and replaced (see `ChainError::Unreachable`).
fn rpc_error(url: &str, e: alloy::transports::TransportError) -> ChainError {
    match e {
        alloy::transports::RpcError::ErrorResp(payload) => ChainError::Rpc(payload.to_string()),
        other => {
            tracing::warn!(error = %rpc_failure(url, &other), "chain request failed");
            ChainError::Unreachable
        }
    }
}

/// `rpc_error` for a contract call, whose ABI errors are ours to show.
fn contract_error(url: &str, e: alloy::contract::Error) -> ChainError {
    match e {
        alloy::contract::Error::TransportError(e) => rpc_error(url, e),
        other => ChainError::Rpc(other.to_string()),
    }
}

/// A failed call, in words that never hold the RPC URL's path, query or credentials (a provider
/// key is often part of them): transport errors name the URL they failed on.
fn rpc_failure(url: &str, e: &dyn std::fmt::Display) -> ChainError {
    ChainError::Rpc(e.to_string().replace(url, &redact_url(url)))
}

/// `url` as logs and errors may show it: scheme, host and port only (`https://host/…`).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("?");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = parsed.path().len() > 1
                || parsed.query().is_some()
                || !parsed.username().is_empty()
                || parsed.password().is_some();
            let rest = if hidden { "/…" } else { "" };
            format!("{}://{host}{port}{rest}", parsed.scheme())
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use alloy::transports::{RpcError, TransportErrorKind};

    use super::*;

    #[test]
    fn a_provider_key_in_the_url_never_shows() {
        assert_eq!(
            redact_url("https://eth-mainnet.g.alchemy.com/v2/SECRETKEY"),
            "https://eth-mainnet.g.alchemy.com/…"
        );
        assert_eq!(
            redact_url("https://user:pw@node.example:8545/?key=SECRET"),
            "https://node.example:8545/…"
        );
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        let failure = rpc_failure(
            "https://node.example/v2/SECRET",
            &"error sending request for url (https://node.example/v2/SECRET)",
        );
        assert!(!failure.to_string().contains("SECRET"), "{failure}");
    }

    #[test]
    fn a_transport_error_never_carries_the_node_url() {
        let url = "https://mainnet.example.io/v3/SECRETKEY";
        let transport = TransportErrorKind::custom_str(
            "error sending request for url (https://mainnet.example.io/v3/SECRETKEY)",
        );
        let shown = rpc_error(url, transport).to_string();
        assert!(!shown.contains("SECRETKEY"), "{shown}");
        assert!(!shown.contains("https://"), "{shown}");

        let answered: alloy::transports::TransportError = RpcError::ErrorResp(
            serde_json::from_str(r#"{"code": 3, "message": "execution reverted: not owner"}"#)
                .unwrap(),
        );
        assert!(rpc_error(url, answered).to_string().contains("not owner"));
    }
}
