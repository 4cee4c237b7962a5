//! Every failure becomes a gRPC status here, once: the code says what kind of failure, the message
//! what is wrong, and the contract's `ErrorCode` travels in the `x-error-code` metadata entry
//! (`ERROR_CODE_UNSPECIFIED` where the contract has none for it).
//!
//! Internal errors (a corrupt row, a failed seal) and upstream errors (the chain node; its
//! errors can print the node's URL, which often embeds a provider key) are logged in full and
//! answered with a fixed message: no internal or upstream text reaches a client.
//!
//! `clippy.toml` disallows `tonic::Status`'s constructors everywhere else, so that this stays
//! the one map: a handler that needs a new kind of failure adds it here.

use std::fmt::Display;

use tonic::{Code, Status};

use crate::app::AppError;
use crate::auth::AuthError;
use crate::domain::firing::Refusal;
use crate::domain::{self, DomainError};
use crate::engine::FireError;
use crate::operators::OperatorError;
use crate::pb::ErrorCode;

/// The contract's error code of a domain code.
pub fn wire_code(code: domain::Code) -> ErrorCode {
    use domain::Code as C;
    match code {
        C::TaskNotFound => ErrorCode::TaskNotFound,
        C::ExecutionNotFound => ErrorCode::ExecutionNotFound,
        C::WalletNotFound => ErrorCode::WalletNotFound,
        C::SecretNotFound => ErrorCode::SecretNotFound,
        C::InvalidRequest => ErrorCode::InvalidRequest,
        C::InvalidTriggerConfig => ErrorCode::InvalidTriggerConfig,
        C::InvalidNodeConfig => ErrorCode::InvalidNodeConfig,
        C::InvalidWorkflow => ErrorCode::InvalidWorkflow,
        C::InvalidAddress => ErrorCode::InvalidAddress,
        C::MissingRequiredField => ErrorCode::MissingRequiredField,
        C::TaskAlreadyCompleted => ErrorCode::TaskAlreadyCompleted,
        #[expect(
            deprecated,
            reason = "the contract deprecates it, yet it is the precise code and its clients know it"
        )]
        C::TaskAlreadyCancelled => ErrorCode::TaskAlreadyCancelled,
        C::SecretAlreadyExists => ErrorCode::SecretAlreadyExists,
        C::QuotaExceeded => ErrorCode::QuotaExceeded,
        C::InsufficientBalance => ErrorCode::InsufficientBalance,
    }
}

/// The longest `grpc-message` we send. Messages quote what the caller sent (a bad address, a
/// field name): a 200 KB value echoed back made a client hang on the header.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to `MAX_MESSAGE_BYTES` at a character boundary, saying so.
pub fn bounded(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    const MORE: &str = " … (cut)";
    let mut end = MAX_MESSAGE_BYTES - MORE.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(MORE);
    message
}

/// The one place a status is made.
#[expect(clippy::disallowed_methods, reason = "the one error map")]
fn with_code(code: Code, message: impl Into<String>, error_code: ErrorCode) -> Status {
    let mut status = Status::new(code, bounded(message.into()));
    if let Ok(value) = error_code.as_str_name().parse() {
        status.metadata_mut().insert("x-error-code", value);
    }
    status
}

/// A status as it crosses from the replica that ran a call to the one that took it
/// (`client::on_writer`), to be answered there unchanged: code, message, `x-error-code`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireStatus {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_code: String,
}

