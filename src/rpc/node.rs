//! The operators' service (`aggregator.Node`), on the same listener as the client API. Every call
//! is signed by a registered operator (`operators::auth`); an address inside the request must be
//! the signer's.

use std::sync::Arc;

use alloy::primitives::Address;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::app::SharedApp;
use crate::clock::now_ms_i64;
use crate::domain::overload::Overload;
use crate::operators::attestations::{Outcome, Reported};
use crate::operators::auth::RequestAuth;
use crate::operators::pool::{Capabilities, Liveness};
use crate::operators::{OperatorError, Pool, attestations, overload};
use crate::pb;
use crate::pb::convert;
use crate::pb::google::protobuf::BoolValue;
use crate::rpc::error::CosignRefusal;

#[derive(Clone)]
pub struct NodeApi {
    app: SharedApp,
    auth: Arc<RequestAuth>,
}

impl std::fmt::Debug for NodeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeApi")
    }
}

const SERVICE: &str = "/aggregator.Node/";

impl NodeApi {
    pub fn new(app: SharedApp) -> Self {
        let auth = Arc::new(RequestAuth::new(
            app.config.operators.freshness,
            app.started_ms,
            app.pool.nonces.clone(),
            app.pool.refusals.clone(),
        ));
        Self { app, auth }
    }

    fn pool(&self) -> &Pool {
        &self.app.pool
    }

    /// The signing operator, and the request's own address field (if set) must be it. The
    /// request is read at once (see `RequestAuth::check`).
    fn operator<T: prost::Message>(
        &self,
        method: &str,
        request: &Request<T>,
        claimed: &str,
    ) -> impl Future<Output = Result<Address, Status>> + Send + use<'_, T> {
        let pool = self.pool();
        let checked = self
            .auth
            .check(&format!("{SERVICE}{method}"), request, |a| {
                pool.is_member(a)
            });
        let claimed = claimed.trim().to_owned();
        async move {
            let operator = checked.await?;
            if !claimed.is_empty() && claimed.parse::<Address>().ok() != Some(operator) {
                return Err(OperatorError::NotMember(format!(
                    "the request names operator {claimed} but is signed by {operator:#x}"
                ))
                .into());
            }
            Ok(operator)
        }
    }
}

fn now() -> (u64, prost_types::Timestamp) {
    let ms = events::now_ms();
    (
        ms,
        prost_types::Timestamp {
            seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        },
    )
}

