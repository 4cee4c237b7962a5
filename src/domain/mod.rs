//! The domain: every business rule, as pure functions from (state, command) to events or a
//! refusal. No I/O here; the RPC layer loads state from the projections and appends the events.
//!
//! Layout:
//! - `schedule`: the cron / `@every` grammar shared by validation and the operators' watchers.

pub mod schedule;
