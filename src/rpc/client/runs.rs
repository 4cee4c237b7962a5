//! Runs without persisting anything: `RunTrigger`, `RunNodeWithInputs`, `SimulateTask` (rate
//! limited per caller: they run arbitrary code and requests); and `GetTokenMetadata`,
//! `EstimateFees`.

use events::task::{NodeKind, TriggerKind};
use tonic::{Request, Status};

use crate::app::App;
use crate::auth::Caller;
use crate::clock::now_ms_i64;
use crate::domain::{Code, DomainError, task};
use crate::engine::sandbox;
use crate::pb;
use crate::pb::convert;
use crate::rpc::{calls, error};

fn may_run(app: &App, caller: &Caller) -> Result<(), Status> {
    if app.limiter.allow_run(&caller.owner) {
        Ok(())
    } else {
        Err(error::rate_limited(
            "runs (RunTrigger, RunNodeWithInputs, SimulateTask)",
        ))
    }
}

fn trigger_output(kind: TriggerKind, data: prost_types::Value) -> pb::run_trigger_resp::OutputData {
    use pb::run_trigger_resp::OutputData as O;
    let data = Some(data);
    match kind {
        TriggerKind::Manual => O::ManualTrigger(pb::manual_trigger::Output { data }),
        TriggerKind::FixedTime => O::FixedTimeTrigger(pb::fixed_time_trigger::Output { data }),
        TriggerKind::Cron => O::CronTrigger(pb::cron_trigger::Output { data }),
        TriggerKind::Block => O::BlockTrigger(pb::block_trigger::Output { data }),
        TriggerKind::Event => O::EventTrigger(pb::event_trigger::Output { data }),
    }
}

/// The `execution_context` the original answers: nothing simulated, the chain's RPC, the chain.
fn execution_context(app: &App, simulated: bool) -> prost_types::Value {
    convert::value_from_json(&crate::engine::run::execution_context(
        simulated,
        app.config.chain_id,
    ))
}

/// `RunTrigger`: what the trigger would fire with now. As the original, a trigger that does not
/// validate, or that finds nothing (an event search without a match), is answered in-band:
/// `success: false` with the error, its code and, for a search, what was searched.
pub async fn run_trigger(
    app: &App,
    request: Request<pb::RunTriggerReq>,
) -> Result<pb::RunTriggerResp, Status> {
    // It runs code and requests with the owner's secrets: a read-only key may not.
    let caller = calls::writer(app, &request)?;
    may_run(app, &caller)?;
    let req = request.into_inner();
    let context = execution_context(app, false);
    let refused = |e: DomainError| pb::RunTriggerResp {
        success: false,
        error: e.to_string(),
        error_code: domain_code(&e) as i32,
        execution_context: Some(context.clone()),
        ..Default::default()
    };
    let prepared = (|| {
        let trigger = req.trigger.as_ref().ok_or_else(|| {
            DomainError::Invalid(
                "the request has no trigger".into(),
                Code::MissingRequiredField,
            )
        })?;
        let mut trigger = convert::trigger_from_pb(trigger)?;
        // A trigger previewed on its own needs no id or name of its own.
        if trigger.name.is_empty() {
            trigger.name = "trigger".into();
        }
        if trigger.id.is_empty() {
            trigger.id = "trigger".into();
        }
        let input = convert::json_map_from_values(&req.trigger_input)?;
        task::prepare_trigger(&mut trigger, &input)?;
        task::validate_lone_trigger(&trigger, &app.config.limits)?;
        Ok::<_, DomainError>(trigger)
    })();
    let trigger = match prepared {
        Ok(trigger) => trigger,
        Err(e) => return Ok(refused(e)),
    };
    Ok(match app.engine.run_trigger(&trigger, false).await {
        Ok(run) => pb::RunTriggerResp {
            success: true,
            output_data: Some(trigger_output(
                run.kind,
                convert::value_from_json(&run.output),
            )),
            metadata: run.metadata.as_ref().map(convert::value_from_json),
            execution_context: Some(context),
            ..Default::default()
        },
        Err(failure) => pb::RunTriggerResp {
            success: false,
            error: failure.error,
            error_code: failure.code as i32,
            metadata: failure.metadata.as_ref().map(convert::value_from_json),
            execution_context: Some(context),
            ..Default::default()
        },
    })
}