/// The reply to a report.
fn notified(outcome: &Outcome) -> pb::NotifyTriggersResp {
    let task = outcome.task.as_ref();
    pb::NotifyTriggersResp {
        updated_at: Some(prost_types::Timestamp {
            seconds: now_ms_i64() / 1000,
            nanos: 0,
        }),
        remaining_executions: task.map_or(0, |r| {
            if r.max_execution == 0 {
                -1
            } else {
                r.max_execution - r.execution_count
            }
        }),
        task_still_enabled: task.is_some_and(|r| r.status == projections::tasks::Status::Active),
        status: outcome.status.into(),
        message: outcome.message.clone(),
    }
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeApi {
    async fn health_check(
        &self,
        request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        let claimed = request.get_ref().operator_address.clone();
        self.operator("HealthCheck", &request, &claimed).await?;
        let healthy = self.app.store.log.poisoned().is_none();
        Ok(Response::new(pb::HealthCheckResponse {
            status: if healthy { "OK" } else { "UNAVAILABLE" }.into(),
            message: if healthy {
                "the aggregator is serving".into()
            } else {
                "the store refuses writes".into()
            },
            timestamp: now().0,
        }))
    }

    async fn ping(
        &self,
        request: Request<pb::Checkin>,
    ) -> Result<Response<pb::CheckinResp>, Status> {
        let claimed = request.get_ref().address.clone();
        let operator = self.operator("Ping", &request, &claimed).await?;
        let peer = request.remote_addr().map(|a| a.ip().to_string());
        let checkin = request.into_inner();
        let status = checkin.status.unwrap_or_default();
        self.pool().ping(
            operator,
            Liveness {
                version: checkin.version,
                block_number: checkin.block_number,
                queue_depth: status.queue_depth,
                uptime_seconds: status.uptime,
                event_count: checkin.event_count,
                last_ping_ms: now().0,
                metrics_port: checkin.metrics_port,
                remote_ip: if checkin.remote_ip.is_empty() {
                    peer.unwrap_or_default()
                } else {
                    checkin.remote_ip
                },
            },
        );
        metrics::gauge!("operator_block_number", "operator" => format!("{operator:#x}"))
            .set(checkin.block_number as f64);
        metrics::gauge!("operator_queue_depth", "operator" => format!("{operator:#x}"))
            .set(status.queue_depth as f64);
        Ok(Response::new(pb::CheckinResp {
            updated_at: Some(now().1),
        }))
    }

    type SyncMessagesStream = ReceiverStream<Result<pb::SyncMessagesResp, Status>>;

    async fn sync_messages(
        &self,
        request: Request<pb::SyncMessagesReq>,
    ) -> Result<Response<Self::SyncMessagesStream>, Status> {
        let claimed = request.get_ref().address.clone();
        let operator = self.operator("SyncMessages", &request, &claimed).await?;
        let capabilities = request.get_ref().capabilities.unwrap_or_default();
        let receiver = self.pool().connect(
            operator,
            Capabilities {
                events: capabilities.event_monitoring,
                blocks: capabilities.block_monitoring,
                time: capabilities.time_monitoring,
            },
        );
        tracing::info!(operator = %operator, "operator connected");
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn ack(
        &self,
        request: Request<pb::AckMessageReq>,
    ) -> Result<Response<BoolValue>, Status> {
        let operator = self.operator("Ack", &request, "").await?;
        let value = self.pool().ack(operator, &request.get_ref().id);
        Ok(Response::new(BoolValue { value }))
    }

    async fn notify_triggers(
        &self,
        request: Request<pb::NotifyTriggersReq>,
    ) -> Result<Response<pb::NotifyTriggersResp>, Status> {
        let claimed = request.get_ref().address.clone();
        let operator = self.operator("NotifyTriggers", &request, &claimed).await?;
        let req = request.into_inner();
        let (kind, output) = convert::reported_output(&req)?;
        let reported = Reported {
            task_id: req.task_id,
            trigger_request_id: req.trigger_request_id,
            kind,
            output,
            bls_signature: req.bls_signature,
        };
        let outcome = attestations::notify(&self.app, self.pool(), operator, reported).await?;
        Ok(Response::new(notified(&outcome)))
    }

    async fn report_event_overload(
        &self,
        request: Request<pb::EventOverloadAlert>,
    ) -> Result<Response<pb::EventOverloadResponse>, Status> {
        let claimed = request.get_ref().operator_address.clone();
        let operator = self
            .operator("ReportEventOverload", &request, &claimed)
            .await?;
        let alert = request.into_inner();
        let overload = Overload {
            block_number: alert.block_number,
            events_detected: alert.events_detected,
            safety_limit: alert.safety_limit,
            query_index: alert.query_index,
        };
        let disabled =
            overload::report(&self.app, self.pool(), operator, &alert.task_id, overload).await?;
        Ok(Response::new(pb::EventOverloadResponse {
            task_cancelled: disabled,
            message: if disabled {
                "the task is disabled: its trigger matched more events per block than its cap"
                    .into()
            } else {
                "recorded; a quorum of the assigned operators (or the aggregator's own count) must confirm it".into()
            },
            timestamp: u64::try_from(now_ms_i64()).unwrap_or(0),
        }))
    }

    async fn cosign_checkpoint(
        &self,
        request: Request<pb::CosignCheckpointReq>,
    ) -> Result<Response<pb::CosignCheckpointResp>, Status> {
        let operator = self.operator("CosignCheckpoint", &request, "").await?;
        let key = self
            .pool()
            .public_key(operator)
            .ok_or(CosignRefusal::NotMember)?;
        let (weights, required) = self.pool().cosign_quorum();
        let req = request.into_inner();
        let app = self.app.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let transparency = &app.transparency;
            let stored = transparency
                .store()
                .checkpoint(req.size)?
                .ok_or(CosignRefusal::NoCheckpoint(req.size))?;
            let (_, _, root) = tlog::checkpoint::read_unverified(&stored)?;
            if root.to_string() != req.root {
                return Err(CosignRefusal::Mismatch(format!(
                    "the checkpoint of {} leaves has root {root}, not {}",
                    req.size, req.root
                )));
            }
            if req.bls_signature.is_empty() {
                if req.signed_size > req.size {
                    return Err(CosignRefusal::Mismatch(format!(
                        "signed_size {} is past the checkpoint's {} leaves",
                        req.signed_size, req.size
                    )));
                }
                let proof = transparency.consistency(req.signed_size, req.size)?;
                return Ok(pb::CosignCheckpointResp {
                    accepted: false,
                    message: format!(
                        "the consistency proof from {} to {} leaves",
                        req.signed_size, req.size
                    ),
                    consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
                });
            }
            let outcome = transparency.cosign(
                req.size,
                operator,
                &key,
                &req.bls_signature,
                &weights,
                required,
            )?;
            Ok(pb::CosignCheckpointResp {
                accepted: true,
                message: match outcome {
                    tlog::issue::Cosigned::Kept { weight, required } => {
                        format!("kept: the cosigners hold weight {weight} of the {required} needed")
                    }
                    tlog::issue::Cosigned::Aggregated { signers, weight } => format!(
                        "the checkpoint carries the cosignature of {signers} operators (weight {weight})"
                    ),
                },
                consistency_proof: Vec::new(),
            })
        })
        .await
        .map_err(|e| CosignRefusal::Stopped(e.to_string()))??;
        metrics::counter!("operator_cosignatures_total", "accepted" => answer.accepted.to_string())
            .increment(1);
        Ok(Response::new(answer))
    }
}
