//! Every failure becomes a gRPC status here, once: the code says what kind of failure, the message
//! what is wrong, and the contract's `ErrorCode`, where one applies, travels in the `x-error-code`
//! metadata entry. Internal errors are logged with their detail and answered with a generic message.

use tonic::{Code, Status};

use crate::app::AppError;
use crate::auth::AuthError;
use crate::domain::{self, DomainError};
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

fn with_code(code: Code, message: String, error_code: ErrorCode) -> Status {
    let mut status = Status::new(code, bounded(message));
    if let Ok(value) = error_code.as_str_name().parse() {
        status.metadata_mut().insert("x-error-code", value);
    }
    status
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

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Self(e.into())
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

/// A store failure: conflicts that survived the retries are UNAVAILABLE (the client retries), a
/// poisoned store is UNAVAILABLE too; anything else is INTERNAL. Details go to the log only.
pub fn storage(e: events::Error) -> Status {
    match e {
        events::Error::Conflict { .. } => {
            Status::unavailable("the resource changed concurrently; retry the call")
        }
        events::Error::StreamClosed { .. } => with_code(
            Code::NotFound,
            "task not found".into(),
            ErrorCode::TaskNotFound,
        ),
        events::Error::Poisoned(reason) => {
            tracing::error!(%reason, "store poisoned");
            with_code(
                Code::Unavailable,
                "the store refuses writes after a storage failure; the operator must restart the aggregator".into(),
                ErrorCode::StorageUnavailable,
            )
        }
        other => {
            tracing::error!(error = %other, "storage error");
            with_code(
                Code::Internal,
                "internal storage error".into(),
                ErrorCode::StorageReadError,
            )
        }
    }
}

/// A handler's failure on its way to a status, for code generic over the error type (the
/// store's decide-and-append): a store error goes through `storage`, anything else is already
/// a status.
#[derive(Debug)]
pub struct Failure(pub Status);

impl From<events::Error> for Failure {
    fn from(e: events::Error) -> Self {
        Self(storage(e))
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self(status)
    }
}

impl From<DomainError> for Failure {
    fn from(e: DomainError) -> Self {
        Self(e.into())
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        failure.0
    }
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
        "this API key is read-only: it cannot change anything".into(),
        ErrorCode::Forbidden,
    )
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
}
