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

use std::collections::BTreeMap;

use alloy::primitives::Address;
use events::event::{QuorumMet, ReportsDisagreed, TriggerAttested, TriggerReported};
use events::execution::{Firing, FiringSource};
use events::task::TriggerKind;
use events::{Command, Event};
use tonic::Status;

use super::pool::Pool;
use crate::app::App;
use crate::clock::now_ms_i64;
use crate::domain::firing::{self, Refusal};
use crate::engine::{FireError, FireRequest, Fired};
use crate::pb;
use crate::pb::convert;
use crate::rpc::error::{self, Failure};
use crate::store::{Decision, Loaded, Settled};

fn response(
    status: &str,
    message: String,
    row: Option<&projections::tasks::TaskRow>,
) -> pb::NotifyTriggersResp {
    pb::NotifyTriggersResp {
        updated_at: Some(prost_types::Timestamp {
            seconds: now_ms_i64() / 1000,
            nanos: 0,
        }),
        remaining_executions: row.map_or(0, |r| {
            if r.max_execution == 0 {
                -1
            } else {
                r.max_execution - r.execution_count
            }
        }),
        task_still_enabled: row.is_some_and(|r| r.status == projections::tasks::Status::Active),
        status: status.into(),
        message,
    }
}

/// Hands an attested firing to the engine.
pub async fn fire(
    app: &App,
    task_id: &str,
    trigger_request_id: &str,
    attestation: String,
    kind: TriggerKind,
    output: Option<serde_json::Value>,
) -> Result<(&'static str, String), Status> {
    let outcome = app
        .engine
        .fire(FireRequest {
            task_id: task_id.to_owned(),
            actor: "operators".into(),
            firing: Firing {
                dedup_key: trigger_request_id.to_owned(),
                source: FiringSource::Operators { attestation },
                kind,
                output,
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
        Err(FireError::Storage(e)) => return Err(error::storage(e)),
        Err(FireError::Invalid(why)) => {
            return Err(crate::domain::DomainError::invalid(why).into());
        }
        Err(FireError::Contended) => (
            "error",
            "the task changed concurrently; report again".into(),
        ),
    })
}

/// `NotifyTriggers` from an authenticated operator.
pub async fn notify(
    app: &App,
    pool: &Pool,
    operator: Address,
    req: &pb::NotifyTriggersReq,
) -> Result<pb::NotifyTriggersResp, Status> {
    let task_id = req.task_id.trim();
    let request_id = req.trigger_request_id.trim();
    if task_id.is_empty() || !request_id.starts_with(&format!("{task_id}:")) {
        return Err(Status::invalid_argument(
            "trigger_request_id must be <task id>:<slot, block or tx:log>",
        ));
    }
    let (kind, output) = convert::reported_output(req)?;
    if let Some(output) = &output {
        // Reports are recorded as events before any quorum: bound what an operator sends.
        crate::domain::bounds::ValueBounds::values(&app.config.limits)
            .check("the trigger output", output)
            .map_err(|why| Status::from(crate::domain::DomainError::invalid(why)))?;
    }
    let row = app.store.views.task(task_id).map_err(error::storage)?;
    if let Err(refusal) = firing::runnable(row.as_ref(), now_ms_i64()) {
        // An attested firing may have queued the last allowed run: say so rather than refuse.
        if refusal == Refusal::Exhausted
            && app
                .store
                .log
                .idempotent_result(&format!("fire:{request_id}"), events::now_ms())
                .map_err(error::storage)?
                .is_some()
        {
            return Ok(response(
                "deduplicated",
                "already fired".into(),
                row.as_ref(),
            ));
        }
        return Ok(response(refusal.word(), refusal.message(), row.as_ref()));
    }
    let (assigned, total) = pool
        .assignment(task_id)
        .map_err(|e| Status::internal(e.to_string()))?;
    if !assigned.contains_key(&operator) {
        metrics::counter!("operator_requests_refused_total", "reason" => "not_assigned")
            .increment(1);
        return Err(Status::permission_denied(format!(
            "operator {operator:#x} is not assigned to task {task_id}"
        )));
    }
    let public_key = pool
        .public_key(operator)
        .ok_or_else(|| Status::permission_denied("not a registered operator"))?;
    let output_value = output.clone().unwrap_or(serde_json::Value::Null);
    let output_hash =
        attest::output_hash(&output_value).map_err(|e| Status::invalid_argument(e.0))?;
    let digest = attest::firing_digest(app.config.chain_id, task_id, request_id, &output_hash);
    let signed = attest::Signed {
        public_key,
        digest,
        signature: req.bls_signature.clone(),
    };
    pool.verifier.verify(signed).await.map_err(|e| {
        metrics::counter!("operator_requests_refused_total", "reason" => "bad_bls_signature")
            .increment(1);
        Status::unauthenticated(format!(
            "the report's BLS signature does not verify over the firing digest: {e}"
        ))
    })?;

    let stream = events::stream::firing(task_id, request_id);
    let me = format!("{operator:#x}");
    let (numerator, denominator) = pool.quorum();
    let settled = app
        .store
        .decide_and_append(
            |store| {
                let history = store.log.read_stream(&stream)?;
                Ok::<_, Failure>(Loaded {
                    version: history.len() as u64,
                    state: history,
                })
            },
            |loaded| {
                let history = &loaded.state;
                let mut reports: BTreeMap<String, (String, String)> = BTreeMap::new(); // operator → (digest, signature)
                // The attestation's event id, and the firing it attested.
                let mut attested: Option<(String, TriggerKind, Option<serde_json::Value>)> = None;
                let mut disagreement_recorded: Option<BTreeMap<String, Vec<String>>> = None;
                for envelope in history {
                    match &envelope.event {
                        Event::TriggerReported(r) => {
                            reports.insert(
                                r.operator.clone(),
                                (r.digest.clone(), r.bls_signature.clone()),
                            );
                        }
                        Event::TriggerAttested(a) => {
                            attested = Some((envelope.id.to_string(), a.kind, a.output.clone()));
                        }
                        Event::ReportsDisagreed(d) => {
                            disagreement_recorded = Some(d.digests.clone())
                        }
                        _ => {}
                    }
                }
                if let Some((attestation, kind, output)) = attested {
                    return Ok(Decision::Unchanged(Reported::Attested {
                        attestation,
                        kind,
                        output,
                    }));
                }
                let mut new_events: Vec<Event> = Vec::new();
                if !reports.contains_key(&me) {
                    let report = TriggerReported {
                        task_id: task_id.to_owned(),
                        trigger_request_id: request_id.to_owned(),
                        operator: me.clone(),
                        kind,
                        output: output.clone(),
                        digest: hex::encode(digest),
                        bls_signature: hex::encode(&req.bls_signature),
                    };
                    reports.insert(
                        me.clone(),
                        (report.digest.clone(), report.bls_signature.clone()),
                    );
                    new_events.push(report.into());
                }
                // Weight behind each digest, among the assigned operators.
                let mut by_digest: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
                for (who, (d, sig)) in &reports {
                    by_digest
                        .entry(d.clone())
                        .or_default()
                        .push((who.clone(), sig.clone()));
                }
                let weight_of = |who: &str| {
                    who.parse::<Address>()
                        .ok()
                        .and_then(|a| assigned.get(&a))
                        .copied()
                        .unwrap_or(0)
                };
                let winner = by_digest.iter().find(|(_, signers)| {
                    let weight: u64 = signers.iter().map(|(w, _)| weight_of(w)).sum();
                    total > 0
                        && u128::from(weight) * u128::from(denominator)
                            >= u128::from(total) * u128::from(numerator)
                });
                if by_digest.len() > 1 {
                    let digests: BTreeMap<String, Vec<String>> = by_digest
                        .iter()
                        .map(|(d, s)| (d.clone(), s.iter().map(|(w, _)| w.clone()).collect()))
                        .collect();
                    if disagreement_recorded.as_ref() != Some(&digests) {
                        new_events.push(
                            ReportsDisagreed {
                                task_id: task_id.to_owned(),
                                trigger_request_id: request_id.to_owned(),
                                digests,
                            }
                            .into(),
                        );
                    }
                }
                let mut attesting: Option<Option<serde_json::Value>> = None;
                if let Some((winning_digest, signers)) = winner {
                    let (who, signatures): (Vec<String>, Vec<Vec<u8>>) = signers
                        .iter()
                        .filter(|(w, _)| weight_of(w) > 0)
                        .filter_map(|(w, s)| hex::decode(s).ok().map(|s| (w.clone(), s)))
                        .unzip();
                    let aggregate =
                        attest::aggregate(&signatures).map_err(|e| Status::internal(e.0))?;
                    let quorum = QuorumMet {
                        weights: who.iter().map(|w| weight_of(w)).collect(),
                        assigned_weight: total,
                        numerator,
                        denominator,
                    };
                    // The winning digest's output: the report that carried it (this one, or an
                    // earlier).
                    let winning_output = if *winning_digest == hex::encode(digest) {
                        output.clone()
                    } else {
                        history
                            .iter()
                            .find_map(|e| match &e.event {
                                Event::TriggerReported(r) if &r.digest == winning_digest => {
                                    Some(r.output.clone())
                                }
                                _ => None,
                            })
                            .flatten()
                    };
                    new_events.push(
                        TriggerAttested {
                            task_id: task_id.to_owned(),
                            trigger_request_id: request_id.to_owned(),
                            chain_id: app.config.chain_id,
                            kind,
                            output_hash: hex::encode(
                                attest::output_hash(
                                    &winning_output.clone().unwrap_or(serde_json::Value::Null),
                                )
                                .map_err(|e| Status::internal(e.0))?,
                            ),
                            output: winning_output.clone(),
                            digest: winning_digest.clone(),
                            aggregate_signature: hex::encode(aggregate),
                            signers: who,
                            quorum: Some(quorum),
                        }
                        .into(),
                    );
                    attesting = Some(winning_output);
                }
                if new_events.is_empty() {
                    return Ok(Decision::Unchanged(Reported::Waiting));
                }
                let command = Command::new(me.clone(), events::now_ms()).append(
                    stream.clone(),
                    loaded.expected(),
                    new_events,
                );
                Ok(Decision::Append(command, Reported::Recorded { attesting }))
            },
        )
        .await?;
    match settled {
        Settled::Unchanged(Reported::Attested {
            attestation,
            kind,
            output,
        }) => {
            // Handing it to the engine again is harmless (its dedup) and covers a crash between
            // the attestation and the firing.
            let (status, message) =
                fire(app, task_id, request_id, attestation, kind, output).await?;
            let status = if status == "enabled" {
                status
            } else {
                "deduplicated"
            };
            let row = app.store.views.task(task_id).map_err(error::storage)?;
            Ok(response(status, message, row.as_ref()))
        }
        Settled::Unchanged(_) => Ok(response(
            "accepted",
            "already reported; waiting for a quorum".into(),
            row.as_ref(),
        )),
        Settled::Appended(outcome, committed) => {
            metrics::counter!("operator_reports_total").increment(1);
            if let Reported::Recorded {
                attesting: Some(winning_output),
            } = outcome
            {
                let attestation = committed
                    .events
                    .last()
                    .map(|e| e.id.to_string())
                    .unwrap_or_default();
                let (status, message) =
                    fire(app, task_id, request_id, attestation, kind, winning_output).await?;
                let row = app.store.views.task(task_id).map_err(error::storage)?;
                return Ok(response(status, message, row.as_ref()));
            }
            Ok(response(
                "accepted",
                format!(
                    "recorded; {} of the assigned operators' weight needed",
                    describe_quorum(numerator, denominator)
                ),
                row.as_ref(),
            ))
        }
        Settled::Contended => Err(Status::unavailable(
            "reports of this firing keep arriving concurrently; report again",
        )),
    }
}

/// What a report comes to on the firing's stream as loaded.
enum Reported {
    /// A quorum attested the firing before: the attestation's event id and what it attested.
    Attested {
        attestation: String,
        kind: TriggerKind,
        output: Option<serde_json::Value>,
    },
    /// Nothing new to record (this operator reported already; no quorum yet).
    Waiting,
    /// Recorded; with the attested output when this report completed a quorum.
    Recorded {
        attesting: Option<Option<serde_json::Value>>,
    },
}

fn describe_quorum(numerator: u64, denominator: u64) -> String {
    format!("{numerator}/{denominator}")
}

/// Fires the attested firings the engine has not queued (after a crash between the two).
pub async fn refire_pending(app: &App) -> anyhow::Result<()> {
    for pending in app.store.views.pending_attestations()? {
        let (status, _) = fire(
            app,
            &pending.task_id,
            &pending.trigger_request_id,
            pending.attestation.clone(),
            pending.kind,
            pending.output.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(task = %pending.task_id, request = %pending.trigger_request_id, status, "attested firing handed to the engine again");
    }
    Ok(())
}
