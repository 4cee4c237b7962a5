//! The stream: connecting to NATS, creating the stream on first start, its head.
//!
//! A new stream gets a genesis message (no events) before any command, so that every writer's
//! publish expects a last sequence of at least 1 (how an expected sequence of 0, an empty stream,
//! is checked has differed between server versions). Concurrent first starts publish it under one
//! `Nats-Msg-Id`, which the stream stores once.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};

use crate::buckets::{ensure_stream, patiently};
use crate::error::{Error, Result};
use crate::message::{Outgoing, genesis};

/// How many times a publish is sent when no acknowledgement comes within the context's timeout
/// (the same `Nats-Msg-Id`: the stream stores it once).
const PUBLISH_ATTEMPTS: u32 = 3;
/// The stream's deduplication window: a publish retried within it is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a request about the stream at a replica's or a tool's start (its info, its head) is
/// asked again while the servers answer nothing in time or have no JetStream leader yet: a
/// cluster just started, a node just killed or a stream busy replicating a large import answer
/// late for a while, which must not stop the start. (Creating the stream and the buckets:
/// `buckets`.)
const PATIENCE: Duration = Duration::from_secs(30);
/// The pause between two such requests.
const AGAIN: Duration = Duration::from_millis(500);

/// Whether a request's failure says only that no answer came in time (or no server could
/// answer yet), so that asking again may succeed.
trait Transient {
    fn transient(&self) -> bool;
}

impl Transient for jetstream::context::GetStreamError {
    fn transient(&self) -> bool {
        self.kind() == jetstream::context::GetStreamErrorKind::Request
    }
}

impl Transient for jetstream::context::RequestError {
    fn transient(&self) -> bool {
        use jetstream::context::RequestErrorKind as Kind;
        matches!(self.kind(), Kind::TimedOut | Kind::NoResponders)
    }
}

/// `request` until it succeeds, fails otherwise than transiently, or `PATIENCE` is spent.
async fn while_transient<T, E, F, Fut>(what: &str, mut request: F) -> std::result::Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        match request().await {
            Err(e) if e.transient() && tokio::time::Instant::now() + AGAIN < until => {
                tracing::warn!(error = %e, "{what}: no answer in time; asking again");
                tokio::time::sleep(AGAIN).await;
            }
            answered => return answered,
        }
    }
}

/// Where the replicated log lives (from `event_log` in the aggregator's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub urls: Vec<String>,
    pub stream: String,
    pub replicas: usize,
}

/// A connection to the stream.
#[derive(Clone)]
pub struct Replicated {
    js: jetstream::Context,
    stream: String,
    subject: String,
    max_payload: usize,
}

impl std::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Why a publish did not append.
#[derive(Debug)]
pub enum Refused {
    /// The stream's last sequence is not the one expected: another writer appended.
    Moved(String),
    /// No acknowledgement after every attempt: the message may or may not be stored.
    Unreachable(String),
}

