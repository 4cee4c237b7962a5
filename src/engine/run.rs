//! One execution: the trigger as step 0, then the nodes in the plan's order, each recorded as a
//! step (ran, failed, or skipped with the reason).
//!
//! As in the original, a failed node does not stop the run (its successors run too), and the
//! execution ends `PartialSuccess` when some steps failed or a branch left nodes untaken,
//! `Success` when every node ran and succeeded, `Failed` when the graph itself could not run.
//! Skipped nodes are recorded (in the log, `replay timeline`, and `Execution.skipped` on the
//! wire), but they are not steps of the execution.
//!
//! The step protocol, against crashes:
//! - a node with side effects gets a `StepStarted` that is durable before it runs, and its result
//!   is made durable right after;
//! - a step whose result is recorded is never run again: on resume its output is restored;
//! - a step started without a result was interrupted: if its node is free of side effects it is
//!   run again, otherwise it is recorded as failed ("interrupted"), since its effects may have
//!   happened;
//! - steps of nodes free of side effects are buffered and recorded together (a crash re-runs
//!   them), so a graph of pure nodes costs one commit.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use events::event::{ExecutionFinished, ExecutionStarted, StepRecorded, StepStarted};
use events::execution::{ExecutionOutcome, Firing, OutputKind, Step, StepOutput};
use events::task::{NodeKind, TaskDefinition, TriggerConfig, TriggerKind};
use events::{Command, Event, Expected};

use super::Tools;
use super::graph::{Fate, Plan};
use super::nodes::{self, output_kind, side_effect_free};
use super::redact::Redactor;
use super::template::Templates;
use crate::clock::now_ms_i64;
use crate::store::Store;
use crate::wallet::submit::{Journal, JournalError, MemoryJournal};

/// Where a run's events go.
pub enum Recorder<'a> {
    /// To the execution's stream, in order, against its version.
    Log {
        store: &'a Store,
        stream: String,
        actor: String,
        version: u64,
        buffer: Vec<Event>,
    },
    /// To the execution's stream as `Log`, against the version it shares with the renewal of
    /// the replica's claim on the execution (`super::claims`): on a replicated log.
    Claimed {
        store: &'a Store,
        stream: String,
        actor: String,
        cursor: SharedCursor,
        buffer: Vec<Event>,
    },
    /// Nowhere: `SimulateTask` and friends only want the steps.
    Memory,
}

/// An execution stream's version, shared by the run that records on it and the renewal of its
/// claim (each appends against it, one at a time), and whether the run recorded its end (then
/// the claim is not renewed again).
#[derive(Debug)]
pub struct Cursor {
    pub version: u64,
    pub finished: bool,
}

pub type SharedCursor = std::sync::Arc<tokio::sync::Mutex<Cursor>>;

impl Recorder<'_> {
    pub(super) fn push(&mut self, event: Event) {
        if let Recorder::Log { buffer, .. } | Recorder::Claimed { buffer, .. } = self {
            buffer.push(event);
        }
    }

    /// Makes the buffered events durable.
    pub async fn flush(&mut self) -> Result<(), events::Error> {
        if let Recorder::Claimed {
            store,
            stream,
            actor,
            cursor,
            buffer,
        } = self
        {
            if buffer.is_empty() {
                return Ok(());
            }
            let mut cursor = cursor.lock().await;
            let events = std::mem::take(buffer);
            let count = events.len() as u64;
            let finishes = events
                .iter()
                .any(|e| matches!(e, Event::ExecutionFinished(_)));
            let command = Command::new(actor.clone(), events::now_ms()).append(
                stream.clone(),
                Expected::Exactly(cursor.version),
                events,
            );
            store.log.append(command).await?;
            cursor.version += count;
            cursor.finished |= finishes;
            return Ok(());
        }
        let Recorder::Log {
            store,
            stream,
            actor,
            version,
            buffer,
        } = self
        else {
            return Ok(());
        };
        if buffer.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(buffer);
        let count = events.len() as u64;
        let command = Command::new(actor.clone(), events::now_ms()).append(
            stream.clone(),
            Expected::Exactly(*version),
            events,
        );
        store.log.append(command).await?;
        *version += count;
        Ok(())
    }
}

