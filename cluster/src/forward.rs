//! Forwarding: a replica that does not write the log sends each command to the one that does,
//! over NATS request/reply (`<stream>.replica.<id>`, the subject of the lease's holder), and
//! answers its caller what the writer answered, once its own database holds it.
//!
//! Retries. A command is sent again when the writer did not take it (`NotWriter`: it is changing)
//! or did not answer (`Unavailable`, a timeout: it may have appended it), until the writer answers
//! or `PATIENCE` has passed. So that a command sent twice is appended once, every command without
//! an idempotency key of its own gets one (`forwarded:<ULID>`, held `FORWARD_WINDOW`) before its
//! first attempt, whichever replica it lands on: a retry is then answered from the log, on this
//! writer or the next (the key is in the replicated log). A retry that finds its first attempt in
//! the log even though the key no longer holds (the command closed its stream) answers it too.
//! The same holds for the writer's own commands whose publish had no acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, RequestErrorKind};
use events::wire::{decode_command, decode_reply, encode_command, encode_reply};
use events::{BoxFuture, Command, Committed, Error, Log, Router, Ulid};
use futures_util::StreamExt;

use crate::backend::JetStream;
use crate::follow::catch_up;
use crate::lease::{Lease, Writer};

/// How long a command keeps being retried while the log changes writers: longer than a lease's
/// lapse and a new writer's catch-up.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long the writer has to answer one attempt.
const ATTEMPT: Duration = Duration::from_secs(5);
/// The window of the idempotency key given to a command without one: longer than `PATIENCE`.
const FORWARD_WINDOW: u64 = 10 * 60 * 1000;
/// The prefix of those keys.
const FORWARD_KEY: &str = "forwarded:";

/// The subject on which replica `id` takes commands.
pub fn subject(stream: &str, id: &str) -> String {
    format!("{stream}.replica.{id}")
}

/// The `Router` of a replica (`Log::route_through`).
pub struct Forwarder {
    client: Client,
    lease: Arc<Lease>,
    backend: Arc<JetStream>,
}

impl Forwarder {
    pub fn new(client: Client, lease: Arc<Lease>, backend: Arc<JetStream>) -> Self {
        Self {
            client,
            lease,
            backend,
        }
    }

    /// One attempt: through this replica's writer while it leads, to the holder's otherwise.
    async fn attempt(&self, log: &Log, command: &Command) -> events::Result<Committed> {
        if events::Backend::leading(self.backend.as_ref()) {
            return log.append_local(command.clone()).await;
        }
        let holder = match self.lease.writer() {
            Writer::Other(id) => id,
            Writer::Me => {
                return Err(Error::NotWriter(
                    "this replica is catching up before it writes".into(),
                ));
            }
            Writer::None => {
                return Err(Error::NotWriter(
                    "no replica holds the writer's lease now".into(),
                ));
            }
        };
        let request = async_nats::Request::new()
            .payload(encode_command(command)?.into())
            .timeout(Some(ATTEMPT));
        let subject = subject(self.backend.replicated().name(), &holder);
        // An attempt in flight to a writer that dies would wait out `ATTEMPT`: once another
        // replica holds the lease, it is sent again at once (its key makes that safe).
        let mut writers = self.lease.watch();
        let replaced = async {
            let _ = writers
                .wait_for(|w| {
                    !matches!(w, Writer::Other(id) if *id == holder) && *w != Writer::None
                })
                .await;
        };
        let sent = tokio::select! {
            sent = self.client.send_request(subject, request) => sent,
            () = replaced => {
                return Err(Error::Unavailable(format!(
                    "replica {holder} stopped holding the writer's lease before it answered"
                )));
            }
        };
        let reply = match sent {
            Ok(reply) => reply,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                return Err(Error::NotWriter(format!(
                    "replica {holder}, which holds the writer's lease, does not answer"
                )));
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "forwarding to the writer (replica {holder}): {e}"
                )));
            }
        };
        let (outcome, position) = decode_reply(&reply.payload)?;
        match &outcome {
            Ok(_) => {
                // The caller reads what it wrote next: wait until this replica holds it.
                let _ = tokio::time::timeout(PATIENCE, self.backend.reached(position)).await;
            }
            Err(Error::Conflict { .. }) => {
                // Decided on state older than the writer's: catch up so that the caller's next
                // decision reads what the writer decided on.
                let _ = tokio::time::timeout(PATIENCE, self.backend.reached(position)).await;
            }
            Err(_) => {}
        }
        outcome
    }

    /// Whether an earlier attempt of the command keyed `key` is in the log (once this replica
    /// holds the stream's head).
    async fn landed_before(&self, log: &Log, key: &str) -> Option<Committed> {
        let replicated = self.backend.replicated();
        tokio::time::timeout(ATTEMPT, catch_up(log, replicated))
            .await
            .ok()?
            .ok()?;
        let events = log.keyspaces().recorded(key).ok()??;
        Some(Committed {
            events,
            deduplicated: false,
        })
    }
}

