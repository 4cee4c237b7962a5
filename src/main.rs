//! `aggregator`: runs the service (the default), mints an API key offline, prints the effective
//! configuration or converts the original's, or prepares a chain for the users' smart wallets
//! (`chain deploy`).

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use aggregator::auth::keys::Keys;
use aggregator::auth::{Role, TokenIssuer};
use aggregator::config::{Config, Overrides};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "aggregator",
    version,
    about = "The aggregator of an EigenLayer AVS for on-chain task automation"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the aggregator (what it does with no subcommand).
    Run,
    /// Mint an API key offline, signed with the JWT secret of the keys directory (works while
    /// the server runs: it needs no store). Prints the key on stdout.
    CreateApiKey {
        /// admin: may sign in as any wallet and revoke keys; readonly: only as its subject, and
        /// changes nothing.
        #[arg(long, value_enum)]
        role: Role,
        /// The wallet address the key is for.
        #[arg(long)]
        subject: String,
        /// How long the key is valid (e.g. 30d, 12h).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        expires: Duration,
    },
    /// Print the verifier key of the event log's checkpoints (the log key in the keys
    /// directory, `--keys-dir`): what auditors check checkpoints and proof bundles with.
    LogKey,
    /// Print the effective configuration (YAML) and exit.
    Config {
        #[command(subcommand)]
        action: Option<ConfigCmd>,
    },
    /// Prepare a chain for the users' smart wallets.
    #[command(subcommand)]
    Chain(ChainCmd),
    /// Move the event log between a replicated stream (event_log.nats_urls, event_log.stream)
    /// and a data directory.
    #[command(subcommand)]
    Log(LogCmd),
    /// Take a consistent copy of the running single-node aggregator's store (the one this
    /// config names: its HTTP listener and keys directory) into DIR (new or empty), verified.
    /// Back up the keys directory on its own: the copy holds no key.
    Backup { dir: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
enum LogCmd {
    /// Write a local copy of the stream into DIR (new or empty): a complete data directory,
    /// verified, that `replay` reads and a single-node aggregator runs on.
    Export { dir: std::path::PathBuf },
    /// Load the log of a data directory no aggregator runs on into the stream, which must be
    /// empty or hold what an interrupted import of the same log published (it goes on from
    /// there): the log is verified first, then published in order, whole commands per message.
    Import {
        #[arg(long)]
        from: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ChainCmd {
    /// Deploy what is missing (EntryPoint v0.6, the ControlledAccountFactory of this
    /// aggregator's controller key, optionally a paymaster), create the controller and
    /// self-bundler keys in the keys directory when absent, fund the self-bundler's account, and
    /// print a complete config (YAML) for that chain on stdout. Running it again deploys nothing.
    Deploy {
        /// JSON-RPC URL of the chain.
        #[arg(long)]
        rpc_url: String,
        /// A file holding the hex private key of the account that pays for it all.
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// Also deploy a VerifyingPaymaster signed by the controller and keep this much ETH
        /// (wei) deposited for it.
        #[arg(long)]
        paymaster_deposit: Option<alloy::primitives::U256>,
        /// Keep the self-bundler's account at this much ETH (wei) at least.
        #[arg(long, default_value = "1000000000000000000")]
        bundler_funding: alloy::primitives::U256,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print our configuration for the original (Go) aggregator's `aggregator.yaml`, with what
    /// has no counterpart listed at the top. The chain id comes from `--chain-id`.
    FromGo {
        /// The original's aggregator.yaml.
        file: std::path::PathBuf,
        /// Also write its jwt_secret as the JWT secret of the keys directory (`--keys-dir`), so
        /// that session tokens and API keys the original minted keep working here.
        #[arg(long)]
        import_jwt_secret: bool,
        /// With --import-jwt-secret: replace a different secret already in the keys directory
        /// (the tokens signed with it stop working).
        #[arg(long, requires = "import_jwt_secret")]
        force: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.overrides)?;
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Run => {
            aggregator::telemetry::init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(aggregator::server::run(config))
        }
        Cmd::CreateApiKey {
            role,
            subject,
            expires,
        } => {
            let keys = Keys::load(&config.keys_dir).with_context(|| {
                format!(
                    "no keys in {}: start the aggregator once (it generates them) or pass --keys-dir",
                    config.keys_dir.display()
                )
            })?;
            let subject = subject
                .parse()
                .with_context(|| format!("--subject {subject:?} is not an address"))?;
            let (jti, key) = TokenIssuer::new(&keys.jwt_secret, config.chain_id)
                .api_key(subject, role, expires)?;
            eprintln!(
                "API key {jti} ({role:?}, subject {subject}, valid {})",
                humantime::format_duration(expires)
            );
            println!("{key}");
            Ok(())
        }
        Cmd::LogKey => {
            let key = aggregator::transparency::key::load(&config.keys_dir).with_context(|| {
                format!(
                    "no log key in {}: start the aggregator once (it generates it) or pass --keys-dir",
                    config.keys_dir.display()
                )
            })?;
            println!("{}", key.verifier().key());
            Ok(())
        }
        Cmd::Config { action: None } => {
            print!("{}", serde_norway::to_string(&config)?);
            Ok(())
        }
        Cmd::Config {
            action:
                Some(ConfigCmd::FromGo {
                    file,
                    import_jwt_secret,
                    force,
                }),
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let converted =
                aggregator::go_config::convert(&text, config, cli.overrides.chain_id.is_some())
                    .with_context(|| file.display().to_string())?;
            let mut converted = converted;
            if import_jwt_secret {
                let secret = converted
                    .jwt_secret
                    .as_deref()
                    .with_context(|| format!("{} has no jwt_secret", file.display()))?;
                let written = aggregator::go_config::import_jwt_secret(
                    &converted.config.keys_dir,
                    secret,
                    force,
                )?;
                converted.notes.push(format!(
                    "jwt_secret: imported as the JWT secret in {}: the original's tokens and API keys keep working",
                    written.display()
                ));
            } else if converted.jwt_secret.is_some() {
                converted.notes.push(
                    "jwt_secret: not carried; add --import-jwt-secret to write it into keys_dir, so that the original's tokens and API keys keep working"
                        .into(),
                );
            }
            print!("{}", converted.to_yaml()?);
            Ok(())
        }
        Cmd::Backup { dir } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let taken = runtime.block_on(aggregator::backup::take(&config, &dir))?;
            eprintln!(
                "backed up {} events ({} entries in {} keyspaces) into {}; the log verifies",
                taken.events,
                taken.entries,
                taken.keyspaces,
                dir.display()
            );
            Ok(())
        }
        Cmd::Log(LogCmd::Export { dir }) => {
            let exported = aggregator::log_transfer::export(&config, &dir)?;
            eprintln!(
                "exported {} events (stream {} up to message {}) into {}; they verify",
                exported.events,
                config.event_log.stream,
                exported.position,
                dir.display()
            );
            Ok(())
        }
        Cmd::Log(LogCmd::Import { from }) => {
            let imported = aggregator::log_transfer::import(&config, &from)?;
            let resumed = if imported.resumed > 0 {
                format!(
                    ", after the {} events an earlier import published",
                    imported.resumed
                )
            } else {
                String::new()
            };
            eprintln!(
                "imported {} events of {} into stream {} ({} messages{resumed}; it ends at {})",
                imported.events,
                from.display(),
                config.event_log.stream,
                imported.messages,
                imported.position
            );
            Ok(())
        }
        Cmd::Chain(ChainCmd::Deploy {
            rpc_url,
            key_file,
            paymaster_deposit,
            bundler_funding,
        }) => {
            let options = aggregator::wallet::deploy::DeployOptions {
                rpc_url: rpc_url.clone(),
                deployer: aggregator::wallet::keys::read_hex_key(&key_file)?,
                keys_dir: config.keys_dir.clone(),
                paymaster_deposit,
                bundler_funding,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let deployment = runtime.block_on(aggregator::wallet::deploy::deploy(&options))?;
            for action in &deployment.actions {
                eprintln!("{action}");
            }
            if deployment.actions.is_empty() {
                eprintln!("everything was deployed already");
            }
            eprintln!(
                "controller {}, self-bundler account {} (keys in {})",
                deployment.controller,
                deployment.bundler,
                config.keys_dir.display()
            );
            let mut printed = deployment.config(&rpc_url);
            printed.keys_dir.clone_from(&config.keys_dir);
            print!("{}", serde_norway::to_string(&printed)?);
            Ok(())
        }
    }
}
