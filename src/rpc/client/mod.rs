//! The client API (`aggregator.Aggregator`), one file per area; each handler reads top-down:
//! who is calling, the request as domain values, the rules, the events appended, the response.
//!
//! - `signin`: `GetSignatureFormat`, `GetKey`, `RevokeApiKey`;
//! - `wallets`: `GetWallet`, `SetWallet`, `ListWallets`, `GetNonce`, `WithdrawFunds`;
//! - `tasks`: `CreateTask`, `GetTask`, `ListTasks`, `SetTaskEnabled`, `CancelTask`, `DeleteTask`,
//!   `GetWorkflowCount`;
//! - `executions`: `ListExecutions`, `GetExecution`, `GetExecutionStatus`, `GetExecutionCount`,
//!   `GetExecutionStats`, `TriggerTask`;
//! - `secrets`: `CreateSecret`, `UpdateSecret`, `DeleteSecret`, `ListSecrets`;
//! - `runs`: `RunTrigger`, `RunNodeWithInputs`, `SimulateTask`, `GetTokenMetadata`, `EstimateFees`;
//! - `on_writer`: the calls that send user operations, run on the replica that writes the log.

mod executions;
pub mod on_writer;
mod runs;
mod secrets;
mod signin;
mod tasks;
mod wallets;

use tonic::{Request, Response, Status};

use crate::app::SharedApp;
use crate::pb;

/// The service: every method delegates to its area's handler.
#[derive(Debug, Clone)]
pub struct ClientApi {
    app: SharedApp,
}

impl ClientApi {
    pub fn new(app: SharedApp) -> Self {
        Self { app }
    }
}

macro_rules! delegate {
    ($($method:ident($request:ty) -> $response:ty => $handler:path;)*) => {
        #[tonic::async_trait]
        impl pb::aggregator_server::Aggregator for ClientApi {
            $(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    $handler(&self.app, request).await.map(Response::new)
                }
            )*
        }
    };
}

delegate! {
    get_signature_format(pb::GetSignatureFormatReq) -> pb::GetSignatureFormatResp => signin::get_signature_format;
    get_key(pb::GetKeyReq) -> pb::KeyResp => signin::get_key;
    revoke_api_key(pb::RevokeApiKeyReq) -> pb::RevokeApiKeyResp => signin::revoke_api_key;
    get_nonce(pb::NonceRequest) -> pb::NonceResp => wallets::get_nonce;
    get_wallet(pb::GetWalletReq) -> pb::GetWalletResp => wallets::get_wallet;
    set_wallet(pb::SetWalletReq) -> pb::GetWalletResp => wallets::set_wallet;
    list_wallets(pb::ListWalletReq) -> pb::ListWalletResp => wallets::list_wallets;
    withdraw_funds(pb::WithdrawFundsReq) -> pb::WithdrawFundsResp => wallets::withdraw_funds;
    create_task(pb::CreateTaskReq) -> pb::CreateTaskResp => tasks::create_task;
    get_task(pb::IdReq) -> pb::Task => tasks::get_task;
    list_tasks(pb::ListTasksReq) -> pb::ListTasksResp => tasks::list_tasks;
    set_task_enabled(pb::SetTaskEnabledReq) -> pb::SetTaskEnabledResp => tasks::set_task_enabled;
    cancel_task(pb::IdReq) -> pb::CancelTaskResp => tasks::cancel_task;
    delete_task(pb::IdReq) -> pb::DeleteTaskResp => tasks::delete_task;
    get_workflow_count(pb::GetWorkflowCountReq) -> pb::GetWorkflowCountResp => tasks::get_workflow_count;
    list_executions(pb::ListExecutionsReq) -> pb::ListExecutionsResp => executions::list_executions;
    get_execution(pb::ExecutionReq) -> pb::Execution => executions::get_execution;
    get_execution_status(pb::ExecutionReq) -> pb::ExecutionStatusResp => executions::get_execution_status;
    get_execution_count(pb::GetExecutionCountReq) -> pb::GetExecutionCountResp => executions::get_execution_count;
    get_execution_stats(pb::GetExecutionStatsReq) -> pb::GetExecutionStatsResp => executions::get_execution_stats;
    trigger_task(pb::TriggerTaskReq) -> pb::TriggerTaskResp => executions::trigger_task;
    create_secret(pb::CreateOrUpdateSecretReq) -> pb::CreateSecretResp => secrets::create_secret;
    update_secret(pb::CreateOrUpdateSecretReq) -> pb::UpdateSecretResp => secrets::update_secret;
    delete_secret(pb::DeleteSecretReq) -> pb::DeleteSecretResp => secrets::delete_secret;
    list_secrets(pb::ListSecretsReq) -> pb::ListSecretsResp => secrets::list_secrets;
    run_trigger(pb::RunTriggerReq) -> pb::RunTriggerResp => runs::run_trigger;
    run_node_with_inputs(pb::RunNodeWithInputsReq) -> pb::RunNodeWithInputsResp => runs::run_node_with_inputs;
    simulate_task(pb::SimulateTaskReq) -> pb::Execution => runs::simulate_task;
    get_token_metadata(pb::GetTokenMetadataReq) -> pb::GetTokenMetadataResp => runs::get_token_metadata;
    estimate_fees(pb::EstimateFeesReq) -> pb::EstimateFeesResp => runs::estimate_fees;
}
