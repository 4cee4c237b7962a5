//! The client calls that send user operations run on the process that writes the log, so that
//! one bundler account's nonce has one owner: `WithdrawFunds`, and `RunNodeWithInputs` of a
//! write node (`ethTransfer`, `contractWrite`: it sends when it says `is_simulated: false`).
//! On fjall, and on the writer replica, they run here; another replica hands the call, signed
//! in and checked as read-only or not and within its rate, to the writer
//! (`cluster::forward::Calls`, NATS request/reply) and answers what the writer answered: the same
//! response, or the same status with its `x-error-code`.
//!
//! A withdrawal carries its id, taken by the replica that took the call: handed over again
//! (the writer changed, or did not answer in time), it finds what the first attempt did
//! (`withdrawals`: never a second withdrawal). A node's run has no such name, so it is handed
//! over again only when the writer certainly did not take it; otherwise the caller gets
//! `UNAVAILABLE` saying that whether it ran is not known.
//!
//! The call crosses as JSON: the handler's name, the caller, the request's protobuf bytes (hex).

use std::sync::Arc;
use std::time::Duration;

use alloy::hex;
use cluster::forward::{CallHandler, Repeat};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::app::{App, SharedApp};
use crate::pb;
use crate::rpc::error::{self, WireStatus};

/// What one attempt may take beyond the wallet's receipt wait: the build, estimate and journal
/// of each of the submission's attempts.
const ATTEMPT_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    WithdrawFunds {
        owner: String,
        withdrawal_id: String,
        request: String,
    },
    RunNodeWithInputs {
        owner: String,
        request: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// The response's protobuf bytes, hex.
    Response(String),
    Status(WireStatus),
}

fn encode<M: Message>(message: &M) -> String {
    hex::encode(message.encode_to_vec())
}

fn decode<M: Message + Default>(text: &str) -> Result<M, Status> {
    let bytes = hex::decode(text).map_err(|e| error::internal("a call for the writer", e))?;
    M::decode(bytes.as_slice()).map_err(|e| error::internal("a call for the writer", e))
}

/// How long the writer may take over one attempt: a submission waits for its receipt up to
/// `wallet.receipt_timeout` per operation built, twice at most in practice.
fn attempt(app: &App) -> Duration {
    app.config.wallet.receipt_timeout * 2 + ATTEMPT_MARGIN
}

/// Hands `call` to the writer: its answer, or `None` when this process writes.
async fn to_writer<M: Message + Default>(
    app: &App,
    call: &Call,
    repeat: Repeat,
) -> Result<Option<M>, Status> {
    let Some(replica) = app.replica.as_ref() else {
        return Ok(None);
    };
    if replica.leading() {
        return Ok(None);
    }
    let payload =
        serde_json::to_vec(call).map_err(|e| error::internal("a call for the writer", e))?;
    let answered = replica
        .calls()
        .call(payload, attempt(app), repeat)
        .await
        .map_err(error::writer_call)?;
    let Some(answer) = answered else {
        return Ok(None);
    };
    match serde_json::from_slice(&answer)
        .map_err(|e| error::internal("the writer's answer to a call", e))?
    {
        Answer::Response(bytes) => decode(&bytes).map(Some),
        Answer::Status(status) => Err(status.into()),
    }
}

/// `WithdrawFunds` of `owner`, as withdrawal `withdrawal_id`, on the writer.
pub async fn withdraw_funds(
    app: &App,
    owner: &str,
    req: pb::WithdrawFundsReq,
    withdrawal_id: String,
) -> Result<pb::WithdrawFundsResp, Status> {
    let call = Call::WithdrawFunds {
        owner: owner.to_owned(),
        withdrawal_id: withdrawal_id.clone(),
        request: encode(&req),
    };
    match to_writer(app, &call, Repeat::Safe).await? {
        Some(answer) => Ok(answer),
        None => super::wallets::withdraw_funds_as(app, owner, req, &withdrawal_id).await,
    }
}

/// Whether a node may send a user operation when it runs.
fn sends(req: &pb::RunNodeWithInputsReq) -> bool {
    use pb::task_node::TaskType;
    req.node.as_ref().is_some_and(|node| {
        matches!(
            node.task_type,
            Some(TaskType::EthTransfer(_) | TaskType::ContractWrite(_))
        ) || node.r#type == pb::NodeType::EthTransfer as i32
            || node.r#type == pb::NodeType::ContractWrite as i32
    })
}

/// `RunNodeWithInputs` of `owner`: on the writer when the node may send.
pub async fn run_node_with_inputs(
    app: &App,
    owner: &str,
    req: pb::RunNodeWithInputsReq,
) -> Result<pb::RunNodeWithInputsResp, Status> {
    if sends(&req) {
        let call = Call::RunNodeWithInputs {
            owner: owner.to_owned(),
            request: encode(&req),
        };
        if let Some(answer) = to_writer(app, &call, Repeat::Once).await? {
            return Ok(answer);
        }
    }
    super::runs::run_node_as(app, owner, req).await
}

/// Runs the calls the other replicas hand to this one (while it writes the log).
pub fn handler(app: SharedApp) -> CallHandler {
    Arc::new(move |payload: Vec<u8>| {
        let app = app.clone();
        Box::pin(async move {
            let answer = match run(&app, &payload).await {
                Ok(bytes) => Answer::Response(bytes),
                Err(status) => Answer::Status(WireStatus::from(&status)),
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    })
}

async fn run(app: &App, payload: &[u8]) -> Result<String, Status> {
    let call: Call =
        serde_json::from_slice(payload).map_err(|e| error::internal("a call for the writer", e))?;
    match call {
        Call::WithdrawFunds {
            owner,
            withdrawal_id,
            request,
        } => {
            let req = decode(&request)?;
            super::wallets::withdraw_funds_as(app, &owner, req, &withdrawal_id)
                .await
                .map(|r| encode(&r))
        }
        Call::RunNodeWithInputs { owner, request } => {
            let req = decode(&request)?;
            super::runs::run_node_as(app, &owner, req)
                .await
                .map(|r| encode(&r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_crosses_unchanged() {
        // Given a refusal with its contract code
        let status: Status = crate::domain::DomainError::FailedPrecondition(
            "insufficient balance".into(),
            crate::domain::Code::InsufficientBalance,
        )
        .into();
        // When it crosses to another replica as the answer of a call
        let answer = serde_json::to_vec(&Answer::Status(WireStatus::from(&status))).unwrap();
        let Answer::Status(wire) = serde_json::from_slice(&answer).unwrap() else {
            panic!("not a status");
        };
        let back: Status = wire.into();
        // Then it is the same status
        assert_eq!(back.code(), status.code());
        assert_eq!(back.message(), status.message());
        assert_eq!(
            back.metadata().get("x-error-code").unwrap(),
            status.metadata().get("x-error-code").unwrap()
        );
    }

    #[test]
    fn a_request_crosses_unchanged() {
        let req = pb::WithdrawFundsReq {
            recipient_address: "0x71".into(),
            amount: "max".into(),
            token: "ETH".into(),
            smart_wallet_address: "0xbb".into(),
        };
        let call = Call::WithdrawFunds {
            owner: "0xaa".into(),
            withdrawal_id: "01J".into(),
            request: encode(&req),
        };
        let text = serde_json::to_vec(&call).unwrap();
        let Call::WithdrawFunds { request, .. } = serde_json::from_slice(&text).unwrap() else {
            panic!("another call");
        };
        assert_eq!(decode::<pb::WithdrawFundsReq>(&request).unwrap(), req);
    }
}
