//! Following the stream: every message after the local position, in stream order, handed to the
//! log's writer (`Log::follow`), which checks and applies it exactly as its own writes (the
//! writer skips what it holds already: the messages it published itself).

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use events::Log;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::message::decode;
use crate::stream::Replicated;

/// Messages handed to the writer between two waits for it to apply them: the writer's queue
/// stays bounded while a replica catches up.
const IN_FLIGHT: u64 = 256;
/// How long the consumer may be quiet before the stream's head is asked whether it is behind.
const IDLE: Duration = Duration::from_secs(2);
/// The pause before reading again after the stream could not be read.
const RETRY: Duration = Duration::from_millis(500);

/// Hands the writer every message of the stream after `position` as it arrives, for as long as
/// the log accepts them. Returns only when the log refuses (a stream message that does not
/// chain poisons it) or has stopped.
pub async fn follow(log: Log, replicated: Replicated, position: u64) -> Result<()> {
    let mut next = position + 1;
    loop {
        match follow_from(&log, &replicated, &mut next).await {
            Err(e @ Error::Log(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, next, "reading the replicated log failed; reading again");
                tokio::time::sleep(RETRY).await;
            }
            Ok(()) => tokio::time::sleep(RETRY).await,
        }
    }
}

async fn follow_from(log: &Log, replicated: &Replicated, next: &mut u64) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::Stream {
        stream: replicated.name().to_owned(),
        message: e.to_string(),
    };
    let stream = replicated.stream().await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            ..pull::OrderedConfig::default()
        })
        .await
        .map_err(|e| failed(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
    let mut handed = 0u64;
    loop {
        let message = match tokio::time::timeout(IDLE, messages.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) => {
                // Quiet: either nothing was appended, or the consumer was lost with the NATS
                // node that held it (it can take its heartbeats a while to notice). Behind the
                // stream's head, it is made again.
                if replicated.head().await? >= *next {
                    tracing::info!(next, "the stream's consumer stalled; reading again");
                    break;
                }
                continue;
            }
        };
        let message = message.map_err(|e| failed(&e))?;
        let sequence = message.info().map_err(|e| failed(&e))?.stream_sequence;
        if sequence < *next {
            continue;
        }
        let events = decode(&message.payload).map_err(|e| {
            Error::Log(events::Error::Corrupt(format!(
                "message {sequence} of stream {}: {e}",
                replicated.name()
            )))
        })?;
        log.follow(sequence, events)?;
        *next = sequence + 1;
        handed += 1;
        if handed.is_multiple_of(IN_FLIGHT) {
            log.sync().await?;
        }
    }
    Ok(())
}

/// Waits until the local database holds the stream as of now (its last sequence when asked):
/// `follow` must be running. Answers that position.
pub async fn catch_up(log: &Log, replicated: &Replicated) -> Result<u64> {
    let head = replicated.head_patiently().await?;
    loop {
        let position = log.sync().await?;
        if position >= head {
            return Ok(position);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
