//! The engine's own overhead on a 50-node graph of no-op nodes: planning (graph validation and
//! ordering), scheduling (readiness, joins, concurrency), template scope upkeep and result
//! collection. No persistence, no I/O.
//!
//! Shape: a start node fans out to 8 chains of 6 no-op nodes, which an end node joins.

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use futures::future::BoxFuture;
use kai_common::nodes::{
    ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
};
use kai_common::workflow::{FlowData, Graph};
use kai_worker::engine::{RunInput, run};
use serde_json::{Value, json};

/// Passes its input on.
struct NoOp;

impl NodeDefinition for NoOp {
    fn type_name(&self) -> &'static str {
        "NoOp"
    }
    fn description(&self) -> &'static str {
        "passes its input on"
    }
    fn config_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &["input"]
    }
    fn validate(&self, _: &Value) -> Result<(), ConfigError> {
        Ok(())
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            // The templated variant renders one expression per node, as real nodes do.
            if let Some(note) = ctx.config.get("note").and_then(serde_json::Value::as_str) {
                let rendered = kai_common::workflow::template::render(note, ctx.scope, ctx.input)
                    .map_err(NodeError::Configuration)?;
                return Ok(NodeOutput::all(serde_json::Value::String(rendered)));
            }
            Ok(NodeOutput::all(ctx.input.clone()))
        }
        .boxed()
    }
}

const CHAINS: usize = 8;
const DEPTH: usize = 6;

/// `templated`: every no-op node also renders `{{ input }}` (so every node shares the run's
/// template scope, the engine's worst case for keeping it up to date).
fn flow(templated: bool) -> FlowData {
    let mut nodes =
        vec![json!({"id": "start", "type": "StartNode", "data": {"initial_input": "go"}})];
    let mut edges = Vec::new();
    for chain in 0..CHAINS {
        for step in 0..DEPTH {
            let id = format!("n{chain}_{step}");
            let mut data = json!({"name": format!("noop_{chain}_{step}")});
            if templated {
                data["note"] = json!("{{ input }}");
            }
            nodes.push(json!({"id": id, "type": "NoOp", "data": data}));
            let source = if step == 0 {
                "start".to_owned()
            } else {
                format!("n{chain}_{}", step - 1)
            };
            edges.push(json!({"source": source, "target": id}));
        }
        edges.push(json!({"source": format!("n{chain}_{}", DEPTH - 1), "target": "end"}));
    }
    nodes.push(json!({"id": "end", "type": "EndNode"}));
    FlowData::from_body(&json!({"nodes": nodes, "edges": edges})).expect("valid flow")
}

fn graph(templated: bool) -> Graph {
    Graph::with_node_types(flow(templated), &|name| match name {
        "NoOp" => Some(std::sync::Arc::new(NoOp) as kai_common::nodes::NodeType),
        other => kai_common::nodes::find(other),
    })
    .expect("valid graph")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let workflow = graph(false);
    let templated = graph(true);
    assert_eq!(workflow.len(), 50);
    let input = RunInput {
        trigger: json!({"data": {"hello": "world"}}).into(),
        services: Default::default(),
        run: Default::default(),
        cancel: Default::default(),
    };

    c.bench_function("engine: plan a 50-node graph", |b| b.iter(|| graph(false)));
    c.bench_function("engine: run a 50-node graph of no-op nodes", |b| {
        b.to_async(&runtime).iter(|| run(&workflow, &input))
    });
    c.bench_function(
        "engine: run a 50-node graph, every node rendering a template",
        |b| b.to_async(&runtime).iter(|| run(&templated, &input)),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