impl From<&Status> for WireStatus {
    fn from(status: &Status) -> Self {
        Self {
            code: status.code() as i32,
            message: status.message().to_owned(),
            error_code: status
                .metadata()
                .get("x-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

impl From<WireStatus> for Status {
    #[expect(clippy::disallowed_methods, reason = "the one error map")]
    fn from(wire: WireStatus) -> Self {
        let mut status = Status::new(Code::from_i32(wire.code), bounded(wire.message));
        if let Ok(value) = wire.error_code.parse()
            && !wire.error_code.is_empty()
        {
            status.metadata_mut().insert("x-error-code", value);
        }
        status
    }
}

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m, c) => with_code(Code::InvalidArgument, m, wire_code(c)),
            DomainError::NotFound(m, c) => with_code(Code::NotFound, m, wire_code(c)),
            DomainError::PermissionDenied(m) => {
                with_code(Code::PermissionDenied, m, ErrorCode::Forbidden)
            }
            DomainError::FailedPrecondition(m, c) => {
                with_code(Code::FailedPrecondition, m, wire_code(c))
            }
            DomainError::AlreadyExists(m, c) => with_code(Code::AlreadyExists, m, wire_code(c)),
            DomainError::QuotaExceeded(m) => {
                with_code(Code::ResourceExhausted, m, ErrorCode::QuotaExceeded)
            }
        }
    }
}

impl From<AppError> for Status {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Refused(e) => e.into(),
            AppError::Store(e) => storage(e),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        with_code(
            Code::Unauthenticated,
            format!("User authentication error: {}", e.0),
            ErrorCode::Unauthorized,
        )
    }
}

/// An `authkey` that is not a valid token of this aggregator: UNAUTHENTICATED, in the
/// original's words ("User authentication error: User Auth key is invalid") with what is wrong
/// after them.
pub fn invalid_auth_key(e: AuthError) -> Status {
    with_code(
        Code::Unauthenticated,
        format!(
            "User authentication error: User Auth key is invalid: {}",
            e.0
        ),
        ErrorCode::Unauthorized,
    )
}

/// A store failure: conflicts that survived the retries are UNAVAILABLE (the client retries), a
/// poisoned store is UNAVAILABLE too; anything else is INTERNAL. Details go to the log only.
pub fn storage(e: events::Error) -> Status {
    match e {
        events::Error::Conflict { .. } => contended("resource"),
        events::Error::StreamClosed { .. } => DomainError::task_not_found().into(),
        events::Error::Poisoned(reason) => {
            tracing::error!(%reason, "store poisoned");
            with_code(
                Code::Unavailable,
                "the store refuses writes after a storage failure; the operator must restart the aggregator",
                ErrorCode::StorageUnavailable,
            )
        }
        events::Error::NotWriter(reason) | events::Error::Unavailable(reason) => {
            tracing::warn!(%reason, "the replicated log did not take the command");
            with_code(
                Code::Unavailable,
                "the event log is changing writers or unreachable; retry the call",
                ErrorCode::StorageUnavailable,
            )
        }
        other => {
            tracing::error!(error = %other, "storage error");
            with_code(
                Code::Internal,
                "internal storage error",
                ErrorCode::StorageReadError,
            )
        }
    }
}

/// A replica of a replicated log could not catch up with the stream before a call
/// (`event_log.reads: linearizable`): answering would show older state. The client retries.
pub fn behind(e: &cluster::Error) -> Status {
    tracing::warn!(error = %e, "this replica could not catch up with the replicated log");
    with_code(
        Code::Unavailable,
        "this replica cannot reach the replicated event log to answer with current state; retry the call",
        ErrorCode::StorageUnavailable,
    )
}

/// A call handed to the writer replica got no answer (`client::on_writer`): UNAVAILABLE; when
/// the writer may have run it, the message says so (the call is not repeated for the caller).
pub fn writer_call(failed: cluster::forward::CallFailed) -> Status {
    use cluster::forward::CallFailed;
    tracing::warn!(error = %failed, "a call handed to the log's writer got no answer");
    match failed {
        CallFailed::NoWriter(_) => with_code(
            Code::Unavailable,
            "the event log is changing writers or unreachable; retry the call",
            ErrorCode::StorageUnavailable,
        ),
        CallFailed::Unknown(_) => with_code(
            Code::Unavailable,
            "the replica that writes the log changed or did not answer while it ran the call: whether it ran is not known, look before calling again",
            ErrorCode::StorageUnavailable,
        ),
    }
}

/// A decision overtaken by concurrent commands every time it was made again: the client
/// retries.
pub fn contended(what: &str) -> Status {
    with_code(
        Code::Unavailable,
        format!("the {what} changed concurrently; retry the call"),
        ErrorCode::StorageWriteError,
    )
}

