//! Runs a validated graph: every node after its inputs, each node's run recorded.
//!
//! This is the walking skeleton's engine (entry and end nodes); the full node catalogue plugs
//! into `run_node`.

use chrono::{DateTime, Utc};
use kai_common::jobs::ExecutionStatus;
use kai_common::workflow::{Graph, NodeType};
use serde_json::{Map, Value, json};

/// What a run is given.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The trigger's event (for a webhook: KAI-Fusion's webhook event object).
    pub trigger: Value,
}

/// One node's recorded run.
#[derive(Debug, Clone)]
pub struct NodeRun {
    pub node_id: String,
    pub node_type: &'static str,
    pub status: &'static str,
    pub inputs: Value,
    pub outputs: Value,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub status: ExecutionStatus,
    pub result: Value,
    pub error: Option<String>,
    pub error_type: Option<&'static str>,
    pub nodes: Vec<NodeRun>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// Runs `graph` to completion.
pub fn run(graph: &Graph, input: &RunInput) -> RunRecord {
    let started_at = Utc::now();
    let mut outputs: Vec<Option<Value>> = vec![None; graph.len()];
    let mut nodes = Vec::with_capacity(graph.len());
    for &index in graph.order() {
        let node_started = Utc::now();
        let node_input = gather_inputs(graph, index, &outputs);
        let output = run_node(
            graph.node_type(index),
            graph.node_data(index),
            &node_input,
            input,
        );
        nodes.push(NodeRun {
            node_id: graph.node_id(index).to_owned(),
            node_type: graph.node_type(index).name(),
            status: "completed",
            inputs: node_input,
            outputs: output.clone(),
            error: None,
            started_at: node_started,
            completed_at: Utc::now(),
        });
        outputs[index] = Some(output);
    }
    let result = collect(graph, &graph.result_nodes(), &outputs);
    RunRecord {
        status: ExecutionStatus::Completed,
        result,
        error: None,
        error_type: None,
        nodes,
        started_at,
        completed_at: Utc::now(),
    }
}

fn run_node(node_type: NodeType, data: &Value, node_input: &Value, run: &RunInput) -> Value {
    match node_type {
        NodeType::WebhookStart => run.trigger.clone(),
        NodeType::Start => match data.get("initial_input") {
            Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
            _ if !node_input.is_null() => node_input.clone(),
            _ => run.trigger.clone(),
        },
        NodeType::End => node_input.clone(),
    }
}

/// A node's input: its one predecessor's output, or an object of them by node id.
fn gather_inputs(graph: &Graph, index: usize, outputs: &[Option<Value>]) -> Value {
    collect(graph, graph.inputs_of(index), outputs)
}

fn collect(graph: &Graph, sources: &[usize], outputs: &[Option<Value>]) -> Value {
    match sources {
        [] => Value::Null,
        [one] => outputs[*one].clone().unwrap_or(Value::Null),
        many => {
            let mut merged = Map::new();
            for &source in many {
                merged.insert(
                    graph.node_id(source).to_owned(),
                    outputs[source].clone().unwrap_or(Value::Null),
                );
            }
            Value::Object(merged)
        }
    }
}

/// The record of a run that could not start (e.g. its workflow version is gone).
pub fn failed(error: String, error_type: &'static str) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        status: ExecutionStatus::Failed,
        result: json!({"success": false, "error": error, "error_type": error_type}),
        error: Some(error),
        error_type: Some(error_type),
        nodes: Vec::new(),
        started_at: now,
        completed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_common::workflow::FlowData;

    #[test]
    fn webhook_to_end_returns_the_event() {
        let flow = FlowData::from_body(&json!({"nodes": [
            {"id": "w", "type": "WebhookStartNode"}, {"id": "e", "type": "EndNode"}
        ], "edges": [{"source": "w", "target": "e"}]}))
        .unwrap();
        let graph = Graph::new(flow).unwrap();
        let record = run(
            &graph,
            &RunInput {
                trigger: json!({"data": {"a": 1}}),
            },
        );
        assert_eq!(record.status, ExecutionStatus::Completed);
        assert_eq!(record.result, json!({"data": {"a": 1}}));
        assert_eq!(record.nodes.len(), 2);
        assert_eq!(record.nodes[1].inputs, json!({"data": {"a": 1}}));
    }

    #[test]
    fn several_sinks_are_collected_by_id() {
        let flow = FlowData::from_body(&json!({"nodes": [
            {"id": "s", "type": "StartNode", "data": {"initial_input": "hi"}},
            {"id": "w", "type": "WebhookStartNode"}
        ]}))
        .unwrap();
        let graph = Graph::new(flow).unwrap();
        let record = run(&graph, &RunInput { trigger: json!(1) });
        assert_eq!(record.result, json!({"s": "hi", "w": 1}));
    }
}