/// What an earlier attempt of this execution left in its stream.
#[derive(Debug, Default)]
pub struct Resume {
    pub started: bool,
    pub recorded: HashMap<String, Step>,
    /// Steps with a `StepStarted` and no result.
    pub interrupted: HashSet<String>,
    /// The user operations each write step journaled (see `nodes::write`).
    pub ops: HashMap<String, nodes::write::PriorOps>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub steps: Vec<Step>,
    pub outcome: ExecutionOutcome,
    pub error: String,
}

/// Everything a run needs.
pub struct Walk<'a> {
    pub tools: &'a Tools,
    pub definition: &'a TaskDefinition,
    pub firing: &'a Firing,
    pub task_id: &'a str,
    pub execution_id: &'a str,
    /// What the trigger step shows and `<trigger>.data` holds (`trigger_data::run_data`).
    pub trigger_data: Value,
    pub vars: Map<String, Value>,
    /// Nodes refused before the run (a simulation's invalid configs), by id: the error and its
    /// code. They are failed steps that do not run; their successors still run.
    pub refused: std::collections::BTreeMap<String, (String, i32)>,
    /// The task's wallet and the wallets' side, for the write nodes (`None`: no chain).
    pub writes: Option<nodes::write::WriteEnv>,
    pub ops: HashMap<String, nodes::write::PriorOps>,
}

/// A step's `execution_context`, as the original fills it: whether it was simulated (nothing
/// recorded: `SimulateTask`), what answered it (the chain's RPC), and the chain.
pub fn execution_context(simulated: bool, chain_id: u64) -> Value {
    json!({ "isSimulated": simulated, "provider": "chain_rpc", "chainId": chain_id })
}

/// The bytes a step takes in its event (and in the execution's answer).
fn encoded_len(step: &Step) -> usize {
    serde_json::to_vec(step).map_or(usize::MAX, |v| v.len())
}

/// A step's `inputs`, named as the original names them: `x.data` and `x.input` for a node's or
/// the trigger's variable (and `x.headers`, `x.pathParams` where present), `apContext.configVars`
/// for the secrets, the bare name for any other variable; the node's own variable left out.
fn input_keys(vars: &Map<String, Value>, own: &str) -> Vec<String> {
    let mut keys = Vec::with_capacity(vars.len() * 2);
    for (name, value) in vars {
        if name == own {
            continue;
        }
        if name == "apContext" {
            keys.push("apContext.configVars".to_owned());
            continue;
        }
        match value {
            Value::Object(fields)
                if ["data", "input", "headers", "pathParams"]
                    .iter()
                    .any(|f| fields.contains_key(*f)) =>
            {
                for field in ["data", "input", "headers", "pathParams"] {
                    if fields.contains_key(field) {
                        keys.push(format!("{name}.{field}"));
                    }
                }
            }
            _ => keys.push(name.clone()),
        }
    }
    keys
}

/// A node's metadata, if it fits what an event may hold (it is an aid, not the result: past
/// the bounds it is left out).
fn bounded_metadata(
    bounds: crate::domain::bounds::ValueBounds,
    metadata: Option<Value>,
) -> Option<Value> {
    metadata.filter(|m| bounds.check("the node's metadata", m).is_ok())
}

/// Whether a node not yet recorded runs, and if not, why.
enum Gate {
    /// The execution is past its time limit.
    Late(Duration),
    /// The execution's recorded steps have used up its bytes.
    OverBudget,
    /// The node's branch was not taken, or a node it needs did not succeed.
    Unreached(String),
    /// An earlier attempt started it and stopped without its result, and it has effects.
    Interrupted,
    Run,
}

/// The bytes an execution's recorded steps may take (they are one `GetExecution` answer), and
/// how many they take so far.
struct Budget {
    limit: usize,
    spent: usize,
    /// Set once a step did not fit: nothing more runs.
    over: bool,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.over || self.spent >= self.limit
    }
}

