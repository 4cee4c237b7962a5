//! Tasks: what makes a definition valid, and the lifecycle rules.
//!
//! A definition is checked as the original does and more strictly: a name and a runner wallet
//! (from `settings.name` / `settings.runner`, as the official client sends them), at least one
//! node and one edge, edges between existing nodes, no cycle, valid identifiers, a trigger whose
//! config can fire (cron parses, epochs ahead, block interval > 0, well-formed event queries),
//! node configs that can run, and size limits on every free-text field.
//!
//! Lifecycle: `a` (active) ⇄ `i` (disabled); `l` (cancelled), `c` (completed) and `f` (failed)
//! are terminal. Deleting is always allowed and closes the task's stream.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::Address;
use events::Event;
use events::event::{TaskCancelled, TaskCreated, TaskDeleted, TaskDisabled, TaskEnabled};
use events::task::*;
use projections::tasks::{Status, TaskRow};
use serde_json::Value;

use super::schedule::Schedule;
use super::{Code, DomainError, DomainResult};
use crate::config::LimitsConfig;

/// The name and runner wallet a request resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub runner: Address,
}

fn invalid_workflow(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into(), Code::InvalidWorkflow)
}

fn invalid_trigger(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into(), Code::InvalidTriggerConfig)
}

fn invalid_node(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into(), Code::InvalidNodeConfig)
}

/// The task's name and runner: `settings.name` / `settings.runner` from the input variables (the
/// official client never sets the request's own `name` / `smart_wallet_address`, but other
/// clients may; when both are given they must agree).
pub fn identity(
    input_variables: &BTreeMap<String, Value>,
    request_name: &str,
    request_wallet: &str,
) -> DomainResult<Identity> {
    let settings = input_variables.get("settings");
    let setting = |key: &str| {
        settings
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let name = match (setting("name"), request_name.trim()) {
        (Some(a), b) if !b.is_empty() && a != b => {
            return Err(DomainError::invalid(format!(
                "the task name {b:?} differs from settings.name {a:?}"
            )));
        }
        (Some(a), _) => a.to_owned(),
        (None, b) if !b.is_empty() => b.to_owned(),
        (None, _) => {
            return Err(DomainError::Invalid(
                "the task has no name: set input_variables.settings.name".into(),
                Code::MissingRequiredField,
            ));
        }
    };
    let runner_text = match (setting("runner"), request_wallet.trim()) {
        (Some(a), b) if !b.is_empty() && !a.eq_ignore_ascii_case(b) => {
            return Err(DomainError::invalid(format!(
                "smart_wallet_address {b} differs from settings.runner {a}"
            )));
        }
        (Some(a), _) => a.to_owned(),
        (None, b) if !b.is_empty() => b.to_owned(),
        (None, _) => {
            return Err(DomainError::Invalid(
                "the task has no runner wallet: set input_variables.settings.runner".into(),
                Code::MissingRequiredField,
            ));
        }
    };
    let runner = runner_text.parse::<Address>().map_err(|_| {
        DomainError::Invalid(
            format!("settings.runner {runner_text:?} is not an address"),
            Code::InvalidAddress,
        )
    })?;
    Ok(Identity { name, runner })
}

/// `[A-Za-z_][A-Za-z0-9_]*`: names are variables in templates (`{{ name.data }}`).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Ids: letters, digits, `_` and `-` (a `.` separates a branch id from a condition id in edges).
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A field that is a template is resolved at run time: it cannot be checked now.
pub fn is_template(s: &str) -> bool {
    s.contains("{{")
}

fn address_or_template(
    field: &str,
    value: &str,
    make: fn(String) -> DomainError,
) -> DomainResult<()> {
    if is_template(value) || value.parse::<Address>().is_ok() {
        Ok(())
    } else {
        Err(make(format!("{field} {value:?} is not an address")))
    }
}

/// Size limits on strings, checked as a walk over the definition.
struct Sizes<'a> {
    limits: &'a LimitsConfig,
}

impl Sizes<'_> {
    fn name(&self, field: &str, value: &str) -> DomainResult<()> {
        if value.len() > self.limits.max_name_bytes {
            return Err(DomainError::invalid(format!(
                "{field} is {} bytes, more than the limit of {}",
                value.len(),
                self.limits.max_name_bytes
            )));
        }
        Ok(())
    }

    fn text(&self, field: &str, value: &str) -> DomainResult<()> {
        if value.len() > self.limits.max_text_bytes {
            return Err(DomainError::invalid(format!(
                "{field} is {} bytes, more than the limit of {}",
                value.len(),
                self.limits.max_text_bytes
            )));
        }
        Ok(())
    }

    /// A repeated field: every list of a definition is bounded (`limits.max_list_items`), so
    /// that no definition makes validation, or an operator's every tick, walk without end.
    fn list(&self, field: &str, len: usize) -> DomainResult<()> {
        if len > self.limits.max_list_items {
            return Err(DomainError::invalid(format!(
                "{field} has {len} entries, more than the limit of {}",
                self.limits.max_list_items
            )));
        }
        Ok(())
    }

    fn values(&self, field: &str, value: &impl serde::Serialize) -> DomainResult<()> {
        let encoded = serde_json::to_vec(value).unwrap_or_default();
        // Nested values go into the task's event: bounded like every value a user controls.
        let depth = events::bounds::json_depth(&encoded);
        if depth > self.limits.max_value_depth {
            return Err(DomainError::invalid(format!(
                "{field} nests {depth} levels deep, more than the limit of {}",
                self.limits.max_value_depth
            )));
        }
        let bytes = if encoded.is_empty() {
            usize::MAX
        } else {
            encoded.len()
        };
        if bytes > self.limits.max_values_bytes {
            return Err(DomainError::invalid(format!(
                "{field} is {bytes} bytes encoded, more than the limit of {}",
                self.limits.max_values_bytes
            )));
        }
        Ok(())
    }
}

