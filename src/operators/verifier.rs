//! BLS verification of reports, batched: the reports waiting when the verifier comes round are
//! checked with one multi-pairing (`attest::verify_batch`, spread over blst's thread pool), which
//! under load costs far less than checking them one by one; a report that arrives alone is
//! checked at once, without waiting for company. When a batch fails, each of its reports is
//! checked on its own, so a bad signature fails only its own report.

use std::sync::mpsc;

use attest::{CryptoError, Signed};
use tokio::sync::oneshot;

/// Reports checked together at most.
pub const MAX_BATCH: usize = 128;

struct Job {
    signed: Signed,
    reply: oneshot::Sender<Result<(), CryptoError>>,
}

/// The verifier: a thread of its own, fed by a queue; it stops when the last handle is dropped.
#[derive(Debug)]
pub struct Verifier {
    jobs: mpsc::Sender<Job>,
}

impl Verifier {
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("bls-verifier".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    check(batch);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Checks one report's signature (with whatever else is waiting).
    pub async fn verify(&self, signed: Signed) -> Result<(), CryptoError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { signed, reply })
            .map_err(|_| CryptoError("the BLS verifier has stopped".into()))?;
        answer
            .await
            .map_err(|_| CryptoError("the BLS verifier has stopped".into()))?
    }
}

fn check(batch: Vec<Job>) {
    metrics::histogram!("operator_bls_batch_size").record(batch.len() as f64);
    let signed: Vec<Signed> = batch.iter().map(|j| j.signed.clone()).collect();
    if attest::verify_batch(&signed).is_ok() {
        for job in batch {
            let _ = job.reply.send(Ok(()));
        }
        return;
    }
    for job in batch {
        let s = &job.signed;
        let _ = job.reply.send(attest::verify_digest(
            &s.public_key,
            &s.digest,
            &s.signature,
        ));
    }
}
