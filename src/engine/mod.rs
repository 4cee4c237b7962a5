//! The task engine: firings become executions that walk the task's graph, step by step, each
//! step recorded as an event.
//!
//! Layout:
//! - `sandbox`: the JavaScript sandbox (QuickJS) for custom code, templates and expressions;
//! - `http`: outbound HTTP for the REST and GraphQL nodes, refusing private addresses.

pub mod http;
pub mod sandbox;