fn node_output(
    kind: NodeKind,
    data: Option<prost_types::Value>,
) -> pb::run_node_with_inputs_resp::OutputData {
    use pb::run_node_with_inputs_resp::OutputData as O;
    match kind {
        NodeKind::EthTransfer => O::EthTransfer(pb::eth_transfer_node::Output { data }),
        NodeKind::ContractWrite => O::ContractWrite(pb::contract_write_node::Output { data }),
        NodeKind::ContractRead => O::ContractRead(pb::contract_read_node::Output { data }),
        NodeKind::GraphqlQuery => O::Graphql(pb::graph_ql_query_node::Output { data }),
        NodeKind::RestApi => O::RestApi(pb::rest_api_node::Output { data }),
        NodeKind::CustomCode => O::CustomCode(pb::custom_code_node::Output { data }),
        NodeKind::Branch => O::Branch(pb::branch_node::Output { data }),
        NodeKind::Filter => O::Filter(pb::filter_node::Output { data }),
        NodeKind::Loop => O::Loop(pb::loop_node::Output { data }),
        NodeKind::Balance => O::Balance(pb::balance_node::Output { data }),
    }
}

/// The `executionContext` of a write run by `RunNodeWithInputs`: the chain, whether it was
/// simulated, and by what.
fn write_context(
    app: &App,
    write: &crate::engine::nodes::write::WriteRun,
) -> Option<prost_types::Value> {
    let metadata = write.metadata.as_ref()?;
    let simulated = metadata
        .get("simulated")
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    let provider = if simulated {
        "eth_call"
    } else if app.config.wallet.bundler_url.is_some() {
        "bundler"
    } else {
        "self_bundler"
    };
    Some(convert::value_from_json(&serde_json::json!({
        "chainId": app.config.chain_id,
        "isSimulated": simulated,
        "provider": provider,
    })))
}

pub async fn run_node_with_inputs(
    app: &App,
    request: Request<pb::RunNodeWithInputsReq>,
) -> Result<pb::RunNodeWithInputsResp, Status> {
    // It runs code and requests with the owner's secrets: a read-only key may not.
    let caller = calls::writer(app, &request)?;
    may_run(app, &caller)?;
    super::on_writer::run_node_with_inputs(app, &caller.owner, request.into_inner()).await
}

/// `RunNodeWithInputs` for `owner` (signed in, not read-only, within its rate of runs); a
/// write node that sends runs on the process that writes the log (`on_writer`).
pub async fn run_node_as(
    app: &App,
    owner: &str,
    req: pb::RunNodeWithInputsReq,
) -> Result<pb::RunNodeWithInputsResp, Status> {
    let node = req.node.as_ref().ok_or_else(|| {
        DomainError::Invalid("the request has no node".into(), Code::MissingRequiredField)
    })?;
    let mut node = convert::node_from_pb(node)?;
    if node.id.is_empty() {
        node.id = "node".into();
    }
    // As the original, where the chain is read and that nothing was simulated.
    let context = execution_context(app, false);
    // A node that does not validate is answered in-band, with its error code, as the original.
    if let Err(e) = task::validate_lone_node(&node, &app.config.limits) {
        return Ok(pb::RunNodeWithInputsResp {
            success: false,
            error: e.to_string(),
            error_code: domain_code(&e) as i32,
            execution_context: Some(context),
            ..Default::default()
        });
    }
    let kind = node.config.as_ref().map(|c| c.kind()).ok_or_else(|| {
        DomainError::Invalid(
            "the node has no configuration".into(),
            Code::MissingRequiredField,
        )
    })?;
    let input = convert::json_map_from_values(&req.input_variables)?;
    Ok(
        // Its scripts count to the caller's share of the sandbox.
        match sandbox::as_owner(owner, app.engine.run_node_full(owner, &node, &input)).await {
            Ok(write) => pb::RunNodeWithInputsResp {
                success: true,
                output_data: Some(node_output(
                    kind,
                    Some(convert::value_from_json(&write.run.output)),
                )),
                execution_context: write_context(app, &write).or(Some(context)),
                // The node's own metadata where it has one (a write's, a contract read's
                // per-call results, as the original answers them), else its log.
                metadata: match write.metadata.as_ref().or(write.run.metadata.as_ref()) {
                    Some(metadata) => Some(convert::value_from_json(metadata)),
                    None => (!write.run.log.is_empty()).then(|| {
                        convert::value_from_json(&serde_json::json!({ "log": write.run.log }))
                    }),
                },
                ..Default::default()
            },
            Err(e) => pb::RunNodeWithInputsResp {
                success: false,
                execution_context: Some(context),
                error: e.message,
                error_code: e.code as i32,
                metadata: e.metadata.as_ref().map(convert::value_from_json),
                output_data: e
                    .output
                    .map(|o| node_output(kind, Some(convert::value_from_json(&o)))),
            },
        },
    )
}

