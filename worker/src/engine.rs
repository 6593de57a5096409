//! Runs a validated graph: every node once its inputs are settled, independent branches
//! concurrently, a node with several inputs only when all of them are (a join). A node none of
//! whose incoming edges carries a value (its sources were skipped, or routed elsewhere, as a
//! `ConditionNode` does) is skipped, and so is everything only it feeds. A failing node stops
//! the run, named in its error.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use kai_common::jobs::{ExecutionStatus, WebhookResponse};
use kai_common::json::SharedValue;
use kai_common::nodes::retry::retry_delay;
use kai_common::nodes::services::{NodeServices, RunIds};
use kai_common::nodes::{
    NodeContext, NodeError, NodeEvents, NodeOutput, ProviderContext, Providers,
};
use kai_common::workflow::Graph;
use kai_common::workflow::template::TemplateScope;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// What a run is given.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The trigger's event (for a webhook: KAI-Fusion's webhook event object).
    pub trigger: SharedValue,
    /// The worker process's run-time services, handed to every node.
    pub services: Arc<NodeServices>,
    /// Whose run it is.
    pub run: RunIds,
    /// Cancelled when the run's owner cancels it: nothing further starts, and what is running
    /// (a model call, an HTTP call) is dropped.
    pub cancel: CancellationToken,
}

/// One node's recorded run.
#[derive(Debug, Clone)]
pub struct NodeRun {
    pub node_id: String,
    pub node_type: Arc<str>,
    pub status: &'static str,
    /// Shared with the run's other records where they are the same value (a pass-through
    /// node's input and output, the trigger's output and the run's input).
    pub inputs: SharedValue,
    pub outputs: SharedValue,
    pub error: Option<String>,
    /// Attempts made (0 for a skipped node).
    pub attempts: u32,
    /// What the node recorded beside its output (a model's usage, an agent's steps).
    pub details: Option<Value>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub status: ExecutionStatus,
    pub result: SharedValue,
    pub error: Option<String>,
    pub error_type: Option<&'static str>,
    pub nodes: Vec<NodeRun>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    /// The webhook answer a `RespondToWebhook` node chose, if one ran.
    pub response: Option<WebhookResponse>,
}

/// How a node ended.
enum Settled {
    Done(NodeOutput),
    Skipped,
}

static EMPTY_SCOPE: std::sync::LazyLock<TemplateScope> =
    std::sync::LazyLock::new(TemplateScope::empty);

/// Names templates always resolve to the run's own values, whatever nodes are called.
const RESERVED_NAMES: &[&str] = &["input", "webhook_data", "webhook_trigger"];

/// The scope every template of the run starts from.
fn base_scope(trigger: &SharedValue) -> TemplateScope {
    let mut scope = TemplateScope::default();
    scope.set("webhook_data", trigger);
    scope.set_part("webhook_trigger", trigger, "/data");
    scope
}

/// Told about a run's progress as it happens (the worker publishes it as execution events),
/// including what its nodes report themselves (`NodeEvents`).
pub trait Observer: NodeEvents {
    fn node_started(&self, node_id: &str, node_type: &str);
    fn node_settled(&self, node: &NodeRun);
}

/// An observer that ignores everything.
pub struct Unobserved;

impl Observer for Unobserved {
    fn node_started(&self, _node_id: &str, _node_type: &str) {}
    fn node_settled(&self, _node: &NodeRun) {}
}

impl NodeEvents for Unobserved {
    fn progress(&self, _node_id: &str, _data: &Value) {}
}

/// Runs `graph` to completion.
pub async fn run(graph: &Graph, input: &RunInput) -> RunRecord {
    run_observed(graph, input, &Unobserved).await
}