fn fate_of(step: &Step) -> Fate {
    if step.skipped {
        Fate::Skipped
    } else if step.success {
        // A branch names the condition it took `<branch id>.<condition id>`, as the original.
        let prefix = format!("{}.", step.id);
        let taken = step
            .output
            .as_ref()
            .filter(|o| o.kind == OutputKind::Branch)
            .and_then(|o| o.data.as_ref())
            .and_then(|d| d.get("conditionId"))
            .and_then(Value::as_str)
            .map(|c| c.strip_prefix(&prefix).unwrap_or(c).to_owned());
        Fate::Succeeded { taken }
    } else {
        Fate::Failed
    }
}

impl Walk<'_> {
    fn trigger_step(&self) -> Step {
        let kind = self
            .definition
            .trigger
            .config
            .as_ref()
            .map_or(self.firing.kind, TriggerConfig::kind);
        let now = now_ms_i64();
        Step {
            id: self.definition.trigger.id.clone(),
            step_type: TriggerKind::wire_name(self.firing.kind).to_owned(),
            name: self.definition.trigger.name.clone(),
            success: true,
            log: format!(
                "fired by {}",
                match &self.firing.source {
                    events::execution::FiringSource::Client => "a client (TriggerTask)".to_owned(),
                    events::execution::FiringSource::Operators { attestation } =>
                        format!("a quorum of operators (attestation {attestation})"),
                }
            ),
            config: self
                .definition
                .trigger
                .config
                .as_ref()
                .and_then(crate::domain::step_config::trigger),
            output: Some(StepOutput {
                kind: OutputKind::for_trigger(kind),
                data: Some(self.trigger_data.clone()),
            }),
            start_at: now,
            end_at: now,
            ..Step::default()
        }
    }

    fn recorded(&mut self, recorder: &mut Recorder<'_>, steps: &mut Vec<Step>, step: Step) {
        recorder.push(
            StepRecorded {
                execution_id: self.execution_id.to_owned(),
                task_id: self.task_id.to_owned(),
                step: step.clone(),
            }
            .into(),
        );
        steps.push(step);
    }

    /// Runs (or resumes) the graph and records the end, in the phases of the module's docs: the
    /// start and the trigger's step ([`Walk::begin`]), the plan ([`Walk::plan`]), each node in
    /// the plan's order, restored from an earlier attempt ([`Walk::restored`]) or gated, run and
    /// recorded ([`Walk::step`]), and the end ([`Walk::outcome`], [`Walk::finish`]).
    pub async fn run(
        mut self,
        mut resume: Resume,
        recorder: &mut Recorder<'_>,
        limit: Duration,
    ) -> Result<Ended, events::Error> {
        self.ops = std::mem::take(&mut resume.ops);
        let started_at = Instant::now();
        let mut steps = self.begin(&resume, recorder);
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(why) => {
                return self
                    .finish(recorder, steps, Some(why), ExecutionOutcome::Failed)
                    .await;
            }
        };
        let names: Vec<String> = self
            .definition
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        // Built once: every step this run records has the run's secrets masked.
        let redactor = Redactor::from_vars(&self.vars);
        let mut fates: Vec<Option<Fate>> = vec![None; self.definition.nodes.len()];
        let mut budget = Budget {
            limit: self.tools.bounds.max_execution_bytes,
            spent: steps.iter().map(encoded_len).sum(),
            over: false,
        };
        for &i in &plan.order {
            let Some(node) = self.definition.nodes.get(i) else {
                continue;
            };
            let Some(config) = &node.config else { continue };
            let fate = if let Some(step) = resume.recorded.get(&node.id) {
                budget.spent += encoded_len(step);
                steps.push(step.clone());
                self.restored(node, config, step).await
            } else {
                let gate = if started_at.elapsed() > limit {
                    Gate::Late(limit)
                } else if budget.exhausted() {
                    Gate::OverBudget
                } else if let Err(why) = plan.reached(i, &fates, &names) {
                    Gate::Unreached(why)
                } else if resume.interrupted.contains(&node.id)
                    && !side_effect_free(config)
                    && !nodes::is_write(config)
                {
                    Gate::Interrupted
                } else {
                    Gate::Run
                };
                let (step, fate) = self
                    .step(recorder, node, config, gate, &redactor, &mut budget)
                    .await?;
                let effects = !side_effect_free(config);
                self.recorded(recorder, &mut steps, step);
                if effects {
                    // The result of a step with effects is durable at once: it is never run again.
                    recorder.flush().await?;
                }
                fate
            };
            if let Some(slot) = fates.get_mut(i) {
                *slot = Some(fate);
            }
        }
        let (error, outcome) = self.outcome(&plan, &fates, &names);
        self.finish(recorder, steps, error, outcome).await
    }

    /// The start of the run (unless an earlier attempt recorded it) and the trigger's step, the
    /// first of the returned steps.
    fn begin(&mut self, resume: &Resume, recorder: &mut Recorder<'_>) -> Vec<Step> {
        if !resume.started {
            recorder.push(
                ExecutionStarted {
                    execution_id: self.execution_id.to_owned(),
                    task_id: self.task_id.to_owned(),
                    started_at: now_ms_i64(),
                }
                .into(),
            );
        }
        let mut steps = Vec::with_capacity(self.definition.nodes.len() + 1);
        let trigger_id = self.definition.trigger.id.clone();
        match resume.recorded.get(&trigger_id) {
            Some(step) => steps.push(step.clone()),
            None => {
                let step = self.trigger_step();
                self.recorded(recorder, &mut steps, step);
            }
        }
        steps
    }

    /// The order the nodes run in, or why the task's graph cannot run at all.
    fn plan(&self) -> Result<Plan, String> {
        let plan =
            Plan::new(self.definition).map_err(|e| format!("the task's graph cannot run: {e}"))?;
        if self.definition.nodes.len() > self.tools.config.max_steps {
            return Err(format!(
                "the task has {} nodes, more than the limit of {} steps per execution",
                self.definition.nodes.len(),
                self.tools.config.max_steps
            ));
        }
        Ok(plan)
    }

    /// A step an earlier attempt recorded: not run again, its output restored into the
    /// variables.
    async fn restored(
        &mut self,
        node: &events::task::Node,
        config: &events::task::NodeConfig,
        step: &Step,
    ) -> Fate {
        let fate = fate_of(step);
        if matches!(fate, Fate::Succeeded { .. }) {
            let data = step
                .output
                .as_ref()
                .and_then(|o| o.data.clone())
                .unwrap_or(Value::Null);
            // The step recorded its config as written: `input` is rendered again.
            let templates = Templates {
                vars: &self.vars,
                sandbox: &self.tools.sandbox,
            };
            let input = match templates.node(config).await {
                Ok(rendered) => crate::domain::step_config::node(&rendered),
                Err(_) => step.config.clone(),
            };
            self.vars
                .insert(node.name.clone(), json!({ "data": data, "input": input }));
        }
        fate
    }

    /// A node's step, run or not as `gate` says, its secrets masked, its texts truncated, and
    /// cut down to a failure if it does not fit the execution's budget.
    async fn step(
        &mut self,
        recorder: &mut Recorder<'_>,
        node: &events::task::Node,
        config: &events::task::NodeConfig,
        gate: Gate,
        redactor: &Redactor,
        budget: &mut Budget,
    ) -> Result<(Step, Fate), events::Error> {
        let mut step = Step {
            id: node.id.clone(),
            step_type: NodeKind::wire_name(config.kind()).to_owned(),
            name: node.name.clone(),
            inputs: input_keys(&self.vars, &node.name),
            start_at: now_ms_i64(),
            ..Step::default()
        };
        let mut fate = match gate {
            Gate::Late(limit) => {
                step.error = format!(
                    "not run: the execution ran longer than its {} s limit",
                    limit.as_secs()
                );
                step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
                Fate::Failed
            }
            Gate::OverBudget => {
                step.error = format!(
                    "not run: the execution's recorded steps reached its limit of {} bytes",
                    budget.limit
                );
                step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
                Fate::Failed
            }
            Gate::Unreached(why) => {
                step.success = true;
                step.skipped = true;
                step.log = why;
                Fate::Skipped
            }
            Gate::Interrupted => {
                // (A write settles what it sent from its journal instead: `nodes::write`; it is
                // never gated as interrupted.)
                step.error = "interrupted: the aggregator stopped while this step ran; it may have had effects, so it is not run again".into();
                step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
                Fate::Failed
            }
            Gate::Run => match self.refused.get(&node.id) {
                // Refused before the run (a simulation's invalid config): failed, not run.
                Some((error, code)) => {
                    step.error.clone_from(error);
                    step.error_code = *code;
                    Fate::Failed
                }
                None => self.run_node(recorder, node, config, &mut step).await?,
            },
        };
        step.end_at = now_ms_i64();
        redactor.step(&mut step);
        self.tools.bounds.truncate(&mut step.log);
        self.tools.bounds.truncate(&mut step.error);
        // The whole execution is one GetExecution answer: its steps share one budget.
        let size = encoded_len(&step);
        if budget.spent + size > budget.limit {
            step.output = None;
            step.config = None;
            step.success = false;
            step.error = format!(
                "the step's record ({size} bytes) would take the execution past its limit of {} bytes",
                budget.limit
            );
            step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
            self.vars.remove(&node.name);
            fate = Fate::Failed;
            budget.over = true;
        }
        budget.spent += encoded_len(&step);
        Ok((step, fate))
    }

    /// How the run ended: its error if any step failed (how many, and which), and its outcome.
    fn outcome(
        &self,
        plan: &Plan,
        fates: &[Option<Fate>],
        names: &[String],
    ) -> (Option<String>, ExecutionOutcome) {
        let failed: Vec<String> = plan
            .order
            .iter()
            .filter(|&&i| matches!(fates.get(i), Some(Some(Fate::Failed))))
            .filter_map(|&i| names.get(i).cloned())
            .collect();
        let error = (!failed.is_empty()).then(|| {
            format!(
                "{} of {} steps failed: {}",
                failed.len(),
                self.definition.nodes.len(),
                failed.join(", ")
            )
        });
        let untaken = fates.iter().any(|f| matches!(f, Some(Fate::Skipped)));
        // The trigger step always succeeded, so failed nodes make a partial success.
        let outcome = if error.is_some() || untaken {
            ExecutionOutcome::PartialSuccess
        } else {
            ExecutionOutcome::Success
        };
        (error, outcome)
    }

    /// Renders the node's templates and runs it (within the node limit), filling the step.
    async fn run_node(
        &mut self,
        recorder: &mut Recorder<'_>,
        node: &events::task::Node,
        config: &events::task::NodeConfig,
        step: &mut Step,
    ) -> Result<Fate, events::Error> {
        let templates = Templates {
            vars: &self.vars,
            sandbox: &self.tools.sandbox,
        };
        let rendered = match templates.node(config).await {
            Ok(rendered) => rendered,
            Err(e) => {
                step.error = e;
                step.error_code = crate::pb::ErrorCode::InvalidNodeConfig as i32;
                return Ok(Fate::Failed);
            }
        };
        // Recorded as written (templates and all): a secret a template puts into a header or
        // a URL never reaches the step. The rendered config is the node's `input` variable.
        step.config = crate::domain::step_config::node(config);
        let input = crate::domain::step_config::node(&rendered);
        step.execution_context = Some(execution_context(
            matches!(recorder, Recorder::Memory),
            self.tools.chain_id,
        ));
        if let Some(why) = input.as_ref().and_then(|c| {
            self.tools
                .bounds
                .check("the node's rendered config", c)
                .err()
        }) {
            step.error = why;
            step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
            return Ok(Fate::Failed);
        }
        if !side_effect_free(&rendered) {
            recorder.push(
                StepStarted {
                    execution_id: self.execution_id.to_owned(),
                    task_id: self.task_id.to_owned(),
                    step_id: node.id.clone(),
                    name: node.name.clone(),
                    step_type: step.step_type.clone(),
                }
                .into(),
            );
            recorder.flush().await?;
        }
        if nodes::is_write(&rendered) {
            return self.run_write(recorder, node, &rendered, step).await;
        }
        let limit = self.tools.config.node_limit;
        let result = match tokio::time::timeout(
            limit,
            nodes::run(self.tools, &rendered, &self.vars),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(nodes::NodeError::new(format!(
                "the node ran longer than its {} s limit",
                limit.as_secs()
            ))),
        };
        let kind = rendered.kind();
        let bounds = self.tools.bounds;
        // What a node returns goes into an event: past the bounds it is the step's failure.
        let result = result.and_then(|run| match bounds.check("the node's output", &run.output) {
            Ok(()) => Ok(run),
            Err(why) => Err(nodes::NodeError {
                log: run.log,
                ..nodes::NodeError::new(why)
            }),
        });
        Ok(match result {
            Ok(mut run) => {
                if let Some(taken) = &run.taken {
                    // The original names the path `<branch id>.<condition id>`.
                    run.output = json!({ "conditionId": format!("{}.{taken}", node.id) });
                }
                step.success = true;
                step.log = run.log.join("\n");
                step.metadata = bounded_metadata(bounds, run.metadata);
                step.output = Some(StepOutput {
                    kind: output_kind(kind),
                    data: Some(run.output.clone()),
                });
                self.vars.insert(
                    node.name.clone(),
                    json!({ "data": run.output, "input": input }),
                );
                Fate::Succeeded { taken: run.taken }
            }
            Err(e) => {
                step.error = e.message;
                step.error_code = e.code as i32;
                step.metadata = bounded_metadata(bounds, e.metadata);
                step.log = e.log.join("\n");
                step.output = match e.output {
                    Some(data) => match bounds.check("the node's output", &data) {
                        Ok(()) => Some(StepOutput {
                            kind: output_kind(kind),
                            data: Some(data),
                        }),
                        Err(why) => {
                            step.error = format!("{} (its output was dropped: {why})", step.error);
                            None
                        }
                    },
                    None => None,
                };
                Fate::Failed
            }
        })
    }

    async fn finish(
        self,
        recorder: &mut Recorder<'_>,
        steps: Vec<Step>,
        error: Option<String>,
        outcome: ExecutionOutcome,
    ) -> Result<Ended, events::Error> {
        let error = error.unwrap_or_default();
        recorder.push(
            ExecutionFinished {
                execution_id: self.execution_id.to_owned(),
                task_id: self.task_id.to_owned(),
                outcome,
                error: error.clone(),
            }
            .into(),
        );
        recorder.flush().await?;
        Ok(Ended {
            steps,
            outcome,
            error,
        })
    }
}

