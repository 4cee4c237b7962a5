//! ERC-20 metadata for `GetTokenMetadata`: from an optional whitelist file first, then from the
//! chain (`name()`, `symbol()`, `decimals()`), cached for the life of the process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use alloy::primitives::Address;
use serde::Deserialize;

use crate::chain::{Chain, TokenMetadata};

/// Where an answer came from (`GetTokenMetadataResp.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Whitelist,
    Rpc,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::Whitelist => "whitelist",
            Self::Rpc => "rpc",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Entry {
    address: String,
    name: String,
    symbol: String,
    decimals: u8,
}

#[derive(Debug, Default)]
pub struct TokenDirectory {
    whitelist: HashMap<Address, TokenMetadata>,
    cache: Mutex<HashMap<Address, TokenMetadata>>,
}

impl TokenDirectory {
    /// Loads the whitelist file (`[{"address", "name", "symbol", "decimals"}]`), if any.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut whitelist = HashMap::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("reading the token whitelist {}: {e}", path.display())
            })?;
            let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("the token whitelist {} does not parse: {e}", path.display())
            })?;
            for e in entries {
                let address: Address = e.address.parse().map_err(|_| {
                    anyhow::anyhow!("the token whitelist names {:?}, not an address", e.address)
                })?;
                whitelist.insert(
                    address,
                    TokenMetadata {
                        address,
                        name: e.name,
                        symbol: e.symbol,
                        decimals: e.decimals,
                    },
                );
            }
        }
        Ok(Self {
            whitelist,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The token's metadata; `Ok(None)` when it is not whitelisted and the chain does not
    /// answer as an ERC-20 (or there is no chain).
    pub async fn lookup(
        &self,
        chain: Option<&Chain>,
        address: Address,
    ) -> Result<Option<(TokenMetadata, Source)>, String> {
        if let Some(known) = self.whitelist.get(&address) {
            return Ok(Some((known.clone(), Source::Whitelist)));
        }
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&address)
        {
            return Ok(Some((cached.clone(), Source::Rpc)));
        }
        let Some(chain) = chain else {
            return Ok(None);
        };
        match chain.token_metadata(address).await {
            Ok(metadata) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(address, metadata.clone());
                Ok(Some((metadata, Source::Rpc)))
            }
            Err(_) => Ok(None),
        }
    }
}
