//! Streams and KV buckets created by whichever replica starts first, safely when several start
//! at the same moment.
//!
//! Every replica creates what it needs when it is missing: the log's stream (`stream`), the
//! writer's lease (`lease`), the keys' fingerprints (`fingerprints`), the operators' nonces
//! (`nonces`) and presence (`presence`). Replicas started together race for each: both find it
//! missing and both ask the server to create it; the loser's create can be refused (the name
//! is in use by then) or time out while the NATS cluster puts the winner's stream in place, and
//! a replica must not stop over a stream that exists. So a create that fails falls back to
//! reading what exists, and both are tried again a bounded number of times (`ATTEMPTS`, about
//! 10 s in all) before the start fails, with the last refusal in its message.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::error::{Error, Result};
use crate::stream::Replicated;

/// How many times a stream is created or read before the start fails.
const ATTEMPTS: u32 = 10;
/// The first pause between attempts; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The stream of `config` (its name), created when missing: on a failed create, the stream
/// another process created meanwhile is taken; either is tried again up to `ATTEMPTS` times.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream> {
    let name = config.name.clone();
    let mut pause = FIRST_PAUSE;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                // Created by another replica between our look and our create, or being put in
                // place by the cluster: what exists now is what this replica uses.
                if let Ok(stream) = js.get_stream(&name).await {
                    return Ok(stream);
                }
                tracing::debug!(stream = %name, attempt, error = %e, "creating the stream failed; trying again");
                last = e.to_string();
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    Err(Error::Stream {
        stream: name,
        message: format!(
            "could neither be created nor read after {ATTEMPTS} attempts (is JetStream enabled, with room for the stream?): {last}"
        ),
    })
}

/// Runs `attempt` until it succeeds, up to `ATTEMPTS` times with growing pauses: the last
/// failure once they are spent (with how many were made).
pub(crate) async fn patiently<T, F, Fut>(mut attempt: F) -> std::result::Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, String>>,
{
    let mut pause = FIRST_PAUSE;
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if n == ATTEMPTS => return Err(format!("{e} (after {ATTEMPTS} attempts)")),
            Err(e) => tracing::debug!(attempt = n, error = %e, "trying again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    Err("no attempt made".into())
}

/// Opens a KV bucket beside the stream (one value kept per key), creating it when absent, race
/// safe (`ensure_stream`); `max_age` zero keeps entries for ever.
pub(crate) async fn open_bucket(
    replicated: &Replicated,
    name: &str,
    replicas: usize,
    max_age: Duration,
    description: &str,
) -> Result<kv::Store> {
    let js = replicated.jetstream();
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The stream of a KV bucket, as `create_key_value` makes it; made here because that call
    // first reads the account's information in a form nats-server 2.9 does not send.
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_message_size: -1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        ..stream::Config::default()
    };
    ensure_stream(js, config).await?;
    js.get_key_value(name).await.map_err(|e| Error::Stream {
        stream: name.to_owned(),
        message: format!("opening the KV bucket: {e}"),
    })
}
