//! The `replay` binary: parses the command line and runs `replay::run`.

use std::process::ExitCode;

use clap::Parser;

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
