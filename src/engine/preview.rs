//! Running without persisting anything: a trigger (`RunTrigger`), one node (`RunNodeWithInputs`),
//! or a whole definition (`SimulateTask`). Nothing reaches the log; the callers rate-limit these
//! (they run arbitrary code and requests).

use std::collections::BTreeMap;

use alloy::primitives::Address;
use serde_json::{Map, Value, json};

use events::execution::{Firing, FiringSource};
use events::task::{Node, TaskDefinition, Trigger, TriggerConfig, TriggerKind};
use projections::tasks::{Status, TaskRow};

use super::nodes::write::WriteMode;
use super::nodes::{self, NodeError, NodeRun};
use super::run::{Ended, Recorder, Resume, Walk};
use super::template::Templates;
use super::{Engine, vars};
use crate::clock::{new_id, now_ms_i64};
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
    /// triggers, the latest block, or the latest matching log of the last blocks.
    pub async fn run_trigger(
        &self,
        trigger: &Trigger,
        input: &BTreeMap<String, Value>,
    ) -> Result<(TriggerKind, Value), String> {
        let config = trigger
            .config
            .as_ref()
            .ok_or("the trigger has no configuration")?;
        let kind = config.kind();
        let now = now_ms_i64();
        let output = match config {
            TriggerConfig::Manual(c) => {
                let mut data = c.data.clone().unwrap_or(Value::Null);
                if data.is_null() && !input.is_empty() {
                    data = serde_json::to_value(input).unwrap_or(Value::Null);
                }
                data
            }
            TriggerConfig::FixedTime(_) | TriggerConfig::Cron(_) => json!({
                "timestamp": now,
                "timestampIso": humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(now).unwrap_or(0))).to_string(),
            }),
            TriggerConfig::Block(_) => {
                let chain =
                    self.inner.tools.chain.as_ref().ok_or(
                        "a block trigger reads the chain: no ethereum.rpc_url is configured",
                    )?;
                let (number, hash) = chain.latest_block().await.map_err(|e| e.to_string())?;
                json!({ "blockNumber": number, "blockHash": format!("{hash:#x}") })
            }
            TriggerConfig::Event(c) => {
                let chain =
                    self.inner.tools.chain.as_ref().ok_or(
                        "an event trigger reads the chain: no ethereum.rpc_url is configured",
                    )?;
                let latest = chain.block_number().await.map_err(|e| e.to_string())?;
                let mut found = Value::Null;
                for query in &c.queries {
                    let filter = crate::domain::triggers::filter_of(query)
                        .from_block(latest.saturating_sub(EVENT_LOOKBACK))
                        .to_block(latest);
                    let logs = chain.logs(&filter).await.map_err(|e| e.to_string())?;
                    if let Some(log) = logs.last() {
                        found = json!({
                            "blockNumber": log.block_number,
                            "transactionHash": log.transaction_hash.map(|h| format!("{h:#x}")),
                            "logIndex": log.log_index,
                            "address": log.address().to_checksum(None),
                            "topics": log.topics().iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(),
                            "data": format!("0x{}", hex::encode(log.data().data.as_ref())),
                        });
                    }
                }
                found
            }
        };
        Ok((kind, output))
    }

    /// Runs a whole definition in memory: the trigger as it would fire now, then the graph.
    pub async fn simulate(
        &self,
        owner: &str,
        definition: &TaskDefinition,
    ) -> Result<Ended, String> {
        let (kind, output) = self
            .run_trigger(&definition.trigger, &BTreeMap::new())
            .await?;
        let runner = definition
            .input_variables
            .get("settings")
            .and_then(|s| s.get("runner"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let execution_id = new_id();
        let row = TaskRow {
            id: "simulation".into(),
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
        let firing = Firing {
            dedup_key: format!("simulation:{execution_id}"),
            source: FiringSource::Client,
            kind,
            output: Some(output),
            input: BTreeMap::new(),
        };
        let secrets = vars::secrets(&self.inner.store, &self.inner.sealer, owner, None)?;
        let writes = self
            .write_env(owner, &row.wallet, WriteMode::Simulation)
            .map_err(|e| e.to_string())?;
        let walk = Walk {
            tools: &self.inner.tools,
            definition,
            firing: &firing,
            task_id: "simulation",
            execution_id: &execution_id,
            vars: vars::with_secrets(
                vars::base(definition, &row, &firing, &execution_id, 0),
                secrets,
            ),
            writes,
            ops: std::collections::HashMap::new(),
        };
        walk.run(
            Resume::default(),
            &mut Recorder::Memory,
            self.inner.tools.config.execution_limit,
        )
        .await
        .map_err(|e| e.to_string())
    }
}