/// The contract's error code of a refusal.
fn domain_code(e: &crate::domain::DomainError) -> pb::ErrorCode {
    use crate::domain::DomainError as D;
    match e {
        D::Invalid(_, code)
        | D::NotFound(_, code)
        | D::FailedPrecondition(_, code)
        | D::AlreadyExists(_, code) => error::wire_code(*code),
        D::PermissionDenied(_) => pb::ErrorCode::Forbidden,
        D::QuotaExceeded(_) => pb::ErrorCode::QuotaExceeded,
    }
}

/// `SimulateTask`: the definition run in memory under a new execution id (a ULID, as the
/// original's), nothing recorded. As the original, what is wrong with the definition is answered
/// in the execution, not as a gRPC error: a node whose config is invalid is a failed step with
/// its error code (its successors still run, so the run is a partial success); a trigger or a
/// graph that cannot run is a failed execution.
pub async fn simulate_task(
    app: &App,
    request: Request<pb::SimulateTaskReq>,
) -> Result<pb::Execution, Status> {
    // It runs code and requests with the owner's secrets: a read-only key may not.
    let caller = calls::writer(app, &request)?;
    may_run(app, &caller)?;
    let req = request.into_inner();
    let execution_id = crate::clock::new_id();
    let started = now_ms_i64();
    let create = pb::CreateTaskReq {
        trigger: req.trigger,
        nodes: req.nodes,
        edges: req.edges,
        input_variables: req.input_variables,
        ..Default::default()
    };
    let prepared = (|| {
        let mut definition = convert::definition_from_create(&create)?;
        definition.name = task::identity(&definition.input_variables, "", "")
            .map(|i| i.name)
            .unwrap_or_else(|_| "simulation".into());
        task::prepare(&mut definition)?;
        let refused = task::validate_simulation(&definition, &app.config.limits)?;
        Ok::<_, DomainError>((definition, refused))
    })();
    let (definition, refused) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            return Ok(pb::Execution {
                id: execution_id,
                start_at: started,
                end_at: now_ms_i64(),
                status: pb::ExecutionStatus::Failed as i32,
                error: e.to_string(),
                ..Default::default()
            });
        }
    };
    let refused = refused
        .into_iter()
        .map(|(id, e)| {
            let code = domain_code(&e) as i32;
            (id, (e.to_string(), code))
        })
        .collect();
    let simulation = app
        .engine
        .simulate(&caller.owner, &definition, refused, &execution_id);
    // Its scripts count to the caller's share of the sandbox.
    let ended = sandbox::as_owner(&caller.owner, simulation)
        .await
        .map_err(error::storage)?;
    Ok(pb::Execution {
        id: execution_id,
        start_at: started,
        end_at: now_ms_i64(),
        status: match ended.outcome {
            events::execution::ExecutionOutcome::Success => pb::ExecutionStatus::Success,
            events::execution::ExecutionOutcome::Failed => pb::ExecutionStatus::Failed,
            events::execution::ExecutionOutcome::PartialSuccess => {
                pb::ExecutionStatus::PartialSuccess
            }
        } as i32,
        error: ended.error,
        index: 0,
        steps: convert::ran_steps_to_pb(&ended.steps),
        ..Default::default()
    })
}