impl Replicated {
    /// Connects and creates the stream (with its genesis message) when it does not exist yet.
    pub async fn connect(settings: &StreamSettings) -> Result<Self> {
        let urls = settings.urls.join(",");
        let addrs = settings
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Connect {
                urls: urls.clone(),
                message: e.to_string(),
            })?;
        let client = async_nats::ConnectOptions::new()
            .name("aggregator")
            .connect(addrs)
            .await
            .map_err(|e| Error::Connect {
                urls: urls.clone(),
                message: e.to_string(),
            })?;
        let max_payload = client.server_info().max_payload;
        let js = jetstream::new(client);
        let subject = format!("{}.log", settings.stream);
        let failed = |message: String| Error::Stream {
            stream: settings.stream.clone(),
            message,
        };
        let created = ensure_stream(
            &js,
            stream::Config {
                name: settings.stream.clone(),
                subjects: vec![subject.clone()],
                num_replicas: settings.replicas,
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                duplicate_window: DUPLICATE_WINDOW,
                // The log is append-only: nobody removes a message through the stream's API.
                deny_delete: true,
                deny_purge: true,
                ..stream::Config::default()
            },
        )
        .await?;
        // As created or read just now: asking again can time out while a new stream settles.
        let info = created.cached_info();
        if info.config.subjects != [subject.clone()] {
            return Err(failed(format!(
                "exists with subjects {:?}, not [{subject:?}]: it is not an aggregator's log",
                info.config.subjects
            )));
        }
        let replicated = Self {
            js,
            stream: settings.stream.clone(),
            subject,
            max_payload,
        };
        if info.state.last_sequence == 0 {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("genesis:{}", settings.stream).as_str(),
            );
            // A stream just created by another replica may not take messages on every node
            // yet ("no stream found for given subject"): the one message id makes retries safe.
            patiently(|| async {
                replicated
                    .send(headers.clone(), genesis())
                    .await
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            })
            .await
            .map_err(|e| failed(format!("writing its genesis message: {e}")))?;
        }
        Ok(replicated)
    }

    /// Connects to a stream that must exist already, creating nothing (what an auditor's tool
    /// reading the log does).
    pub async fn attach(settings: &StreamSettings) -> Result<Self> {
        let urls = settings.urls.join(",");
        let connect_failed = |message: String| Error::Connect {
            urls: urls.clone(),
            message,
        };
        let addrs = settings
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| connect_failed(e.to_string()))?;
        let client = async_nats::ConnectOptions::new()
            .name("aggregator-tools")
            .connect(addrs)
            .await
            .map_err(|e| connect_failed(e.to_string()))?;
        let max_payload = client.server_info().max_payload;
        let js = jetstream::new(client);
        let subject = format!("{}.log", settings.stream);
        let stream = while_transient("the stream", || js.get_stream(&settings.stream))
            .await
            .map_err(|e| Error::Stream {
                stream: settings.stream.clone(),
                message: format!("cannot be read: {e}"),
            })?;
        let info = while_transient("the stream's info", || stream.get_info())
            .await
            .map_err(|e| Error::Stream {
                stream: settings.stream.clone(),
                message: e.to_string(),
            })?;
        if info.config.subjects != [subject.clone()] {
            return Err(Error::Stream {
                stream: settings.stream.clone(),
                message: format!(
                    "has subjects {:?}, not [{subject:?}]: it is not an aggregator's log",
                    info.config.subjects
                ),
            });
        }
        Ok(Self {
            js,
            stream: settings.stream.clone(),
            subject,
            max_payload,
        })
    }

    pub fn name(&self) -> &str {
        &self.stream
    }

    /// The JetStream context, for the buckets kept beside the stream (`fingerprints`, `nonces`).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The NATS connection (for forwarding commands to the writer).
    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// The largest message the server takes (payload and headers).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The stream's last sequence now (one request: a read waiting on it fails fast).
    pub async fn head(&self) -> Result<u64> {
        // Getting the stream answers its info, state included.
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// The stream's last sequence, asked again while no answer comes in time (for a start, a
    /// catch-up, a tool's read: not for a client's read, which answers UNAVAILABLE sooner).
    pub async fn head_patiently(&self) -> Result<u64> {
        let stream = while_transient("the stream's head", || self.js.get_stream(&self.stream))
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(stream.cached_info().state.last_sequence)
    }

    fn failed(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Stream {
            stream: self.stream.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) async fn stream(&self) -> Result<stream::Stream> {
        self.js
            .get_stream(&self.stream)
            .await
            .map_err(|e| Error::Stream {
                stream: self.stream.clone(),
                message: e.to_string(),
            })
    }

    /// Appends `message` if the stream's last sequence is `expected`; answers its sequence.
    pub async fn publish(
        &self,
        message: &Outgoing,
        expected: u64,
    ) -> std::result::Result<u64, Refused> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.first.to_string().as_str());
        headers.insert("Nats-Expected-Last-Sequence", expected.to_string().as_str());
        let ack = self.send(headers, message.payload.clone()).await?;
        if ack.duplicate && ack.sequence != expected + 1 {
            // The stream holds this message already, but not where this writer expects it.
            return Err(Refused::Moved(format!(
                "message {} is already in the stream at {}, this replica expected {}",
                message.first,
                ack.sequence,
                expected + 1
            )));
        }
        Ok(ack.sequence)
    }

    /// Publishes and waits for the acknowledgement, sending again (the same headers: the stream
    /// stores it once) when none comes.
    async fn send(
        &self,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> std::result::Result<jetstream::publish::PublishAck, Refused> {
        let mut last_error = String::new();
        for attempt in 0..PUBLISH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            let sent = self
                .js
                .publish_with_headers(
                    self.subject.clone(),
                    headers.clone(),
                    payload.clone().into(),
                )
                .await;
            // The context's own timeout bounds the wait for the acknowledgement.
            let acked = match sent {
                Ok(future) => future.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => return Ok(ack),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(Refused::Moved(format!(
                        "another replica appended to stream {} (expected last sequence refused)",
                        self.stream
                    )));
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(Refused::Moved(format!(
                        "the NATS server refused the message: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "publishing to the replicated log failed");
                    last_error = e.to_string();
                }
            }
        }
        Err(Refused::Unreachable(format!(
            "no acknowledgement from stream {} after {PUBLISH_ATTEMPTS} attempts: {last_error}",
            self.stream
        )))
    }
}
