//! Signed reports of firings (`NotifyTriggers`), aggregated until a quorum of the assigned
//! operators agrees on one digest; then the firing goes to the engine's single entry point.
//!
//! For each report: the operator is assigned to the task, its BLS signature over the firing
//! digest verifies, and the report is recorded (`TriggerReported`, stream
//! `firing:<task>:<trigger request id>`). When the operators that signed one digest hold a quorum
//! of the assigned operators' weight, the same command records `TriggerAttested` with the
//! aggregate signature and the signers; the firing (dedup key = the trigger request id) then
//! goes to the engine, which queues it once whatever the number of reports or restarts. Reports
//! that disagree are recorded (`ReportsDisagreed`) and run nothing unless a quorum forms on one
//! digest. Later reports of an attested firing are answered `deduplicated`.
//!
//! The rules (the fold of the stream, the quorum) are `domain::attestation`; this file checks
//! the report, reads and appends, and calls the engine.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use events::Command;
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;
use projections::tasks::TaskRow;

use super::pool::Pool;
use super::{OperatorError, OperatorResult};
use crate::app::App;
use crate::clock::now_ms_i64;
use crate::domain::attestation::{self, Attested, Quorum, Report};
use crate::domain::firing::{self, Refusal};
use crate::engine::{FireError, FireRequest, Fired};
use crate::store::{Decision, Loaded, Settled};

/// A report as an operator sent it (`NotifyTriggersReq`, off the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub task_id: String,
    pub trigger_request_id: String,
    pub kind: TriggerKind,
    pub output: Option<serde_json::Value>,
    pub bls_signature: Vec<u8>,
}

/// What a report came to: the outcome word and sentence, and the task as it stands.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: &'static str,
    pub message: String,
    pub task: Option<TaskRow>,
}

fn outcome(status: &'static str, message: String, task: Option<TaskRow>) -> Outcome {
    Outcome {
        status,
        message,
        task,
    }
}

/// Hands an attested firing to the engine.
pub async fn fire(
    app: &App,
    task_id: &str,
    trigger_request_id: &str,
    attested: Attested,
) -> OperatorResult<(&'static str, String)> {
    let outcome = app
        .engine
        .fire(FireRequest {
            task_id: task_id.to_owned(),
            actor: "operators".into(),
            firing: Firing {
                dedup_key: trigger_request_id.to_owned(),
                source: FiringSource::Operators {
                    attestation: attested.attestation,
                },
                kind: attested.kind,
                output: attested.output,
                input: Default::default(),
            },
            window_ms: None,
        })
        .await;
    Ok(match outcome {
        Ok(Fired::Queued { execution_id }) => (
            "enabled",
            format!("attested: execution {execution_id} queued"),
        ),
        Ok(Fired::Deduplicated { execution_id }) => (
            "deduplicated",
            format!("already fired: execution {execution_id}"),
        ),
        Err(FireError::Refused(refusal)) => (refusal.word(), refusal.message()),
        Err(FireError::Storage(e)) => return Err(e.into()),
        Err(FireError::Invalid(why)) => {
            return Err(crate::domain::DomainError::invalid(why).into());
        }
        Err(FireError::Contended) => (
            "error",
            "the task changed concurrently; report again".into(),
        ),
    })
}

/// `NotifyTriggers` from an authenticated operator: the report checked, then decided on and
/// recorded, then an attested firing handed to the engine.
pub async fn notify(
    app: &App,
    pool: &Pool,
    operator: Address,
    reported: Reported,
) -> OperatorResult<Outcome> {
    let (report, task, assigned) = match check(app, pool, operator, reported).await? {
        Checked::Report(report, task, assigned) => (report, task, assigned),
        Checked::Answered(outcome) => return Ok(outcome),
    };
    let stream = events::stream::firing(&report.task_id, &report.trigger_request_id);
    let (numerator, denominator) = pool.quorum();
    let quorum = Quorum {
        numerator,
        denominator,
    };
    let settled = app
        .store
        .decide_and_append(
            |store| {
                let history = store.log.read_stream(&stream)?;
                Ok::<_, OperatorError>(Loaded {
                    version: history.len() as u64,
                    state: attestation::fold(&history),
                })
            },
            |loaded| {
                let decision = attestation::decide(
                    &loaded.state,
                    &report,
                    &assigned,
                    quorum,
                    app.config.chain_id,
                )
                .map_err(OperatorError::Internal)?;
                Ok(match decision {
                    attestation::Decision::AlreadyAttested(attested) => {
                        Decision::Unchanged(Next::Fire(attested))
                    }
                    attestation::Decision::Waiting => Decision::Unchanged(Next::Wait),
                    attestation::Decision::Record { events, attesting } => {
                        let command = Command::new(format!("{operator:#x}"), events::now_ms())
                            .append(stream.clone(), loaded.expected(), events);
                        Decision::Append(command, Next::Recorded(attesting))
                    }
                })
            },
        )
        .await?;
    match settled {
        Settled::Unchanged(Next::Fire(attested)) => {
            // Handing it to the engine again is harmless (its dedup) and covers a crash between
            // the attestation and the firing.
            let (status, message) =
                fire(app, &report.task_id, &report.trigger_request_id, attested).await?;
            let status = if status == "enabled" {
                status
            } else {
                "deduplicated"
            };
            Ok(outcome(
                status,
                message,
                app.store.views.task(&report.task_id)?,
            ))
        }
        Settled::Unchanged(_) => Ok(outcome(
            "accepted",
            "already reported; waiting for a quorum".into(),
            task,
        )),
        Settled::Appended(Next::Recorded(Some(output)), committed) => {
            metrics::counter!("operator_reports_total").increment(1);
            let attested = Attested {
                attestation: committed
                    .events
                    .last()
                    .map(|e| e.id.to_string())
                    .unwrap_or_default(),
                kind: report.kind,
                output,
            };
            let (status, message) =
                fire(app, &report.task_id, &report.trigger_request_id, attested).await?;
            Ok(outcome(
                status,
                message,
                app.store.views.task(&report.task_id)?,
            ))
        }
        Settled::Appended(_, _) => {
            metrics::counter!("operator_reports_total").increment(1);
            Ok(outcome(
                "accepted",
                format!("recorded; {quorum} of the assigned operators' weight needed"),
                task,
            ))
        }
        Settled::Contended => Err(OperatorError::Contended),
    }
}

