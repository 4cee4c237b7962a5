//! Checking operator requests: each carries its operator's address, the signing time, a nonce and
//! an ECDSA signature (metadata, see `attest`) over the method, those fields and the sha-256 of
//! the request's protobuf encoding.
//!
//! Refused: unsigned, malformed, stale (outside the freshness window) or replayed requests, and
//! bad signatures (UNAUTHENTICATED); a valid signature by an address that is not a registered
//! operator (PERMISSION_DENIED). Refusals are counted in `operator_requests_refused_total`.
//! Nonces are remembered for twice the freshness window: a replay within the window is caught by
//! the nonce, an older one by its time. Where they are remembered is a `NonceStore`: in memory
//! (`MemoryNonces`, one process: the fjall backend), or in a KV bucket every replica of a
//! replicated log shares (`cluster::KvNonces`), so that a request replayed to another replica
//! is refused there too. A request signed before this aggregator started is refused as stale
//! too: a replay across a restart is caught by its time, whatever the store (an honest operator
//! signs each attempt afresh).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use events::BoxFuture;
use tonic::Request;

use super::OperatorError;

use attest::{HEADER_ADDRESS, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use super::refusals::Refusals;

/// Where the nonces of signed requests are remembered.
pub trait NonceStore: Send + Sync + 'static {
    /// Records `nonce` of `operator`, seen at `now` (ms), for `keep_ms`; `Ok(false)` when it was
    /// recorded already (a replay). `Err`: the store cannot answer (the request is refused).
    fn first_sight<'a>(
        &'a self,
        operator: Address,
        nonce: &'a str,
        now: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// The nonces this process has seen (one aggregator).
#[derive(Debug, Default)]
pub struct MemoryNonces {
    seen: Mutex<HashMap<(Address, String), u64>>,
}

impl NonceStore for MemoryNonces {
    fn first_sight<'a>(
        &'a self,
        operator: Address,
        nonce: &'a str,
        now: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, expires| *expires > now);
        }
        let first = seen
            .insert((operator, nonce.to_owned()), now + keep_ms)
            .is_none();
        Box::pin(std::future::ready(Ok(first)))
    }
}

/// The nonces every replica of a replicated log has seen (the bucket keeps them for twice the
/// freshness window by itself).
impl NonceStore for cluster::KvNonces {
    fn first_sight<'a>(
        &'a self,
        operator: Address,
        nonce: &'a str,
        _now: u64,
        _keep_ms: u64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            cluster::KvNonces::first_sight(self, &hex::encode(operator), nonce)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

pub struct RequestAuth {
    freshness: Duration,
    /// When this aggregator started (ms): nothing older is accepted.
    started: u64,
    nonces: Arc<dyn NonceStore>,
    refusals: Arc<Refusals>,
}

impl std::fmt::Debug for RequestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestAuth")
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

/// Why a request is refused (the counter's `reason`) and what the caller is told.
type Refused = (&'static str, OperatorError);

fn header<'r, T>(request: &'r Request<T>, name: &str) -> Result<&'r str, Refused> {
    request
        .metadata()
        .get(name)
        .ok_or_else(|| {
            (
                "unsigned",
                OperatorError::Unauthenticated(format!(
                    "operator requests are signed: the {name} metadata is missing"
                )),
            )
        })?
        .to_str()
        .map_err(|_| {
            (
                "malformed",
                OperatorError::Unauthenticated(format!("the {name} metadata is not text")),
            )
        })
}

impl RequestAuth {
    /// `started`: when the aggregator started (ms); nothing signed earlier is accepted.
    /// Nonces are remembered in `nonces`; refusals are counted in `refusals`.
    pub fn new(
        freshness: Duration,
        started: u64,
        nonces: Arc<dyn NonceStore>,
        refusals: Arc<Refusals>,
    ) -> Self {
        Self {
            freshness,
            started,
            nonces,
            refusals,
        }
    }

