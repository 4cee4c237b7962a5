//! The crate's error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("storage: {0}")]
    Storage(#[from] events::fjall::Error),
    #[error("the event log: {0}")]
    Log(#[from] events::Error),
    /// The stored tree does not hold what it should (a missing or short tile): corruption.
    #[error("the Merkle tree: {0}")]
    Tree(String),
    /// A tile path a client asked for is not a C2SP tile path.
    #[error("tile path {path:?}: {reason}")]
    TilePath { path: String, reason: String },
    /// A size or index outside the tree, or a proof that does not verify.
    #[error("proof: {0}")]
    Proof(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("log key: {0}")]
    Key(String),
    #[error("cosignature: {0}")]
    Cosignature(String),
    #[error("operator set: {0}")]
    Operators(String),
    #[error("bundle: {0}")]
    Bundle(String),
}
