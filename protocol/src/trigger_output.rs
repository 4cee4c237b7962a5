//! What time and block triggers output, in the original's shapes; operators report them and
//! sign them, so every honest operator must build the same bytes from the same chain:
//!
//! - time triggers (fixed time, cron): `{timestamp, timestampIso}`, milliseconds and their ISO
//!   text with three fraction digits;
//! - block triggers: `{blockNumber, blockHash, timestamp, parentHash, difficulty, gasLimit,
//!   gasUsed}` (timestamp in seconds, difficulty as decimal text, as the original reads a header).
//!
//! Event triggers report the raw log; the aggregator decodes and enriches it after the
//! attestation (`aggregator::domain::trigger_output`).

use alloy::primitives::{B256, U256};
use serde_json::{Value, json};

/// `{timestamp, timestampIso}` of a time trigger's slot.
pub fn time_output(ms: i64) -> Value {
    json!({ "timestamp": ms, "timestampIso": iso_millis(ms) })
}

/// Milliseconds since the epoch as `2026-01-02T03:04:05.678Z` (before 1970: the epoch).
pub fn iso_millis(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// The facts of a block header a block trigger reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFacts {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Seconds since the epoch.
    pub timestamp: u64,
    pub difficulty: U256,
    pub gas_limit: u64,
    pub gas_used: u64,
}

/// A block trigger's output.
pub fn block_output(block: &BlockFacts) -> Value {
    json!({
        "blockNumber": block.number,
        "blockHash": format!("{:#x}", block.hash),
        "timestamp": block.timestamp,
        "parentHash": format!("{:#x}", block.parent_hash),
        "difficulty": block.difficulty.to_string(),
        "gasLimit": block.gas_limit,
        "gasUsed": block.gas_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_outputs_carry_their_iso_text() {
        assert_eq!(
            time_output(1_700_000_000_123),
            json!({"timestamp": 1_700_000_000_123_i64, "timestampIso": "2023-11-14T22:13:20.123Z"})
        );
    }

    #[test]
    fn block_outputs_name_the_header_fields() {
        let out = block_output(&BlockFacts {
            number: 10,
            hash: B256::repeat_byte(1),
            parent_hash: B256::repeat_byte(2),
            timestamp: 1_700_000_000,
            difficulty: U256::from(5),
            gas_limit: 30_000_000,
            gas_used: 21_000,
        });
        assert_eq!(out["blockNumber"], 10);
        assert_eq!(out["timestamp"], 1_700_000_000);
        assert_eq!(out["difficulty"], "5");
        assert_eq!(out["gasLimit"], 30_000_000);
        assert_eq!(out["gasUsed"], 21_000);
        assert!(out["parentHash"].as_str().unwrap().starts_with("0x0202"));
    }
}
