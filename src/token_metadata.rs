//! ERC-20 metadata for `GetTokenMetadata`, looked up as the original does: the native-token
//! sentinel first, then the known tokens of the chain, then what this process already fetched,
//! then the chain itself (`name()`, `symbol()`, `decimals()`).
//!
//! The known tokens are data, one file per chain in `config/tokens/` (ethereum, sepolia, base,
//! base-sepolia), embedded in the binary and chosen by the configured chain id;
//! `engine.token_whitelist` names a file to use instead. A chain with no list of its own gets
//! none: the original falls back to Ethereum's list there, which attributes mainnet tokens to
//! addresses that hold something else (or nothing) on that chain.
//!
//! Answers name where they came from (`GetTokenMetadataResp.source`): `native`, `whitelist`,
//! `rpc` (asked the chain just now) or `cache` (asked it earlier in this process).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use alloy::primitives::{Address, address};
use serde::Deserialize;

use crate::chain::{Chain, TokenMetadata};

/// The address that stands for the chain's native currency (used by Moralis and the original).
pub const NATIVE_TOKEN: Address = address!("0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");

/// The built-in lists, by chain id.
const BUILT_IN: &[(u64, &str, &str)] = &[
    (
        1,
        "ethereum",
        include_str!("../config/tokens/ethereum.json"),
    ),
    (
        11_155_111,
        "sepolia",
        include_str!("../config/tokens/sepolia.json"),
    ),
    (8453, "base", include_str!("../config/tokens/base.json")),
    (
        84_532,
        "base-sepolia",
        include_str!("../config/tokens/base-sepolia.json"),
    ),
];

/// Where an answer came from (`GetTokenMetadataResp.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Native,
    Whitelist,
    Rpc,
    Cache,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Whitelist => "whitelist",
            Self::Rpc => "rpc",
            Self::Cache => "cache",
        }
    }
}

/// One known token. `id` is the original's name for the address field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(alias = "id")]
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
    /// The known tokens of `chain_id`: the file at `path` when given
    /// (`[{"address" | "id", "name", "symbol", "decimals"}]`), else the built-in list of that
    /// chain, if it has one.
    pub fn load(chain_id: u64, path: Option<&Path>) -> anyhow::Result<Self> {
        let whitelist = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading the token whitelist {}: {e}", path.display())
                })?;
                parse(&text)
                    .map_err(|e| anyhow::anyhow!("the token whitelist {}: {e}", path.display()))?
            }
            None => match BUILT_IN.iter().find(|(id, _, _)| *id == chain_id) {
                Some((_, name, text)) => parse(text)
                    .map_err(|e| anyhow::anyhow!("the built-in token list {name}: {e}"))?,
                None => HashMap::new(),
            },
        };
        Ok(Self {
            whitelist,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// How many known tokens were loaded.
    pub fn known(&self) -> usize {
        self.whitelist.len()
    }

    /// The known tokens, in address order.
    pub fn known_tokens(&self) -> Vec<TokenMetadata> {
        let mut tokens: Vec<TokenMetadata> = self.whitelist.values().cloned().collect();
        tokens.sort_by_key(|t| t.address);
        tokens
    }

    /// The token's metadata; `Ok(None)` when it is not known and the chain does not answer as an
    /// ERC-20 (or there is no chain).
    pub async fn lookup(
        &self,
        chain: Option<&Chain>,
        address: Address,
    ) -> Result<Option<(TokenMetadata, Source)>, String> {
        if address == NATIVE_TOKEN {
            return Ok(Some((native(), Source::Native)));
        }
        if let Some(known) = self.whitelist.get(&address) {
            return Ok(Some((known.clone(), Source::Whitelist)));
        }
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&address)
        {
            return Ok(Some((cached.clone(), Source::Cache)));
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

/// The native currency, as the original describes it on every chain.
fn native() -> TokenMetadata {
    TokenMetadata {
        address: NATIVE_TOKEN,
        name: "Ether".into(),
        symbol: "ETH".into(),
        decimals: 18,
    }
}

fn parse(text: &str) -> anyhow::Result<HashMap<Address, TokenMetadata>> {
    let entries: Vec<Entry> =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("does not parse: {e}"))?;
    let mut known = HashMap::with_capacity(entries.len());
    for e in entries {
        let address: Address = e
            .address
            .parse()
            .map_err(|_| anyhow::anyhow!("names {:?}, not an address", e.address))?;
        known.insert(
            address,
            TokenMetadata {
                address,
                name: e.name,
                symbol: e.symbol,
                decimals: e.decimals,
            },
        );
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_list_parses_with_addresses_once() {
        for (chain_id, name, text) in BUILT_IN {
            let entries: Vec<Entry> = serde_json::from_str(text).unwrap();
            let known = parse(text).unwrap();
            assert_eq!(known.len(), entries.len(), "{name}: an address twice");
            assert!(!known.is_empty(), "{name}");
            assert_eq!(
                TokenDirectory::load(*chain_id, None).unwrap().known(),
                known.len()
            );
            for token in known.values() {
                assert!(!token.name.is_empty() && !token.symbol.is_empty(), "{name}");
                assert!(token.decimals <= 24, "{name}");
            }
        }
    }

    #[tokio::test]
    async fn given_the_sepolia_list_when_usdc_is_asked_then_it_is_a_whitelist_answer() {
        let directory = TokenDirectory::load(11_155_111, None).unwrap();
        let usdc: Address = "0x1c7d4b196cb0c7b01d743fbc6116a902379c7238"
            .parse()
            .unwrap();
        let (token, source) = directory.lookup(None, usdc).await.unwrap().unwrap();
        assert_eq!(source, Source::Whitelist);
        assert_eq!((token.symbol.as_str(), token.decimals), ("USDC", 6));
    }

    #[tokio::test]
    async fn the_native_sentinel_is_ether_on_any_chain() {
        let directory = TokenDirectory::load(31_337, None).unwrap();
        assert_eq!(directory.known(), 0, "a chain without a list of its own");
        let (token, source) = directory.lookup(None, NATIVE_TOKEN).await.unwrap().unwrap();
        assert_eq!(source, Source::Native);
        assert_eq!(
            (token.name.as_str(), token.symbol.as_str(), token.decimals),
            ("Ether", "ETH", 18)
        );
    }

    #[tokio::test]
    async fn a_cached_answer_says_cache() {
        let directory = TokenDirectory::load(31_337, None).unwrap();
        let address: Address = "0x1234567890123456789012345678901234567890"
            .parse()
            .unwrap();
        assert!(directory.lookup(None, address).await.unwrap().is_none());
        directory.cache.lock().unwrap().insert(
            address,
            TokenMetadata {
                address,
                name: "T".into(),
                symbol: "T".into(),
                decimals: 2,
            },
        );
        let (_, source) = directory.lookup(None, address).await.unwrap().unwrap();
        assert_eq!(source, Source::Cache);
    }

    #[test]
    fn a_given_file_replaces_the_built_in_list_and_takes_the_originals_id_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(
            &path,
            r#"[{"id": "0x1234567890123456789012345678901234567890", "name": "Mine", "symbol": "MINE", "decimals": 4}]"#,
        )
        .unwrap();
        let directory = TokenDirectory::load(1, Some(&path)).unwrap();
        assert_eq!(directory.known(), 1);
        std::fs::write(
            &path,
            r#"[{"address": "0x12", "name": "x", "symbol": "x", "decimals": 1}]"#,
        )
        .unwrap();
        let err = TokenDirectory::load(1, Some(&path)).unwrap_err();
        assert!(err.to_string().contains("not an address"), "{err}");
    }
}