/// Runs `graph` to completion, telling `observer` about each node as it starts and settles.
pub async fn run_observed(graph: &Graph, input: &RunInput, observer: &dyn Observer) -> RunRecord {
    let started_at = Utc::now();
    let n = graph.len();
    let mut settled: Vec<Option<Settled>> = (0..n).map(|_| None).collect();
    let mut waiting: Vec<usize> = (0..n).map(|i| graph.incoming(i).len()).collect();
    // Providers are never steps: they are built for the processors they feed.
    let mut ready: Vec<usize> = (0..n)
        .filter(|&i| waiting[i] == 0 && !graph.is_provider(i))
        .collect();
    // Shared with the nodes running; copied (cheaply) only when it changes under them.
    let mut scope = base_scope(&input.trigger);
    let mut nodes = Vec::with_capacity(n);
    let mut running = FuturesUnordered::new();
    let mut failure: Option<(String, &'static str)> = None;
    let mut response: Option<WebhookResponse> = None;

    let mut cancelled = false;
    loop {
        if input.cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        while let Some(index) = ready.pop() {
            match node_input(graph, index, &settled) {
                None => {
                    let now = Utc::now();
                    nodes.push(NodeRun {
                        node_id: graph.node_id(index).to_owned(),
                        node_type: graph.type_name(index).clone(),
                        status: "skipped",
                        inputs: null(),
                        outputs: null(),
                        error: None,
                        attempts: 0,
                        details: None,
                        started_at: now,
                        completed_at: now,
                    });
                    observer.node_settled(&nodes[nodes.len() - 1]);
                    settled[index] = Some(Settled::Skipped);
                    release(graph, index, &mut waiting, &mut ready);
                }
                Some(node_input) => {
                    // Only a node with templates holds on to the scope; the others would only
                    // force a copy of it each time another node finishes meanwhile.
                    let node_scope = graph.needs_scope(index).then(|| scope.clone());
                    let trigger = &input.trigger;
                    let services = &*input.services;
                    let run = &input.run;
                    running.push(async move {
                        observer.node_started(graph.node_id(index), graph.type_name(index));
                        let started = Utc::now();
                        let scope = node_scope.as_ref().unwrap_or(&EMPTY_SCOPE);
                        let built =
                            build_providers(graph, index, scope, trigger, run, services).await;
                        let (result, attempts) = match built {
                            Ok(providers) => {
                                let step = Step {
                                    graph,
                                    index,
                                    input: &node_input,
                                    trigger,
                                    scope,
                                    providers: &providers,
                                    services,
                                    run,
                                    events: observer,
                                };
                                let (result, attempts) = run_with_policy(step).await;
                                (result.map_err(NodeFailure::own), attempts)
                            }
                            Err(failure) => (Err(failure), 0),
                        };
                        (index, node_input, result, started, attempts)
                    });
                }
            }
        }
        let next = tokio::select! {
            biased;
            next = running.next() => next,
            // What is still running is dropped: its model or HTTP call stops here.
            () = input.cancel.cancelled() => {
                cancelled = true;
                break;
            }
        };
        let Some((index, node_input, result, started, attempts)) = next else {
            break;
        };
        match result {
            Ok(output) => {
                nodes.push(NodeRun {
                    node_id: graph.node_id(index).to_owned(),
                    node_type: graph.type_name(index).clone(),
                    status: "completed",
                    inputs: node_input,
                    outputs: output.value.clone(),
                    error: None,
                    attempts,
                    details: output.details.clone(),
                    started_at: started,
                    completed_at: Utc::now(),
                });
                observer.node_settled(&nodes[nodes.len() - 1]);
                // A node named `webhook_trigger` (KAI-Fusion's default name for it) must not
                // hide the payload that name stands for.
                let names = [graph.node_id(index)]
                    .into_iter()
                    .chain(graph.node_data(index).get("name").and_then(Value::as_str))
                    .filter(|name| !RESERVED_NAMES.contains(name));
                scope.set_node(names, &output.value);
                if response.is_none() {
                    response = output.response.clone();
                }
                settled[index] = Some(Settled::Done(output));
                release(graph, index, &mut waiting, &mut ready);
            }
            Err(NodeFailure { error, provider }) => {
                let message = describe(graph, index, provider, &error);
                nodes.push(NodeRun {
                    node_id: graph.node_id(index).to_owned(),
                    node_type: graph.type_name(index).clone(),
                    status: "failed",
                    inputs: node_input,
                    outputs: null(),
                    error: Some(message.clone()),
                    attempts,
                    details: None,
                    started_at: started,
                    completed_at: Utc::now(),
                });
                observer.node_settled(&nodes[nodes.len() - 1]);
                failure = Some((message, error.kind()));
                // Nothing further starts; what is still running is abandoned.
                break;
            }
        }
    }

    let completed_at = Utc::now();
    if cancelled {
        let error = "cancelled at the owner's request".to_owned();
        return RunRecord {
            status: ExecutionStatus::Cancelled,
            result: SharedValue::new(
                json!({"success": false, "error": error, "error_type": "cancelled"}),
            ),
            error: Some(error),
            error_type: Some("cancelled"),
            nodes,
            started_at,
            completed_at,
            response: None,
        };
    }
    match failure {
        Some((error, error_type)) => RunRecord {
            status: ExecutionStatus::Failed,
            result: SharedValue::new(
                json!({"success": false, "error": error, "error_type": error_type}),
            ),
            error: Some(error),
            error_type: Some(error_type),
            nodes,
            started_at,
            completed_at,
            response: None,
        },
        None => RunRecord {
            status: ExecutionStatus::Completed,
            result: collect_result(graph, &settled),
            error: None,
            error_type: None,
            nodes,
            started_at,
            completed_at,
            response,
        },
    }
}

/// Why a step failed: its own error, or one of its providers' (named by index).
struct NodeFailure {
    error: NodeError,
    provider: Option<usize>,
}

impl NodeFailure {
    fn own(error: NodeError) -> Self {
        Self {
            error,
            provider: None,
        }
    }
}

/// Builds the providers handed to node `index`, each after the providers it consumes itself.
/// Providers are built from their configuration, per consuming step, and never retried.
fn build_providers<'a>(
    graph: &'a Graph,
    index: usize,
    scope: &'a TemplateScope,
    trigger: &'a SharedValue,
    run: &'a RunIds,
    services: &'a NodeServices,
) -> BoxFuture<'a, Result<Providers, NodeFailure>> {
    Box::pin(async move {
        let mut providers = Providers::none();
        for edge in graph.providers(index) {
            let own = build_providers(graph, edge.source, scope, trigger, run, services).await?;
            let context = ProviderContext {
                node_id: graph.node_id(edge.source),
                config: graph.node_config(edge.source),
                scope,
                providers: &own,
                run,
                trigger,
                services,
            };
            let provided = graph
                .definition(edge.source)
                .provide(context)
                .await
                .map_err(|error| NodeFailure {
                    error,
                    provider: Some(edge.source),
                })?;
            providers.push(&edge.target_handle, graph.node_id(edge.source), provided);
        }
        Ok(providers)
    })
}