pub async fn get_token_metadata(
    app: &App,
    request: Request<pb::GetTokenMetadataReq>,
) -> Result<pb::GetTokenMetadataResp, Status> {
    calls::caller(app, &request)?;
    let address = crate::address::parse_address("address", &request.into_inner().address)?;
    let found = app
        .token_directory
        .lookup(app.chain.as_ref(), address)
        .await
        .map_err(|e| error::upstream("reading the token's metadata", e))?;
    Ok(match found {
        Some((metadata, source)) => pb::GetTokenMetadataResp {
            token: Some(pb::TokenMetadata {
                // Lower case, as the original answers (clients compare it with `toLowerCase()`).
                id: format!("{:#x}", metadata.address),
                name: metadata.name,
                symbol: metadata.symbol,
                decimals: u32::from(metadata.decimals),
            }),
            found: true,
            source: source.name().into(),
        },
        None => pb::GetTokenMetadataResp {
            token: None,
            found: false,
            source: if app.chain.is_some() {
                "rpc".into()
            } else {
                "none: no chain configured".into()
            },
        },
    })
}

pub async fn estimate_fees(
    app: &App,
    request: Request<pb::EstimateFeesReq>,
) -> Result<pb::EstimateFeesResp, Status> {
    let caller = calls::caller(app, &request)?;
    let req = request.into_inner();
    let create = pb::CreateTaskReq {
        trigger: req.trigger,
        nodes: req.nodes,
        edges: req.edges,
        input_variables: req.input_variables,
        ..Default::default()
    };
    let definition = convert::definition_from_create(&create)?;
    let fees = &app.config.fees;
    let estimate = match app
        .engine
        .estimate_fees(&caller.owner, &definition, req.runner.trim(), fees)
        .await
    {
        Ok(estimate) => estimate,
        Err(e) => {
            let code = match e {
                crate::engine::fees::FeeError::Store(e) => return Err(error::storage(e)),
                crate::engine::fees::FeeError::Chain(detail) => {
                    tracing::warn!(%detail, "a fee estimate could not read the chain");
                    return Ok(pb::EstimateFeesResp {
                        success: false,
                        error: "reading the chain failed; retry later".into(),
                        error_code: pb::ErrorCode::RpcNodeError as i32,
                        ..Default::default()
                    });
                }
                crate::engine::fees::FeeError::NoChain => pb::ErrorCode::RpcNodeError,
                _ => pb::ErrorCode::SmartWalletNotFound,
            };
            return Ok(pb::EstimateFeesResp {
                success: false,
                error: format!("Failed to resolve runner address: {e}"),
                error_code: code as i32,
                ..Default::default()
            });
        }
    };
    let fee = |amount: String, unit: &str| pb::Fee {
        amount,
        unit: unit.into(),
    };
    Ok(pb::EstimateFeesResp {
        success: estimate.success,
        error: estimate.error,
        error_code: if estimate.success {
            pb::ErrorCode::Unspecified
        } else {
            pb::ErrorCode::InvalidRequest
        } as i32,
        chain_id: estimate.chain_id.to_string(),
        native_token: Some(pb::NativeToken {
            symbol: estimate.native_symbol,
            decimals: 18,
        }),
        execution_fee: Some(fee(estimate.execution_fee_usd, "USD")),
        cogs: estimate
            .cogs
            .into_iter()
            .map(|c| pb::NodeCogs {
                node_id: c.node_id,
                cost_type: c.cost_type.into(),
                fee: Some(fee(c.wei.to_string(), "WEI")),
                gas_units: c.gas_units.to_string(),
            })
            .collect(),
        value_fee: Some(convert::value_fee_to_pb(&estimate.value_fee)),
        discounts: Vec::new(),
        pricing_model: estimate.pricing_model.into(),
        warnings: estimate.warnings,
    })
}
