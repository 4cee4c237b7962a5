//! Checking operator requests: each carries its operator's address, the signing time, a nonce and
//! an ECDSA signature (metadata, see `attest`) over the method, those fields and the sha-256 of
//! the request's protobuf encoding.
//!
//! Refused: unsigned, malformed, stale (outside the freshness window) or replayed requests, and
//! bad signatures (UNAUTHENTICATED); a valid signature by an address that is not a registered
//! operator (PERMISSION_DENIED). Refusals are counted in `operator_requests_refused_total`.
//! Nonces are remembered for twice the freshness window: a replay within the window is caught by
//! the nonce, an older one by its time. The nonces live in memory, so a request signed before
//! this aggregator started is refused as stale too: a replay across a restart is caught by its
//! time (an honest operator signs each attempt afresh).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::Address;
use tonic::Request;

use super::OperatorError;

use attest::{HEADER_ADDRESS, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

pub struct RequestAuth {
    freshness: Duration,
    /// When this aggregator started (ms): the nonce store knows nothing older.
    started: u64,
    seen: Mutex<HashMap<(Address, String), u64>>,
}

impl std::fmt::Debug for RequestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestAuth")
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

fn refuse(reason: &'static str, error: OperatorError) -> OperatorError {
    metrics::counter!("operator_requests_refused_total", "reason" => reason).increment(1);
    error
}

fn header<'r, T>(request: &'r Request<T>, name: &str) -> Result<&'r str, OperatorError> {
    request
        .metadata()
        .get(name)
        .ok_or_else(|| {
            refuse(
                "unsigned",
                OperatorError::Unauthenticated(format!(
                    "operator requests are signed: the {name} metadata is missing"
                )),
            )
        })?
        .to_str()
        .map_err(|_| {
            refuse(
                "malformed",
                OperatorError::Unauthenticated(format!("the {name} metadata is not text")),
            )
        })
}

impl RequestAuth {
    /// `started`: when the aggregator started (ms); nothing signed earlier is accepted.
    pub fn new(freshness: Duration, started: u64) -> Self {
        Self {
            freshness,
            started,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The operator that signed `request` for `method` (e.g. `/aggregator.Node/Ping`), if it is
    /// one of `known`.
    pub fn check<T: prost::Message>(
        &self,
        method: &str,
        request: &Request<T>,
        known: impl Fn(Address) -> bool,
    ) -> Result<Address, OperatorError> {
        let address: Address = header(request, HEADER_ADDRESS)?.parse().map_err(|_| {
            refuse(
                "malformed",
                OperatorError::Unauthenticated("x-operator-address is not an address".into()),
            )
        })?;
        let timestamp: u64 = header(request, HEADER_TIMESTAMP)?.parse().map_err(|_| {
            refuse(
                "malformed",
                OperatorError::Unauthenticated("x-operator-timestamp is not milliseconds".into()),
            )
        })?;
        let nonce = header(request, HEADER_NONCE)?;
        if nonce.len() < 16 || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(
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
            return Err(refuse(
                "stale",
                OperatorError::Unauthenticated(format!(
                    "the request was signed {} ms away from the aggregator's clock; the window is {window} ms",
                    timestamp.abs_diff(now)
                )),
            ));
        }
        if timestamp < self.started {
            return Err(refuse(
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
            .map_err(|e| refuse("bad_signature", OperatorError::Unauthenticated(e.0)))?;
        if signer != address {
            return Err(refuse(
                "bad_signature",
                OperatorError::Unauthenticated(
                    "the request's signature does not match x-operator-address".into(),
                ),
            ));
        }
        if !known(address) {
            return Err(refuse(
                "unknown_operator",
                OperatorError::NotMember(format!("{address:#x} is not a registered operator")),
            ));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, expires| *expires > now);
        }
        if seen
            .insert((address, nonce.to_owned()), now + 2 * window)
            .is_some()
        {
            return Err(refuse(
                "replayed",
                OperatorError::Unauthenticated(
                    "this request was already received (replayed nonce)".into(),
                ),
            ));
        }
        Ok(address)
    }
}
