//! Why the operators' service refuses a request, in words an operator can act on; the gRPC edge
//! maps each variant to its status (`rpc::error`), once.

use alloy::primitives::Address;

use crate::domain::DomainError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// A rule of the domain refused it (its own status).
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// The request is malformed (INVALID_ARGUMENT).
    #[error("{0}")]
    Malformed(String),
    /// Unsigned, malformed metadata, stale, replayed or badly signed (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// A report whose BLS signature does not verify (UNAUTHENTICATED).
    #[error("the report's BLS signature does not verify over the firing digest: {0}")]
    BadSignature(String),
    /// Signed by an address that is not a registered operator, or naming another one
    /// (PERMISSION_DENIED).
    #[error("{0}")]
    NotMember(String),
    /// The operator is not assigned to the task (PERMISSION_DENIED).
    #[error("operator {operator:#x} is not assigned to task {task_id}")]
    NotAssigned { operator: Address, task_id: String },
    /// Reports of one firing keep overtaking each other (UNAVAILABLE: report again).
    #[error("reports of this firing keep arriving concurrently; report again")]
    Contended,
    /// What the request needs is out of reach for now (UNAVAILABLE: send it again).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] events::Error),
    /// Something on our side failed; the detail is logged, not sent (INTERNAL).
    #[error("{0}")]
    Internal(String),
}

pub type OperatorResult<T> = Result<T, OperatorError>;
