//! Every metric the aggregator exports, with its help text. `register` describes them and sets
//! the counters whose labels are known in advance to zero, so that a fresh aggregator exports
//! them all: a rule over a series that does not exist yet never fires, and a dashboard's panel
//! over one shows "no data" instead of 0.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// The reasons an operator request is refused (`operator_requests_refused_total{reason}`).
pub const REFUSAL_REASONS: &[&str] = &[
    "unsigned",
    "malformed",
    "stale",
    "bad_signature",
    "unknown_operator",
    "replayed",
    "nonce_unavailable",
    "not_assigned",
    "bad_bls_signature",
];

/// Tasks by the letter of their `t:` rows, with the `status` label `tasks{status}` gives them.
pub const TASK_STATUSES: [(char, &str); 6] = [
    ('a', "enabled"),
    ('x', "executing"),
    ('i', "disabled"),
    ('c', "completed"),
    ('f', "failed"),
    ('l', "cancelled"),
];

/// Describes every metric and registers the counters with known labels (at zero, or where they
/// stand), once per process.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(describe_and_register);
}

fn describe_and_register() {
    describe_counter!(
        "grpc_requests_total",
        "gRPC requests answered, by method and status code"
    );
    describe_histogram!(
        "grpc_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a gRPC request (to its headers, for streams), by method"
    );
    describe_counter!(
        "events_appended_total",
        "Events this process appended to the log"
    );
    describe_gauge!(
        "log_events",
        "Events in the log, as the projections have applied them"
    );
    describe_gauge!(
        "projection_lag_events",
        "Events in the log not yet applied by every projection (0 in steady state)"
    );
    describe_gauge!("tasks", "Tasks by status");
    describe_gauge!(
        "store_disk_bytes",
        Unit::Bytes,
        "Bytes the store takes on disk"
    );
    describe_gauge!(
        "log_writer",
        "1 while this process writes the event log (always on fjall; on a replicated log, while it holds the writer's lease)"
    );
    describe_gauge!(
        "store_poisoned",
        "1 when the store refuses writes after a failed commit or fsync (until reopened)"
    );
    describe_counter!(
        "executions_queued_total",
        "Executions queued by this process (firings accepted)"
    );
    describe_counter!(
        "executions_finished_total",
        "Executions this process ran to the end, by outcome"
    );
    describe_gauge!(
        "operators_connected",
        "Operators with an open SyncMessages stream"
    );
    describe_gauge!(
        "operator_connected",
        "1 while the operator has an open SyncMessages stream, by operator"
    );
    describe_gauge!(
        "operator_ping_age_seconds",
        Unit::Seconds,
        "Seconds since the operator's last Ping (since this aggregator started, before the first)"
    );
    describe_gauge!(
        "operator_block_number",
        "The block the operator last reported having seen, by operator"
    );
    describe_gauge!(
        "operator_queue_depth",
        "The operator's reported queue depth, by operator"
    );
    describe_counter!(
        "operator_requests_refused_total",
        "Operator requests refused, by reason"
    );
    describe_counter!(
        "operator_reports_total",
        "Signed firing reports recorded in the log"
    );
    describe_histogram!(
        "operator_bls_batch_size",
        "Reports whose BLS signatures were checked in one batch"
    );
    describe_counter!(
        "operator_messages_sent_total",
        "Messages pushed to operators on SyncMessages, by operation"
    );
    describe_counter!(
        "operator_messages_resent_total",
        "Pushed messages sent again because the operator did not acknowledge them in time"
    );
    describe_gauge!(
        "firings_awaiting_quorum",
        "Firings operators reported over a minute ago (within the last hour) that no quorum attested"
    );
    describe_counter!(
        "grpc_connections_refused_total",
        "gRPC connections closed before serving them (the listener full, a handshake too slow), by reason"
    );
    describe_counter!(
        "operator_cosignatures_total",
        "Operators' cosignatures of a checkpoint received, by whether they were accepted"
    );
    describe_gauge!(
        "tlog_checkpoint_size",
        "Events the latest checkpoint of the transparency log covers"
    );
    describe_gauge!(
        "tlog_checkpoint_cosigned_size",
        "Events the latest checkpoint with the operators' quorum cosignature covers \
         (0 when none of the latest 1000 checkpoints has one)"
    );

    metrics::counter!("events_appended_total").increment(0);
    metrics::counter!("executions_queued_total").increment(0);
    for outcome in ["success", "failed"] {
        metrics::counter!("executions_finished_total", "outcome" => outcome).increment(0);
    }
    for reason in REFUSAL_REASONS {
        metrics::counter!("operator_requests_refused_total", "reason" => *reason).increment(0);
    }
    metrics::counter!("operator_reports_total").increment(0);
    metrics::counter!("operator_messages_resent_total").increment(0);
    for reason in ["max_connections", "handshake_timeout"] {
        metrics::counter!("grpc_connections_refused_total", "reason" => reason).increment(0);
    }
    for accepted in ["true", "false"] {
        metrics::counter!("operator_cosignatures_total", "accepted" => accepted).increment(0);
    }
    metrics::gauge!("operators_connected").increment(0.0);
    metrics::gauge!("firings_awaiting_quorum").increment(0.0);
}
