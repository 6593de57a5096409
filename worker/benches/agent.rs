//! The engine's own cost around model calls: an Agent run with one tool call (the model asks
//! for the tool, then answers) against the fake OpenAI-compatible server answering at once,
//! beside the same two chat completions made directly with the HTTP client. The difference is
//! what the engine, the agent loop, the providers and the records add per run beyond the HTTP
//! round trips (the goal: at most 1 ms). Everything runs on one thread, so wall time
//! is CPU time.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use futures::future::BoxFuture;
use kai_common::llm::openai::{ChatMessage, ChatRequest, OpenAiServer, ToolSpec};
use kai_common::llm::servers::ModelServersConfig;
use kai_common::nodes::breaker::BreakerSettings;
use kai_common::nodes::capability::{Provided, Tool};
use kai_common::nodes::services::NodeServices;
use kai_common::nodes::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use kai_common::outbound::OutboundConfig;
use kai_common::testing::fake_openai::{FakeOpenAi, Scripted};
use kai_common::workflow::{FlowData, Graph};
use kai_worker::engine::{RunInput, run};
use serde_json::{Value, json};

/// A tool answering from memory (no I/O of its own).
struct Lookup;

impl Tool for Lookup {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "lookup".into(),
            description: "Looks a word up.".into(),
            parameters: json!({"type": "object", "properties": {"word": {"type": "string"}}}),
        }
    }
    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, NodeError>> {
        async move { Ok(json!({"word": arguments["word"], "meaning": "a test"})) }.boxed()
    }
}

struct LookupNode;

impl NodeDefinition for LookupNode {
    fn type_name(&self) -> &str {
        "Lookup"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["tool", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Tool)
    }
    fn description(&self) -> &str {
        "a tool for the benchmark"
    }
    fn config_schema(&self) -> Value {
        json!({"type": "object"})
    }
    fn validate(&self, _: &Value) -> Result<(), ConfigError> {
        Ok(())
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async { Err(NodeError::Configuration("not a step".into())) }.boxed()
    }
    fn provide<'a>(&'a self, _: ProviderContext<'a>) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async { Ok(Provided::Tool(Arc::new(Lookup))) }.boxed()
    }
}

fn graph() -> Graph {
    let flow = json!({"nodes": [
        {"id": "start", "type": "StartNode", "data": {"initial_input": "What does kai mean?"}},
        {"id": "agent", "type": "Agent", "data": {"system_prompt": "Use the tool."}},
        {"id": "model", "type": "OpenAIChat", "data": {"model_name": "fake-chat", "temperature": 0}},
        {"id": "lookup", "type": "Lookup"},
        {"id": "end", "type": "EndNode"}
    ], "edges": [
        {"source": "start", "target": "agent"},
        {"source": "model", "sourceHandle": "llm", "target": "agent", "targetHandle": "llm"},
        {"source": "lookup", "target": "agent", "targetHandle": "tools"},
        {"source": "agent", "target": "end"}
    ]});
    Graph::with_node_types(FlowData::from_body(&flow).unwrap(), &|name| match name {
        "Lookup" => Some(Arc::new(LookupNode) as kai_common::nodes::NodeType),
        other => kai_common::nodes::find(other),
    })
    .expect("a valid graph")
}

fn script(fake: &FakeOpenAi) {
    fake.script([
        Scripted::ToolCalls(vec![("lookup".into(), json!({"word": "kai"}))]),
        Scripted::Text("It means a test.".into()),
    ]);
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = runtime.block_on(FakeOpenAi::start(None, 8));
    let services = NodeServices::new(&OutboundConfig::default(), BreakerSettings::default())
        .and_then(|s| s.with_models(&ModelServersConfig::all_at(&fake.root)))
        .unwrap();
    let input = RunInput {
        trigger: json!({}).into(),
        services: Arc::new(services),
        run: Default::default(),
        cancel: Default::default(),
    };
    let graph = graph();
    script(&fake);
    let record = runtime.block_on(run(&graph, &input));
    assert_eq!(
        *record.result,
        json!({"output": "It means a test.", "status": "finished",
        "iterations": 2, "session_id": record.result["session_id"], "usage": record.result["usage"]})
    );

    let mut group = c.benchmark_group("agent with one tool call, model answering at once");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("whole run through the engine", |b| {
        b.to_async(&runtime).iter(|| {
            script(&fake);
            run(&graph, &input)
        })
    });

    let server = OpenAiServer {
        base_url: fake.base_url.parse().unwrap(),
        api_key: None,
        organization: None,
    };
    let http = reqwest::Client::new();
    let request = ChatRequest {
        model: "fake-chat".into(),
        messages: vec![
            ChatMessage::new("system", "Use the tool."),
            ChatMessage::new("user", "What does kai mean?"),
        ],
        temperature: Some(0.0),
        tools: vec![Lookup.spec()],
        ..ChatRequest::default()
    };
    group.bench_function("the same two chat completions, bare client", |b| {
        b.to_async(&runtime).iter(|| async {
            script(&fake);
            let first = server
                .chat(&http, &request, Duration::from_secs(10))
                .await
                .unwrap();
            let mut second = request.clone();
            second.messages.push(first.message.clone());
            second.messages.push(ChatMessage::tool_result(
                "call_0",
                "{\"meaning\":\"a test\"}",
            ));
            server
                .chat(&http, &second, Duration::from_secs(10))
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
