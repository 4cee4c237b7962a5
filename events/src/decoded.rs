//! Reading the log decoded, in order, with the decoding spread over worker threads: what catch-up
//! and rebuild use (decoding JSON is most of the cost of reading an event).

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ulid::Ulid;

use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::keys::decode_at;
use crate::keyspaces::LogKeyspaces;

const CHUNK: usize = 1024;

type Decoded = Result<Vec<Envelope>>;

/// Calls `apply` on every event after `after` (all events when `None`), in log order, decoding on
/// `threads` worker threads.
pub fn for_each_decoded(
    log: &LogKeyspaces,
    after: Option<Ulid>,
    threads: usize,
    mut apply: impl FnMut(Envelope) -> Result<()>,
) -> Result<()> {
    let workers = threads.max(1);
    std::thread::scope(|scope| {
        let mut jobs: Vec<SyncSender<Vec<(Ulid, fjall::Slice)>>> = Vec::with_capacity(workers);
        let mut results: Vec<Receiver<Decoded>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_tx, job_rx) = sync_channel::<Vec<(Ulid, fjall::Slice)>>(4);
            let (res_tx, res_rx) = sync_channel::<Decoded>(4);
            scope.spawn(move || {
                for chunk in job_rx {
                    let decoded = chunk
                        .into_iter()
                        .map(|(id, value)| decode_at(id, &value))
                        .collect();
                    if res_tx.send(decoded).is_err() {
                        return;
                    }
                }
            });
            jobs.push(job_tx);
            results.push(res_rx);
        }
        let reader = scope.spawn(move || -> Result<()> {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut index = 0usize;
            for item in log.scan(after) {
                let (id, value) = item?;
                if after.is_some_and(|a| id <= a) {
                    continue;
                }
                chunk.push((id, value));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if let Some(job) = jobs.get(index % jobs.len())
                        && job.send(full).is_err()
                    {
                        return Ok(()); // the consumer stopped
                    }
                    index += 1;
                }
            }
            if !chunk.is_empty()
                && let Some(job) = jobs.get(index % jobs.len())
            {
                let _ = job.send(chunk);
            }
            Ok(())
        });
        let mut index = 0usize;
        let mut outcome = Ok(());
        while let Some(receiver) = results.get(index % results.len()) {
            let Ok(decoded) = receiver.recv() else {
                break;
            };
            index += 1;
            match decoded.and_then(|envelopes| envelopes.into_iter().try_for_each(&mut apply)) {
                Ok(()) => {}
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        drop(results); // unblocks the workers and the reader if we stopped early
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(Error::Corrupt("the log reader thread panicked".into())));
        outcome.and(read)
    })
}
