//! `operator`: watches the triggers of the tasks the aggregator assigns to it and reports their
//! firings, signed. `operator keys` makes a key pair, `operator register` prints the entry the
//! aggregator's `operators.members` needs.

use std::path::PathBuf;

use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use clap::{Parser, Subcommand};

use operator::config::OperatorConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "operator",
    version,
    about = "An operator of the task-automation AVS"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Connect to the aggregator and watch the tasks it assigns.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print this operator's registration (YAML) for the aggregator's `operators.members`.
    Register {
        #[arg(long, short)]
        config: PathBuf,
        /// The operator's weight in the quorum.
        #[arg(long, default_value_t = 1)]
        weight: u64,
    },
    /// Generate a fresh ECDSA key and BLS key material (hex), one per line.
    Keys,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run { config } => {
            let config = OperatorConfig::from_file(&config)?;
            protocol::process::init_logging("info", false);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    protocol::process::shutdown_signal().await;
                    tracing::info!("shutting down");
                    let _ = stop.send(true);
                });
                operator::run(config, stopped).await
            })
        }
        Cmd::Register { config, weight } => {
            let config = OperatorConfig::from_file(&config)?;
            let member = operator::client::registration(
                &config.ecdsa()?,
                &config.bls()?,
                config.chain_id,
                weight,
            )?;
            print!("{}", serde_norway::to_string(&vec![member])?);
            Ok(())
        }
        Cmd::Keys => {
            let ecdsa = PrivateKeySigner::random();
            let mut bls = [0u8; 32];
            getrandom::fill(&mut bls).context("no randomness for the BLS key")?;
            println!("ecdsa_key: 0x{}", hex::encode(ecdsa.to_bytes()));
            println!("bls_key: 0x{}", hex::encode(bls));
            eprintln!("operator address {:#x}", ecdsa.address());
            Ok(())
        }
    }
}
