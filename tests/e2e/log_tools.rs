//! The tools on a replicated log, against a real `nats-server` on a loopback port it picks: a
//! single node's log imported into an empty stream, whole commands per message (imported again,
//! nothing is published), exported back into a data directory with the same event bytes that
//! `replay verify` and `replay diff` pass, `replay --nats` reading the stream itself, and a
//! replica started empty on the stream holding the same events. An import killed midway goes on
//! when run again; a stream holding another log is refused, saying where it differs.

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
    assert_eq!(imported.resumed, 0);
    // Then each message holds whole commands
    whole_commands_per_message(&nats.url, "moved").await?;
    // And importing it again finds it all there, and publishes nothing
    let again = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || aggregator::log_transfer::import(&config, &data))
            .await??
    };
    assert_eq!((again.events, again.messages), (0, 0), "{again:?}");
    assert_eq!(again.resumed, imported.events);
    assert_eq!(again.position, imported.position);

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
                // Paced as a client should be: the writer runs as long as the backup takes,
                // which on a fast machine outlasts the caller's burst allowance.
                match c.create_task(request).await {
                    Ok(_) => written += 1,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    Err(status) => panic!("{status:?}"),
                }
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

/// Every message of the stream holds whole commands: a message after another starts where a
/// command starts (an event with its command's key, or another time than the one before), and
/// a command with a key has all its events in the message of its first.
async fn whole_commands_per_message(url: &str, stream: &str) -> anyhow::Result<()> {
    let replicated = cluster::Replicated::attach(&cluster::StreamSettings {
        urls: vec![url.to_owned()],
        stream: stream.into(),
        replicas: 1,
    })
    .await?;
    let mut previous: Option<events::Header> = None;
    cluster::transfer::read(&replicated, |sequence, stored| {
        let headers: Vec<events::Header> = stored
            .iter()
            .map(|s| events::decode_header(s))
            .collect::<Result<_, _>>()
            .map_err(|e| cluster::Error::Local(e.to_string()))?;
        if let (Some(last), Some(first)) = (&previous, headers.first()) {
            assert!(
                first.idempotency.is_some() || first.recorded_at != last.recorded_at,
                "message {sequence} starts inside the command of event {}",
                last.id
            );
        }
        for (i, header) in headers.iter().enumerate() {
            if let Some(mark) = &header.idempotency {
                assert!(
                    i + mark.events as usize <= headers.len(),
                    "message {sequence} holds only part of the command of event {}",
                    header.id
                );
            }
        }
        if let Some(last) = headers.last() {
            previous = Some(last.clone());
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// A TCP proxy to `to` that passes the client's first `budget` bytes, then swallows the rest
/// (the client waits for answers that never come); the server's bytes all pass.
struct CuttingProxy {
    url: String,
    spent: tokio::sync::watch::Receiver<bool>,
    _accepting: tokio::task::JoinHandle<()>,
}

async fn cutting_proxy(to: &str, budget: usize) -> anyhow::Result<CuttingProxy> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let to = to.trim_start_matches("nats://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("nats://{}", listener.local_addr()?);
    let left = Arc::new(AtomicUsize::new(budget));
    let (spent_tx, spent) = tokio::sync::watch::channel(false);
    let spent_tx = Arc::new(spent_tx);
    let accepting = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            let (left, spent_tx) = (left.clone(), spent_tx.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                loop {
                    let Ok(n) = client_read.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let pass = n.min(left.load(Ordering::SeqCst));
                    left.fetch_sub(pass, Ordering::SeqCst);
                    if pass > 0 && server_write.write_all(&buffer[..pass]).await.is_err() {
                        return;
                    }
                    if pass < n || left.load(Ordering::SeqCst) == 0 {
                        spent_tx.send_replace(true);
                    }
                }
            });
        }
    });
    Ok(CuttingProxy {
        url,
        spent,
        _accepting: accepting,
    })
}

