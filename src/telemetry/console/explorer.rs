//! Block explorers of known public chains: the console links addresses, transactions and blocks
//! to them. A chain not listed (a local one, like anvil's 31337) gets no links.

use serde::Serialize;

/// A chain's name and its explorer's base URL (`/address/<a>`, `/tx/<hash>`, `/block/<n>` under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Explorer {
    pub chain: &'static str,
    pub url: &'static str,
}

const KNOWN: &[(u64, &str, &str)] = &[
    (1, "Ethereum", "https://etherscan.io"),
    (11_155_111, "Sepolia", "https://sepolia.etherscan.io"),
    (17_000, "Holesky", "https://holesky.etherscan.io"),
    (560_048, "Hoodi", "https://hoodi.etherscan.io"),
    (8453, "Base", "https://basescan.org"),
    (84_532, "Base Sepolia", "https://sepolia.basescan.org"),
    (10, "OP Mainnet", "https://optimistic.etherscan.io"),
    (42_161, "Arbitrum One", "https://arbiscan.io"),
    (137, "Polygon", "https://polygonscan.com"),
    (56, "BNB Smart Chain", "https://bscscan.com"),
    (100, "Gnosis", "https://gnosisscan.io"),
    (43_114, "Avalanche C-Chain", "https://snowtrace.io"),
    (59_144, "Linea", "https://lineascan.build"),
    (534_352, "Scroll", "https://scrollscan.com"),
    (1868, "Soneium", "https://soneium.blockscout.com"),
    (
        1946,
        "Soneium Minato",
        "https://soneium-minato.blockscout.com",
    ),
];

pub fn for_chain(chain_id: u64) -> Option<Explorer> {
    KNOWN
        .iter()
        .find(|(id, _, _)| *id == chain_id)
        .map(|(_, chain, url)| Explorer { chain, url })
}

impl Explorer {
    pub fn address(&self, address: &str) -> String {
        format!("{}/address/{address}", self.url)
    }

    pub fn transaction(&self, hash: &str) -> String {
        format!("{}/tx/{hash}", self.url)
    }

    pub fn block(&self, number: u64) -> String {
        format!("{}/block/{number}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_chains_link_to_their_explorer_and_local_ones_to_nothing() {
        let mainnet = for_chain(1).unwrap();
        assert_eq!(
            mainnet.address("0xabc"),
            "https://etherscan.io/address/0xabc"
        );
        assert_eq!(
            for_chain(11_155_111).unwrap().transaction("0x12"),
            "https://sepolia.etherscan.io/tx/0x12"
        );
        assert_eq!(
            for_chain(8453).unwrap().block(7),
            "https://basescan.org/block/7"
        );
        assert_eq!(for_chain(31_337), None);
        let ids: std::collections::BTreeSet<u64> = KNOWN.iter().map(|k| k.0).collect();
        assert_eq!(ids.len(), KNOWN.len(), "one entry per chain id");
    }
}