impl Router for Forwarder {
    fn append<'a>(
        &'a self,
        log: &'a Log,
        command: Command,
    ) -> BoxFuture<'a, events::Result<Committed>> {
        Box::pin(async move {
            let (command, ours) = match command.idempotency {
                Some(_) => (command, None),
                None => {
                    let key = format!("{FORWARD_KEY}{}", Ulid::generate());
                    (
                        command.idempotent(key.clone(), Some(FORWARD_WINDOW)),
                        Some(key),
                    )
                }
            };
            let deadline = Instant::now() + PATIENCE;
            let mut pause = Duration::from_millis(50);
            let mut retried = false;
            loop {
                let outcome = self.attempt(log, &command).await;
                let retry = matches!(
                    outcome,
                    Err(Error::NotWriter(_) | Error::Unavailable(_) | Error::WriterStopped)
                );
                let maybe_landed = retried
                    && matches!(
                        outcome,
                        Err(Error::StreamClosed { .. } | Error::Conflict { .. })
                    );
                if (retry || maybe_landed)
                    && retried
                    && let Some(key) = &ours
                    && let Some(committed) = self.landed_before(log, key).await
                {
                    return Ok(committed);
                }
                if !retry || Instant::now() + pause >= deadline {
                    return match (outcome, &ours) {
                        // The key is this command's alone: a repeat of it is its first attempt.
                        (Ok(committed), Some(_)) => Ok(Committed {
                            deduplicated: false,
                            ..committed
                        }),
                        (outcome, _) => outcome,
                    };
                }
                if let Err(e) = &outcome {
                    tracing::debug!(error = %e, "the command is sent again");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
                retried = true;
            }
        })
    }
}

/// Answers the commands other replicas forward to this one, until the connection ends. A
/// replica that does not lead answers `NotWriter` (the sender asks the lease again).
pub async fn serve(client: Client, log: Log, backend: Arc<JetStream>, me: String) {
    let subject = subject(backend.replicated().name(), &me);
    let mut requests = match client.subscribe(subject.clone()).await {
        Ok(requests) => requests,
        Err(e) => {
            tracing::error!(error = %e, %subject, "cannot take forwarded commands");
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let (client, log, backend) = (client.clone(), log.clone(), backend.clone());
        tokio::spawn(async move {
            let outcome = if events::Backend::leading(backend.as_ref()) {
                match decode_command(&request.payload) {
                    Ok(command) => log.append_local(command).await,
                    Err(e) => Err(e),
                }
            } else {
                Err(Error::NotWriter(
                    "this replica does not write the log now".into(),
                ))
            };
            let position = events::Backend::position(backend.as_ref());
            let answer = encode_reply(&outcome, position);
            if let Err(e) = client.publish(reply, answer.into()).await {
                tracing::warn!(error = %e, "answering a forwarded command failed");
            }
        });
    }
}

/// The subject on which replica `id` runs calls for the others (`Calls`).
pub fn calls_subject(stream: &str, id: &str) -> String {
    format!("{stream}.calls.{id}")
}

/// The first byte of a call's answer: the handler's answer follows.
const ANSWERED: u8 = 0;
/// The first byte of a call's answer: the replica does not write the log (nothing ran).
const NOT_WRITER: u8 = 1;

/// Whether a call may be sent again when an attempt's outcome is unknown (the writer changed,
/// or did not answer in time): only when the call itself makes a repeat harmless (it names
/// what it does, as a withdrawal's id, so that the writer finds an earlier attempt's work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Safe,
    Once,
}

/// A call that runs on the writer: the aggregator's own encoding, the answer likewise.
pub type CallHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// Calls other than commands that must run on the writer (what sends user operations: one
/// bundler account's nonce has one owner), handed to it over request/reply on
/// `<stream>.calls.<id>`. Sent again while no writer takes them, as commands are; one whose
/// outcome is unknown only when it is `Repeat::Safe`.
#[derive(Clone)]
pub struct Calls {
    client: Client,
    lease: Arc<Lease>,
    backend: Arc<JetStream>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

impl Calls {
    pub(crate) fn new(client: Client, lease: Arc<Lease>, backend: Arc<JetStream>) -> Self {
        Self {
            client,
            lease,
            backend,
        }
    }

