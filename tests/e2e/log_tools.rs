//! The tools on a replicated log, against a real `nats-server` on a loopback port it picks: a
//! single node's log imported into an empty stream (a second import refused), exported back into
//! a data directory with the same event bytes that `replay verify` and `replay diff` pass,
//! `replay --nats` reading the stream itself, and a replica started empty on the stream holding
//! the same events.

use std::process::Stdio;
use std::sync::Arc;

use events::{Envelope, LogKeyspaces, LogOptions, Projector, Tx, Ulid};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{TestServer, User, replay, simple_task};

/// Small messages, so that the import needs several.
const MAX_PAYLOAD: usize = 16 * 1024;

pub struct Nats {
    _child: tokio::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// `nats-server` with JetStream on a loopback port it picks (`-1`), read back from its log.
pub async fn nats_server() -> anyhow::Result<Nats> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:-1\"\nserver_name: tools\nmax_payload: {MAX_PAYLOAD}\njetstream {{\n  store_dir: {:?}\n}}\n",
            dir.path().join("js").display().to_string()
        ),
    )?;
    let mut child = tokio::process::Command::new("nats-server")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("nats-server must be installed (.ci/run installs it): {e}"))?;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut url = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(at) = line.split("Listening for client connections on ").nth(1) {
            url = Some(format!("nats://{}", at.trim()));
        }
        if line.contains("Server is ready") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Nats {
        _child: child,
        url: url.ok_or_else(|| anyhow::anyhow!("nats-server did not say where it listens"))?,
        _dir: dir,
    })
}