/// Drops repeated cron schedules and fixed-time epochs (keeping the first of each): a schedule
/// listed twice fires once, and operators evaluate each once per tick.
pub fn normalize(definition: &mut TaskDefinition) {
    fn dedupe<T: Eq + std::hash::Hash + Clone>(items: &mut Vec<T>) {
        let mut seen = HashSet::with_capacity(items.len());
        items.retain(|item| seen.insert(item.clone()));
    }
    match &mut definition.trigger.config {
        Some(TriggerConfig::Cron(cron)) => dedupe(&mut cron.schedules),
        Some(TriggerConfig::FixedTime(fixed)) => dedupe(&mut fixed.epochs),
        _ => {}
    }
}

/// Checks a definition (with its name already resolved) against the rules and limits. `now_ms`
/// is the command's time: `expired_at` must lie after it (fixed-time epochs are taken as given).
pub fn validate(
    definition: &TaskDefinition,
    limits: &LimitsConfig,
    now_ms: i64,
) -> DomainResult<()> {
    let sizes = Sizes { limits };
    sizes.name("the task name", &definition.name)?;
    sizes.values("input_variables", &definition.input_variables)?;
    if definition.max_execution < 0 {
        return Err(DomainError::invalid(
            "max_execution must not be negative (0 means unlimited)",
        ));
    }
    if definition.start_at < 0 || definition.expired_at < 0 {
        return Err(DomainError::invalid(
            "start_at and expired_at are milliseconds since the epoch, not negative",
        ));
    }
    if definition.expired_at != 0 {
        if definition.expired_at <= now_ms {
            return Err(DomainError::invalid("expired_at is in the past"));
        }
        if definition.start_at != 0 && definition.expired_at <= definition.start_at {
            return Err(DomainError::invalid("expired_at must be after start_at"));
        }
    }
    validate_trigger(&definition.trigger, &sizes)?;
    validate_graph(definition, &sizes, None)?;
    // Each field fits its own limit; the whole definition must also fit one event.
    let total = serde_json::to_vec(definition).map_or(usize::MAX, |v| v.len());
    let room = limits.max_event_bytes.saturating_sub(16 * 1024);
    if total > room {
        return Err(DomainError::invalid(format!(
            "the task definition is {total} bytes encoded, more than the limit of {room}"
        )));
    }
    Ok(())
}

/// Prepares a definition as the original does at create, before it is validated: an event
/// trigger's `{{settings.*}}` resolved from the task's settings, its 20-byte topics padded
/// (`event_query`).
pub fn prepare(definition: &mut TaskDefinition) -> DomainResult<()> {
    prepare_trigger(&mut definition.trigger, &definition.input_variables)
}

/// `prepare` for a trigger on its own, with the variables that stand for the task's.
pub fn prepare_trigger(
    trigger: &mut Trigger,
    input_variables: &BTreeMap<String, Value>,
) -> DomainResult<()> {
    if let Some(TriggerConfig::Event(event)) = &mut trigger.config {
        super::event_query::prepare(event, input_variables.get("settings"))?;
    }
    Ok(())
}

/// A trigger on its own (`RunTrigger`).
pub fn validate_lone_trigger(trigger: &Trigger, limits: &LimitsConfig) -> DomainResult<()> {
    validate_trigger(trigger, &Sizes { limits })
}

/// A node on its own (`RunNodeWithInputs`).
pub fn validate_lone_node(node: &Node, limits: &LimitsConfig) -> DomainResult<()> {
    if !is_identifier(&node.name) && !node.name.is_empty() {
        return Err(invalid_node(format!(
            "the node name {:?} is not a valid identifier",
            node.name
        )));
    }
    validate_node(node, &Sizes { limits })
}

fn validate_trigger(trigger: &Trigger, sizes: &Sizes<'_>) -> DomainResult<()> {
    if !is_id(&trigger.id) {
        return Err(invalid_trigger(format!(
            "the trigger id {:?} must be letters, digits, '_' or '-'",
            trigger.id
        )));
    }
    sizes.name("the trigger id", &trigger.id)?;
    if !is_identifier(&trigger.name) {
        return Err(invalid_trigger(format!(
            "the trigger name {:?} is not a valid identifier ([A-Za-z_][A-Za-z0-9_]*)",
            trigger.name
        )));
    }
    sizes.name("the trigger name", &trigger.name)?;
    let Some(config) = &trigger.config else {
        return Err(invalid_trigger(
            "the trigger has no configuration (none of manual, fixed_time, cron, block, event is set)",
        ));
    };
    if trigger.trigger_type != config.kind().wire_number() {
        return Err(invalid_trigger(format!(
            "the trigger type {} does not match its configuration ({})",
            trigger.trigger_type,
            config.kind().wire_name()
        )));
    }
    match config {
        TriggerConfig::Manual(manual) => match &manual.data {
            // As the original: a manual trigger carries the data its runs start with.
            None | Some(Value::Null) => {
                return Err(invalid_trigger("ManualTrigger data is required"));
            }
            Some(data) => sizes.values("the manual trigger's data", data)?,
        },
        TriggerConfig::FixedTime(fixed) => {
            if fixed.epochs.is_empty() {
                return Err(invalid_trigger(
                    "a fixed-time trigger needs at least one epoch",
                ));
            }
            sizes.list("the fixed-time trigger's epochs", fixed.epochs.len())?;
            // Epochs are taken as given, as the original does, also when already past: an epoch
            // before the task exists never fires (the operators watch from the task's creation).
            if let Some(negative) = fixed.epochs.iter().find(|e| **e < 0) {
                return Err(invalid_trigger(format!(
                    "the fixed-time epoch {negative} is negative: epochs are milliseconds since 1970"
                )));
            }
        }
        TriggerConfig::Cron(cron) => {
            if cron.schedules.is_empty() {
                return Err(invalid_trigger(
                    "a cron trigger needs at least one schedule",
                ));
            }
            sizes.list("the cron trigger's schedules", cron.schedules.len())?;
            for schedule in &cron.schedules {
                sizes.name("a cron schedule", schedule)?;
                schedule
                    .parse::<Schedule>()
                    .map_err(|e| invalid_trigger(e.to_string()))?;
            }
        }
        TriggerConfig::Block(block) => {
            if block.interval <= 0 {
                return Err(invalid_trigger(format!(
                    "the block interval must be positive, not {}",
                    block.interval
                )));
            }
        }
        TriggerConfig::Event(event) => validate_event(event, sizes)?,
    }
    Ok(())
}

