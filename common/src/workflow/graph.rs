//! A validated workflow graph: every node of a known type with a valid configuration, every
//! edge between existing nodes and handles, no cycle, at least one entry node; with its nodes
//! in an order that runs each after its inputs.

use std::collections::{HashMap, VecDeque};

use super::catalogue::{canonical_name, implemented};
use super::flow::FlowData;
use crate::nodes::{NodeCategory, NodeDefinition, NodeType, config_of};

/// Why a graph cannot be saved or run. Each names the node or edge at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("the workflow has no nodes")]
    Empty,
    #[error("node #{index} has an empty id")]
    EmptyNodeId { index: usize },
    #[error("node id `{node_id}` is used by more than one node")]
    DuplicateNode { node_id: String },
    #[error("node `{node_id}` has unknown type `{node_type}`")]
    UnknownType { node_id: String, node_type: String },
    /// KAI-Fusion node types this version cannot run yet; every such node is listed.
    #[error("node types not available in this version yet: {}", list_unavailable(.nodes))]
    NotAvailable { nodes: Vec<UnavailableNode> },
    #[error("node `{node_id}` ({node_type}): invalid configuration, {problem}")]
    InvalidConfig {
        node_id: String,
        node_type: String,
        problem: String,
    },
    #[error("edge {edge} refers to missing node `{node_id}`")]
    MissingNode { edge: String, node_id: String },
    #[error("{0}")]
    MissingHandle(Box<HandleProblem>),
    #[error("the workflow contains a cycle through node `{node_id}`")]
    Cycle { node_id: String },
    /// Only a trigger may lead into a node that starts runs (older exports put a StartNode
    /// after a timer).
    #[error(
        "edge {edge}: node `{node_id}` ({node_type}) starts a run; only a trigger (a timer or a \
         webhook) may lead into it, not `{source_id}`"
    )]
    IntoEntry {
        edge: String,
        node_id: String,
        node_type: String,
        source_id: String,
    },
    #[error("the workflow has no entry node (StartNode or WebhookStartNode)")]
    NoEntry,
    #[error("{0}")]
    WrongProvider(Box<ProviderProblem>),
    #[error("node `{node_id}` ({node_type}) needs a {accepts} connected to its `{handle}` input")]
    MissingProvider {
        node_id: String,
        node_type: String,
        handle: &'static str,
        accepts: &'static str,
    },
}

impl GraphError {
    /// The node the error is about, when there is one.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            GraphError::DuplicateNode { node_id }
            | GraphError::UnknownType { node_id, .. }
            | GraphError::InvalidConfig { node_id, .. }
            | GraphError::MissingNode { node_id, .. }
            | GraphError::Cycle { node_id }
            | GraphError::IntoEntry { node_id, .. } => Some(node_id),
            GraphError::MissingHandle(problem) => Some(&problem.node_id),
            GraphError::WrongProvider(problem) => Some(&problem.node_id),
            GraphError::MissingProvider { node_id, .. } => Some(node_id),
            GraphError::NotAvailable { nodes } => nodes.first().map(|n| n.node_id.as_str()),
            _ => None,
        }
    }
}

/// An edge leaving or reaching a node through a handle the node does not have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "edge {edge}: node `{node_id}` ({node_type}) has no {side} handle `{handle}`; it has: {available}"
)]
pub struct HandleProblem {
    pub edge: String,
    pub node_id: String,
    pub node_type: String,
    pub side: &'static str,
    pub handle: String,
    pub available: String,
}

/// A provider wired to an input that accepts something else (memory where a model goes).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "edge {edge}: node `{source_id}` ({source_type}) provides a {provides}, but input `{handle}` \
     of node `{node_id}` ({node_type}) accepts a {accepts}"
)]
pub struct ProviderProblem {
    pub edge: String,
    pub source_id: String,
    pub source_type: String,
    pub provides: &'static str,
    pub node_id: String,
    pub node_type: String,
    pub handle: String,
    pub accepts: &'static str,
}

/// A node whose KAI-Fusion type is known but not implemented yet.
#[derive(Debug, Clone, PartialEq)]
pub struct UnavailableNode {
    pub node_id: String,
    /// As written in the workflow.
    pub written: String,
    /// The catalogue's name for it.
    pub canonical: &'static str,
}

