//! The official client (`@avaprotocol/sdk-js`, installed from npm into `tests/js`) against a
//! cluster: a 3-node NATS JetStream cluster and 3 aggregator replicas (`cluster_support`).
//! `tests/js/cluster.mjs` signs in on every replica, creates wallets, tasks and secrets through
//! replica 1, 2 and 3 in turn and reads each back through the same replica (read-own-write) and
//! then every replica (converge), lists tasks, secrets and executions on each, and triggers each
//! task through one replica and reads its execution through another. It prints one line per
//! check and exits non-zero at the first mismatch, naming it.

use tokio::process::Command;

use crate::cluster_support::{Replica, ready_cluster, scratch, start_replicas};
use crate::interop_js::{install, js_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_writes_through_each_replica_and_reads_converge() -> anyhow::Result<()>
{
    tokio::task::spawn_blocking(install).await??;
    let dir = scratch("cluster npm test")?;
    let (_nodes, urls) = ready_cluster(dir.path()).await?;
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::new(dir.path(), i, &urls))
        .collect::<Result<_, _>>()?;
    start_replicas(&mut replicas).await?;

    let endpoints: Vec<&str> = replicas.iter().map(|r| r.grpc.as_str()).collect();
    let out = Command::new("node")
        .arg("cluster.mjs")
        .current_dir(js_dir())
        .env("AGGREGATOR_ENDPOINTS", endpoints.join(","))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("--- replica {} log:\n{}", i + 1, r.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    anyhow::ensure!(
        out.status.success(),
        "the official client's checks on the cluster failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    // 3 sign-ins, 3 cross-replica keys, per kind 3 writes with 3 reads each and 3 lists, ...
    anyhow::ensure!(
        summary["failed"] == 0 && summary["passed"].as_u64().unwrap_or(0) >= 60,
        "{stdout}"
    );
    for line in ["ok tasks.read-own.2-on-2", "ok executions.finished-on-1"] {
        anyhow::ensure!(stdout.lines().any(|l| l == line), "no {line:?}:\n{stdout}");
    }
    Ok(())
}
