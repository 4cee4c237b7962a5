//! Runs without persisting anything: `RunTrigger`, `RunNodeWithInputs`, `SimulateTask`; and
//! `GetTokenMetadata`, `EstimateFees`.

use tonic::{Request, Status};

use crate::app::App;
use crate::pb;
use crate::rpc::calls;

pub async fn run_trigger(
    app: &App,
    request: Request<pb::RunTriggerReq>,
) -> Result<pb::RunTriggerResp, Status> {
    calls::caller(app, &request)?;
    Err(Status::unimplemented(
        "RunTrigger needs the task engine, not available yet",
    ))
}

pub async fn run_node_with_inputs(
    app: &App,
    request: Request<pb::RunNodeWithInputsReq>,
) -> Result<pb::RunNodeWithInputsResp, Status> {
    calls::caller(app, &request)?;
    Err(Status::unimplemented(
        "RunNodeWithInputs needs the task engine, not available yet",
    ))
}

pub async fn simulate_task(
    app: &App,
    request: Request<pb::SimulateTaskReq>,
) -> Result<pb::Execution, Status> {
    calls::caller(app, &request)?;
    Err(Status::unimplemented(
        "SimulateTask needs the task engine, not available yet",
    ))
}

pub async fn get_token_metadata(
    app: &App,
    request: Request<pb::GetTokenMetadataReq>,
) -> Result<pb::GetTokenMetadataResp, Status> {
    calls::caller(app, &request)?;
    Err(Status::unimplemented(
        "GetTokenMetadata comes with the task engine, not available yet",
    ))
}

pub async fn estimate_fees(
    app: &App,
    request: Request<pb::EstimateFeesReq>,
) -> Result<pb::EstimateFeesResp, Status> {
    calls::caller(app, &request)?;
    Err(Status::unimplemented(
        "EstimateFees prices ERC-4337 user operations: it comes with on-chain execution, not yet available",
    ))
}
