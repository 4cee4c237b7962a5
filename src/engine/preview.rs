//! Running without persisting anything: a trigger (`RunTrigger`), one node (`RunNodeWithInputs`),
//! or a whole definition (`SimulateTask`). Nothing reaches the log; the callers rate-limit these
//! (they run arbitrary code and requests).

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use serde_json::{Map, Value, json};

use events::execution::{Firing, FiringSource};
use events::task::{Node, TaskDefinition, Trigger, TriggerConfig, TriggerKind};
use projections::tasks::{Status, TaskRow};

use super::nodes::{self, NodeError, NodeRun};
use super::run::{Ended, Recorder, Resume, Walk};
use super::template::Templates;
use super::{Engine, vars};
use crate::clock::{new_id, now_ms_i64};

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
        match tokio::time::timeout(limit, nodes::run(&self.inner.tools, &rendered, &globals)).await
        {
            Ok(result) => result,
            Err(_) => Err(NodeError::new(format!(
                "the node ran longer than its {} s limit",
                limit.as_secs()
            ))),
        }
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
                let latest = chain
                    .provider
                    .get_block_number()
                    .await
                    .map_err(|e| e.to_string())?;
                let mut found = Value::Null;
                for query in &c.queries {
                    let addresses: Vec<Address> = query
                        .addresses
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    let mut filter = Filter::new()
                        .from_block(latest.saturating_sub(EVENT_LOOKBACK))
                        .to_block(latest);
                    if !addresses.is_empty() {
                        filter = filter.address(addresses);
                    }
                    for (i, topic) in query.topics.iter().enumerate().take(4) {
                        if let Ok(t) = topic.parse::<B256>() {
                            filter = match i {
                                0 => filter.event_signature(t),
                                1 => filter.topic1(t),
                                2 => filter.topic2(t),
                                _ => filter.topic3(t),
                            };
                        }
                    }
                    let logs = chain
                        .provider
                        .get_logs(&filter)
                        .await
                        .map_err(|e| e.to_string())?;
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