/// A config file for the `aggregator` binary naming the stream `stream` on `url`.
fn tool_config(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    stream: &str,
) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "data_dir: {data}\nkeys_dir: {keys}\nevent_log:\n  nats_urls: [{url}]\n  stream: {stream}\n  replicas: 1\n",
            data = dir.join(format!("{name}-data")).display(),
            keys = dir.join(format!("{name}-keys")).display(),
        ),
    )?;
    Ok(path.to_string_lossy().into_owned())
}

/// A single node's log of `tasks` tasks (the server stopped); its data directory.
async fn a_log_of(tasks: usize) -> anyhow::Result<(TestServer, std::path::PathBuf)> {
    let mut server = TestServer::start().await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let wallet = user.wallet(&mut c).await?;
    for i in 0..tasks {
        c.create_task(user.req(simple_task(&format!("t{i}"), &wallet)))
            .await?;
    }
    server.stop().await?;
    let data = server.config.data_dir.clone();
    Ok((server, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_goes_on_when_run_again_and_another_log_is_refused()
-> anyhow::Result<()> {
    // Given a single node's log, and NATS behind a proxy that passes about half of its bytes
    let (_server, data) = a_log_of(150).await?;
    let local = events_of(&data)?;
    let bytes: usize = local.iter().map(|(_, v)| v.len()).sum();
    let nats = nats_server().await?;
    let mut proxy = cutting_proxy(&nats.url, 8 * 1024 + bytes / 2).await?;
    let dir = tempfile::tempdir()?;
    let through_proxy = tool_config(dir.path(), "cut", &proxy.url, "halfway")?;
    let direct = tool_config(dir.path(), "direct", &nats.url, "halfway")?;
    let data_arg = data.to_string_lossy().into_owned();

    // When `aggregator log import` is SIGKILLed once the proxy stopped passing its bytes
    let mut import = tokio::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "--config",
            &through_proxy,
            "log",
            "import",
            "--from",
            &data_arg,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::select! {
        spent = proxy.spent.wait_for(|s| *s) => { spent?; }
        exited = import.wait() => anyhow::bail!("the import ended before it was cut: {exited:?}"),
    }
    let replicated = cluster::Replicated::attach(&cluster::StreamSettings {
        urls: vec![nats.url.clone()],
        stream: "halfway".into(),
        replicas: 1,
    })
    .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while replicated.head().await? < 2 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing of the import reached the stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    import.kill().await?;
    let cut_at = replicated.head().await?;

    // Then run again (straight to NATS), it goes on after what the first run published
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["--config", &direct, "log", "import", "--from", &data_arg])
        .output()
        .await?;
    let said = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "{said}");
    let resumed: u64 = said
        .split("after the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second run does not say it went on: {said}"));
    assert!(
        resumed > 0 && resumed < local.len() as u64,
        "{resumed} of {}: {said}",
        local.len()
    );
    assert!(replicated.head().await? > cut_at);
    eprintln!(
        "log import: killed with {cut_at} messages in the stream; run again, it went on after {resumed} of {} events",
        local.len()
    );
    // And the stream holds the log exactly, each event once, whole commands per message
    let mut held = Vec::new();
    cluster::transfer::read(&replicated, |_, stored| {
        for s in stored {
            let id = events::decode_header(&s)
                .map_err(|e| cluster::Error::Local(e.to_string()))?
                .id;
            held.push((id, s.to_vec()));
        }
        Ok(())
    })
    .await?;
    assert_eq!(held.len(), local.len());
    assert!(held == local, "the stream does not hold the log as it is");
    whole_commands_per_message(&nats.url, "halfway").await?;

    // And another log is refused on that stream, saying where it differs; nothing is published
    let (other_server, other) = a_log_of(2).await?;
    let head = replicated.head().await?;
    let mut config = other_server.config.clone();
    config.event_log.nats_urls = vec![nats.url.clone()];
    config.event_log.stream = "halfway".into();
    config.event_log.replicas = 1;
    let refused =
        tokio::task::spawn_blocking(move || aggregator::log_transfer::import(&config, &other))
            .await?
            .unwrap_err();
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("where the source's event 1 is"),
        "{refused}"
    );
    assert!(
        refused.contains("something else than the start of this log"),
        "{refused}"
    );
    assert_eq!(replicated.head().await?, head);
    Ok(())
}