    /// The operator that signed `request` for `method` (e.g. `/aggregator.Node/Ping`), if it is
    /// one of `known`. A refusal is counted, on the operator the request names when it is one.
    /// The request is read at once; the future only records its nonce (it holds no borrow of
    /// the request, which a streaming one could not share across threads).
    pub fn check<T: prost::Message, K: Fn(Address) -> bool>(
        &self,
        method: &str,
        request: &Request<T>,
        known: K,
    ) -> impl Future<Output = Result<Address, OperatorError>> + Send + use<'_, T, K> {
        let mut named = None;
        let verified = self.verify(method, request, &known, &mut named);
        async move {
            let outcome = match verified {
                Ok((address, nonce, now)) => self.remember(address, &nonce, now).await,
                Err(refused) => Err(refused),
            };
            outcome.map_err(|(reason, error)| {
                self.refusals.record(named, reason);
                error
            })
        }
    }

    /// The nonce's first sight, or the request is a replay.
    async fn remember(&self, address: Address, nonce: &str, now: u64) -> Result<Address, Refused> {
        let window = u64::try_from(self.freshness.as_millis()).unwrap_or(u64::MAX);
        match self
            .nonces
            .first_sight(address, nonce, now, window.saturating_mul(2))
            .await
        {
            Ok(true) => Ok(address),
            Ok(false) => Err((
                "replayed",
                OperatorError::Unauthenticated(
                    "this request was already received (replayed nonce)".into(),
                ),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "the operators' nonce store cannot be reached");
                Err((
                    "nonce_unavailable",
                    OperatorError::Unavailable(
                        "the aggregator cannot check the request's nonce now; send it again".into(),
                    ),
                ))
            }
        }
    }

    /// Everything but the nonce's first sight: the address, nonce and time checked.
    fn verify<T: prost::Message>(
        &self,
        method: &str,
        request: &Request<T>,
        known: &impl Fn(Address) -> bool,
        named: &mut Option<Address>,
    ) -> Result<(Address, String, u64), Refused> {
        let address: Address = header(request, HEADER_ADDRESS)?.parse().map_err(|_| {
            (
                "malformed",
                OperatorError::Unauthenticated("x-operator-address is not an address".into()),
            )
        })?;
        *named = Some(address).filter(|a| known(*a));
        let timestamp: u64 = header(request, HEADER_TIMESTAMP)?.parse().map_err(|_| {
            (
                "malformed",
                OperatorError::Unauthenticated("x-operator-timestamp is not milliseconds".into()),
            )
        })?;
        let nonce = header(request, HEADER_NONCE)?;
        if nonce.len() < 16 || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                "malformed",
                OperatorError::Unauthenticated(
                    "x-operator-nonce must be 16 to 128 hex digits".into(),
                ),
            ));
        }
        let signature = header(request, HEADER_SIGNATURE)?;
        let now = events::now_ms();
        let window = u64::try_from(self.freshness.as_millis()).unwrap_or(u64::MAX);
        if timestamp.abs_diff(now) > window {
            return Err((
                "stale",
                OperatorError::Unauthenticated(format!(
                    "the request was signed {} ms away from the aggregator's clock; the window is {window} ms",
                    timestamp.abs_diff(now)
                )),
            ));
        }
        if timestamp < self.started {
            return Err((
                "stale",
                OperatorError::Unauthenticated(
                    "the request was signed before the aggregator started; sign it again".into(),
                ),
            ));
        }
        let text = attest::request_text(
            method,
            address,
            timestamp,
            nonce,
            &request.get_ref().encode_to_vec(),
        );
        let signer = attest::request_signer(&text, signature)
            .map_err(|e| ("bad_signature", OperatorError::Unauthenticated(e.0)))?;
        if signer != address {
            return Err((
                "bad_signature",
                OperatorError::Unauthenticated(
                    "the request's signature does not match x-operator-address".into(),
                ),
            ));
        }
        if !known(address) {
            return Err((
                "unknown_operator",
                OperatorError::NotMember(format!("{address:#x} is not a registered operator")),
            ));
        }
        Ok((address, nonce.to_owned(), now))
    }
}