/// One node about to run, with everything it sees.
struct Step<'a> {
    graph: &'a Graph,
    index: usize,
    input: &'a SharedValue,
    trigger: &'a SharedValue,
    scope: &'a TemplateScope,
    providers: &'a Providers,
    services: &'a NodeServices,
    run: &'a RunIds,
    events: &'a dyn NodeEvents,
}

/// Runs one node under its policy: each attempt bounded by the timeout, a retryable failure
/// retried after a doubling, jittered backoff (or the service's `Retry-After` when longer)
/// while attempts remain, under the node's policy or the workflow's when that allows more.
/// Returns the outcome and the attempts.
async fn run_with_policy(step: Step<'_>) -> (Result<NodeOutput, NodeError>, u32) {
    let Step {
        graph,
        index,
        input,
        trigger,
        scope,
        providers,
        services,
        run,
        events,
    } = step;
    let definition = graph.definition(index);
    let mut policy = definition.policy(graph.node_config(index));
    // The workflow's policy, where the node's own allows fewer attempts.
    if let Some(retry) = graph.flow().retry
        && retry.max_attempts > policy.max_attempts
    {
        policy.max_attempts = retry.max_attempts;
        policy.backoff = std::time::Duration::from_millis(retry.backoff_ms);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let context = NodeContext {
            node_id: graph.node_id(index),
            config: graph.node_config(index),
            input,
            trigger,
            scope,
            providers,
            run,
            attempt,
            events,
            services,
        };
        let outcome = match tokio::time::timeout(policy.timeout, definition.execute(context)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(NodeError::Timeout(policy.timeout)),
        };
        match outcome {
            Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                let delay =
                    retry_delay(policy.backoff, attempt, error.retry_after(), rand::random());
                tracing::info!(node_id = graph.node_id(index), attempt, %error, ?delay, "retrying node");
                metrics::counter!("kai_worker_node_retries_total", "kind" => error.kind())
                    .increment(1);
                tokio::time::sleep(delay).await;
            }
            outcome => return (outcome, attempt),
        }
    }
}

fn describe(graph: &Graph, index: usize, provider: Option<usize>, error: &NodeError) -> String {
    match provider {
        None => format!(
            "node `{}` ({}) failed: {error}",
            graph.node_id(index),
            graph.type_name(index)
        ),
        Some(provider) => format!(
            "node `{}` ({}): its provider `{}` ({}) failed: {error}",
            graph.node_id(index),
            graph.type_name(index),
            graph.node_id(provider),
            graph.type_name(provider)
        ),
    }
}

/// A settled node's successors each have one input fewer to wait for.
fn release(graph: &Graph, index: usize, waiting: &mut [usize], ready: &mut Vec<usize>) {
    for &next in graph.outgoing(index) {
        waiting[next] -= 1;
        if waiting[next] == 0 {
            ready.push(next);
        }
    }
}

/// The value a node runs on, or `None` when it must be skipped: its incoming edges that carry a
/// value (from a completed source, through a handle the source routed to). One such edge gives
/// its value; several give an object by source node id. An entry node gets null.
fn node_input(graph: &Graph, index: usize, settled: &[Option<Settled>]) -> Option<SharedValue> {
    let incoming = graph.incoming(index);
    if incoming.is_empty() {
        return Some(null());
    }
    let active: Vec<(usize, &SharedValue)> = incoming
        .iter()
        .filter_map(|edge| match &settled[edge.source] {
            Some(Settled::Done(output))
                if output.route.is_none_or(|route| route == edge.source_handle) =>
            {
                Some((edge.source, &output.value))
            }
            _ => None,
        })
        .collect();
    match active.as_slice() {
        [] => None,
        [(_, value)] => Some(SharedValue::clone(value)),
        // A join builds a new object of copies of its inputs.
        many => Some(SharedValue::new(Value::Object(
            many.iter()
                .map(|(source, value)| (graph.node_id(*source).to_owned(), Value::clone(value)))
                .collect::<Map<_, _>>(),
        ))),
    }
}

