//! Helpers shared by the scenarios.

use std::path::Path;

use aggregator::store::Store;
use events::Durability;

pub fn open_store(dir: &Path, durability: Durability) -> anyhow::Result<Store> {
    Ok(Store::open(dir, durability)?.0)
}

/// Runs a `replay` command in-process, as the binary would, returning (passed, output).
pub fn replay(data: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    use clap::Parser;
    let mut argv = vec!["replay", "--data", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = replay::Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    let passed = replay::run(&cli, &mut out)?;
    Ok((passed, String::from_utf8(out)?))
}

/// A few random bits without another dependency.
pub fn random_u64() -> u64 {
    events::Ulid::generate().random() as u64
}
