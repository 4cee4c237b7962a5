//! The domain: every business rule, as pure functions from (state, command) to events or a
//! refusal. No I/O here: the RPC layer loads state from the projections, asks the domain, and
//! appends the events it returns.
//!
//! Layout:
//! - `bounds`: how deep and large a value a user controls may be before it enters an event;
//! - `fees`: the original's fee structure (execution fee, COGS, value-fee tiers);
//! - `schedule`: the cron / `@every` grammar shared by validation and the operators' watchers
//!   (in the `protocol` crate, which the operator process shares);
//! - `task`: task definitions (validation) and the task lifecycle (enable, disable, cancel, delete);
//! - `firing`: whether a task may run now, and the events that queue a run;
//! - `wallets`: registering and hiding smart wallets;
//! - `secrets`: secret names and scopes;
//! - `triggers`: which logs an event query matches (the operators' rule, and the overload check's;
//!   in `protocol` too);
//! - `attestation`: the operators' reports of one firing folded, and the quorum that attests it;
//! - `assignment`: which operators watch which task (rendezvous hashing, the grace period);
//! - `overload`: when an event trigger that matched too much is disabled;
//! - `step_config`: a trigger's or node's config as a step shows it (the contract's JSON names);
//! - `trigger_output`: what triggers output (time, block, decoded and enriched event logs);
//! - `event_query`: an event trigger's queries as stored (`{{settings.*}}` resolved, topics padded).
//!
//! `DomainError` says what is wrong in words a client can act on; `rpc::error` maps each variant
//! to its gRPC status, once.

pub mod assignment;
pub mod attestation;
pub mod bounds;
pub mod event_query;
pub mod fees;
pub mod firing;
pub mod overload;
pub mod secrets;
pub mod step_config;
pub mod task;
#[cfg(test)]
mod testing;
pub mod trigger_output;
pub mod wallets;

pub use protocol::{schedule, triggers};

/// The contract's `ErrorCode`s the domain produces (the RPC layer maps them to the wire enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    TaskNotFound,
    ExecutionNotFound,
    WalletNotFound,
    SecretNotFound,
    InvalidRequest,
    InvalidTriggerConfig,
    InvalidNodeConfig,
    InvalidWorkflow,
    InvalidAddress,
    MissingRequiredField,
    TaskAlreadyCompleted,
    TaskAlreadyCancelled,
    SecretAlreadyExists,
    QuotaExceeded,
    InsufficientBalance,
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The request itself is wrong (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String, Code),
    /// It names something that does not exist, or not for this caller (NOT_FOUND).
    #[error("{0}")]
    NotFound(String, Code),
    /// The caller may not do this (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
    /// The state does not allow it (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String, Code),
    /// It exists already (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String, Code),
    /// A quota is full (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    QuotaExceeded(String),
}

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into(), Code::InvalidRequest)
    }

    pub fn task_not_found() -> Self {
        Self::NotFound("task not found".into(), Code::TaskNotFound)
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

/// A wire value the domain cannot hold is a bad request.
impl From<protocol::convert::ConvertError> for DomainError {
    fn from(e: protocol::convert::ConvertError) -> Self {
        Self::invalid(e.0)
    }
}
