//! The committed contract artifacts are what their sources and the pinned npm packages give
//! (`build.mjs --check`, `extract-aa.mjs --check`), and they behave on a real node as
//! `tests/fixtures/contracts/README.md` says (`verify.mjs`, which starts its own anvil on a free
//! loopback port and compares the committed wallet vectors with what the chain answers).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};

fn node(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let anvil = crate::anvil::anvil_binary()?; // also installs tests/node
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contracts");
    let mut command = Command::new("node");
    command
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .env("ANVIL", anvil);
    let output = command
        .output()
        .with_context(|| format!("running node {script} (is Node.js installed?)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "node {script} {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[test]
fn compiled_artifacts_match_their_sources() -> anyhow::Result<()> {
    let out = node("build.mjs", &["--check"])?;
    for name in [
        "ControlledAccount",
        "ControlledAccountFactory",
        "OwnedVerifyingPaymaster",
        "TestToken",
        "OperatorRegistry",
    ] {
        ensure!(out.contains(&format!("ok    {name}.json")), "{name}: {out}");
    }
    ensure!(out.contains("embeds ERC1967Proxy's creation code"), "{out}");
    node("extract-aa.mjs", &["--check"])?;
    Ok(())
}

#[test]
fn artifacts_behave_on_anvil_as_documented() -> anyhow::Result<()> {
    let out = node("verify.mjs", &[])?;
    ensure!(
        out.contains("committed controlled-wallet-vectors.json matches the chain"),
        "{out}"
    );
    ensure!(out.contains("checks passed"), "{out}");
    Ok(())
}
