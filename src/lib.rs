//! The aggregator: the client-facing gRPC service, the operators' service, the task engine and
//! the store they share.
//!
//! Layout:
//! - `pb`: the generated wire types;
//! - `store`: the event log and the projections, opened together.

pub mod auth;
pub mod config;
pub mod domain;
pub mod pb;
pub mod secrets;
pub mod store;
pub mod wallet;
