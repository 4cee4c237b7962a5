//! Running without persisting anything: a trigger (`RunTrigger`), one node (`RunNodeWithInputs`),
//! or a whole definition (`SimulateTask`). Nothing reaches the log; the callers rate-limit these
//! (they run arbitrary code and requests).

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256};
use serde_json::{Map, Value, json};

use events::execution::{ExecutionOutcome, Firing, FiringSource, Step};
use events::task::{EventQuery, Node, TaskDefinition, Trigger, TriggerConfig, TriggerKind};
use projections::tasks::{Status, TaskRow};

use super::nodes::write::WriteMode;
use super::nodes::{self, NodeError, NodeRun};
use super::run::{Ended, Recorder, Resume, Walk};
use super::template::Templates;
use super::{Engine, trigger_data, vars};
use crate::clock::{new_id, now_ms_i64};
use crate::domain::trigger_output;
use crate::domain::triggers::{abi_event, filter_of};
use crate::pb::ErrorCode;
use crate::wallet::submit::MemoryJournal;

/// Blocks an event trigger's preview searches back for a matching log.
const EVENT_LOOKBACK: u64 = 1000;

impl Engine {
    /// Runs one node with the given variables (and the owner's user secrets).
    pub async fn run_node(
        &self,
        owner: &str,
        node: &Node,
        input_variables: &BTreeMap<String, Value>,
    ) -> Result<NodeRun, NodeError> {
        self.run_node_full(owner, node, input_variables)
            .await
            .map(|write| write.run)
    }

    /// `run_node` with the metadata and gas a write produces. A write node needs
    /// `settings.runner`, one of the owner's wallets (the original's words); it is simulated
    /// unless it says `is_simulated: false`, and then its user operations are journaled on a
    /// stream of their own (`preview:<id>`).
    pub async fn run_node_full(
        &self,
        owner: &str,
        node: &Node,
        input_variables: &BTreeMap<String, Value>,
    ) -> Result<nodes::write::WriteRun, NodeError> {
        let config = node
            .config
            .as_ref()
            .ok_or_else(|| NodeError::new("the node has no configuration"))?;
        let mut globals: Map<String, Value> = input_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let secrets = vars::secrets(&self.inner.store, &self.inner.sealer, owner, None)
            .map_err(NodeError::new)?;
        globals.insert("apContext".into(), json!({ "configVars": secrets }));
        let templates = Templates {
            vars: &globals,
            sandbox: &self.inner.tools.sandbox,
        };
        let rendered = templates.node(config).await.map_err(NodeError::new)?;
        let limit = self.inner.tools.config.node_limit;
        let result = if nodes::is_write(&rendered) {
            self.preview_write(owner, node, &rendered, &globals).await
        } else {
            match tokio::time::timeout(limit, nodes::run(&self.inner.tools, &rendered, &globals))
                .await
            {
                Ok(result) => result.map(|run| nodes::write::WriteRun {
                    run,
                    ..Default::default()
                }),
                Err(_) => Err(NodeError::new(format!(
                    "the node ran longer than its {} s limit",
                    limit.as_secs()
                ))),
            }
        };
        // The answer goes back to the caller: the owner's secrets stay masked there too.
        let redactor = super::redact::Redactor::from_vars(&globals);
        match result {
            Ok(mut write) => {
                redactor.value(&mut write.run.output);
                write
                    .run
                    .log
                    .iter_mut()
                    .for_each(|line| redactor.text(line));
                if let Some(metadata) = &mut write.metadata {
                    redactor.value(metadata);
                }
                Ok(write)
            }
            Err(mut e) => {
                redactor.text(&mut e.message);
                if let Some(output) = &mut e.output {
                    redactor.value(output);
                }
                e.log.iter_mut().for_each(|line| redactor.text(line));
                Err(e)
            }
        }
    }

