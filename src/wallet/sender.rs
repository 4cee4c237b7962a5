//! The one trait both ways of sending a user operation implement: the aggregator's own bundler
//! (`self_bundler`, the default) and a client of an external bundler (`bundler`).
//!
//! A sender estimates gas, takes a signed operation (or refuses it, saying why), and finds its
//! receipt. Waiting for the receipt, retries and journaling are the caller's (`submit`), the same
//! for both.

use alloy::primitives::B256;
use futures_util::future::BoxFuture;

use super::contracts::UserOperation;
use super::gas::GasLimits;
use events::user_op::{OpReceipt, SenderKind};

/// What a sender answered to a signed operation it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The transaction that carries it, when the sender made one (the self-bundler).
    pub tx_hash: Option<B256>,
}

/// Why a sender did not take an operation, or could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Refused before anything reached the chain (validation failed, a bundler's rejection):
    /// safe to rebuild. `code` is the ERC-4337 code (`AA25`, ...) when the reason has one.
    #[error("{reason}")]
    Refused {
        code: Option<String>,
        reason: String,
    },
    /// The wallet's call would revert (gas estimation).
    #[error("the call would revert: {reason}")]
    Reverted { reason: String },
    /// No clear answer (a connection lost mid-request, a timeout): the operation may have been
    /// taken. Never rebuild on this; look for its receipt.
    #[error("no answer from the sender: {0}")]
    Unknown(String),
}

impl SendError {
    pub fn refused(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Refused {
            code: super::receipt::aa_code(&reason).map(str::to_owned),
            reason,
        }
    }

    /// The ERC-4337 code of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A way to get user operations on chain.
pub trait UserOpSender: Send + Sync {
    fn kind(&self) -> SenderKind;

    /// Gas limits for `op` (signature: a dummy of the right length; paymasterAndData: as it will
    /// be, with a placeholder signature). `sign` signs a version of the operation, for senders
    /// that simulate it fully.
    fn estimate<'a>(
        &'a self,
        op: &'a UserOperation,
        sign: &'a (dyn Fn(UserOperation) -> Result<UserOperation, SendError> + Send + Sync),
    ) -> BoxFuture<'a, Result<GasLimits, SendError>>;

    /// Hands the signed operation over.
    fn send<'a>(&'a self, op: &'a UserOperation) -> BoxFuture<'a, Result<Accepted, SendError>>;

    /// The operation's receipt if it is on chain (`tx_hash`: where the sender put it, if known).
    fn receipt<'a>(
        &'a self,
        user_op_hash: B256,
        tx_hash: Option<B256>,
        from_block: u64,
    ) -> BoxFuture<'a, Result<Option<OpReceipt>, SendError>>;
}