/// Something on our side failed: `detail` is logged, the client reads only `what` (our own
/// fixed words).
pub fn internal(what: &'static str, detail: impl Display) -> Status {
    tracing::error!(what, detail = %detail, "internal error");
    with_code(
        Code::Internal,
        format!("internal error: {what}"),
        ErrorCode::Unspecified,
    )
}

/// The chain node did not answer `what`: the detail (which can name the node's URL) is logged,
/// the client is told to retry.
pub fn upstream(what: &'static str, detail: impl Display) -> Status {
    tracing::warn!(what, detail = %detail, "chain request failed");
    with_code(
        Code::Unavailable,
        format!("{what} failed: the chain node did not answer; retry later"),
        ErrorCode::RpcNodeError,
    )
}

/// What this deployment cannot do (a chain connection it lacks).
pub fn unconfigured(message: impl Into<String>) -> Status {
    with_code(Code::FailedPrecondition, message, ErrorCode::Unspecified)
}

/// A simulation that could not run (its trigger could not be read, its secrets opened...).
pub fn simulation(message: String) -> Status {
    with_code(
        Code::FailedPrecondition,
        message,
        ErrorCode::SimulationError,
    )
}

/// A method of the contract this aggregator does not serve yet.
pub fn unimplemented(message: &'static str) -> Status {
    with_code(Code::Unimplemented, message, ErrorCode::Unspecified)
}

pub fn rate_limited(what: &str) -> Status {
    with_code(
        Code::ResourceExhausted,
        format!("rate limit exceeded for {what}; slow down"),
        ErrorCode::RateLimitExceeded,
    )
}

pub fn read_only() -> Status {
    with_code(
        Code::PermissionDenied,
        "this API key is read-only: it cannot change anything",
        ErrorCode::Forbidden,
    )
}

/// A firing the rules refused: FAILED_PRECONDITION with the refusal's sentence (NOT_FOUND for a
/// task that is not there).
pub fn refused(refusal: Refusal) -> Status {
    let error_code = match refusal {
        Refusal::NotFound => return DomainError::task_not_found().into(),
        Refusal::Cancelled => wire_code(domain::Code::TaskAlreadyCancelled),
        Refusal::Expired | Refusal::Exhausted => ErrorCode::TaskAlreadyCompleted,
        Refusal::Disabled | Refusal::NotStarted | Refusal::Failed => ErrorCode::Unspecified,
    };
    // The original's words first, then why.
    with_code(
        Code::FailedPrecondition,
        format!("task cannot be executed: {}", refusal.message()),
        error_code,
    )
}

impl From<FireError> for Status {
    fn from(e: FireError) -> Self {
        match e {
            FireError::Refused(refusal) => refused(refusal),
            FireError::Storage(e) => storage(e),
            FireError::Invalid(why) => DomainError::invalid(why).into(),
            FireError::Contended => contended("task"),
            busy @ FireError::Busy(_) => with_code(
                Code::ResourceExhausted,
                busy.to_string(),
                ErrorCode::TooManyRequests,
            ),
        }
    }
}

impl From<OperatorError> for Status {
    fn from(e: OperatorError) -> Self {
        let message = e.to_string();
        match e {
            OperatorError::Refused(e) => e.into(),
            OperatorError::Malformed(_) => {
                with_code(Code::InvalidArgument, message, ErrorCode::InvalidRequest)
            }
            OperatorError::Unauthenticated(_) | OperatorError::BadSignature(_) => {
                with_code(Code::Unauthenticated, message, ErrorCode::InvalidSignature)
            }
            OperatorError::NotMember(_) | OperatorError::NotAssigned { .. } => {
                with_code(Code::PermissionDenied, message, ErrorCode::Forbidden)
            }
            OperatorError::Contended => with_code(
                Code::Unavailable,
                "reports of this firing keep arriving concurrently; report again",
                ErrorCode::StorageWriteError,
            ),
            OperatorError::Unavailable(_) => {
                with_code(Code::Unavailable, message, ErrorCode::StorageUnavailable)
            }
            OperatorError::Storage(e) => storage(e),
            OperatorError::Internal(detail) => internal("the operators' service", detail),
        }
    }
}