    async fn preview_write(
        &self,
        owner: &str,
        node: &Node,
        rendered: &events::task::NodeConfig,
        vars: &Map<String, Value>,
    ) -> Result<nodes::write::WriteRun, NodeError> {
        use crate::pb::ErrorCode;
        let what = match rendered {
            events::task::NodeConfig::EthTransfer(_) => "ethTransfer",
            events::task::NodeConfig::Loop(_) => "loop",
            _ => "contractWrite",
        };
        let settings = vars
            .get("settings")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                NodeError::new(format!("settings is required for {what}"))
                    .with_code(ErrorCode::InvalidRequest)
            })?;
        let runner = settings
            .get("runner")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                NodeError::new(format!("settings.runner is required for {what}"))
                    .with_code(ErrorCode::InvalidRequest)
            })?;
        // The original reads `chain_id` (snake_case); a different chain is refused.
        if let Some(chain_id) = settings.get("chain_id") {
            let given = chain_id
                .as_u64()
                .or_else(|| chain_id.as_str().and_then(|s| s.parse().ok()));
            let ours = self.inner.tools.chain.as_ref().map(|c| c.chain_id);
            if let (Some(given), Some(ours)) = (given, ours)
                && given != ours
            {
                return Err(NodeError::new(format!(
                    "settings.chain_id {given} is not this aggregator's chain ({ours})"
                ))
                .with_code(ErrorCode::InvalidRequest));
            }
        }
        if runner.parse::<Address>().is_err() {
            return Err(
                NodeError::new(format!("settings.runner {runner:?} is not an address"))
                    .with_code(ErrorCode::InvalidAddress),
            );
        }
        let Some(env) = self
            .write_env(owner, runner, WriteMode::Preview)
            .map_err(|e| NodeError::new(e.to_string()).with_code(ErrorCode::StorageReadError))?
        else {
            return Err(if self.inner.tools.writes.is_none() {
                NodeError::new(
                    "ETH transfers and contract writes are user operations from a smart wallet: the aggregator needs ethereum.rpc_url for them",
                )
                .with_code(ErrorCode::SmartWalletRpcError)
            } else {
                NodeError::new(format!(
                    "settings.runner {runner} is not a smart wallet of the signed-in owner (GetWallet registers it)"
                ))
                .with_code(ErrorCode::SmartWalletNotFound)
            });
        };
        if nodes::simulated(rendered, &env) {
            return nodes::run_write::<MemoryJournal>(
                &self.inner.tools,
                &env,
                rendered,
                vars,
                None,
            )
            .await;
        }
        let id = new_id();
        let mut recorder = Recorder::Log {
            store: &self.inner.store,
            stream: events::stream::preview(&id),
            actor: owner.to_owned(),
            version: 0,
            buffer: Vec::new(),
        };
        let mut journal = super::run::RecorderJournal {
            recorder: &mut recorder,
        };
        let mut ctx =
            nodes::write::WriteCtx::new(&env, &id, &node.id, &mut journal, Default::default());
        nodes::run_write(&self.inner.tools, &env, rendered, vars, Some(&mut ctx)).await
    }

    /// What a trigger would output now: a manual trigger's data, the current time for time
    /// triggers, the latest block, or the latest matching log of the last blocks (decoded and
    /// enriched as a run sees it). With `sample` (a simulation), an event trigger with no
    /// matching log outputs a sample log built from its first query instead of failing.
    pub async fn run_trigger(
        &self,
        trigger: &Trigger,
        sample: bool,
    ) -> Result<TriggerRun, TriggerFailure> {
        let config = trigger
            .config
            .as_ref()
            .ok_or_else(|| TriggerFailure::config("the trigger has no configuration"))?;
        let kind = config.kind();
        let tools = &self.inner.tools;
        let chain = |what: &str| {
            tools.chain.as_ref().ok_or_else(|| {
                TriggerFailure::runtime(format!(
                    "{what} reads the chain: the aggregator has no ethereum.rpc_url configured"
                ))
            })
        };
        let (output, metadata) = match config {
            TriggerConfig::Manual(c) => (c.data.clone().unwrap_or(Value::Null), None),
            TriggerConfig::FixedTime(_) | TriggerConfig::Cron(_) => {
                (trigger_output::time_output(now_ms_i64()), None)
            }
            TriggerConfig::Block(_) => {
                let block = chain("a block trigger")?
                    .block_facts(None)
                    .await
                    .map_err(|e| TriggerFailure::runtime(e.to_string()))?;
                (trigger_output::block_output(&block), None)
            }
            TriggerConfig::Event(c) => {
                let chain = chain("an event trigger")?;
                for (q, query) in c.queries.iter().enumerate() {
                    if query.addresses.is_empty() {
                        return Err(TriggerFailure::config(format!(
                            "event query {q} has no contract addresses: a search of past logs needs the contracts to read"
                        )));
                    }
                }
                let latest = chain
                    .block_number()
                    .await
                    .map_err(|e| TriggerFailure::runtime(e.to_string()))?;
                let from = latest.saturating_sub(EVENT_LOOKBACK);
                let mut found: Option<(u64, Value)> = None;
                for query in &c.queries {
                    let filter = filter_of(query).from_block(from).to_block(latest);
                    let logs = chain
                        .logs(&filter)
                        .await
                        .map_err(|e| TriggerFailure::runtime(e.to_string()))?;
                    if let Some(log) = logs.last() {
                        let at = log.block_number.unwrap_or_default();
                        if found.as_ref().is_none_or(|(b, _)| at >= *b) {
                            found = Some((at, raw_log_output(log)));
                        }
                    }
                }
                let searched = json!({
                    "fromBlock": from,
                    "toBlock": latest,
                    "queries": c.queries.len(),
                });
                match found {
                    Some((_, raw)) => {
                        let decoded = trigger_data::decoded_event(tools, &c.queries, &raw).await;
                        let metadata = json!({ "search": searched, "log": raw, "sample": false });
                        (decoded, Some(metadata))
                    }
                    None if sample => {
                        let raw = sample_log(&c.queries, latest);
                        let decoded = trigger_data::decoded_event(tools, &c.queries, &raw).await;
                        let metadata = json!({ "search": searched, "log": raw, "sample": true });
                        (decoded, Some(metadata))
                    }
                    None => {
                        return Err(TriggerFailure {
                            error: format!(
                                "no event matched the queries in blocks {from} to {latest} (the last {EVENT_LOOKBACK} blocks)"
                            ),
                            code: ErrorCode::ExecutionEngineError,
                            metadata: Some(json!({ "search": searched, "found": false })),
                        });
                    }
                }
            }
        };
        Ok(TriggerRun {
            kind,
            output,
            metadata,
        })
    }

    /// Runs a whole definition in memory, as execution `execution_id`: the trigger as it would
    /// fire now (sample data for an event trigger with no recent match), then the graph. Nodes
    /// in `refused` (invalid configs) are failed steps that do not run.
    pub async fn simulate(
        &self,
        owner: &str,
        definition: &TaskDefinition,
        refused: BTreeMap<String, (String, i32)>,
        execution_id: &str,
    ) -> Result<Ended, events::Error> {
        let runner = definition
            .input_variables
            .get("settings")
            .and_then(|s| s.get("runner"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let trigger = self.run_trigger(&definition.trigger, true).await;
        let kind = definition
            .trigger
            .config
            .as_ref()
            .map_or(TriggerKind::Manual, TriggerConfig::kind);
        let row = TaskRow {
            id: execution_id.to_owned(),
            owner: owner.to_owned(),
            wallet: runner,
            name: definition.name.clone(),
            trigger_kind: Some(kind),
            status: Status::Active,
            running: 1,
            start_at: definition.start_at,
            expired_at: definition.expired_at,
            max_execution: definition.max_execution,
            execution_count: 0,
            last_ran_at: 0,
            created_at: now_ms_i64(),
            completed_at: 0,
            cancelled_at: 0,
            disabled_reason: String::new(),
            failed_error: String::new(),
            version: 0,
        };
        let trigger = match trigger {
            Ok(run) => run,
            Err(failure) => return Ok(failed_trigger(definition, failure)),
        };
        let firing = Firing {
            dedup_key: format!("simulation:{execution_id}"),
            source: FiringSource::Client,
            kind,
            output: Some(trigger.output.clone()),
            input: BTreeMap::new(),
        };
        let secrets = vars::secrets(&self.inner.store, &self.inner.sealer, owner, None)
            .map_err(events::Error::Corrupt)?;
        let writes = self.write_env(owner, &row.wallet, WriteMode::Simulation)?;
        let walk = Walk {
            tools: &self.inner.tools,
            definition,
            firing: &firing,
            task_id: execution_id,
            execution_id,
            trigger_data: trigger.output.clone(),
            vars: vars::with_secrets(
                vars::base(definition, &row, &firing, &trigger.output, execution_id, 0),
                secrets,
            ),
            refused,
            writes,
            ops: std::collections::HashMap::new(),
        };
        walk.run(
            Resume::default(),
            &mut Recorder::Memory,
            self.inner.tools.config.execution_limit,
        )
        .await
    }
}

/// A trigger preview's result.
#[derive(Debug, Clone)]
pub struct TriggerRun {
    pub kind: TriggerKind,
    pub output: Value,
    /// What the preview found out (an event search: the blocks searched, the raw log).
    pub metadata: Option<Value>,
}

/// Why a trigger preview failed, answered in-band as the original does.
#[derive(Debug, Clone)]
pub struct TriggerFailure {
    pub error: String,
    pub code: ErrorCode,
    pub metadata: Option<Value>,
}

impl TriggerFailure {
    fn config(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: ErrorCode::InvalidTriggerConfig,
            metadata: None,
        }
    }

    fn runtime(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: ErrorCode::ExecutionEngineError,
            metadata: None,
        }
    }
}

