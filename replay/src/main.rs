//! The `replay` binary: parses the command line and runs `replay::run`.

use std::process::ExitCode;

use clap::Parser;

// Decoding the log allocates a few small objects per event; mimalloc makes `verify` and
// `rebuild` markedly faster than the system allocator, as in the aggregator's binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = replay::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match replay::run(&cli, &mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("replay: {e:#}");
            ExitCode::from(2)
        }
    }
}