const CONDITION_OPERATORS: &[&str] = &["gt", "gte", "lt", "lte", "eq", "ne"];

fn validate_event(event: &EventTriggerConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    if event.queries.is_empty() {
        return Err(invalid_trigger("an event trigger needs at least one query"));
    }
    sizes.list("the event trigger's queries", event.queries.len())?;
    for (q, query) in event.queries.iter().enumerate() {
        sizes.list(
            &format!("event query {q}'s addresses"),
            query.addresses.len(),
        )?;
        sizes.list(
            &format!("event query {q}'s conditions"),
            query.conditions.len(),
        )?;
        sizes.list(&format!("event query {q}'s ABI"), query.contract_abi.len())?;
        sizes.list(
            &format!("event query {q}'s method calls"),
            query.method_calls.len(),
        )?;
        if query.addresses.is_empty() && query.topics.iter().all(|t| t.is_empty()) {
            return Err(invalid_trigger(format!(
                "event query {q} has neither addresses nor topics: it would match every log"
            )));
        }
        for address in &query.addresses {
            if address.parse::<Address>().is_err() {
                return Err(DomainError::Invalid(
                    format!("event query {q}: {address:?} is not an address"),
                    Code::InvalidAddress,
                ));
            }
        }
        if query.topics.len() > 4 {
            return Err(invalid_trigger(format!(
                "event query {q} has {} topics; a log has at most 4",
                query.topics.len()
            )));
        }
        for topic in &query.topics {
            let ok = topic.is_empty()
                || topic.eq_ignore_ascii_case("null")
                || topic
                    .strip_prefix("0x")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                return Err(invalid_trigger(format!(
                    "event query {q}: topic {topic:?} is not a 32-byte hex value (or empty for any)"
                )));
            }
        }
        if query.max_events_per_block == Some(0) {
            return Err(invalid_trigger(format!(
                "event query {q}: max_events_per_block must be positive"
            )));
        }
        sizes.values("the event query's ABI", &query.contract_abi)?;
        for condition in &query.conditions {
            if condition.field_name.trim().is_empty() {
                return Err(invalid_trigger(format!(
                    "event query {q}: a condition has no field_name"
                )));
            }
            if !CONDITION_OPERATORS.contains(&condition.operator.as_str()) {
                return Err(invalid_trigger(format!(
                    "event query {q}: condition operator {:?} is not one of gt, gte, lt, lte, eq, ne",
                    condition.operator
                )));
            }
            sizes.name("a condition's value", &condition.value)?;
        }
        if !query.conditions.is_empty() && query.contract_abi.is_empty() {
            return Err(invalid_trigger(format!(
                "event query {q} has conditions but no contract_abi to decode the log with"
            )));
        }
    }
    Ok(())
}

/// Checks a definition to simulate (`SimulateTask`): as `validate`, except that a node whose
/// own configuration is invalid does not refuse the whole: it is returned, by node id, so that
/// the simulation records it as a failed step with its error code, as the original does. The
/// trigger and the graph must be valid.
pub fn validate_simulation(
    definition: &TaskDefinition,
    limits: &LimitsConfig,
) -> DomainResult<BTreeMap<String, DomainError>> {
    let sizes = Sizes { limits };
    sizes.values("input_variables", &definition.input_variables)?;
    validate_trigger(&definition.trigger, &sizes)?;
    let mut refused = BTreeMap::new();
    validate_graph(definition, &sizes, Some(&mut refused))?;
    Ok(refused)
}