/// A simulation whose trigger could not fire: its trigger step failed, nothing else ran.
fn failed_trigger(definition: &TaskDefinition, failure: TriggerFailure) -> Ended {
    let now = now_ms_i64();
    let kind = definition
        .trigger
        .config
        .as_ref()
        .map_or(TriggerKind::Manual, TriggerConfig::kind);
    let step = Step {
        id: definition.trigger.id.clone(),
        step_type: TriggerKind::wire_name(kind).to_owned(),
        name: definition.trigger.name.clone(),
        success: false,
        error: failure.error.clone(),
        error_code: failure.code as i32,
        config: definition
            .trigger
            .config
            .as_ref()
            .and_then(crate::domain::step_config::trigger),
        metadata: failure.metadata,
        start_at: now,
        end_at: now,
        ..Step::default()
    };
    Ended {
        steps: vec![step],
        outcome: ExecutionOutcome::Failed,
        error: format!("the trigger could not fire: {}", failure.error),
    }
}

/// A log as an event output carries it (what operators report and sign).
fn raw_log_output(log: &alloy::rpc::types::Log) -> Value {
    json!({
        "blockNumber": log.block_number,
        "blockHash": log.block_hash.map(|h| format!("{h:#x}")),
        "transactionHash": log.transaction_hash.map(|h| format!("{h:#x}")),
        "logIndex": log.log_index,
        "address": log.address().to_checksum(None),
        "topics": log.topics().iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(),
        "data": format!("0x{}", hex::encode(log.data().data.as_ref())),
    })
}

/// A sample log for a simulation with no recent match: the first query's first address and its
/// topics (a wildcard as zero), with zero words for the event's non-indexed fields.
fn sample_log(queries: &[EventQuery], block: u64) -> Value {
    let Some(query) = queries.first() else {
        return Value::Null;
    };
    let topics: Vec<String> = query
        .topics
        .iter()
        .map(|t| match t.parse::<B256>() {
            Ok(t) => format!("{t:#x}"),
            Err(_) => format!("{:#x}", B256::ZERO),
        })
        .collect();
    let event = abi_event(query);
    let words = event.map_or(0, |e| e.inputs.iter().filter(|i| !i.indexed).count());
    json!({
        "blockNumber": block,
        "blockHash": format!("{:#x}", B256::ZERO),
        "transactionHash": format!("{:#x}", B256::ZERO),
        "logIndex": 0,
        "address": query.addresses.first().cloned().unwrap_or_default(),
        "topics": topics,
        "data": format!("0x{}", "00".repeat(32 * words)),
    })
}