/// What follows the decision.
enum Next {
    /// Attested before: hand it to the engine again.
    Fire(Attested),
    /// Nothing new was recorded.
    Wait,
    /// Recorded; with the attested output when this report completed a quorum.
    Recorded(Option<Option<serde_json::Value>>),
}

/// A report that passed the checks (with the task and the assigned operators' weights), or the
/// answer to one that needs no decision.
enum Checked {
    Report(Report, Option<TaskRow>, BTreeMap<Address, u64>),
    Answered(Outcome),
}

/// The checks before a report is decided on: well-formed and bounded, the task may run, the
/// operator is assigned to it, its BLS signature verifies over the firing digest.
async fn check(
    app: &App,
    pool: &Pool,
    operator: Address,
    reported: Reported,
) -> OperatorResult<Checked> {
    let task_id = reported.task_id.trim().to_owned();
    let request_id = reported.trigger_request_id.trim().to_owned();
    if task_id.is_empty() || !request_id.starts_with(&format!("{task_id}:")) {
        return Err(OperatorError::Malformed(
            "trigger_request_id must be <task id>:<slot, block or tx:log>".into(),
        ));
    }
    if let Some(output) = &reported.output {
        // Reports are recorded as events before any quorum: bound what an operator sends.
        crate::domain::bounds::ValueBounds::values(&app.config.limits)
            .check("the trigger output", output)
            .map_err(|why| OperatorError::from(crate::domain::DomainError::invalid(why)))?;
    }
    let row = app.store.views.task(&task_id)?;
    if let Err(refusal) = firing::runnable(row.as_ref(), now_ms_i64()) {
        // An attested firing may have queued the last allowed run: say so rather than refuse.
        if refusal == Refusal::Exhausted
            && app
                .store
                .log
                .idempotent_result(&format!("fire:{request_id}"), events::now_ms())?
                .is_some()
        {
            return Ok(Checked::Answered(outcome(
                "deduplicated",
                "already fired".into(),
                row,
            )));
        }
        return Ok(Checked::Answered(outcome(
            refusal.word(),
            refusal.message(),
            row,
        )));
    }
    let (assigned, _) = pool
        .assignment(&task_id)
        .map_err(|e| OperatorError::Internal(e.to_string()))?;
    if !assigned.contains_key(&operator) {
        metrics::counter!("operator_requests_refused_total", "reason" => "not_assigned")
            .increment(1);
        return Err(OperatorError::NotAssigned { operator, task_id });
    }
    let public_key = pool
        .public_key(operator)
        .ok_or_else(|| OperatorError::NotMember("not a registered operator".into()))?;
    let output_value = reported.output.clone().unwrap_or(serde_json::Value::Null);
    let output_hash =
        attest::output_hash(&output_value).map_err(|e| OperatorError::Malformed(e.0))?;
    let digest = attest::firing_digest(app.config.chain_id, &task_id, &request_id, &output_hash);
    let signed = attest::Signed {
        public_key,
        digest,
        signature: reported.bls_signature.clone(),
    };
    pool.verifier.verify(signed).await.map_err(|e| {
        metrics::counter!("operator_requests_refused_total", "reason" => "bad_bls_signature")
            .increment(1);
        OperatorError::BadSignature(e.to_string())
    })?;
    let report = Report {
        task_id,
        trigger_request_id: request_id,
        operator,
        kind: reported.kind,
        output: reported.output,
        digest,
        bls_signature: reported.bls_signature,
    };
    Ok(Checked::Report(report, row, assigned))
}

/// Fires the attested firings the engine has not queued (after a crash between the two).
pub async fn refire_pending(app: &App) -> anyhow::Result<()> {
    for pending in app.store.views.pending_attestations()? {
        let attested = Attested {
            attestation: pending.attestation.clone(),
            kind: pending.kind,
            output: pending.output.clone(),
        };
        let (status, _) = fire(app, &pending.task_id, &pending.trigger_request_id, attested)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(task = %pending.task_id, request = %pending.trigger_request_id, status, "attested firing handed to the engine again");
    }
    Ok(())
}
