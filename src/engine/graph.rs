//! The order a task's graph runs in, and which nodes a run reaches.
//!
//! The trigger is step 0; nodes follow in topological order (ties by their order in the
//! definition, so every run of a task walks the same way). A node runs when at least one of its
//! incoming edges is live: an edge from the trigger, from a node that succeeded, or from the
//! condition a branch took (`<branch id>.<condition id>`). A node with no live edge once all its
//! sources are decided is skipped, with the reason.
//!
//! As in the original, a node that failed still leads on: its successors run (and see no output
//! of it). Only a branch decides which way a run goes.

use std::collections::{BTreeMap, HashMap};

use events::task::{NodeConfig, TaskDefinition};

/// Where an edge comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Trigger,
    /// A node's completion, whether it succeeded or failed.
    Node(usize),
    Condition {
        branch: usize,
        condition: String,
    },
}

/// The nodes in the order they run, with their incoming edges.
#[derive(Debug, Clone)]
pub struct Plan {
    pub order: Vec<usize>,
    pub incoming: Vec<Vec<Source>>,
}

/// What became of a node in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Succeeded; `taken` is the condition a branch took.
    Succeeded {
        taken: Option<String>,
    },
    Failed,
    Skipped,
}

impl Plan {
    /// Orders the graph (validation already refused cycles and dangling edges; a definition that
    /// no longer validates is reported, not run).
    pub fn new(definition: &TaskDefinition) -> Result<Self, String> {
        let index: HashMap<&str, usize> = definition
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut incoming = vec![Vec::new(); definition.nodes.len()];
        let mut successors: Vec<Vec<usize>> = vec![Vec::new(); definition.nodes.len()];
        let mut indegree = vec![0usize; definition.nodes.len()];
        for edge in &definition.edges {
            let &target = index.get(edge.target.as_str()).ok_or_else(|| {
                format!(
                    "edge {:?} goes to the unknown node {:?}",
                    edge.id, edge.target
                )
            })?;
            let source = if edge.source == definition.trigger.id {
                Source::Trigger
            } else if let Some(&i) = index.get(edge.source.as_str()) {
                Source::Node(i)
            } else if let Some((branch, condition)) = edge.source.split_once('.')
                && let Some(&i) = index.get(branch)
                && matches!(
                    definition.nodes.get(i).and_then(|n| n.config.as_ref()),
                    Some(NodeConfig::Branch(_))
                )
            {
                Source::Condition {
                    branch: i,
                    condition: condition.to_owned(),
                }
            } else {
                return Err(format!(
                    "edge {:?} leaves from the unknown {:?}",
                    edge.id, edge.source
                ));
            };
            if let Source::Node(from) | Source::Condition { branch: from, .. } = source {
                if let Some(s) = successors.get_mut(from) {
                    s.push(target);
                }
                if let Some(d) = indegree.get_mut(target) {
                    *d += 1;
                }
            }
            if let Some(list) = incoming.get_mut(target) {
                list.push(source);
            }
        }
        // Kahn's algorithm, always taking the lowest ready index: a stable order.
        let mut ready: BTreeMap<usize, ()> = indegree
            .iter()
            .enumerate()
            .filter(|(_, d)| **d == 0)
            .map(|(i, _)| (i, ()))
            .collect();
        let mut order = Vec::with_capacity(definition.nodes.len());
        while let Some((&next, ())) = ready.iter().next() {
            ready.remove(&next);
            order.push(next);
            for &s in successors.get(next).map_or(&[][..], Vec::as_slice) {
                if let Some(d) = indegree.get_mut(s) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(s, ());
                    }
                }
            }
        }
        if order.len() != definition.nodes.len() {
            return Err("the graph has a cycle".into());
        }
        Ok(Self { order, incoming })
    }

    /// Whether node `i` runs, given what became of the nodes before it. `Err` holds why not.
    pub fn reached(
        &self,
        i: usize,
        fates: &[Option<Fate>],
        names: &[String],
    ) -> Result<(), String> {
        let edges = self.incoming.get(i).map_or(&[][..], Vec::as_slice);
        if edges.is_empty() {
            return Err("not reached: no edge leads to this node".into());
        }
        let mut reasons = Vec::new();
        for edge in edges {
            let name = |j: usize| names.get(j).cloned().unwrap_or_default();
            match edge {
                Source::Trigger => return Ok(()),
                Source::Node(j) => match fates.get(*j).cloned().flatten() {
                    Some(Fate::Succeeded { .. } | Fate::Failed) => return Ok(()),
                    _ => reasons.push(format!("{} did not run", name(*j))),
                },
                Source::Condition { branch, condition } => {
                    match fates.get(*branch).cloned().flatten() {
                        Some(Fate::Succeeded { taken: Some(taken) }) if &taken == condition => {
                            return Ok(());
                        }
                        Some(Fate::Succeeded { taken: Some(taken) }) => {
                            reasons.push(format!(
                                "branch {} took condition {taken}, not {condition}",
                                name(*branch)
                            ));
                        }
                        Some(Fate::Succeeded { taken: None }) => {
                            reasons.push(format!("branch {} took no condition", name(*branch)));
                        }
                        Some(Fate::Failed) => {
                            reasons.push(format!("branch {} failed", name(*branch)))
                        }
                        _ => reasons.push(format!("branch {} did not run", name(*branch))),
                    }
                }
            }
        }
        Err(format!("not reached: {}", reasons.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::task::*;

    fn node(id: &str, config: NodeConfig) -> Node {
        Node {
            id: id.into(),
            name: id.into(),
            node_type: config.kind().wire_number(),
            config: Some(config),
        }
    }

    fn code(id: &str) -> Node {
        node(
            id,
            NodeConfig::CustomCode(CustomCodeConfig {
                lang: 1,
                source: "return 1;".into(),
            }),
        )
    }

    fn edge(source: &str, target: &str) -> Edge {
        Edge {
            id: format!("{source}-{target}"),
            source: source.into(),
            target: target.into(),
        }
    }

    #[test]
    fn orders_topologically_and_routes_branches() {
        let mut d = events::samples::definition();
        d.nodes = vec![
            code("c"),
            node(
                "b",
                NodeConfig::Branch(BranchConfig {
                    conditions: vec![
                        BranchCondition {
                            id: "yes".into(),
                            condition_type: "if".into(),
                            expression: "true".into(),
                        },
                        BranchCondition {
                            id: "no".into(),
                            condition_type: "else".into(),
                            expression: String::new(),
                        },
                    ],
                }),
            ),
            code("a"),
            code("z"),
        ];
        d.edges = vec![
            edge("trigger1", "a"),
            edge("a", "b"),
            edge("b.yes", "c"),
            edge("b.no", "z"),
        ];
        let plan = Plan::new(&d).unwrap();
        assert_eq!(plan.order, vec![2, 1, 0, 3]);
        let names: Vec<String> = d.nodes.iter().map(|n| n.name.clone()).collect();
        let mut fates = vec![None; 4];
        fates[2] = Some(Fate::Succeeded { taken: None });
        fates[1] = Some(Fate::Succeeded {
            taken: Some("yes".into()),
        });
        assert!(plan.reached(0, &fates, &names).is_ok());
        let why = plan.reached(3, &fates, &names).unwrap_err();
        assert!(why.contains("took condition yes"), "{why}");
    }

    #[test]
    fn given_a_failed_node_when_its_successor_comes_then_it_runs_as_in_the_original() {
        let mut d = events::samples::definition();
        d.nodes = vec![code("a"), code("b"), code("c")];
        d.edges = vec![edge("trigger1", "a"), edge("a", "b"), edge("b", "c")];
        let plan = Plan::new(&d).unwrap();
        let names = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let fates = vec![Some(Fate::Failed), None, None];
        assert!(plan.reached(1, &fates, &names).is_ok());
        // What a skipped node leads to is not reached.
        let fates = vec![Some(Fate::Failed), Some(Fate::Skipped), None];
        let why = plan.reached(2, &fates, &names).unwrap_err();
        assert!(why.contains("b did not run"), "{why}");
    }
}
