//! The aggregator: the client-facing gRPC service, the operators' service, the task engine and
//! the store they share.
//!
//! A command goes `rpc` (the request, converted by `pb::convert`) → `domain` (the rule decides
//! the events) → `store` (appended against the version the rule saw, through the `events` log) →
//! the `projections` (updated in the same batch) → `rpc` again (the response, read from them).
//!
//! Layout:
//! - `server`: start-up and shutdown, the only importer of `rpc`; `app`: the state every handler
//!   shares; `clock`: the time and the ids the aggregator makes; `address`: Ethereum addresses
//!   as stored and as shown;
//! - `config`: the typed configuration; `go_config`: the original's `aggregator.yaml`, converted;
//!   `telemetry`: logs, metrics, HTTP endpoints;
//! - `rpc`: the gRPC edge (prost types end there); `domain`: every business rule, pure;
//! - `store`: the event log and the projections, opened together, and the one decide-and-append;
//! - `auth`: sign-in, session tokens, API keys; `secret_box`: the secrets' encryption at rest;
//!   `token_metadata`: ERC-20 names, symbols and decimals (`GetTokenMetadata`); `wallet`:
//!   smart-wallet addresses and their user operations (ERC-4337); `chain`: the Ethereum
//!   connection; `limits`: rate limits; `quota`: one owner's quota-counted creations decided one
//!   after the other;
//! - `engine`: the task engine (triggers fired, workflows walked, the JavaScript sandbox);
//! - `transparency`: the event log as a transparency log: the log key, checkpoints issued and
//!   cosigned by the operators, the HTTP endpoints of checkpoints, tiles and proof bundles;
//! - `operators`: the aggregator's side of the operators (registry, assignment, attestations);
//!   the operator process itself is the `operator` crate, which shares only `protocol` with it;
//! - `pb`: the generated wire types, and `pb::convert`, the wire ⇄ domain conversions;
//! - `ip`: the IP addresses outbound HTTP refuses;
//! - `withdrawals`: `WithdrawFunds` (a user operation from the caller's wallet, on a stream of
//!   its own), and settling those a restart left open;
//! - `backup`: `aggregator backup DIR`, a consistent copy of a running single-node store;
//!   `log_transfer`: `aggregator log export|import`, the log between a stream and a data
//!   directory.

pub mod address;
pub mod app;
pub mod auth;
pub mod backup;
pub mod chain;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod go_config;
pub mod ip;
pub mod limits;
pub mod log_transfer;
pub mod operators;
pub mod pb;
pub mod quota;
pub mod rpc;
pub mod secret_box;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod token_metadata;
pub mod transparency;
pub mod wallet;
pub mod withdrawals;
