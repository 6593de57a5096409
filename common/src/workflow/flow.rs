//! KAI-Fusion's workflow JSON: `{nodes:[{id,type,data,position}], edges:[{source,sourceHandle,
//! target,targetHandle}]}`, bare, wrapped in `flow_data`, or inside a template wrapper.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow graph as stored in a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowData {
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// The workflow's retry policy, for nodes whose own allows fewer attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// `"retry": {"max_attempts": 3, "backoff_ms": 500}` on a workflow: a node failing with a
/// retryable error (network, rate limit, timeout) gets up to `max_attempts` attempts, waiting
/// `backoff_ms` doubled after each (jittered, or longer when the service says `Retry-After`),
/// unless its own policy allows more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_backoff_ms")]
    pub backoff_ms: u64,
}

impl RetryPolicy {
    pub const MAX_ATTEMPTS: u32 = 10;
    pub const MAX_BACKOFF_MS: u64 = 60_000;

    fn default_backoff_ms() -> u64 {
        1000
    }

    fn check(&self) -> Result<(), FlowError> {
        if !(1..=Self::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(FlowError::Shape(format!(
                "retry.max_attempts must be between 1 and {}",
                Self::MAX_ATTEMPTS
            )));
        }
        if self.backoff_ms > Self::MAX_BACKOFF_MS {
            return Err(FlowError::Shape(format!(
                "retry.backoff_ms must be at most {}",
                Self::MAX_BACKOFF_MS
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    /// The node's configuration, as KAI-Fusion stores it (flat keys or `inputs`).
    #[serde(default = "empty_object")]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub source: String,
    pub target: String,
    #[serde(rename = "sourceHandle", alias = "source_handle", default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_handle: Option<String>,
    #[serde(rename = "targetHandle", alias = "target_handle", default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_handle: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlowError {
    #[error("the workflow has no `nodes` (give `nodes` and `edges`, or `flow_data`)")]
    MissingNodes,
    #[error("invalid workflow graph: {0}")]
    Shape(String),
}

impl FlowData {
    /// Reads a graph from `nodes`/`edges` at the top level of `body`, or from its `flow_data`.
    pub fn from_body(body: &Value) -> Result<Self, FlowError> {
        let source = match body.get("flow_data") {
            Some(flow) if !flow.is_null() => flow,
            _ => body,
        };
        if source.get("nodes").is_none_or(Value::is_null) {
            return Err(FlowError::MissingNodes);
        }
        let mut source = source.clone();
        // KAI-Fusion exports sometimes carry `"edges": null`.
        if let Some(obj) = source.as_object_mut()
            && obj.get("edges").is_some_and(Value::is_null)
        {
            obj.remove("edges");
        }
        let flow: Self =
            serde_json::from_value(source).map_err(|e| FlowError::Shape(e.to_string()))?;
        if let Some(retry) = &flow.retry {
            retry.check()?;
        }
        Ok(flow)
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_workflow_retry_policy_is_read_and_checked() {
        let nodes = json!([{"id": "a", "type": "StartNode"}]);
        let flow =
            FlowData::from_body(&json!({"nodes": nodes, "retry": {"max_attempts": 4}})).unwrap();
        assert_eq!(
            flow.retry,
            Some(RetryPolicy {
                max_attempts: 4,
                backoff_ms: 1000
            })
        );
        for (retry, expected) in [
            (json!({"max_attempts": 0}), "retry.max_attempts"),
            (json!({"max_attempts": 11}), "retry.max_attempts"),
            (
                json!({"max_attempts": 2, "backoff_ms": 600000}),
                "retry.backoff_ms",
            ),
            (json!({"max_attempts": 2, "jitter": true}), "jitter"),
        ] {
            let error = FlowData::from_body(&json!({"nodes": nodes, "retry": retry}))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn reads_bare_and_wrapped_graphs() {
        let bare = json!({"name": "x", "nodes": [{"id": "a", "type": "StartNode"}]});
        let wrapped = json!({"name": "x", "flow_data": {"nodes": [{"id": "a", "type": "StartNode"}], "edges": null}});
        assert_eq!(
            FlowData::from_body(&bare).unwrap(),
            FlowData::from_body(&wrapped).unwrap()
        );
    }

    #[test]
    fn reads_handles_in_either_spelling() {
        let flow = FlowData::from_body(&json!({"nodes": [], "edges": [
            {"source": "a", "target": "b", "sourceHandle": "output", "target_handle": "input"}
        ]}))
        .unwrap();
        assert_eq!(flow.edges[0].source_handle.as_deref(), Some("output"));
        assert_eq!(flow.edges[0].target_handle.as_deref(), Some("input"));
    }

    #[test]
    fn missing_nodes_is_a_clear_error() {
        assert_eq!(
            FlowData::from_body(&json!({"name": "x"})),
            Err(FlowError::MissingNodes)
        );
        assert!(matches!(
            FlowData::from_body(&json!({"nodes": [{"id": 1}]})),
            Err(FlowError::Shape(_))
        ));
    }
}