/// The run's result: the output of its result node, or an object of them by node id; skipped
/// result nodes do not count.
fn collect_result(graph: &Graph, settled: &[Option<Settled>]) -> SharedValue {
    let done: Vec<(usize, &SharedValue)> = graph
        .result_nodes()
        .into_iter()
        .filter_map(|i| match &settled[i] {
            Some(Settled::Done(output)) => Some((i, &output.value)),
            _ => None,
        })
        .collect();
    match done.as_slice() {
        [] => null(),
        [(_, value)] => SharedValue::clone(value),
        many => SharedValue::new(Value::Object(
            many.iter()
                .map(|(i, value)| (graph.node_id(*i).to_owned(), Value::clone(value)))
                .collect(),
        )),
    }
}

fn null() -> SharedValue {
    SharedValue::new(Value::Null)
}

/// The record of a run that could not start (e.g. its workflow version is gone).
pub fn failed(error: String, error_type: &'static str) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        status: ExecutionStatus::Failed,
        result: SharedValue::new(
            json!({"success": false, "error": error, "error_type": error_type}),
        ),
        error: Some(error),
        error_type: Some(error_type),
        nodes: Vec::new(),
        started_at: now,
        completed_at: now,
        response: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_common::workflow::FlowData;

    fn graph(value: Value) -> Graph {
        Graph::new(FlowData::from_body(&value).unwrap()).unwrap()
    }

    fn status_of<'a>(record: &'a RunRecord, id: &str) -> &'a str {
        record
            .nodes
            .iter()
            .find(|n| n.node_id == id)
            .map(|n| n.status)
            .unwrap_or("missing")
    }

    #[tokio::test]
    async fn webhook_to_end_returns_the_event() {
        let g = graph(json!({"nodes": [
            {"id": "w", "type": "WebhookStartNode"}, {"id": "e", "type": "EndNode"}
        ], "edges": [{"source": "w", "target": "e"}]}));
        let record = run(
            &g,
            &RunInput {
                trigger: json!({"data": {"a": 1}}).into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(record.status, ExecutionStatus::Completed);
        assert_eq!(*record.result, json!({"data": {"a": 1}}));
        assert_eq!(record.nodes.len(), 2);
        assert_eq!(*record.nodes[1].inputs, json!({"data": {"a": 1}}));
    }

    #[tokio::test]
    async fn several_sinks_are_collected_by_id() {
        let g = graph(json!({"nodes": [
            {"id": "s", "type": "StartNode", "data": {"initial_input": "hi"}},
            {"id": "w", "type": "WebhookStartNode"}
        ]}));
        let record = run(
            &g,
            &RunInput {
                trigger: json!(1).into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(*record.result, json!({"s": "hi", "w": 1}));
    }

    fn branching(operation: &str) -> Graph {
        graph(json!({"nodes": [
            {"id": "hook", "type": "WebhookStartNode"},
            {"id": "if", "type": "ConditionNode", "data": {
                "value1": "${{ webhook_trigger.kind }}", "operation": operation, "value2": "VIP"}},
            {"id": "yes", "type": "EndNode"},
            {"id": "no", "type": "EndNode"}
        ], "edges": [
            {"source": "hook", "target": "if"},
            {"source": "if", "sourceHandle": "true_output", "target": "yes"},
            {"source": "if", "sourceHandle": "false_output", "target": "no"}
        ]}))
    }

    #[tokio::test]
    async fn a_condition_runs_one_branch_and_skips_the_other() {
        let trigger = json!({"data": {"kind": "vip"}});
        let record = run(
            &branching("equal"),
            &RunInput {
                trigger: trigger.clone().into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(record.status, ExecutionStatus::Completed);
        assert_eq!(status_of(&record, "yes"), "completed");
        assert_eq!(status_of(&record, "no"), "skipped");
        assert_eq!(
            *record.result, trigger,
            "only the branch taken gives the result"
        );

        let record = run(
            &branching("not_equal"),
            &RunInput {
                trigger: trigger.into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(status_of(&record, "yes"), "skipped");
        assert_eq!(status_of(&record, "no"), "completed");
    }

    #[tokio::test]
    async fn a_join_waits_for_every_input_and_runs_on_the_active_ones() {
        let g = graph(json!({"nodes": [
            {"id": "a", "type": "StartNode", "data": {"initial_input": "from a"}},
            {"id": "b", "type": "StartNode", "data": {"initial_input": "from b"}},
            {"id": "if", "type": "ConditionNode", "data": {"operation": "contains", "value2": "zzz"}},
            {"id": "join", "type": "EndNode"}
        ], "edges": [
            {"source": "a", "target": "join"},
            {"source": "b", "target": "if"},
            {"source": "if", "sourceHandle": "true_output", "target": "join"}
        ]}));
        let record = run(
            &g,
            &RunInput {
                trigger: Value::Null.into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(status_of(&record, "join"), "completed");
        assert_eq!(
            *record.result,
            json!("from a"),
            "the routed-away input does not count"
        );
        let position = |id: &str| record.nodes.iter().position(|n| n.node_id == id).unwrap();
        assert!(
            position("join") > position("if"),
            "the join ran after all its inputs settled"
        );
    }

    #[tokio::test]
    async fn a_template_error_fails_the_run_naming_the_node_and_field() {
        let g = graph(json!({"nodes": [
            {"id": "hook", "type": "WebhookStartNode"},
            {"id": "check", "type": "ConditionNode", "data": {"value1": "{{ no_such_thing.x }}"}},
            {"id": "end", "type": "EndNode"}
        ], "edges": [
            {"source": "hook", "target": "check"},
            {"source": "check", "sourceHandle": "true_output", "target": "end"}
        ]}));
        let record = run(
            &g,
            &RunInput {
                trigger: json!({"data": {}}).into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            },
        )
        .await;
        assert_eq!(record.status, ExecutionStatus::Failed);
        assert_eq!(record.error_type, Some("configuration"));
        let error = record.error.clone().unwrap();
        assert!(error.contains("node `check` (ConditionNode)"), "{error}");
        assert!(error.contains("field `value1`"), "{error}");
        assert_eq!(
            status_of(&record, "end"),
            "missing",
            "nothing runs after a failure"
        );
    }

    mod policy {
        //! Timeouts and retries, with probe node types that misbehave on purpose.

        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use futures::FutureExt;
        use futures::future::BoxFuture;
        use kai_common::nodes::{
            ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
            NodeType, RunPolicy,
        };

        use super::*;

        /// Fails with a network error until its third attempt.
        struct Flaky;
        /// Takes longer than its timeout.
        struct Slow;
        /// Fails with an error no retry can fix.
        struct Refused;
        /// Rate limited once, asked to wait 300 ms.
        struct Throttled;
        /// One attempt of its own; fails twice with a network error, then succeeds.
        struct Fragile;

        static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);
        static REFUSED_CALLS: AtomicU32 = AtomicU32::new(0);
        static THROTTLED_CALLS: AtomicU32 = AtomicU32::new(0);
        static FRAGILE_CALLS: AtomicU32 = AtomicU32::new(0);

        fn probe_policy() -> RunPolicy {
            RunPolicy {
                timeout: Duration::from_millis(50),
                max_attempts: 3,
                backoff: Duration::from_millis(1),
            }
        }

        macro_rules! probe {
            ($ty:ty, $name:literal, $body:expr) => {
                probe!($ty, $name, probe_policy(), $body);
            };
            ($ty:ty, $name:literal, $policy:expr, $body:expr) => {
                impl NodeDefinition for $ty {
                    fn type_name(&self) -> &'static str {
                        $name
                    }
                    fn description(&self) -> &'static str {
                        "a test probe"
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
                    fn policy(&self, _: &Value) -> RunPolicy {
                        $policy
                    }
                    fn execute<'a>(
                        &'a self,
                        ctx: NodeContext<'a>,
                    ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                        let body: fn(
                            &'a $ty,
                            NodeContext<'a>,
                        ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> = $body;
                        body(self, ctx)
                    }
                }
            };
        }

        probe!(Flaky, "Flaky", |_, _| async move {
            if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(NodeError::Network("connection reset".into()))
            } else {
                Ok(NodeOutput::all(json!("finally")))
            }
        }
        .boxed());
        probe!(Slow, "Slow", |_, _| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(NodeOutput::all(json!("too late")))
        }
        .boxed());
        probe!(Refused, "Refused", |_, _| async move {
            REFUSED_CALLS.fetch_add(1, Ordering::SeqCst);
            Err(NodeError::Credential("the API key was refused".into()))
        }
        .boxed());

        probe!(Throttled, "Throttled", |_, _| async move {
            if THROTTLED_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(NodeError::RateLimited(
                    "429".into(),
                    Some(Duration::from_millis(300)),
                ))
            } else {
                Ok(NodeOutput::all(json!("served")))
            }
        }
        .boxed());

        probe!(
            Fragile,
            "Fragile",
            RunPolicy {
                max_attempts: 1,
                ..probe_policy()
            },
            |_, _| async move {
                if FRAGILE_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(NodeError::Network("connection reset".into()))
                } else {
                    Ok(NodeOutput::all(json!("held")))
                }
            }
            .boxed()
        );

        /// Reports two pieces of progress while it runs.
        struct Reporter;
        probe!(Reporter, "Reporter", |_, ctx| async move {
            ctx.events.progress(ctx.node_id, &json!({"token": "Hel"}));
            ctx.events.progress(ctx.node_id, &json!({"token": "lo"}));
            Ok(NodeOutput::all(json!("Hello")))
        }
        .boxed());

        /// Records the progress nodes report.
        #[derive(Default)]
        struct Recorder {
            progress: std::sync::Mutex<Vec<(String, Value)>>,
        }

        impl NodeEvents for Recorder {
            fn progress(&self, node_id: &str, data: &Value) {
                let mut progress = self.progress.lock().unwrap();
                progress.push((node_id.to_owned(), data.clone()));
            }
        }

        impl Observer for Recorder {
            fn node_started(&self, _: &str, _: &str) {}
            fn node_settled(&self, _: &NodeRun) {}
        }

        #[tokio::test]
        async fn what_a_node_reports_while_it_runs_reaches_the_run_s_observer() {
            let recorder = Recorder::default();
            let input = RunInput {
                trigger: json!({}).into(),
                services: Default::default(),
                run: Default::default(),
                cancel: Default::default(),
            };
            let record = run_observed(&probe_graph("Reporter"), &input, &recorder).await;
            assert_eq!(record.status, ExecutionStatus::Completed);
            assert_eq!(
                *recorder.progress.lock().unwrap(),
                [
                    ("probe".to_owned(), json!({"token": "Hel"})),
                    ("probe".to_owned(), json!({"token": "lo"}))
                ]
            );
        }

        fn probe_graph(probe: &str) -> Graph {
            probe_graph_with(probe, json!(null))
        }

        fn probe_graph_with(probe: &str, retry: Value) -> Graph {
            let flow = FlowData::from_body(&json!({"nodes": [
                {"id": "start", "type": "StartNode"},
                {"id": "probe", "type": probe},
                {"id": "end", "type": "EndNode"}
            ], "edges": [{"source": "start", "target": "probe"}, {"source": "probe", "target": "end"}],
               "retry": retry}))
            .unwrap();
            Graph::with_node_types(flow, &|name| match name {
                "Flaky" => Some(Arc::new(Flaky) as NodeType),
                "Slow" => Some(Arc::new(Slow) as NodeType),
                "Refused" => Some(Arc::new(Refused) as NodeType),
                "Throttled" => Some(Arc::new(Throttled) as NodeType),
                "Fragile" => Some(Arc::new(Fragile) as NodeType),
                "Reporter" => Some(Arc::new(Reporter) as NodeType),
                other => kai_common::nodes::find(other),
            })
            .unwrap()
        }

        fn probe_run(record: &RunRecord) -> &NodeRun {
            record.nodes.iter().find(|n| n.node_id == "probe").unwrap()
        }

        #[tokio::test]
        async fn a_retryable_failure_is_retried_until_it_succeeds() {
            let record = run(
                &probe_graph("Flaky"),
                &RunInput {
                    trigger: json!({}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert_eq!(
                record.status,
                ExecutionStatus::Completed,
                "{:?}",
                record.error
            );
            assert_eq!(probe_run(&record).attempts, 3);
            assert_eq!(*record.result, json!("finally"));
        }

        #[tokio::test]
        async fn the_workflow_s_retry_policy_gives_a_node_more_attempts_than_its_own() {
            let graph = probe_graph_with("Fragile", json!({"max_attempts": 3, "backoff_ms": 1}));
            let record = run(
                &graph,
                &RunInput {
                    trigger: json!({}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert_eq!(
                record.status,
                ExecutionStatus::Completed,
                "{:?}",
                record.error
            );
            assert_eq!(probe_run(&record).attempts, 3);
        }

        #[tokio::test]
        async fn a_rate_limited_node_waits_as_long_as_the_service_asked() {
            // The policy's own backoff is 1 ms; the service asked for 300 ms.
            let started = std::time::Instant::now();
            let record = run(
                &probe_graph("Throttled"),
                &RunInput {
                    trigger: json!({}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert!(started.elapsed() >= Duration::from_millis(300));
            assert_eq!(record.status, ExecutionStatus::Completed);
            assert_eq!(probe_run(&record).attempts, 2);
        }

        #[tokio::test]
        async fn a_node_over_its_timeout_fails_the_run_after_its_attempts() {
            let started = std::time::Instant::now();
            let record = run(
                &probe_graph("Slow"),
                &RunInput {
                    trigger: json!({}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the timeout cut each attempt"
            );
            assert_eq!(record.status, ExecutionStatus::Failed);
            assert_eq!(record.error_type, Some("timeout"));
            assert_eq!(probe_run(&record).attempts, 3);
            assert!(record.error.unwrap().contains("node `probe` (Slow)"));
        }

        #[tokio::test]
        async fn a_non_retryable_failure_stops_the_run_at_once_naming_the_node() {
            let record = run(
                &probe_graph("Refused"),
                &RunInput {
                    trigger: json!({}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert_eq!(record.status, ExecutionStatus::Failed);
            assert_eq!(record.error_type, Some("credential"));
            assert_eq!(probe_run(&record).attempts, 1);
            assert_eq!(REFUSED_CALLS.load(Ordering::SeqCst), 1);
            assert!(record.error.unwrap().contains("node `probe` (Refused)"));
            assert!(
                record.nodes.iter().all(|n| n.node_id != "end"),
                "nothing ran after it"
            );
        }
    }

    mod providers {
        //! Provider nodes: built for the processor they feed, never a step of their own.

        use futures::FutureExt;
        use futures::future::BoxFuture;
        use kai_common::llm::openai::ToolSpec;
        use kai_common::nodes::capability::Tool;
        use kai_common::nodes::{
            Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError,
            NodeOutput, NodeType, Provided, ProviderContext, ProviderInput,
        };
        use kai_common::workflow::GraphError;
        use kai_common::workflow::template;

        use super::*;

        /// Provides its rendered `text`, after the text of the provider at its `inner` input.
        struct Prefix;
        /// Provides nothing: its credential is refused.
        struct Broken;
        /// Greets its input with the text its `prefix` provider gives.
        struct Greeter;
        /// Wants a chat model at `llm`.
        struct NeedsModel;

        /// What `Prefix` provides: a tool whose description is the text.
        struct Text(String);

        impl Tool for Text {
            fn spec(&self) -> ToolSpec {
                ToolSpec {
                    name: "text".into(),
                    description: self.0.clone(),
                    parameters: json!({"type": "object"}),
                }
            }
            fn call(&self, _: Value) -> BoxFuture<'_, Result<Value, NodeError>> {
                async { Ok(Value::Null) }.boxed()
            }
        }

        fn text_at(providers: &kai_common::nodes::Providers, handle: &str) -> Option<String> {
            providers
                .tools(handle)
                .next()
                .map(|tool| tool.spec().description)
        }

        const INNER: &[ProviderInput] = &[ProviderInput::optional("inner", Capability::Tool)];
        const PREFIX: &[ProviderInput] = &[ProviderInput::optional("prefix", Capability::Tool)];
        const LLM: &[ProviderInput] = &[ProviderInput::required("llm", Capability::ChatModel)];

        macro_rules! common_parts {
            ($name:literal, $category:expr, $inputs:expr, $providers:expr) => {
                fn type_name(&self) -> &'static str {
                    $name
                }
                fn description(&self) -> &'static str {
                    "a test probe"
                }
                fn config_schema(&self) -> Value {
                    json!({"type": "object"})
                }
                fn category(&self) -> NodeCategory {
                    $category
                }
                fn output_handles(&self) -> &'static [&'static str] {
                    &["output"]
                }
                fn input_handles(&self) -> &'static [&'static str] {
                    $inputs
                }
                fn provider_inputs(&self) -> &'static [ProviderInput] {
                    $providers
                }
                fn provides(&self) -> Option<Capability> {
                    ($category == NodeCategory::Provider).then_some(Capability::Tool)
                }
                fn validate(&self, _: &Value) -> Result<(), ConfigError> {
                    Ok(())
                }
            };
        }

        fn never_a_step<'a>() -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
            async { panic!("a provider never runs as a step") }.boxed()
        }

        impl NodeDefinition for Prefix {
            common_parts!("Prefix", NodeCategory::Provider, &[], INNER);
            fn execute<'a>(
                &'a self,
                _: NodeContext<'a>,
            ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                never_a_step()
            }
            fn provide<'a>(
                &'a self,
                ctx: ProviderContext<'a>,
            ) -> BoxFuture<'a, Result<Provided, NodeError>> {
                async move {
                    let text = ctx.config["text"].as_str().unwrap_or_default();
                    let text = template::render(text, ctx.scope, &Value::Null.into())
                        .map_err(NodeError::Configuration)?;
                    let inner = text_at(ctx.providers, "inner").unwrap_or_default();
                    Ok(Provided::Tool(Arc::new(Text(format!("{inner}{text}")))))
                }
                .boxed()
            }
        }

        impl NodeDefinition for Broken {
            common_parts!("Broken", NodeCategory::Provider, &[], &[]);
            fn execute<'a>(
                &'a self,
                _: NodeContext<'a>,
            ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                never_a_step()
            }
            fn provide<'a>(
                &'a self,
                _: ProviderContext<'a>,
            ) -> BoxFuture<'a, Result<Provided, NodeError>> {
                async { Err(NodeError::Credential("the API key was refused".into())) }.boxed()
            }
        }

        impl NodeDefinition for Greeter {
            common_parts!("Greeter", NodeCategory::Processor, &["input"], PREFIX);
            fn execute<'a>(
                &'a self,
                ctx: NodeContext<'a>,
            ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                async move {
                    let prefix = text_at(ctx.providers, "prefix")
                        .ok_or_else(|| NodeError::Configuration("no prefix provider".into()))?;
                    let name = ctx.input.as_str().unwrap_or_default();
                    Ok(NodeOutput::all(json!(format!("{prefix}{name}"))))
                }
                .boxed()
            }
        }

        impl NodeDefinition for NeedsModel {
            common_parts!("NeedsModel", NodeCategory::Processor, &["input"], LLM);
            fn execute<'a>(
                &'a self,
                _: NodeContext<'a>,
            ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                async { Ok(NodeOutput::all(Value::Null)) }.boxed()
            }
        }

        fn build(value: Value) -> Result<Graph, GraphError> {
            Graph::with_node_types(FlowData::from_body(&value).unwrap(), &|name| match name {
                "Prefix" => Some(Arc::new(Prefix) as NodeType),
                "Broken" => Some(Arc::new(Broken) as NodeType),
                "Greeter" => Some(Arc::new(Greeter) as NodeType),
                "NeedsModel" => Some(Arc::new(NeedsModel) as NodeType),
                other => kai_common::nodes::find(other),
            })
        }

        fn greeting(provider_edges: Value, extra_nodes: Value) -> Value {
            let mut nodes = vec![
                json!({"id": "start", "type": "StartNode", "data": {"initial_input": "world"}}),
                json!({"id": "greet", "type": "Greeter"}),
            ];
            nodes.extend(extra_nodes.as_array().unwrap().iter().cloned());
            let mut edges = vec![json!({"source": "start", "target": "greet"})];
            edges.extend(provider_edges.as_array().unwrap().iter().cloned());
            json!({"nodes": nodes, "edges": edges})
        }

        #[tokio::test]
        async fn providers_are_built_for_their_consumer_and_are_not_steps() {
            let g = build(greeting(
                json!([
                    {"source": "salutation", "target": "greet", "targetHandle": "prefix"},
                    {"source": "mood", "target": "salutation", "targetHandle": "inner"}
                ]),
                json!([
                    {"id": "salutation", "type": "Prefix", "data": {"text": "Hello, "}},
                    {"id": "mood", "type": "Prefix", "data": {"text": "{{ webhook_trigger.mood }} "}}
                ]),
            ))
            .unwrap();
            assert!(
                g.needs_scope(
                    g.order()
                        .iter()
                        .copied()
                        .find(|&i| g.node_id(i) == "greet")
                        .unwrap()
                ),
                "a templated provider makes its consumer need the scope"
            );
            let record = run(
                &g,
                &RunInput {
                    trigger: json!({"data": {"mood": "Cheerfully"}}).into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert_eq!(
                record.status,
                ExecutionStatus::Completed,
                "{:?}",
                record.error
            );
            assert_eq!(*record.result, json!("Cheerfully Hello, world"));
            let steps: Vec<&str> = record.nodes.iter().map(|n| n.node_id.as_str()).collect();
            assert_eq!(
                steps,
                ["start", "greet"],
                "providers have no step of their own"
            );
        }

        #[tokio::test]
        async fn a_failing_provider_fails_its_consumer_naming_both() {
            let g = build(greeting(
                json!([{"source": "key", "target": "greet", "targetHandle": "prefix"}]),
                json!([{"id": "key", "type": "Broken"}]),
            ))
            .unwrap();
            let record = run(
                &g,
                &RunInput {
                    trigger: Value::Null.into(),
                    services: Default::default(),
                    run: Default::default(),
                    cancel: Default::default(),
                },
            )
            .await;
            assert_eq!(record.status, ExecutionStatus::Failed);
            assert_eq!(record.error_type, Some("credential"));
            let error = record.error.clone().unwrap();
            assert!(
                error.contains("node `greet` (Greeter): its provider `key` (Broken) failed"),
                "{error}"
            );
            assert_eq!(status_of(&record, "greet"), "failed");
        }

        #[test]
        fn provider_and_data_edges_must_reach_the_right_kind_of_input() {
            let into_data = build(greeting(
                json!([{"source": "salutation", "target": "greet", "targetHandle": "input"}]),
                json!([{"id": "salutation", "type": "Prefix", "data": {"text": "Hi "}}]),
            ));
            match into_data {
                Err(GraphError::MissingHandle(problem)) => {
                    assert_eq!(problem.side, "provider input");
                    assert_eq!(problem.available, "prefix");
                }
                other => panic!("{other:?}"),
            }
            let data_into_provider_input = build(json!({"nodes": [
                {"id": "start", "type": "StartNode"}, {"id": "greet", "type": "Greeter"}
            ], "edges": [{"source": "start", "target": "greet", "targetHandle": "prefix"}]}));
            assert!(matches!(
                data_into_provider_input,
                Err(GraphError::MissingHandle(_))
            ));
            let cycle = build(json!({"nodes": [
                {"id": "start", "type": "StartNode"},
                {"id": "a", "type": "Prefix"}, {"id": "b", "type": "Prefix"}
            ], "edges": [
                {"source": "a", "target": "b", "targetHandle": "inner"},
                {"source": "b", "target": "a", "targetHandle": "inner"}
            ]}));
            assert!(matches!(cycle, Err(GraphError::Cycle { .. })), "{cycle:?}");
        }

        #[test]
        fn a_provider_must_give_what_the_input_accepts_and_required_ones_are_connected() {
            let wrong = build(json!({"nodes": [
                {"id": "start", "type": "StartNode"}, {"id": "ask", "type": "NeedsModel"},
                {"id": "text", "type": "Prefix"}
            ], "edges": [{"source": "start", "target": "ask"},
                {"id": "e2", "source": "text", "target": "ask", "targetHandle": "llm"}]}));
            assert_eq!(
                wrong.unwrap_err().to_string(),
                "edge e2: node `text` (Prefix) provides a tool, but input `llm` of node `ask` \
                 (NeedsModel) accepts a chat_model"
            );
            let missing = build(json!({"nodes": [
                {"id": "start", "type": "StartNode"}, {"id": "ask", "type": "NeedsModel"}
            ], "edges": [{"source": "start", "target": "ask"}]}));
            assert_eq!(
                missing.unwrap_err().to_string(),
                "node `ask` (NeedsModel) needs a chat_model connected to its `llm` input"
            );
        }
    }
}
