//! The crate's integration tests, one binary: the Merkle tree's properties against an
//! independent implementation, execution bundles made from a real log and checked offline, and
//! interoperability with an independent C2SP implementation from npm.

#![allow(clippy::unwrap_used, reason = "tests")]

mod bundle;
mod interop;
mod issuing;
mod properties;
mod support;
