//! Following: the writer of a replica that does not lead stages the events the leading replica
//! published, exactly as they are stored (hash ‖ body), so that every replica holds the same
//! bytes, the same index entries, projection rows and tree.
//!
//! Each event is checked before it is taken: its hash must chain onto the one before, its ULID
//! must follow the last, its sequence must be the next of its stream, and nothing may follow the
//! event that closed a stream. A stream that breaks one of these is not the log this replica
//! holds: the store is poisoned, loudly, rather than fold what it cannot vouch for.

use fjall::{OwnedWriteBatch, PersistMode, Slice};
use ulid::Ulid;

use super::{Flight, Head, Writer};
use crate::envelope::{chain_hash, split_stored};
use crate::error::{Error, Result};
use crate::keys::{IdempotencyRecord, stream_key};
use crate::options::Durability;

/// Stored events of the replicated log, which bring the local database to its position
/// `through` (the events of one message of the replicated log, in order).
#[derive(Debug)]
pub(crate) struct Followed {
    pub through: u64,
    pub events: Vec<Slice>,
}

impl Writer {
    /// Stages followed events into one batch; `None` when there is nothing new (or the store is
    /// poisoned: then nothing is staged).
    pub(super) fn stage_followed(&mut self, followed: Vec<Followed>) -> Option<Flight> {
        if self.poison.reason().is_some() {
            return None;
        }
        let mut batch = self.db.batch().durability(match self.options.durability {
            Durability::Sync => Some(PersistMode::SyncData),
            Durability::Relaxed => None,
        });
        let mut tx = std::mem::take(&mut self.tx);
        let mut last = None;
        let mut through = None;
        let outcome = (|| -> Result<()> {
            for message in followed {
                if message.through <= self.position {
                    continue; // landed already (this replica published it, or it came twice)
                }
                if message.through != self.position + 1 {
                    return Err(Error::Corrupt(format!(
                        "the replicated log skipped from position {} to {}",
                        self.position, message.through
                    )));
                }
                for stored in message.events {
                    last = Some(self.stage_stored(stored, message.through, &mut batch, &mut tx)?);
                }
                self.position = message.through;
                through = Some(message.through);
            }
            if let Some(last) = last {
                self.projector.checkpoint(last, &mut tx)?;
            }
            tx.drain_into(&mut batch)?;
            Ok(())
        })();
        self.tx = tx;
        if let Err(e) = outcome {
            self.poison
                .set(format!("following the replicated log failed: {e}"));
            self.tx.forget();
            return None;
        }
        through.map(|through| Flight::Followed { batch, through })
    }

    /// Checks one stored event against the state so far and stages it with its index entries
    /// and projection rows.
    fn stage_stored(
        &mut self,
        stored: Slice,
        at: u64,
        batch: &mut OwnedWriteBatch,
        tx: &mut crate::tx::Tx,
    ) -> Result<Ulid> {
        let named = |source| Error::Decode {
            id: format!("at position {at} of the replicated log"),
            source,
        };
        let (hash, body) = split_stored(&stored).map_err(named)?;
        let envelope = crate::envelope::decode(&stored).map_err(named)?;
        let id = envelope.id;
        if chain_hash(&self.prev_hash, body) != hash {
            return Err(Error::Corrupt(format!(
                "event {id}'s hash does not chain onto the event before it"
            )));
        }
        if id <= self.ids.last() {
            return Err(Error::Corrupt(format!(
                "event {id} does not come after {} in ULID order",
                self.ids.last()
            )));
        }
        let head = self.head(&envelope.stream)?;
        if head.closed || envelope.seq != head.seq + 1 {
            return Err(Error::Corrupt(format!(
                "event {id} is number {} of stream {}, which is at {}{}",
                envelope.seq,
                envelope.stream,
                head.seq,
                if head.closed { " and closed" } else { "" }
            )));
        }
        self.projector.apply(&envelope, tx)?;
        self.projector.staged(id, &stored);
        let keyspaces = &self.keyspaces;
        batch.insert(
            &keyspaces.streams,
            stream_key(&envelope.stream, envelope.seq),
            id.to_bytes(),
        );
        if let Some(mark) = &envelope.idempotency {
            let record = IdempotencyRecord {
                first: id,
                count: mark.events,
                expires_at: mark.expires_at.unwrap_or(0),
                stream: envelope.stream.clone(),
            };
            batch.insert(
                &keyspaces.idempotency,
                mark.key.as_bytes().to_vec(),
                record.encode(),
            );
        }
        batch.insert(&keyspaces.events, id.to_bytes(), stored);
        self.remember(
            envelope.stream,
            Head {
                seq: envelope.seq,
                closed: envelope.event.closes_stream(),
            },
        );
        self.prev_hash = hash;
        self.ids.observe(id);
        Ok(id)
    }
}
