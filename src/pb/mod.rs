//! The wire types (generated in the `protocol` crate, shared with the operator process) and
//! `convert`: the wire ⇄ domain conversions beside them. Prost types stay at the gRPC edge:
//! handlers convert them into domain values on their first line.

pub mod convert;

pub use protocol::pb::*;