fn events_of(dir: &std::path::Path) -> anyhow::Result<Vec<(Ulid, Vec<u8>)>> {
    let db = events::open_database(dir)?;
    let log = LogKeyspaces::open(&db)?;
    log.scan(None)
        .map(|item| Ok(item.map(|(id, v)| (id, v.to_vec()))?))
        .collect()
}

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &Envelope, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nodes_log_moves_into_a_stream_and_back() -> anyhow::Result<()> {
    // Given a single-node aggregator's log: tasks of two users, one deleted
    let mut server = TestServer::start().await?;
    let mut c = server.client().await?;
    for _ in 0..2 {
        let user = User::sign_in(&mut c).await?;
        let wallet = user.wallet(&mut c).await?;
        for i in 0..20 {
            let id = c
                .create_task(user.req(simple_task(&format!("t{i}"), &wallet)))
                .await?
                .into_inner()
                .id;
            if i == 3 {
                c.delete_task(user.req(aggregator::pb::IdReq { id }))
                    .await?;
            }
        }
    }
    server.stop().await?;
    let data = server.config.data_dir.clone();
    let nats = nats_server().await?;
    let mut config = server.config.clone();
    config.event_log.nats_urls = vec![nats.url.clone()];
    config.event_log.stream = "moved".into();
    config.event_log.replicas = 1;

    // When it is imported into an empty stream
    let imported = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || aggregator::log_transfer::import(&config, &data))
            .await??
    };
    let local = events_of(&data)?;
    assert_eq!(imported.events, local.len() as u64);
    assert!(imported.messages > 1, "{imported:?}");
    // Then a second import is refused, saying the stream is not empty
    let again = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || aggregator::log_transfer::import(&config, &data))
            .await?
            .unwrap_err()
    };
    assert!(
        format!("{again:#}").contains("only into an empty stream"),
        "{again:#}"
    );

    // And exported into a new directory, it holds the same event bytes, and verifies
    let copy = tempfile::tempdir()?;
    let exported_dir = copy.path().join("exported");
    let exported = {
        let (config, dir) = (config.clone(), exported_dir.clone());
        tokio::task::spawn_blocking(move || aggregator::log_transfer::export(&config, &dir))
            .await??
    };
    assert_eq!(exported.events, imported.events);
    assert_eq!(exported.position, imported.position);
    assert_eq!(events_of(&exported_dir)?, local);
    let (passed, out) = replay(&exported_dir, &["verify"])?;
    assert!(passed, "{out}");
    // (its indexes and projections equal a rebuild: a store a single node runs on)
    let (passed, out) = replay(&exported_dir, &["diff"])?;
    assert!(passed, "{out}");
    // And an export into a directory that is not empty is refused
    let refused = {
        let (config, dir) = (config.clone(), exported_dir.clone());
        tokio::task::spawn_blocking(move || aggregator::log_transfer::export(&config, &dir))
            .await?
            .unwrap_err()
    };
    assert!(refused.to_string().contains("is not empty"), "{refused}");

    // And replay reads the stream itself: it verifies, and exports what the directory exports
    let nats_args = ["--nats", nats.url.as_str(), "--stream", "moved"];
    let (passed, out) = {
        let args: Vec<String> = nats_args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            argv.push("verify");
            replay(std::path::Path::new("/nonexistent"), &argv)
        })
        .await??
    };
    assert!(passed, "{out}");
    assert!(
        out.contains(&format!("ok: {} events", local.len())),
        "{out}"
    );
    let from_stream = {
        let args: Vec<String> = nats_args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            argv.push("export");
            replay(std::path::Path::new("/nonexistent"), &argv)
        })
        .await??
    };
    let (_, from_dir) = replay(&data, &["export"])?;
    assert_eq!(from_stream.1, from_dir);
    assert_eq!(from_dir.lines().count(), local.len());

    // And a replica started on an empty data directory on that stream holds the same events
    let replica_dir = tempfile::tempdir()?;
    let db = events::open_database(replica_dir.path())?;
    let replicated = cluster::Replicated::connect(&cluster::StreamSettings {
        urls: vec![nats.url.clone()],
        stream: "moved".into(),
        replicas: 1,
    })
    .await?;
    let backend = Arc::new(
        cluster::JetStream::open(&db, replicated.clone(), tokio::runtime::Handle::current())
            .await?,
    );
    let log = events::Log::open_on(
        &db,
        LogOptions::default(),
        Box::new(NoProjections),
        backend.clone(),
    )?;
    let following = tokio::spawn(cluster::follow(log.clone(), replicated.clone(), 0));
    let position = cluster::catch_up(&log, &replicated).await?;
    following.abort();
    assert_eq!(position, imported.position);
    let held: Vec<(Ulid, Vec<u8>)> = log
        .keyspaces()
        .scan(None)
        .map(|item| item.map(|(id, v)| (id, v.to_vec())))
        .collect::<Result<_, _>>()?;
    assert_eq!(held, local);
    tokio::task::block_in_place(|| log.shutdown());
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_run_restores_and_verifies() -> anyhow::Result<()> {
    // Given a running single node with tasks, and a writer that keeps creating more
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    for i in 0..10 {
        c.create_task(user.req(simple_task(&format!("before{i}"), &wallet)))
            .await?;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut c, wallet) = (stop.clone(), c.clone(), wallet.clone());
        let token = user.token.clone();
        tokio::spawn(async move {
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let request = crate::support::with_key(
                    simple_task(&format!("during{written}"), &wallet),
                    &token,
                );
                c.create_task(request).await.unwrap();
                written += 1;
            }
            written
        })
    };
    // When a backup is taken meanwhile (as `aggregator backup DIR` does, over the HTTP listener)
    let mut config = server.config.clone();
    config.http.listen = server.running().http;
    let backups = tempfile::tempdir()?;
    let dir = backups.path().join("backup");
    let taken = aggregator::backup::take(&config, &dir).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = writer.await?;
    assert!(taken.events >= 10, "{taken:?}");
    // Then, restored into a fresh directory, its log verifies and its projections equal a
    // rebuild from its log (the snapshot holds whole commits)
    let restored = backups.path().join("restored");
    copy_dir(&dir, &restored)?;
    let (passed, out) = replay(&restored, &["verify"])?;
    assert!(passed, "{out}");
    let (passed, out) = replay(&restored, &["diff"])?;
    assert!(passed, "{out}");
    assert!(during > 0);
    // And an aggregator restored on it serves what was there before the backup
    let mut restored_config = TestServer::config(backups.path());
    restored_config.data_dir = restored.clone();
    restored_config.keys_dir = server.config.keys_dir.clone();
    let again = TestServer::start_with(tempfile::tempdir()?, restored_config).await?;
    let mut c2 = again.client().await?;
    let listed = c2
        .list_tasks(user.req(aggregator::pb::ListTasksReq {
            smart_wallet_address: vec![wallet.clone()],
            limit: 500,
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(listed.items.len() >= 10, "{}", listed.items.len());

    // And a key that is not an admin API key gets no backup
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}{}",
            server.running().http,
            aggregator::backup::PATH
        ))
        .header("authkey", user.token.as_str())
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    Ok(())
}
