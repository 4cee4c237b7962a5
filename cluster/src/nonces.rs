//! The operators' request nonces, cluster-wide: a signed request replayed to another replica
//! within its freshness window is refused there too.
//!
//! One KV bucket beside the stream (`<stream>_nonces`): a nonce is seen for the first time when
//! its key (`<operator>.<nonce>`) is created, and JetStream's create is atomic (it fails when
//! the key exists), so of two replicas receiving the same request at once exactly one accepts
//! it. The bucket's `max_age` is twice the freshness window: a request is refused by its
//! nonce while it is fresh, and by its time once the entry has aged out.

use std::time::Duration;

use async_nats::jetstream::kv;

use crate::buckets::{open_bucket, patiently};
use crate::error::{Error, Result};
use crate::stream::Replicated;

/// The bucket of a stream's operator nonces.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_nonces")
}

/// The nonces seen by every replica of the stream.
#[derive(Clone)]
pub struct KvNonces {
    store: kv::Store,
    bucket: String,
}

impl std::fmt::Debug for KvNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvNonces")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl KvNonces {
    /// Opens (or creates) the bucket of `replicated`'s stream, keeping nonces for twice
    /// `freshness` (a bucket created with a shorter age is raised to it).
    pub async fn open(
        replicated: &Replicated,
        replicas: usize,
        freshness: Duration,
    ) -> Result<Self> {
        let bucket = bucket(replicated.name());
        let keep = freshness.saturating_mul(2).max(Duration::from_secs(1));
        let store = open_bucket(
            replicated,
            &bucket,
            replicas,
            keep,
            "the operators' request nonces (aggregator.Node), seen by any replica",
        )
        .await?;
        // A bucket made under a shorter freshness window would forget nonces still fresh.
        // (Retried: a bucket another replica has just made can time out its first requests.)
        let js = replicated.jetstream();
        patiently(|| async {
            let mut stream = js
                .get_stream(format!("KV_{bucket}"))
                .await
                .map_err(|e| e.to_string())?;
            let mut config = stream.info().await.map_err(|e| e.to_string())?.config.clone();
            if config.max_age < keep {
                tracing::info!(bucket, from = ?config.max_age, to = ?keep, "keeping operator nonces longer");
                config.max_age = keep;
                js.update_stream(&config).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .map_err(|message| Error::Stream {
            stream: bucket.clone(),
            message,
        })?;
        Ok(Self { store, bucket })
    }

    /// Records `nonce` of `operator` (lowercase hex address, without `0x`); `false` when any
    /// replica has recorded it within the bucket's age.
    pub async fn first_sight(&self, operator: &str, nonce: &str) -> Result<bool> {
        let key = format!("{operator}.{nonce}");
        // The value says when it was seen (ms), for whoever reads the bucket.
        let seen = events::now_ms().to_string();
        match self.store.create(&key, seen.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::Stream {
                stream: self.bucket.clone(),
                message: format!("recording an operator nonce: {e}"),
            }),
        }
    }
}