fn validate_graph(
    definition: &TaskDefinition,
    sizes: &Sizes<'_>,
    mut refused_nodes: Option<&mut BTreeMap<String, DomainError>>,
) -> DomainResult<()> {
    let limits = sizes.limits;
    if definition.nodes.is_empty() {
        return Err(invalid_workflow("a task needs at least one node"));
    }
    if definition.edges.is_empty() {
        return Err(invalid_workflow("a task needs at least one edge"));
    }
    if definition.nodes.len() > limits.max_nodes {
        return Err(invalid_workflow(format!(
            "{} nodes, more than the limit of {}",
            definition.nodes.len(),
            limits.max_nodes
        )));
    }
    if definition.edges.len() > limits.max_edges {
        return Err(invalid_workflow(format!(
            "{} edges, more than the limit of {}",
            definition.edges.len(),
            limits.max_edges
        )));
    }

    let mut names: HashSet<&str> = HashSet::from([definition.trigger.name.as_str()]);
    let mut ids: HashMap<&str, &Node> = HashMap::new();
    for node in &definition.nodes {
        if !is_id(&node.id) {
            return Err(invalid_node(format!(
                "the node id {:?} must be letters, digits, '_' or '-'",
                node.id
            )));
        }
        sizes.name("a node id", &node.id)?;
        if node.id == definition.trigger.id || ids.insert(&node.id, node).is_some() {
            return Err(invalid_node(format!("the id {:?} is used twice", node.id)));
        }
        if !is_identifier(&node.name) {
            return Err(invalid_node(format!(
                "the node name {:?} is not a valid identifier ([A-Za-z_][A-Za-z0-9_]*)",
                node.name
            )));
        }
        sizes.name("a node name", &node.name)?;
        if !names.insert(&node.name) {
            return Err(invalid_node(format!(
                "the name {:?} is used twice (names are template variables)",
                node.name
            )));
        }
        match (validate_node(node, sizes), refused_nodes.as_deref_mut()) {
            (Ok(()), _) => {}
            (Err(e), Some(refused)) => {
                refused.insert(node.id.clone(), e);
            }
            (Err(e), None) => return Err(e),
        }
    }

    // Edges: from the trigger, a node, or a branch condition (`<branch id>.<condition id>`), to a node.
    let mut seen_edges = HashSet::new();
    let mut successors: HashMap<&str, Vec<&str>> = HashMap::new();
    for edge in &definition.edges {
        sizes.name("an edge id", &edge.id)?;
        if !edge.id.is_empty() && !seen_edges.insert(edge.id.as_str()) {
            return Err(invalid_workflow(format!(
                "the edge id {:?} is used twice",
                edge.id
            )));
        }
        let from = edge_source_node(edge, definition, &ids)?;
        if !ids.contains_key(edge.target.as_str()) {
            return Err(invalid_workflow(format!(
                "edge {:?} goes to {:?}, which is not a node",
                edge.id, edge.target
            )));
        }
        successors.entry(from).or_default().push(&edge.target);
    }
    if let Some(cycle_at) = find_cycle(&ids, &successors) {
        return Err(invalid_workflow(format!(
            "the graph has a cycle through node {cycle_at:?}"
        )));
    }
    Ok(())
}

/// The node (or the trigger) an edge leaves from.
fn edge_source_node<'a>(
    edge: &'a Edge,
    definition: &'a TaskDefinition,
    ids: &HashMap<&'a str, &'a Node>,
) -> DomainResult<&'a str> {
    if edge.source == definition.trigger.id || ids.contains_key(edge.source.as_str()) {
        return Ok(&edge.source);
    }
    if let Some((branch, condition)) = edge.source.split_once('.')
        && let Some(node) = ids.get(branch)
    {
        let Some(NodeConfig::Branch(config)) = &node.config else {
            return Err(invalid_workflow(format!(
                "edge {:?} leaves from {:?}, but {branch:?} is not a branch node",
                edge.id, edge.source
            )));
        };
        if !config.conditions.iter().any(|c| c.id == condition) {
            return Err(invalid_workflow(format!(
                "edge {:?} leaves from condition {condition:?}, which branch {branch:?} does not have",
                edge.id
            )));
        }
        return Ok(&node.id);
    }
    Err(invalid_workflow(format!(
        "edge {:?} leaves from {:?}, which is neither the trigger nor a node",
        edge.id, edge.source
    )))
}