/// A run's journal of user operations: the recorder, each event durable before `record`
/// returns.
pub struct RecorderJournal<'r, 'a> {
    pub recorder: &'r mut Recorder<'a>,
}

impl Journal for RecorderJournal<'_, '_> {
    async fn record(&mut self, event: Event) -> Result<(), JournalError> {
        self.recorder.push(event);
        self.recorder
            .flush()
            .await
            .map_err(|e| JournalError(e.to_string()))
    }
}

impl Walk<'_> {
    /// Runs a write node: no time limit of its own (a user operation's wait is bounded by
    /// `wallet.receipt_timeout`, and cutting it short would leave an operation unaccounted for).
    async fn run_write(
        &mut self,
        recorder: &mut Recorder<'_>,
        node: &events::task::Node,
        rendered: &events::task::NodeConfig,
        step: &mut Step,
    ) -> Result<Fate, events::Error> {
        let kind = rendered.kind();
        let Some(env) = self.writes.clone() else {
            step.error = "ETH transfers and contract writes are user operations from the task's smart wallet: the aggregator needs ethereum.rpc_url for them".into();
            step.error_code = crate::pb::ErrorCode::SmartWalletRpcError as i32;
            return Ok(Fate::Failed);
        };
        let result = if nodes::simulated(rendered, &env) {
            nodes::run_write::<MemoryJournal>(self.tools, &env, rendered, &self.vars, None).await
        } else {
            let prior = self.ops.remove(&node.id).unwrap_or_default();
            let mut journal = RecorderJournal { recorder };
            let mut ctx =
                nodes::write::WriteCtx::new(&env, self.execution_id, &node.id, &mut journal, prior);
            nodes::run_write(self.tools, &env, rendered, &self.vars, Some(&mut ctx)).await
        };
        let bounds = self.tools.bounds;
        Ok(match result {
            Ok(write) => {
                if let Some(gas) = write.gas {
                    step.gas_used = gas.used.to_string();
                    step.gas_price = gas.price.to_string();
                    step.total_gas_cost = gas.cost.to_string();
                }
                if let Err(why) = bounds.check("the node's output", &write.run.output) {
                    step.error = why;
                    step.error_code = crate::pb::ErrorCode::ExecutionEngineError as i32;
                    step.log = write.run.log.join("\n");
                    return Ok(Fate::Failed);
                }
                step.success = true;
                step.log = write.run.log.join("\n");
                step.metadata = write.metadata;
                step.output = Some(StepOutput {
                    kind: output_kind(kind),
                    data: Some(write.run.output.clone()),
                });
                self.vars.insert(
                    node.name.clone(),
                    json!({ "data": write.run.output, "input": step.config }),
                );
                Fate::Succeeded { taken: None }
            }
            Err(e) => {
                step.error = e.message;
                step.error_code = e.code as i32;
                step.log = e.log.join("\n");
                step.output = e
                    .output
                    .filter(|data| bounds.check("the node's output", data).is_ok())
                    .map(|data| StepOutput {
                        kind: output_kind(kind),
                        data: Some(data),
                    });
                Fate::Failed
            }
        })
    }
}

