//! `LogKeyspaces`: the log's own keyspaces and the reads over them (heads, streams, idempotency
//! records, scans). The layout is in `keys`.

use fjall::{Database, Keyspace, Slice};
use ulid::Ulid;

use crate::command::EventRef;
use crate::envelope::{self, Envelope, Hash};
use crate::error::{Error, Result};
use crate::keys::{
    IdempotencyRecord, decode_at, decode_header_at, seq_from_stream_key, stream_key, stream_prefix,
    ulid_from_key,
};

/// The log's own keyspaces.
#[derive(Clone)]
pub struct LogKeyspaces {
    pub events: Keyspace,
    pub streams: Keyspace,
    pub idempotency: Keyspace,
}

impl std::fmt::Debug for LogKeyspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKeyspaces")
    }
}

impl LogKeyspaces {
    pub fn open(db: &Database) -> Result<Self> {
        Ok(Self {
            events: db.keyspace("events", crate::keyspace_options)?,
            streams: db.keyspace("streams", crate::keyspace_options)?,
            idempotency: db.keyspace("idempotency", crate::keyspace_options)?,
        })
    }

    pub(crate) fn by_kind(&self, kind: crate::writer::Kind) -> &Keyspace {
        match kind {
            crate::writer::Kind::Events => &self.events,
            crate::writer::Kind::Streams => &self.streams,
            crate::writer::Kind::Idempotency => &self.idempotency,
        }
    }

    /// The last event's ULID and hash, if any.
    pub fn head(&self) -> Result<Option<(Ulid, Hash)>> {
        let Some(guard) = self.events.last_key_value() else {
            return Ok(None);
        };
        let (key, value) = guard.into_inner()?;
        let id = ulid_from_key(&key)?;
        let (hash, _) = envelope::split_stored(&value).map_err(|source| Error::Decode {
            id: id.to_string(),
            source,
        })?;
        Ok(Some((id, hash)))
    }

    pub fn get(&self, id: Ulid) -> Result<Option<Envelope>> {
        self.events
            .get(id.to_bytes())?
            .map(|value| decode_at(id, &value))
            .transpose()
    }

    /// Every event of a stream, in order.
    pub fn read_stream(&self, stream: &str) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for guard in self.streams.prefix(stream_prefix(stream)) {
            let (_, value) = guard.into_inner()?;
            let id = ulid_from_key(&value)?;
            let stored = self.events.get(id.to_bytes())?.ok_or_else(|| {
                Error::Corrupt(format!("stream {stream} points to missing event {id}"))
            })?;
            out.push(decode_at(id, &stored)?);
        }
        Ok(out)
    }

    /// The first event of a stream (a task's `TaskCreated`, an execution's `ExecutionQueued`).
    pub fn first_event(&self, stream: &str) -> Result<Option<Envelope>> {
        let Some(id) = self.streams.get(stream_key(stream, 1))? else {
            return Ok(None);
        };
        let id = ulid_from_key(&id)?;
        self.get(id)
    }

    /// The stream's last sequence number (0 when it does not exist).
    pub fn stream_version(&self, stream: &str) -> Result<u64> {
        match self.streams.prefix(stream_prefix(stream)).next_back() {
            None => Ok(0),
            Some(guard) => seq_from_stream_key(&guard.key()?),
        }
    }

    /// The events an earlier command with this idempotency key appended, if the key still holds
    /// at `now` (inside its window, and its stream not closed since). Lets a caller answer a
    /// repeat before it decides anything (the writer checks again when appending).
    pub fn idempotent_result(&self, key: &str, now: u64) -> Result<Option<Vec<EventRef>>> {
        let Some(record) = self.idempotency.get(key.as_bytes())? else {
            return Ok(None);
        };
        let record = IdempotencyRecord::decode(&record)?;
        if record.expires_at != 0 && now >= record.expires_at {
            return Ok(None);
        }
        if self.stream_closed(&record.stream)? {
            return Ok(None);
        }
        self.refs_of(&record).map(Some)
    }

    /// The events the command with idempotency key `key` appended, whether or not the key still
    /// holds (its window passed, or its stream closed since): whether that command is in the log.
    pub fn recorded(&self, key: &str) -> Result<Option<Vec<EventRef>>> {
        let Some(record) = self.idempotency.get(key.as_bytes())? else {
            return Ok(None);
        };
        self.refs_of(&IdempotencyRecord::decode(&record)?).map(Some)
    }

    /// Whether the stream's last event closes it.
    pub fn stream_closed(&self, stream: &str) -> Result<bool> {
        let Some(guard) = self.streams.prefix(stream_prefix(stream)).next_back() else {
            return Ok(false);
        };
        let (_, value) = guard.into_inner()?;
        let id = ulid_from_key(&value)?;
        let stored = self.events.get(id.to_bytes())?.ok_or_else(|| {
            Error::Corrupt(format!("stream {stream} points to missing event {id}"))
        })?;
        Ok(crate::event::closes_stream(
            &decode_header_at(id, &stored)?.event_type,
        ))
    }

    /// The events an idempotency record names.
    pub(crate) fn refs_of(&self, record: &IdempotencyRecord) -> Result<Vec<EventRef>> {
        let mut refs = Vec::with_capacity(record.count as usize);
        for guard in self
            .events
            .range(record.first.to_bytes()..)
            .take(record.count as usize)
        {
            let (key, value) = guard.into_inner()?;
            let id = ulid_from_key(&key)?;
            let header = decode_header_at(id, &value)?;
            refs.push(EventRef {
                id,
                stream: header.stream,
                seq: header.seq,
            });
        }
        Ok(refs)
    }

    /// Raw stored events in log order, from `from` (inclusive) on.
    pub fn scan(&self, from: Option<Ulid>) -> impl Iterator<Item = Result<(Ulid, Slice)>> + use<> {
        let start = from.unwrap_or(Ulid::nil()).to_bytes();
        self.events.range(start..).map(|guard| {
            let (key, value) = guard.into_inner()?;
            Ok((ulid_from_key(&key)?, value))
        })
    }
}
