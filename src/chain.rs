//! The Ethereum JSON-RPC connection, when one is configured: the reads the aggregator makes of
//! the chain (EntryPoint nonces, a non-default factory's `getAddress`).

use alloy::primitives::{Address, U256, aliases::U192};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};

alloy::sol! {
    #[sol(rpc)]
    interface IEntryPoint {
        function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
    }

    #[sol(rpc)]
    interface ISimpleAccountFactory {
        function getAddress(address owner, uint256 salt) external view returns (address);
    }
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
            .field("url", &self.url)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("invalid RPC URL {0:?}")]
    Url(String),
    #[error("the node at {url} answers chain id {actual}, the config says {expected}")]
    WrongChain {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("JSON-RPC call failed: {0}")]
    Rpc(String),
}

impl Chain {
    /// Connects over HTTP and checks that the node serves the configured chain.
    pub async fn connect(url: &str, expected_chain_id: u64) -> Result<Self, ChainError> {
        let parsed = url.parse().map_err(|_| ChainError::Url(url.to_owned()))?;
        let provider = ProviderBuilder::new().connect_http(parsed).erased();
        let actual = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
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
            .map_err(|e| ChainError::Rpc(e.to_string()))
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
            .map_err(|e| ChainError::Rpc(e.to_string()))
    }
}