/// Reads what an execution's stream holds: the firing, and what earlier attempts recorded.
pub fn resume_state(
    events: &[events::Envelope],
) -> (Option<events::event::ExecutionQueued>, Resume, bool) {
    let mut queued = None;
    let mut resume = Resume::default();
    let mut finished = false;
    let mut ops = nodes::write::PriorFold::default();
    for envelope in events {
        ops.apply(&envelope.event);
        match &envelope.event {
            Event::ExecutionQueued(q) => queued = Some(q.clone()),
            Event::ExecutionStarted(_) => resume.started = true,
            Event::StepStarted(s) => {
                resume.interrupted.insert(s.step_id.clone());
            }
            Event::StepRecorded(r) => {
                resume.interrupted.remove(&r.step.id);
                resume.recorded.insert(r.step.id.clone(), r.step.clone());
            }
            Event::ExecutionFinished(_) => finished = true,
            _ => {}
        }
    }
    resume.ops = ops.into_steps();
    (queued, resume, finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_named_as_the_original_names_them() {
        let vars: Map<String, Value> = serde_json::from_value(json!({
            "manualTrigger": {"data": {"n": 1}, "input": {}},
            "code1": {"data": 42, "input": {"source": "x"}},
            "apContext": {"configVars": {}},
            "settings": {"name": "t"},
            "limit": 5,
            "me": {"data": 1, "input": {}},
        }))
        .unwrap();
        let keys = input_keys(&vars, "me");
        for key in [
            "manualTrigger.data",
            "manualTrigger.input",
            "code1.data",
            "code1.input",
            "apContext.configVars",
            "settings",
            "limit",
        ] {
            assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
        }
        assert!(!keys.iter().any(|k| k.starts_with("me")), "{keys:?}");
    }
}
