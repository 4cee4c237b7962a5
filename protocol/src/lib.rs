//! What the aggregator and its operators share, below both: the operator process depends on
//! this crate, never on the aggregator's.
//!
//! Layout:
//! - `pb`: the generated wire types and services of `proto/avs.proto` and `proto/node.proto`
//!   (node.proto carries avs.proto's trigger types), and their descriptors;
//! - `codec`: prost's codec for every generated service, a message that does not decode answered
//!   INVALID_ARGUMENT;
//! - `convert`: the wire ⇄ domain conversions both sides need: `google.protobuf.Value` ⇄ JSON,
//!   the three `MethodCall`s, triggers and the trigger outputs firings carry;
//! - `schedule`: the cron / `@every` grammar, which the aggregator validates with and the
//!   operators fire by;
//! - `triggers`: which logs an event query matches, which the operators fire by and the
//!   aggregator confirms an overload with;
//! - `registration`: the entry an operator hands to the aggregator's `operators.members`;
//! - `process`: what both programs do alike: durations as text in their YAML, the metrics
//!   recorder, the log subscriber, SIGINT / SIGTERM.
//!
//! One crate rather than one per piece: they change together (a new trigger type touches the
//! wire, its conversion and its rule) and the operator needs every one of them.

pub mod codec;
pub mod convert;
pub mod pb;
pub mod process;
pub mod registration;
pub mod schedule;
pub mod triggers;
