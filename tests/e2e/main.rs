//! End-to-end scenarios, one module each, in a single test binary (every extra binary links the
//! whole dependency tree again).

#![allow(clippy::unwrap_used, reason = "tests")]

mod anvil;
mod core_crash;
mod core_tamper;
mod support;
mod wallet_derivation;
