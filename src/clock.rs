//! The clock and the ids the aggregator makes: milliseconds since the epoch (the log's own
//! clock, `events::now_ms`) and ULIDs for tasks and executions.

/// A new id for a task or an execution: a ULID from one monotonic generator, so that ids made in
/// the same millisecond still sort in creation order (lists are ordered by id).
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let generated = GENERATOR.lock().ok().and_then(|mut g| g.generate().ok());
    generated.unwrap_or_else(ulid::Ulid::generate).to_string()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    events::now_ms()
}

/// `now_ms` as the wire's and the rows' `i64` times.
pub fn now_ms_i64() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}
