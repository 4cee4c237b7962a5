//! The aggregator: the client-facing gRPC service, the operators' service, the task engine and
//! the store they share.
//!
//! Layout:
//! - `store`: the event log and the projections, opened together.

pub mod store;