    /// Runs `payload` on the writer: its handler's answer, or `None` when this replica writes
    /// (then the caller runs it here). `attempt`: how long one attempt may take (the handler's
    /// own longest wait and some).
    pub async fn call(
        &self,
        payload: Vec<u8>,
        attempt: Duration,
        repeat: Repeat,
    ) -> Result<Option<Vec<u8>>, CallFailed> {
        let mut deadline = Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            if events::Backend::leading(self.backend.as_ref()) {
                return Ok(None);
            }
            let why = match self.lease.writer() {
                Writer::Other(holder) => {
                    match self.attempt(&holder, payload.clone(), attempt).await {
                        Attempt::Answered(answer) => return Ok(Some(answer)),
                        Attempt::NotTaken(why) => why,
                        Attempt::Unknown(why) if repeat == Repeat::Safe => {
                            deadline = Instant::now() + PATIENCE;
                            why
                        }
                        Attempt::Unknown(why) => return Err(CallFailed::Unknown(why)),
                    }
                }
                Writer::Me => "this replica is catching up before it writes".into(),
                Writer::None => "no replica holds the writer's lease now".into(),
            };
            if Instant::now() + pause >= deadline {
                return Err(CallFailed::NoWriter(format!(
                    "no writer took the call within {PATIENCE:?}: {why}"
                )));
            }
            tracing::debug!(reason = %why, "the call is sent to the writer again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn attempt(&self, holder: &str, payload: Vec<u8>, attempt: Duration) -> Attempt {
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(attempt));
        let subject = calls_subject(self.backend.replicated().name(), holder);
        let mut writers = self.lease.watch();
        let replaced = async {
            let _ = writers
                .wait_for(|w| !matches!(w, Writer::Other(id) if id == holder) && *w != Writer::None)
                .await;
        };
        let sent = tokio::select! {
            sent = self.client.send_request(subject, request) => sent,
            () = replaced => {
                return Attempt::Unknown(format!(
                    "replica {holder} stopped holding the writer's lease before it answered"
                ));
            }
        };
        match sent {
            Ok(reply) => match reply.payload.split_first() {
                Some((&ANSWERED, answer)) => Attempt::Answered(answer.to_vec()),
                Some((&NOT_WRITER, why)) => {
                    Attempt::NotTaken(String::from_utf8_lossy(why).into_owned())
                }
                _ => Attempt::Unknown(format!("replica {holder} answered a damaged reply")),
            },
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Attempt::NotTaken(format!(
                "replica {holder}, which holds the writer's lease, does not answer"
            )),
            Err(e) => Attempt::Unknown(format!("calling the writer (replica {holder}): {e}")),
        }
    }
}

/// Why a call got no answer from the writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailed {
    /// No writer took it: it did not run.
    #[error("{0}")]
    NoWriter(String),
    /// A `Repeat::Once` call whose attempt's outcome is unknown: it may have run.
    #[error("{0}")]
    Unknown(String),
}

enum Attempt {
    Answered(Vec<u8>),
    /// Certainly not run: the replica did not take it.
    NotTaken(String),
    Unknown(String),
}

/// Runs the calls other replicas hand to this one (`Calls`) with `handler`, while it writes
/// the log; answers `NOT_WRITER` otherwise (the sender asks the lease again).
pub async fn serve_calls(
    client: Client,
    backend: Arc<JetStream>,
    me: String,
    handler: CallHandler,
) {
    let subject = calls_subject(backend.replicated().name(), &me);
    let mut requests = match client.subscribe(subject.clone()).await {
        Ok(requests) => requests,
        Err(e) => {
            tracing::error!(error = %e, %subject, "cannot take calls for the writer");
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let (client, backend, handler) = (client.clone(), backend.clone(), handler.clone());
        tokio::spawn(async move {
            let answer = if events::Backend::leading(backend.as_ref()) {
                let mut answer = vec![ANSWERED];
                answer.extend(handler(request.payload.to_vec()).await);
                answer
            } else {
                let mut answer = vec![NOT_WRITER];
                answer.extend_from_slice(b"this replica does not write the log now");
                answer
            };
            if let Err(e) = client.publish(reply, answer.into()).await {
                tracing::warn!(error = %e, "answering a call for the writer failed");
            }
        });
    }
}