/// A node on a cycle, if any (depth-first search with colours).
fn find_cycle<'a>(
    ids: &HashMap<&'a str, &Node>,
    successors: &HashMap<&'a str, Vec<&'a str>>,
) -> Option<&'a str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut roots: Vec<&str> = ids.keys().copied().collect();
    roots.sort_unstable();
    for root in roots {
        if marks.contains_key(root) {
            continue;
        }
        // Iterative DFS: (node, index of the next successor to visit).
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::Open);
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            let children = successors.get(node).map_or(&[][..], Vec::as_slice);
            if let Some(child) = children.get(*next).copied() {
                *next += 1;
                match marks.get(child) {
                    Some(Mark::Open) => return Some(child),
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(child, Mark::Open);
                        stack.push((child, 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

fn validate_node(node: &Node, sizes: &Sizes<'_>) -> DomainResult<()> {
    let Some(config) = &node.config else {
        return Err(invalid_node(format!(
            "node {:?} has no configuration",
            node.id
        )));
    };
    if node.node_type != config.kind().wire_number() {
        return Err(invalid_node(format!(
            "node {:?}: type {} does not match its configuration ({})",
            node.id,
            node.node_type,
            config.kind().wire_name()
        )));
    }
    let id = &node.id;
    match config {
        NodeConfig::EthTransfer(c) => validate_eth_transfer(id, c),
        NodeConfig::ContractWrite(c) => validate_contract_write(id, c, sizes),
        NodeConfig::ContractRead(c) => validate_contract_read(id, c, sizes),
        NodeConfig::GraphqlQuery(c) => validate_graphql(id, c, sizes),
        NodeConfig::RestApi(c) => validate_rest(id, c, sizes),
        NodeConfig::CustomCode(c) => validate_code(id, c, sizes),
        NodeConfig::Balance(c) => {
            address_or_template(&format!("node {id:?}: address"), &c.address, invalid_node)?;
            for token in &c.token_addresses {
                address_or_template(&format!("node {id:?}: token address"), token, invalid_node)?;
            }
            if c.min_usd_value_cents < 0 {
                return Err(invalid_node(format!(
                    "minUsdValue must be non-negative, got {} cents (node {id:?})",
                    c.min_usd_value_cents
                )));
            }
            Ok(())
        }
        NodeConfig::Branch(c) => validate_branch(id, c, sizes),
        NodeConfig::Filter(c) => {
            if c.expression.trim().is_empty() {
                return Err(invalid_node(format!("filter {id:?} has no expression")));
            }
            if c.input_variable.trim().is_empty() {
                return Err(invalid_node(format!("filter {id:?} has no input_variable")));
            }
            sizes.text("a filter expression", &c.expression)?;
            sizes.name("a filter's input_variable", &c.input_variable)
        }
        NodeConfig::Loop(c) => validate_loop(id, c, sizes),
    }
}

/// The original's words: "invalid destination address", "invalid amount".
fn validate_eth_transfer(id: &str, c: &EthTransferConfig) -> DomainResult<()> {
    if !is_template(&c.destination) && c.destination.parse::<Address>().is_err() {
        return Err(invalid_node(format!(
            "invalid destination address: node {id:?}: {:?} is not an address",
            c.destination
        )));
    }
    if !is_template(&c.amount) && c.amount.parse::<alloy::primitives::U256>().is_err() {
        return Err(invalid_node(format!(
            "invalid amount: node {id:?}: {:?} is not a non-negative integer (wei)",
            c.amount
        )));
    }
    Ok(())
}

fn validate_method_calls(id: &str, calls: &[MethodCall], sizes: &Sizes<'_>) -> DomainResult<()> {
    sizes.list(&format!("node {id:?}'s method calls"), calls.len())?;
    if calls.is_empty() {
        return Err(invalid_node(format!("node {id:?} has no method_calls")));
    }
    for call in calls {
        if call.method_name.trim().is_empty() && call.call_data.as_deref().is_none_or(str::is_empty)
        {
            return Err(invalid_node(format!(
                "node {id:?}: a method call has neither a method_name nor call_data"
            )));
        }
        sizes.name("a method name", &call.method_name)?;
        if let Some(data) = &call.call_data {
            sizes.text("call data", data)?;
        }
        for param in &call.method_params {
            sizes.text("a method parameter", param)?;
        }
    }
    Ok(())
}

fn validate_contract_read(id: &str, c: &ContractReadConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    address_or_template(
        &format!("node {id:?}: contract_address"),
        &c.contract_address,
        invalid_node,
    )?;
    sizes.list("a contract ABI", c.contract_abi.len())?;
    sizes.values("a contract ABI", &c.contract_abi)?;
    validate_method_calls(id, &c.method_calls, sizes)
}

fn validate_contract_write(
    id: &str,
    c: &ContractWriteConfig,
    sizes: &Sizes<'_>,
) -> DomainResult<()> {
    address_or_template(
        &format!("node {id:?}: contract_address"),
        &c.contract_address,
        invalid_node,
    )?;
    sizes.list("a contract ABI", c.contract_abi.len())?;
    sizes.values("a contract ABI", &c.contract_abi)?;
    sizes.text("call data", &c.call_data)?;
    if c.method_calls.is_empty() && c.call_data.trim().is_empty() {
        return Err(invalid_node(format!(
            "node {id:?} has neither method_calls nor call_data"
        )));
    }
    if !c.method_calls.is_empty() {
        validate_method_calls(id, &c.method_calls, sizes)?;
    }
    Ok(())
}

fn validate_url(id: &str, url: &str, sizes: &Sizes<'_>) -> DomainResult<()> {
    sizes.text("a URL", url)?;
    if is_template(url) {
        return Ok(());
    }
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() <= "https://".len() {
        return Err(invalid_node(format!(
            "node {id:?}: url {url:?} is not an http(s) URL"
        )));
    }
    Ok(())
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn validate_rest(id: &str, c: &RestApiConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    validate_url(id, &c.url, sizes)?;
    if !c.method.is_empty() && !METHODS.contains(&c.method.to_ascii_uppercase().as_str()) {
        return Err(invalid_node(format!(
            "node {id:?}: method {:?} is not an HTTP method",
            c.method
        )));
    }
    sizes.text("a request body", &c.body)?;
    for (name, value) in &c.headers {
        sizes.name("a header name", name)?;
        sizes.text("a header value", value)?;
    }
    if let Some(options) = &c.options {
        sizes.values("rest options", options)?;
    }
    Ok(())
}

fn validate_graphql(id: &str, c: &GraphqlQueryConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    validate_url(id, &c.url, sizes)?;
    if c.query.trim().is_empty() {
        return Err(invalid_node(format!("node {id:?} has no query")));
    }
    sizes.text("a GraphQL query", &c.query)?;
    for (name, value) in &c.variables {
        sizes.name("a variable name", name)?;
        sizes.text("a variable value", value)?;
    }
    Ok(())
}

fn validate_code(id: &str, c: &CustomCodeConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    // Lang: 0 (unspecified, taken as JavaScript, as the original does) or 1 (JavaScript).
    if c.lang != 0 && c.lang != 1 {
        return Err(invalid_node(format!(
            "node {id:?}: only JavaScript code runs here (lang {})",
            c.lang
        )));
    }
    if c.source.trim().is_empty() {
        // The original's MISSING_REQUIRED_FIELD (3006).
        return Err(DomainError::Invalid(
            format!("source is required: node {id:?} has no code (missing required field)"),
            Code::MissingRequiredField,
        ));
    }
    sizes.text("code", &c.source)
}

fn validate_branch(id: &str, c: &BranchConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    if c.conditions.is_empty() {
        return Err(invalid_node(format!("branch {id:?} has no conditions")));
    }
    let mut ids = HashSet::new();
    for (i, condition) in c.conditions.iter().enumerate() {
        if !is_id(&condition.id) || !ids.insert(condition.id.as_str()) {
            return Err(invalid_node(format!(
                "branch {id:?}: condition id {:?} is missing, invalid or repeated",
                condition.id
            )));
        }
        match condition.condition_type.as_str() {
            "if" => {
                if condition.expression.trim().is_empty() {
                    return Err(invalid_node(format!(
                        "branch {id:?}: the if condition {:?} has no expression",
                        condition.id
                    )));
                }
            }
            "else" if i > 0 && i + 1 == c.conditions.len() => {}
            "else" => {
                return Err(invalid_node(format!(
                    "branch {id:?}: an else condition must come last, after an if"
                )));
            }
            other => {
                return Err(invalid_node(format!(
                    "branch {id:?}: condition type {other:?} is neither if nor else"
                )));
            }
        }
        sizes.text("a branch expression", &condition.expression)?;
    }
    if c.conditions
        .first()
        .is_some_and(|c| c.condition_type != "if")
    {
        return Err(invalid_node(format!(
            "branch {id:?}: the first condition must be an if"
        )));
    }
    Ok(())
}

fn validate_loop(id: &str, c: &LoopConfig, sizes: &Sizes<'_>) -> DomainResult<()> {
    if c.input_variable.trim().is_empty() {
        return Err(invalid_node(format!("loop {id:?} has no input_variable")));
    }
    sizes.name("a loop's input_variable", &c.input_variable)?;
    if !is_identifier(&c.iter_val) {
        return Err(invalid_node(format!(
            "loop {id:?}: iter_val {:?} is not a valid identifier",
            c.iter_val
        )));
    }
    if !c.iter_key.is_empty() && !is_identifier(&c.iter_key) {
        return Err(invalid_node(format!(
            "loop {id:?}: iter_key {:?} is not a valid identifier",
            c.iter_key
        )));
    }
    if c.execution_mode != 0 && c.execution_mode != 1 {
        return Err(invalid_node(format!(
            "loop {id:?}: execution_mode {} is neither sequential (0) nor parallel (1)",
            c.execution_mode
        )));
    }
    let Some(runner) = &c.runner else {
        return Err(invalid_node(format!("loop {id:?} has no runner node")));
    };
    match runner {
        LoopRunner::EthTransfer(r) => validate_eth_transfer(id, r),
        LoopRunner::ContractWrite(r) => validate_contract_write(id, r, sizes),
        LoopRunner::ContractRead(r) => validate_contract_read(id, r, sizes),
        LoopRunner::GraphqlDataQuery(r) => validate_graphql(id, r, sizes),
        LoopRunner::RestApi(r) => validate_rest(id, r, sizes),
        LoopRunner::CustomCode(r) => validate_code(id, r, sizes),
    }
}

// ---- Lifecycle ----

/// What the store says about a new task's owner, read before `create` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerState {
    /// The runner is one of the owner's smart wallets (the salt-0 one, or a registered one).
    pub owns_runner: bool,
    /// The tasks the owner has (deleted ones are gone).
    pub owned: u64,
}

/// `CreateTask`: a definition valid at `now_ms`, named and run by `identity`; the runner must be
/// one of the owner's wallets, and the owner within `limits.tasks_per_owner`. The event that
/// creates task `task_id`.
pub fn create(
    mut definition: TaskDefinition,
    identity: Identity,
    task_id: String,
    owner: &str,
    state: OwnerState,
    limits: &LimitsConfig,
    now_ms: i64,
) -> DomainResult<TaskCreated> {
    definition.name = identity.name;
    normalize(&mut definition);
    prepare(&mut definition)?;
    validate(&definition, limits, now_ms)?;
    if !state.owns_runner {
        return Err(DomainError::Invalid(
            format!(
                "the runner {} is not one of your smart wallets: use your salt-0 wallet or register one with GetWallet",
                identity.runner
            ),
            Code::InvalidAddress,
        ));
    }
    if state.owned >= limits.tasks_per_owner {
        return Err(DomainError::QuotaExceeded(format!(
            "an owner may have at most {} tasks; delete some first",
            limits.tasks_per_owner
        )));
    }
    Ok(TaskCreated {
        task_id,
        owner: owner.to_owned(),
        wallet: format!("{:#x}", identity.runner),
        definition,
    })
}

/// Only the owner sees a task; to anyone else it does not exist.
pub fn owned<'a>(row: Option<&'a TaskRow>, owner: &str) -> DomainResult<&'a TaskRow> {
    row.filter(|r| r.owner == owner)
        .ok_or_else(DomainError::task_not_found)
}

fn terminal(row: &TaskRow, doing: &str) -> DomainError {
    let (what, code) = match row.status {
        Status::Cancelled => ("cancelled", Code::TaskAlreadyCancelled),
        Status::Completed => ("completed", Code::TaskAlreadyCompleted),
        _ => ("failed", Code::TaskAlreadyCompleted),
    };
    DomainError::FailedPrecondition(
        format!("cannot {doing} a {what} task: it never runs again"),
        code,
    )
}

/// `SetTaskEnabled`. `None` when the task is already in the asked state.
pub fn set_enabled(row: &TaskRow, enabled: bool) -> DomainResult<Option<Event>> {
    let task_id = row.id.clone();
    match (row.status, enabled) {
        (Status::Active, true) | (Status::Disabled, false) => Ok(None),
        (Status::Disabled, true) => Ok(Some(TaskEnabled { task_id }.into())),
        (Status::Active, false) => Ok(Some(
            TaskDisabled {
                task_id,
                reason: "user".into(),
            }
            .into(),
        )),
        (_, true) => Err(terminal(row, "enable")),
        (_, false) => Err(terminal(row, "disable")),
    }
}

/// `CancelTask`: a terminal stop.
pub fn cancel(row: &TaskRow) -> DomainResult<Event> {
    match row.status {
        Status::Active | Status::Disabled => Ok(TaskCancelled {
            task_id: row.id.clone(),
        }
        .into()),
        _ => Err(terminal(row, "cancel")),
    }
}

/// `DeleteTask`: always allowed; runs in progress finish and are kept in the history.
pub fn delete(row: &TaskRow) -> Event {
    TaskDeleted {
        task_id: row.id.clone(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;
    use events::event::TaskCreated;

    // ---- given / when / then over the lifecycle, with no storage ----

    fn created() -> Event {
        TaskCreated {
            task_id: "t".into(),
            owner: "0xowner".into(),
            wallet: "0xwallet".into(),
            definition: events::samples::definition(),
        }
        .into()
    }

    fn disabled() -> Event {
        TaskDisabled {
            task_id: "t".into(),
            reason: "user".into(),
        }
        .into()
    }

    fn cancelled() -> Event {
        TaskCancelled {
            task_id: "t".into(),
        }
        .into()
    }

    #[test]
    fn disabling_an_active_task_records_a_disable() {
        let state = given(vec![created()]);
        let then = set_enabled(&state, false).unwrap();
        assert_eq!(then, Some(disabled()));
    }

    #[test]
    fn enabling_a_disabled_task_records_an_enable_and_repeats_are_no_ops() {
        let state = given(vec![created(), disabled()]);
        assert_eq!(
            set_enabled(&state, true).unwrap(),
            Some(
                TaskEnabled {
                    task_id: "t".into()
                }
                .into()
            )
        );
        assert_eq!(set_enabled(&state, false).unwrap(), None);
    }

    #[test]
    fn a_cancelled_task_is_never_enabled_again() {
        let state = given(vec![created(), disabled(), cancelled()]);
        let err = set_enabled(&state, true).unwrap_err();
        assert!(
            matches!(
                err,
                DomainError::FailedPrecondition(_, Code::TaskAlreadyCancelled)
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cancelled"));
        assert!(cancel(&state).is_err());
    }

    #[test]
    fn cancelling_works_from_active_and_disabled() {
        assert_eq!(cancel(&given(vec![created()])).unwrap(), cancelled());
        assert_eq!(
            cancel(&given(vec![created(), disabled()])).unwrap(),
            cancelled()
        );
    }

    #[test]
    fn a_completed_task_cannot_be_cancelled_or_enabled() {
        let completed = events::event::TaskCompleted {
            task_id: "t".into(),
            reason: "max_execution reached".into(),
        };
        let state = given(vec![created(), completed.into()]);
        assert!(matches!(
            cancel(&state),
            Err(DomainError::FailedPrecondition(
                _,
                Code::TaskAlreadyCompleted
            ))
        ));
        assert!(set_enabled(&state, true).is_err());
    }

    #[test]
    fn another_owner_sees_no_task() {
        let state = given(vec![created()]);
        assert!(owned(Some(&state), "0xowner").is_ok());
        assert_eq!(
            owned(Some(&state), "0xsomeone").unwrap_err(),
            DomainError::task_not_found()
        );
        assert_eq!(
            owned(None, "0xowner").unwrap_err(),
            DomainError::task_not_found()
        );
    }

    #[test]
    fn deleting_is_always_possible() {
        let state = given(vec![created(), cancelled()]);
        assert_eq!(
            delete(&state),
            TaskDeleted {
                task_id: "t".into()
            }
            .into()
        );
    }

    // ---- CreateTask: the definition, the runner, the quota ----

    fn create_with(state: OwnerState) -> DomainResult<TaskCreated> {
        let definition = valid();
        let who = identity(&definition.input_variables, "", "").unwrap();
        let mut limits = limits();
        limits.tasks_per_owner = 2;
        create(
            definition,
            who,
            "t1".into(),
            "0xowner",
            state,
            &limits,
            1_000,
        )
    }

    #[test]
    fn a_valid_definition_of_an_owned_runner_within_the_quota_is_created() {
        let created = create_with(OwnerState {
            owns_runner: true,
            owned: 1,
        })
        .unwrap();
        assert_eq!(created.task_id, "t1");
        assert_eq!(created.owner, "0xowner");
        assert_eq!(created.definition.name, "sample task");
        assert_eq!(created.wallet, events::samples::WALLET);
    }

    #[test]
    fn a_runner_that_is_not_the_owners_is_refused() {
        let refused = create_with(OwnerState {
            owns_runner: false,
            owned: 0,
        })
        .unwrap_err();
        assert!(
            matches!(&refused, DomainError::Invalid(m, Code::InvalidAddress) if m.contains("not one of your smart wallets")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_full_quota_refuses_the_next_task() {
        let refused = create_with(OwnerState {
            owns_runner: true,
            owned: 2,
        })
        .unwrap_err();
        assert!(
            matches!(refused, DomainError::QuotaExceeded(_)),
            "{refused:?}"
        );
    }

    #[test]
    fn an_invalid_definition_is_refused_before_the_owner_is_looked_at() {
        let mut definition = valid();
        definition.nodes.clear();
        let who = identity(&definition.input_variables, "", "").unwrap();
        let state = OwnerState {
            owns_runner: false,
            owned: u64::MAX,
        };
        let refused = create(definition, who, "t1".into(), "0xo", state, &limits(), 1_000);
        assert!(
            matches!(refused, Err(DomainError::Invalid(_, Code::InvalidWorkflow))),
            "{refused:?}"
        );
    }

    // ---- definition validation ----

    fn limits() -> LimitsConfig {
        LimitsConfig::default()
    }

    fn valid() -> TaskDefinition {
        events::samples::definition()
    }

    fn check(def: &TaskDefinition) -> DomainResult<()> {
        validate(def, &limits(), 1_000)
    }

    #[test]
    fn the_sample_definition_is_valid() {
        check(&valid()).unwrap();
    }

    #[test]
    fn identity_comes_from_settings() {
        let vars = valid().input_variables;
        let id = identity(&vars, "", "").unwrap();
        assert_eq!(id.name, "sample task");
        assert!(
            identity(&BTreeMap::new(), "", "")
                .unwrap_err()
                .to_string()
                .contains("settings.name")
        );
        assert!(identity(&vars, "other", "").is_err());
    }

    #[test]
    fn graph_rules() {
        let mut d = valid();
        d.edges.clear();
        assert!(
            check(&d)
                .unwrap_err()
                .to_string()
                .contains("at least one edge")
        );

        let mut d = valid();
        d.edges[0].target = "nope".into();
        assert!(check(&d).unwrap_err().to_string().contains("not a node"));

        let mut d = valid();
        let mut second = d.nodes[0].clone();
        second.id = "node2".into();
        second.name = "code2".into();
        d.nodes.push(second);
        d.edges.push(Edge {
            id: "e2".into(),
            source: "node1".into(),
            target: "node2".into(),
        });
        check(&d).unwrap();
        d.edges.push(Edge {
            id: "e3".into(),
            source: "node2".into(),
            target: "node1".into(),
        });
        assert!(check(&d).unwrap_err().to_string().contains("cycle"));

        let mut d = valid();
        d.nodes[0].name = "not valid".into();
        assert!(check(&d).unwrap_err().to_string().contains("identifier"));
    }

    #[test]
    fn a_simulation_keeps_invalid_nodes_as_refused_steps() {
        let mut d = valid();
        d.nodes[0].config = Some(NodeConfig::CustomCode(CustomCodeConfig {
            lang: 1,
            source: "  ".into(),
        }));
        let refused = validate_simulation(&d, &limits()).unwrap();
        let e = refused.get(&d.nodes[0].id).unwrap();
        assert!(e.to_string().starts_with("source is required"), "{e}");
        assert!(matches!(
            e,
            DomainError::Invalid(_, Code::MissingRequiredField)
        ));
        assert!(check(&d).is_err(), "a task to create is refused as a whole");
        d.edges.clear();
        assert!(
            validate_simulation(&d, &limits()).is_err(),
            "the graph must hold"
        );
    }

    #[test]
    fn trigger_rules() {
        let mut d = valid();
        d.trigger.config = Some(TriggerConfig::Block(BlockTriggerConfig { interval: 0 }));
        assert!(check(&d).unwrap_err().to_string().contains("positive"));

        let mut d = valid();
        d.trigger.trigger_type = 3;
        d.trigger.config = Some(TriggerConfig::Cron(CronTriggerConfig {
            schedules: vec!["nope".into()],
        }));
        assert!(matches!(
            check(&d),
            Err(DomainError::Invalid(_, Code::InvalidTriggerConfig))
        ));
        d.trigger.config = Some(TriggerConfig::Cron(CronTriggerConfig {
            schedules: vec!["*/5 * * * *".into()],
        }));
        check(&d).unwrap();

        let mut d = valid();
        d.trigger.trigger_type = 2;
        d.trigger.config = Some(TriggerConfig::FixedTime(FixedTimeTriggerConfig {
            epochs: vec![500],
        }));
        check(&d).expect("a past epoch is taken as given, as the original takes it");
        d.trigger.config = Some(TriggerConfig::FixedTime(FixedTimeTriggerConfig {
            epochs: vec![-1],
        }));
        assert!(check(&d).unwrap_err().to_string().contains("negative"));

        let mut d = valid();
        d.trigger.trigger_type = 1;
        d.trigger.config = Some(TriggerConfig::Manual(ManualTriggerConfig::default()));
        assert_eq!(
            check(&d).unwrap_err(),
            DomainError::Invalid(
                "ManualTrigger data is required".into(),
                Code::InvalidTriggerConfig
            )
        );

        // `{{settings.*}}` in an event query is resolved when the task is prepared.
        let mut d = valid();
        d.trigger.trigger_type = 5;
        d.input_variables.insert(
            "settings".into(),
            serde_json::json!({"token": "0x1c7d4b196cb0c7b01d743fbc6116a902379c7238"}),
        );
        d.trigger.config = Some(TriggerConfig::Event(EventTriggerConfig {
            queries: vec![EventQuery {
                addresses: vec!["{{ settings.token }}".into()],
                ..EventQuery::default()
            }],
            cooldown_seconds: None,
        }));
        assert!(check(&d).is_err(), "unresolved, the address is not one");
        prepare(&mut d).unwrap();
        check(&d).unwrap();

        let mut d = valid();
        d.trigger.trigger_type = 5;
        d.trigger.config = Some(TriggerConfig::Event(EventTriggerConfig {
            queries: vec![EventQuery {
                addresses: vec!["0x12".into()],
                ..EventQuery::default()
            }],
            cooldown_seconds: None,
        }));
        assert!(matches!(
            check(&d),
            Err(DomainError::Invalid(_, Code::InvalidAddress))
        ));

        let mut d = valid();
        d.trigger.trigger_type = 1;
        assert!(
            check(&d)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
    }

    #[test]
    fn size_limits_apply_to_free_text() {
        let mut d = valid();
        d.nodes[0].config = Some(NodeConfig::CustomCode(CustomCodeConfig {
            lang: 1,
            source: "x".repeat(limits().max_text_bytes + 1),
        }));
        assert!(check(&d).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn templates_stand_in_for_addresses() {
        let mut d = valid();
        d.nodes[0].node_type = 1;
        d.nodes[0].config = Some(NodeConfig::EthTransfer(EthTransferConfig {
            destination: "{{ settings.recipient }}".into(),
            amount: "1000".into(),
        }));
        check(&d).unwrap();
        d.nodes[0].config = Some(NodeConfig::EthTransfer(EthTransferConfig {
            destination: "0xnope".into(),
            amount: "1000".into(),
        }));
        let refused = check(&d).unwrap_err().to_string();
        assert!(refused.contains("invalid destination address"), "{refused}");
        d.nodes[0].config = Some(NodeConfig::EthTransfer(EthTransferConfig {
            destination: "{{ settings.recipient }}".into(),
            amount: "-1".into(),
        }));
        let refused = check(&d).unwrap_err().to_string();
        assert!(refused.contains("invalid amount"), "{refused}");
    }
}