fn list_unavailable(nodes: &[UnavailableNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            if n.written == n.canonical {
                format!("{} (node `{}`)", n.canonical, n.node_id)
            } else {
                format!(
                    "{} written as {} (node `{}`)",
                    n.canonical, n.written, n.node_id
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An edge into a node: where it comes from and through which output handle.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub source: usize,
    pub source_handle: String,
}

/// A provider node handed to a node through one of its provider inputs.
#[derive(Debug, Clone)]
pub struct ProviderEdge {
    pub source: usize,
    pub target_handle: String,
}

/// A graph that passed validation.
#[derive(Clone)]
pub struct Graph {
    flow: FlowData,
    definitions: Vec<NodeType>,
    /// Each node's type name, shared with the records of its runs.
    type_names: Vec<std::sync::Arc<str>>,
    /// Whether each node's configuration, or that of a provider handed to it, contains a
    /// template (only those nodes need the run's template scope).
    needs_scope: Vec<bool>,
    /// Node indices, each after every node it has an edge from.
    order: Vec<usize>,
    incoming: Vec<Vec<Incoming>>,
    /// For each node, the nodes it has an edge to.
    outgoing: Vec<Vec<usize>>,
    /// For each node, the provider nodes handed to it.
    providers: Vec<Vec<ProviderEdge>>,
    /// Whether each node runs as a step (every node but providers without data edges).
    steps: Vec<bool>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("flow", &self.flow)
            .field("order", &self.order)
            .finish()
    }
}

impl Graph {
    /// Validates `flow` against the node catalogue.
    pub fn new(flow: FlowData) -> Result<Self, GraphError> {
        Self::build(flow, &implemented, &canonical_name)
    }

    /// Validates `flow` against the catalogue and the owner's custom node types (by name).
    pub fn with_custom_types(
        flow: FlowData,
        custom: &HashMap<String, NodeType>,
    ) -> Result<Self, GraphError> {
        Self::build(
            flow,
            &|name| implemented(name).or_else(|| custom.get(name).cloned()),
            &canonical_name,
        )
    }

    /// Validates `flow` against the given node types only (tests of the engine run graphs of
    /// their own probe nodes this way).
    pub fn with_node_types(
        flow: FlowData,
        node_type: &dyn Fn(&str) -> Option<NodeType>,
    ) -> Result<Self, GraphError> {
        Self::build(flow, node_type, &|_| None)
    }

    fn build(
        flow: FlowData,
        node_type: &dyn Fn(&str) -> Option<NodeType>,
        known_name: &dyn Fn(&str) -> Option<&'static str>,
    ) -> Result<Self, GraphError> {
        if flow.nodes.is_empty() {
            return Err(GraphError::Empty);
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(flow.nodes.len());
        let mut definitions = Vec::with_capacity(flow.nodes.len());
        let mut unavailable = Vec::new();
        for (i, node) in flow.nodes.iter().enumerate() {
            if node.id.trim().is_empty() {
                return Err(GraphError::EmptyNodeId { index: i });
            }
            if index.insert(node.id.as_str(), i).is_some() {
                return Err(GraphError::DuplicateNode {
                    node_id: node.id.clone(),
                });
            }
            match (node_type(&node.node_type), known_name(&node.node_type)) {
                (Some(definition), _) => definitions.push(definition),
                (None, Some(canonical)) => unavailable.push(UnavailableNode {
                    node_id: node.id.clone(),
                    written: node.node_type.clone(),
                    canonical,
                }),
                (None, None) => {
                    return Err(GraphError::UnknownType {
                        node_id: node.id.clone(),
                        node_type: node.node_type.clone(),
                    });
                }
            }
        }
        if !unavailable.is_empty() {
            return Err(GraphError::NotAvailable { nodes: unavailable });
        }
        for (node, definition) in flow.nodes.iter().zip(&definitions) {
            definition
                .validate(config_of(&node.data))
                .map_err(|e| GraphError::InvalidConfig {
                    node_id: node.id.clone(),
                    node_type: definition.type_name().to_owned(),
                    problem: e.to_string(),
                })?;
        }
        if !definitions
            .iter()
            .any(|d| d.category() == NodeCategory::Entry)
        {
            return Err(GraphError::NoEntry);
        }

        let n = flow.nodes.len();
        let mut incoming = vec![Vec::new(); n];
        let mut outgoing = vec![Vec::new(); n];
        let mut providers: Vec<Vec<ProviderEdge>> = vec![Vec::new(); n];
        // Every edge, data or provider, for the cycle check.
        let mut all_outgoing: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut all_incoming = vec![0usize; n];
        let edges =
            super::legacy_chains::lift(&flow.edges, &definitions, &|id| index.get(id).copied());
        for (i, edge) in edges.iter().enumerate() {
            let label = edge.id.clone().unwrap_or_else(|| format!("#{i}"));
            let lookup = |id: &str| {
                index
                    .get(id)
                    .copied()
                    .ok_or_else(|| GraphError::MissingNode {
                        edge: label.clone(),
                        node_id: id.to_owned(),
                    })
            };
            let (source, target) = (lookup(&edge.source)?, lookup(&edge.target)?);
            let source_handle = edge
                .source_handle
                .clone()
                .unwrap_or_else(|| "output".to_owned());
            let target_handle = edge
                .target_handle
                .clone()
                .unwrap_or_else(|| "input".to_owned());
            let check = |node: usize, side: &'static str, handle: &str, handles: &[&str]| {
                if handles.contains(&handle) {
                    Ok(())
                } else {
                    Err(GraphError::MissingHandle(Box::new(HandleProblem {
                        edge: label.clone(),
                        node_id: flow.nodes[node].id.clone(),
                        node_type: definitions[node].type_name().to_owned(),
                        side,
                        handle: handle.to_owned(),
                        available: if handles.is_empty() {
                            "none".to_owned()
                        } else {
                            handles.join(", ")
                        },
                    })))
                }
            };
            check(
                source,
                "output",
                &source_handle,
                definitions[source].output_handles(),
            )?;
            all_outgoing[source].push(target);
            all_incoming[target] += 1;
            let target_definition = &definitions[target];
            let provider_input = target_definition
                .provider_inputs()
                .iter()
                .find(|input| input.handle == target_handle);
            let from_provider = definitions[source].category() == NodeCategory::Provider;
            match (from_provider, provider_input) {
                (true, Some(input)) => {
                    let provides = definitions[source].provides();
                    if provides != Some(input.accepts) {
                        return Err(GraphError::WrongProvider(Box::new(ProviderProblem {
                            edge: label.clone(),
                            source_id: flow.nodes[source].id.clone(),
                            source_type: definitions[source].type_name().to_owned(),
                            provides: provides.map_or("nothing", |p| p.as_str()),
                            node_id: flow.nodes[target].id.clone(),
                            node_type: target_definition.type_name().to_owned(),
                            handle: target_handle,
                            accepts: input.accepts.as_str(),
                        })));
                    }
                    providers[target].push(ProviderEdge {
                        source,
                        target_handle,
                    });
                }
                (true, None) if !definitions[source].also_a_step() => {
                    let handles: Vec<&str> = target_definition
                        .provider_inputs()
                        .iter()
                        .map(|input| input.handle)
                        .collect();
                    check(target, "provider input", &target_handle, &handles)?;
                }
                _ => {
                    check(
                        target,
                        "input",
                        &target_handle,
                        target_definition.input_handles(),
                    )?;
                    if target_definition.category() == NodeCategory::Entry
                        && definitions[source].category() != NodeCategory::Entry
                    {
                        return Err(GraphError::IntoEntry {
                            edge: label.clone(),
                            node_id: flow.nodes[target].id.clone(),
                            node_type: target_definition.type_name().to_owned(),
                            source_id: flow.nodes[source].id.clone(),
                        });
                    }
                    incoming[target].push(Incoming {
                        source,
                        source_handle,
                    });
                    outgoing[source].push(target);
                }
            }
        }

        // A provider is a step of its own only where data edges reach or leave it.
        let steps: Vec<bool> = (0..n)
            .map(|i| {
                definitions[i].category() != NodeCategory::Provider
                    || !incoming[i].is_empty()
                    || !outgoing[i].is_empty()
            })
            .collect();
        for i in (0..n).filter(|&i| steps[i]) {
            for input in definitions[i].provider_inputs() {
                if input.required && !providers[i].iter().any(|p| p.target_handle == input.handle) {
                    return Err(GraphError::MissingProvider {
                        node_id: flow.nodes[i].id.clone(),
                        node_type: definitions[i].type_name().to_owned(),
                        handle: input.handle,
                        accepts: input.accepts.as_str(),
                    });
                }
            }
        }

        let order =
            topological_order(all_incoming, &all_outgoing).map_err(|stuck| GraphError::Cycle {
                node_id: flow.nodes[stuck].id.clone(),
            })?;
        let type_names = definitions.iter().map(|d| d.type_name().into()).collect();
        let mut needs_scope: Vec<bool> = flow
            .nodes
            .iter()
            .map(|node| super::template::any_template(config_of(&node.data)))
            .collect();
        // Providers come before their consumers in `order`.
        for &node in &order {
            for edge in &providers[node] {
                needs_scope[node] |= needs_scope[edge.source];
            }
        }
        Ok(Self {
            flow,
            definitions,
            type_names,
            needs_scope,
            order,
            incoming,
            outgoing,
            providers,
            steps,
        })
    }

    pub fn flow(&self) -> &FlowData {
        &self.flow
    }

    pub fn len(&self) -> usize {
        self.flow.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flow.nodes.is_empty()
    }

    /// Node indices in an order that runs each after its inputs.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn definition(&self, index: usize) -> &dyn NodeDefinition {
        &*self.definitions[index]
    }

    /// Whether the node (or a provider handed to it) has a template in its configuration.
    pub fn needs_scope(&self, index: usize) -> bool {
        self.needs_scope[index]
    }

    /// The node's type name, cheap to keep in a run's records.
    pub fn type_name(&self, index: usize) -> &std::sync::Arc<str> {
        &self.type_names[index]
    }

    pub fn node_id(&self, index: usize) -> &str {
        &self.flow.nodes[index].id
    }

    pub fn node_data(&self, index: usize) -> &serde_json::Value {
        &self.flow.nodes[index].data
    }

    /// The node's configuration (see `nodes::config_of`).
    pub fn node_config(&self, index: usize) -> &serde_json::Value {
        config_of(&self.flow.nodes[index].data)
    }

    pub fn incoming(&self, index: usize) -> &[Incoming] {
        &self.incoming[index]
    }

    pub fn outgoing(&self, index: usize) -> &[usize] {
        &self.outgoing[index]
    }

    /// The provider nodes handed to this node.
    pub fn providers(&self, index: usize) -> &[ProviderEdge] {
        &self.providers[index]
    }

    /// Whether the node is only a provider (built for its consumers, not a step of its own).
    pub fn is_provider(&self, index: usize) -> bool {
        !self.steps[index]
    }

    /// The nodes whose outputs are the run's result: the end nodes, or when there are none,
    /// the sinks (as KAI-Fusion feeds a virtual end from them).
    pub fn result_nodes(&self) -> Vec<usize> {
        let ends: Vec<usize> = (0..self.len())
            .filter(|&i| self.definitions[i].category() == NodeCategory::End)
            .collect();
        if !ends.is_empty() {
            return ends;
        }
        (0..self.len())
            .filter(|&i| self.outgoing[i].is_empty() && !self.is_provider(i))
            .collect()
    }

    /// Whether a node is of a user's custom type (whose endpoint may change under this graph).
    pub fn has_custom_types(&self) -> bool {
        self.type_names
            .iter()
            .any(|name| canonical_name(name).is_none())
    }

    /// Ids of the nodes of one type, by canonical name (e.g. every webhook entry point).
    pub fn nodes_of_type<'a>(&'a self, type_name: &'a str) -> impl Iterator<Item = &'a str> {
        (0..self.len())
            .filter(move |&i| self.definitions[i].type_name() == type_name)
            .map(|i| self.node_id(i))
    }
}

/// Kahn's algorithm. On a cycle returns a node that could not be ordered.
fn topological_order(
    mut pending: Vec<usize>,
    outgoing: &[Vec<usize>],
) -> Result<Vec<usize>, usize> {
    let n = pending.len();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(node) = ready.pop_front() {
        order.push(node);
        for &next in &outgoing[node] {
            pending[next] -= 1;
            if pending[next] == 0 {
                ready.push_back(next);
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n).find(|&i| pending[i] > 0).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(value: serde_json::Value) -> Result<Graph, GraphError> {
        Graph::new(FlowData::from_body(&value).unwrap())
    }

    #[test]
    fn orders_nodes_after_their_inputs() {
        let g = graph(json!({"nodes": [
            {"id": "end", "type": "EndNode"},
            {"id": "start", "type": "StartNode"}
        ], "edges": [{"source": "start", "target": "end"}]}))
        .unwrap();
        let ids: Vec<&str> = g.order().iter().map(|&i| g.node_id(i)).collect();
        assert_eq!(ids, ["start", "end"]);
        assert_eq!(g.result_nodes(), vec![0]);
    }

    #[test]
    fn a_lone_webhook_node_is_its_own_result() {
        let g = graph(json!({"nodes": [{"id": "w", "type": "WebhookStartNode"}]})).unwrap();
        assert_eq!(g.result_nodes(), vec![0]);
    }

    #[test]
    fn rejects_what_cannot_run() {
        let cycle = graph(json!({"nodes": [
            {"id": "s", "type": "StartNode"}, {"id": "a", "type": "EndNode"}, {"id": "b", "type": "EndNode"}
        ], "edges": [{"source": "s", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}]}));
        assert!(matches!(cycle, Err(GraphError::Cycle { .. })));

        let unknown = graph(json!({"nodes": [{"id": "x", "type": "Teleporter"}]}));
        assert_eq!(
            unknown.unwrap_err().to_string(),
            "node `x` has unknown type `Teleporter`"
        );

        let dangling = graph(json!({"nodes": [{"id": "s", "type": "StartNode"}],
            "edges": [{"id": "e1", "source": "s", "target": "ghost"}]}));
        assert_eq!(
            dangling.unwrap_err(),
            GraphError::MissingNode {
                edge: "e1".into(),
                node_id: "ghost".into()
            }
        );

        // A catalogue type this build does not run (every one runs today: a narrower build).
        let narrower = |name: &str| {
            (!matches!(name, "RetrievalQANode" | "WebScraper"))
                .then(|| implemented(name))
                .flatten()
        };
        let later = Graph::build(
            FlowData::from_body(&json!({"nodes": [
                {"id": "s", "type": "StartNode"}, {"id": "qa", "type": "RetrievalQANode"},
                {"id": "w", "type": "WebScraper"}]}))
            .unwrap(),
            &narrower,
            &canonical_name,
        );
        assert_eq!(
            later.unwrap_err().to_string(),
            "node types not available in this version yet: RetrievalQA written as \
             RetrievalQANode (node `qa`), WebScraper (node `w`)"
        );

        let bad_config = graph(json!({"nodes": [{"id": "s", "type": "StartNode"},
            {"id": "if", "type": "ConditionNode", "data": {"operation": "bigger"}}],
            "edges": [{"source": "s", "target": "if"}]}));
        let err = bad_config.unwrap_err();
        assert_eq!(err.node_id(), Some("if"));
        assert!(err.to_string().contains("field `operation`"), "{err}");

        let bad_handle = graph(json!({"nodes": [{"id": "s", "type": "StartNode"},
            {"id": "if", "type": "ConditionNode"}, {"id": "e", "type": "EndNode"}],
            "edges": [{"source": "s", "target": "if"},
                      {"id": "e2", "source": "if", "sourceHandle": "maybe", "target": "e"}]}));
        assert_eq!(
            bad_handle.unwrap_err().to_string(),
            "edge e2: node `if` (ConditionNode) has no output handle `maybe`; it has: \
             true_output, false_output"
        );

        let no_entry = graph(json!({"nodes": [{"id": "e", "type": "EndNode"}]}));
        assert_eq!(no_entry.unwrap_err(), GraphError::NoEntry);

        let duplicate = graph(json!({"nodes": [
            {"id": "s", "type": "StartNode"}, {"id": "s", "type": "EndNode"}]}));
        assert!(matches!(duplicate, Err(GraphError::DuplicateNode { .. })));
    }
}
