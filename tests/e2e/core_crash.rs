//! A writer process is SIGKILLed at random moments while it appends; after each kill the store
//! reopens with every acknowledged command present, the chain verifying, and the projections equal
//! to a rebuild.
//!
//! The child is this very test binary, re-executed to run the ignored test `child_appends` with
//! `CRASH_DATA` set: it appends from several threads (so commands share group commits) and prints
//! one line per acknowledgement.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use events::event::{ExecutionQueued, TaskCreated, TaskTriggered};
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;
use events::{Command, Durability, Expected, Ulid};

use crate::support::{open_store, random_u64, replay};

const KILLS: usize = 24;

#[test]
fn every_acknowledged_command_survives_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut acknowledged: BTreeSet<Ulid> = BTreeSet::new();
    for round in 0..KILLS {
        let mut child = Process::new(&exe)
            .args([
                "core_crash::child_appends",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CRASH_DATA", dir.path())
            .env("CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ") {
                    acks.push(Ulid::from_string(id.trim()).unwrap());
                }
            }
            acks
        });
        // Let it run from just after start-up to well into its appends, then kill it.
        std::thread::sleep(Duration::from_millis(40 + random_u64() % 260));
        child.kill()?; // SIGKILL
        child.wait()?;
        let acks = reader.join().unwrap();
        acknowledged.extend(acks);

        let store = open_store(dir.path(), Durability::Sync)?;
        let ks = store.log.keyspaces();
        for id in &acknowledged {
            anyhow::ensure!(
                ks.events.get(id.to_bytes())?.is_some(),
                "round {round}: acknowledged event {id} is missing"
            );
        }
        store.close()?;
        drop(store);
        let (ok, out) = replay(dir.path(), &["verify"])?;
        anyhow::ensure!(ok, "round {round}: verify failed: {out}");
        let (ok, out) = replay(dir.path(), &["diff"])?;
        anyhow::ensure!(
            ok,
            "round {round}: projections differ from a rebuild: {out}"
        );
    }
    eprintln!(
        "{} commands acknowledged over {KILLS} kills",
        acknowledged.len()
    );
    anyhow::ensure!(
        acknowledged.len() > 100,
        "the child acknowledged only {} commands: the test did not exercise anything",
        acknowledged.len()
    );
    Ok(())
}

/// The child side: appends until killed. Ignored, so it runs only when the parent asks for it.
#[test]
#[ignore = "run by every_acknowledged_command_survives_sigkill in a child process"]
fn child_appends() -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os("CRASH_DATA") else {
        return Ok(());
    };
    let round: u64 = std::env::var("CRASH_ROUND")?.parse()?;
    let store = open_store(std::path::Path::new(&dir), Durability::Sync)?;
    let threads: Vec<_> = (0..8u64)
        .map(|lane| {
            let log = store.log.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0u64.. {
                    let task_id = format!("{round:04}{lane:02}{i:020}");
                    let exec_id = format!("E{round:04}{lane:02}{i:019}");
                    let mut definition = events::samples::definition();
                    definition.name = format!("crash {task_id}");
                    // A task and a firing of it, in one command over two streams.
                    let command = Command::new("0xcrash", events::now_ms())
                        .idempotent(format!("crash:{task_id}"), Some(120_000))
                        .append(
                            events::stream::task(&task_id),
                            Expected::NoStream,
                            vec![
                                TaskCreated {
                                    task_id: task_id.clone(),
                                    owner: "0xcrash".into(),
                                    wallet: format!("0xwallet{lane}"),
                                    definition,
                                }
                                .into(),
                                TaskTriggered {
                                    task_id: task_id.clone(),
                                    execution_id: exec_id.clone(),
                                    index: 0,
                                    dedup_key: format!("{task_id}:1"),
                                }
                                .into(),
                            ],
                        )
                        .append(
                            events::stream::execution(&exec_id),
                            Expected::NoStream,
                            vec![
                                ExecutionQueued {
                                    execution_id: exec_id.clone(),
                                    task_id: task_id.clone(),
                                    owner: "0xcrash".into(),
                                    index: 0,
                                    firing: Firing {
                                        dedup_key: format!("{task_id}:1"),
                                        source: FiringSource::Client,
                                        kind: TriggerKind::Block,
                                        output: None,
                                        input: Default::default(),
                                    },
                                }
                                .into(),
                            ],
                        );
                    let committed = log.append_blocking(command)?;
                    let mut line = String::new();
                    for event in committed.events {
                        line.push_str(&format!("ack {}\n", event.id));
                    }
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes())?;
                    out.flush()?;
                }
                Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    for t in threads {
        t.join().unwrap()?;
    }
    anyhow::bail!(
        "the child should have been killed within {:?}",
        started.elapsed()
    )
}
