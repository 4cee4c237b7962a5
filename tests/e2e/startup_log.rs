//! The aggregator's own log at the default level, as an operator of the service reads it: the
//! start-up lines say where the data and keys are and what listens where (the addresses given
//! are the ones that answer), and no dependency's chatter (the storage engine's INFO lines on
//! opening or recovering a store) comes with them. Run twice on one data directory, so that
//! the second start recovers an existing store.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Our crates, as their log targets start.
const OURS: &[&str] = &[
    "aggregator",
    "events",
    "projections",
    "attest",
    "replay",
    "tlog",
    "protocol",
    "operator",
];

/// Starts the binary, reads its log until the HTTP listener's line, then stops it; the lines.
fn start_and_stop(config: &Path) -> anyhow::Result<Vec<String>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let outcome = loop {
        // A guard against a hung start, not a measurement.
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let done = line.contains("HTTP listening");
                seen.push(line);
                if done {
                    break Ok(());
                }
            }
            Err(e) => break Err(anyhow::anyhow!("no HTTP listening line ({e}): {seen:#?}")),
        }
    };
    if outcome.is_ok() {
        let console = field(&seen, "HTTP listening", "console")?;
        let status = get(&console)?;
        anyhow::ensure!(status.contains(" 200 "), "{console} answered {status}");
    }
    // SIGTERM: the graceful shutdown logs its lines too.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        seen.push(line);
    }
    outcome?;
    Ok(seen)
}

/// The status line `url` answers (plain HTTP on loopback).
fn get(url: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("not an http URL: {url}"))?;
    let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

/// The value of `name=` on the first line containing `message`.
fn field(lines: &[String], message: &str, name: &str) -> anyhow::Result<String> {
    let line = lines
        .iter()
        .find(|l| l.contains(message))
        .ok_or_else(|| anyhow::anyhow!("no line with {message:?} in {lines:#?}"))?;
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {name}= in {line}"))
}

/// A text log line's level and target: `2026-01-01T00:00:00.000000Z  INFO target: message`.
fn level_and_target(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let _time = words.next()?;
    let level = words.next()?;
    let target = words.next()?.strip_suffix(':')?;
    Some((level, target))
}

#[test]
fn start_up_lines_say_what_listens_on_which_data_and_dependencies_stay_quiet() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    let config = dir.path().join("aggregator.yaml");
    // Port 0: the lines say which ports the listeners took.
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nkeys_dir: {}\ngrpc:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n",
            data.display(),
            keys.display(),
        ),
    )?;
    let mut keys_seen = Vec::new();
    for start in ["a fresh store", "the store again"] {
        let lines = start_and_stop(&config)?;
        let log = lines.join("\n");
        assert_eq!(
            field(&lines, "store open", "data")?,
            data.display().to_string(),
            "{start}: {log}"
        );
        assert_eq!(
            field(&lines, "store open", "keys")?,
            keys.display().to_string(),
            "{start}: {log}"
        );
        let grpc = field(&lines, "gRPC listening", "grpc")?;
        assert!(
            grpc.starts_with("127.0.0.1:") && !grpc.ends_with(":0"),
            "{start}: {log}"
        );
        // The log key auditors check checkpoints with, the same on every start.
        let log_key = field(&lines, "HTTP listening", "log_key")?;
        assert!(log_key.starts_with("ava-aggregator/"), "{start}: {log}");
        keys_seen.push(log_key);
        for line in &lines {
            let Some((level, target)) = level_and_target(line) else {
                continue;
            };
            let crate_name = target.split("::").next().unwrap_or_default();
            assert!(
                OURS.contains(&crate_name) || matches!(level, "WARN" | "ERROR"),
                "{start}: a dependency's {level} line at the default level: {line}"
            );
        }
    }
    assert_eq!(keys_seen[0], keys_seen[1]);
    Ok(())
}