/// Why a cosignature request is refused.
#[derive(Debug)]
pub enum CosignRefusal {
    /// The caller is not in the operator set.
    NotMember,
    /// No checkpoint of this many leaves was issued.
    NoCheckpoint(u64),
    /// The caller names another root, or a size past the checkpoint.
    Mismatch(String),
    /// The checkpoint store's answer: a bad cosignature or proof is the caller's fault; anything
    /// else is ours (logged, not sent).
    Store(tlog::Error),
    /// The cosigning task stopped.
    Stopped(String),
}

impl From<tlog::Error> for CosignRefusal {
    fn from(e: tlog::Error) -> Self {
        Self::Store(e)
    }
}

impl From<CosignRefusal> for Status {
    fn from(refusal: CosignRefusal) -> Self {
        match refusal {
            CosignRefusal::NotMember => with_code(
                Code::PermissionDenied,
                "not a registered operator",
                ErrorCode::Forbidden,
            ),
            CosignRefusal::NoCheckpoint(size) => with_code(
                Code::NotFound,
                format!("no checkpoint of {size} leaves was issued"),
                ErrorCode::InvalidRequest,
            ),
            CosignRefusal::Mismatch(message) => {
                with_code(Code::FailedPrecondition, message, ErrorCode::InvalidRequest)
            }
            CosignRefusal::Store(tlog::Error::Cosignature(m)) => with_code(
                Code::InvalidArgument,
                format!("the cosignature does not verify: {m}"),
                ErrorCode::InvalidSignature,
            ),
            CosignRefusal::Store(tlog::Error::Proof(m)) => {
                with_code(Code::InvalidArgument, m, ErrorCode::InvalidRequest)
            }
            CosignRefusal::Store(other) => internal("the checkpoint store failed", other),
            CosignRefusal::Stopped(detail) => internal("the cosigning task failed", detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_value_is_cut_in_the_message() {
        let huge = format!("wallet {:?} is not an address", "é".repeat(100_000));
        let status = Status::from(DomainError::invalid(huge));
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        assert!(status.message().ends_with("(cut)"));
        let short = Status::from(DomainError::invalid("fine"));
        assert_eq!(short.message(), "fine");
    }

    const DETAIL: &str = "error sending request for url (https://mainnet.example.io/v3/SECRETKEY)";

    fn error_code(status: &Status) -> Option<&str> {
        status
            .metadata()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn internal_and_upstream_detail_is_logged_not_sent() {
        for status in [
            internal("sealing the secret failed", DETAIL),
            upstream("reading the EntryPoint nonce", DETAIL),
            OperatorError::Internal(DETAIL.into()).into(),
            storage(events::Error::Corrupt(DETAIL.into())),
        ] {
            assert!(!status.message().contains("SECRETKEY"), "{status:?}");
            assert!(!status.message().contains("https://"), "{status:?}");
        }
        let status = upstream("reading the EntryPoint nonce", DETAIL);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(error_code(&status), Some("RPC_NODE_ERROR"));
    }

    #[test]
    fn every_status_of_the_map_carries_its_error_code() {
        let statuses: Vec<Status> = vec![
            DomainError::task_not_found().into(),
            AuthError("expired".into()).into(),
            storage(events::Error::Conflict {
                stream: "task:x".into(),
                expected: events::Expected::Exactly(1),
                actual: 2,
            }),
            contended("task"),
            unconfigured("configure ethereum.rpc_url"),
            unimplemented("not yet"),
            rate_limited("this caller"),
            read_only(),
            refused(Refusal::Disabled),
            refused(Refusal::Cancelled),
            FireError::Contended.into(),
            OperatorError::Contended.into(),
            OperatorError::Malformed("x".into()).into(),
            simulation("no chain".into()),
        ];
        for status in statuses {
            assert!(error_code(&status).is_some(), "{status:?}");
        }
    }
}
