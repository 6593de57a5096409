//! Manual runs through the queue, and custom node types backed by HTTP endpoints: their
//! registration, validation when saving, and their timeouts and retries as they run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use poem::web::{Data, Json as PoemJson};
use poem::{EndpointExt, IntoResponse, Route, handler, post};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of};

fn start_to_end() -> Value {
    json!({"name": "manual", "nodes": [
        {"id": "start", "type": "StartNode"}, {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "start", "target": "end"}]})
}

async fn execute(
    app: &TestApp,
    token: &str,
    workflow_id: &str,
    query: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.post_json(
        &format!("/api/v1/workflows/{workflow_id}/execute{query}"),
        token,
        &body,
    )
    .await
}

#[tokio::test]
async fn a_manual_run_goes_through_the_queue_or_waits_for_its_result() {
    let app = TestApp::spawn().await;
    let token = app.user("manual@example.com").await;
    let workflow = app.create_workflow(&token, &start_to_end()).await;
    let id = workflow["id"].as_str().unwrap();

    let (status, queued) = execute(&app, &token, id, "", json!({"inputs": {"x": 1}})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["status"], "queued");
    let execution = app
        .wait_for_execution(&token, queued["execution_id"].as_str().unwrap())
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["trigger_type"], "manual");
    assert_eq!(execution["inputs"], json!({"x": 1}));
    assert_eq!(execution["outputs"], json!({"x": 1}));

    let (status, finished) = execute(&app, &token, id, "?wait=true", json!({"inputs": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["result"], json!("hi"));

    // Bad input changes nothing and says what is wrong.
    let (status, error) = execute(&app, &token, id, "?wait=true&timeout=0", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["message"].as_str().unwrap().contains("timeout"),
        "{error}"
    );
    let (status, _) = execute(&app, &token, id, "", json!({"inputs": "a\u{0}b"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let other = app.user("someone-else@example.com").await;
    let (status, _) = execute(&app, &other, id, "", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's workflow");
    let (status, listed) = app
        .get_json(&format!("/api/v1/workflows/{id}/executions"), &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    app.stop().await;
}

/// A fake of a user's node service: echoes, fails once, is slow, or refuses.
struct FakeNodeService {
    base: String,
    flaky_calls: Arc<AtomicU32>,
    slow_calls: Arc<AtomicU32>,
    down_calls: Arc<AtomicU32>,
    /// Lets one call of `/gate` answer.
    gate: Arc<tokio::sync::Notify>,
}

/// Answers only once two calls are in flight together: proof that two nodes ran concurrently.
#[handler]
async fn rendezvous(
    barrier: Data<&Arc<tokio::sync::Barrier>>,
    PoemJson(request): PoemJson<Value>,
) -> PoemJson<Value> {
    barrier.wait().await;
    PoemJson(json!({"branch": request["node_id"]}))
}

/// A service that is down: 503 to every call.
#[handler]
fn down(calls: Data<&Arc<AtomicU32>>) -> poem::Response {
    calls.fetch_add(1, Ordering::SeqCst);
    (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
}

#[handler]
async fn gate(gate: Data<&Arc<tokio::sync::Notify>>) -> PoemJson<Value> {
    gate.notified().await;
    PoemJson(json!({"opened": true}))
}

#[handler]
fn echo(PoemJson(request): PoemJson<Value>) -> PoemJson<Value> {
    PoemJson(
        json!({"echo": request["inputs"], "config": request["config"], "node": request["node_id"]}),
    )
}

#[handler]
fn flaky(calls: Data<&Arc<AtomicU32>>) -> poem::Response {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
    } else {
        PoemJson(json!({"ok": true})).into_response()
    }
}

#[handler]
async fn slow(calls: Data<&Arc<AtomicU32>>) -> PoemJson<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    PoemJson(json!("too late"))
}

#[handler]
fn refuse() -> poem::Response {
    (StatusCode::BAD_REQUEST, "unknown language").into_response()
}

impl FakeNodeService {
    async fn start() -> Self {
        let flaky_calls = Arc::new(AtomicU32::new(0));
        let slow_calls = Arc::new(AtomicU32::new(0));
        let down_calls = Arc::new(AtomicU32::new(0));
        let gate_notify = Arc::new(tokio::sync::Notify::new());
        let routes = Route::new()
            .at("/gate", post(gate).data(gate_notify.clone()))
            .at(
                "/rendezvous",
                post(rendezvous).data(Arc::new(tokio::sync::Barrier::new(2))),
            )
            .at("/echo", post(echo))
            .at("/flaky", post(flaky).data(flaky_calls.clone()))
            .at("/slow", post(slow).data(slow_calls.clone()))
            .at("/refuse", post(refuse))
            .at("/down", post(down).data(down_calls.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
        Self {
            base,
            flaky_calls,
            slow_calls,
            down_calls,
            gate: gate_notify,
        }
    }
}

async fn register(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .request(Method::POST, "/api/v1/nodes/registry", Some(token))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

fn through(node_type: &str, config: Value) -> Value {
    json!({"name": format!("via {node_type}"), "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "custom", "type": node_type, "data": config},
        {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "start", "target": "custom"}, {"source": "custom", "target": "end"}]})
}

/// Runs `workflow` by hand, waits, and returns the execution with its node executions.
async fn run_to_the_end(app: &TestApp, token: &str, workflow: &Value, inputs: Value) -> Value {
    let id = workflow["id"].as_str().unwrap();
    let (status, queued) = execute(app, token, id, "", json!({"inputs": inputs})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    app.wait_for_execution(token, queued["execution_id"].as_str().unwrap())
        .await
}

fn node<'a>(execution: &'a Value, id: &str) -> &'a Value {
    execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id)
        .unwrap_or_else(|| panic!("no node `{id}` in {execution}"))
}

#[tokio::test]
async fn custom_node_types_run_against_their_endpoint_with_timeouts_and_retries() {
    let app = TestApp::spawn().await;
    let service = FakeNodeService::start().await;
    let token = app.user("custom-nodes@example.com").await;
    let fast = |name: &str, path: &str| {
        json!({"node_type": name, "endpoint_url": format!("{}{path}", service.base),
               "timeout_ms": 300, "max_attempts": 2, "backoff_ms": 10})
    };

    let mut translate = fast("Translate", "/echo");
    translate["config_schema"] = json!({"type": "object", "required": ["language"],
        "properties": {"language": {"type": "string", "minLength": 2}}});
    translate["description"] = json!("Translates text");
    let (status, created) = register(&app, &token, translate).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["node_class"], "http");
    assert_eq!(created["schema_definition"]["outputs"], json!(["output"]));

    // The output is the endpoint's answer; string config is templated first.
    let workflow = app
        .create_workflow(
            &token,
            &through("Translate", json!({"language": "{{ input.lang }}"})),
        )
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!({"lang": "fr"})).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(
        execution["outputs"],
        json!({"echo": {"lang": "fr"}, "config": {"language": "fr"}, "node": "custom"})
    );

    // A retryable failure (503) succeeds on the second attempt.
    register(&app, &token, fast("Flaky", "/flaky")).await;
    let workflow = app
        .create_workflow(&token, &through("Flaky", json!({})))
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(node(&execution, "custom")["attempts"], 2);
    assert_eq!(service.flaky_calls.load(Ordering::SeqCst), 2);

    // A node over its timeout fails the run after its attempts, named, as a timeout.
    register(&app, &token, fast("Slow", "/slow")).await;
    let workflow = app
        .create_workflow(&token, &through("Slow", json!({})))
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_type"], "timeout");
    assert!(
        execution["error"]
            .as_str()
            .unwrap()
            .contains("node `custom` (Slow)")
    );
    assert_eq!(node(&execution, "custom")["attempts"], 2);
    assert_eq!(service.slow_calls.load(Ordering::SeqCst), 2);

    // A non-retryable failure stops the run at once, naming the node; nothing runs after it.
    register(&app, &token, fast("Refuse", "/refuse")).await;
    let workflow = app
        .create_workflow(&token, &through("Refuse", json!({})))
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_type"], "configuration");
    let error = execution["error"].as_str().unwrap();
    assert!(
        error.contains("node `custom` (Refuse)") && error.contains("400"),
        "{error}"
    );
    assert_eq!(node(&execution, "custom")["attempts"], 1);
    assert!(
        execution["node_executions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["node_id"] != "end")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_custom_node_whose_endpoint_is_internal_fails_naming_the_ssrf_guard_without_retries() {
    let mut app = TestApp::spawn_api_only().await;
    // This worker's guard allows nothing internal (the default of a deployment).
    app.start_worker_with(|config| config.outbound.http_allowed_hosts = Default::default())
        .await;
    let service = FakeNodeService::start().await;
    let token = app.user("ssrf@example.com").await;
    let spec = json!({"node_type": "Internal", "endpoint_url": format!("{}/echo", service.base),
        "timeout_ms": 1000, "max_attempts": 3, "backoff_ms": 10});
    let (status, created) = register(&app, &token, spec).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let workflow = app
        .create_workflow(&token, &through("Internal", json!({})))
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
    assert_eq!(execution["status"], "failed", "{execution}");
    let error = execution["error"].as_str().unwrap();
    assert!(
        error.contains("SSRF guard") && error.contains("127.0.0.1") && error.contains("loopback"),
        "{error}"
    );
    assert_eq!(
        node(&execution, "custom")["attempts"],
        1,
        "a refusal is never retried"
    );
    app.stop().await;
}

#[tokio::test]
async fn custom_node_types_are_validated_owned_and_cannot_replace_built_ins() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("registry-owner@example.com").await;
    let other = app.user("registry-other@example.com").await;
    let spec = json!({"node_type": "Score", "endpoint_url": "http://127.0.0.1:9/score",
        "config_schema": {"type": "object", "properties": {"depth": {"type": "integer", "minimum": 1}}}});

    for (body, status, says) in [
        (
            json!({"node_type": "StartNode", "endpoint_url": "http://x/y"}),
            StatusCode::CONFLICT,
            "built-in",
        ),
        (
            json!({"node_type": "OpenAINode", "endpoint_url": "http://x/y"}),
            StatusCode::CONFLICT,
            "OpenAIChat",
        ),
        (
            json!({"node_type": "9lives", "endpoint_url": "http://x/y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "node_type",
        ),
        (
            json!({"node_type": "Ftp", "endpoint_url": "ftp://x/y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_url",
        ),
        (
            json!({"node_type": "Bad", "endpoint_url": "http://x/y", "max_attempts": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "max_attempts",
        ),
        (
            json!({"node_type": "Bad", "endpoint_url": "http://x/y", "config_schema": {"type": 5}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "config_schema",
        ),
        (
            json!({"endpoint_url": "http://x/y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "node_type",
        ),
    ] {
        let (got, error) = register(&app, &token, body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{body}: {error}"
        );
    }
    let (status, _) = register(&app, &token, spec.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = register(&app, &other, spec.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "the name is taken");

    // Only its owner sees it, uses it, or changes it.
    let (_, listed) = app.get_json("/api/v1/nodes/registry", &other).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["node_type"] != "Score")
    );
    let (status, _) = app.get_json("/api/v1/nodes/registry/Score", &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app
        .request(Method::POST, "/api/v1/workflows", Some(&other))
        .json(&through("Score", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let put = |token: &str, name: &str, body: Value| {
        app.request(
            Method::PUT,
            &format!("/api/v1/nodes/registry/{name}"),
            Some(token),
        )
        .json(&body)
        .send()
    };
    assert_eq!(
        put(&other, "Score", json!({"timeout_ms": 5}))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(&token, "EndNode", json!({})).await.unwrap().status(),
        StatusCode::CONFLICT
    );

    // Its schema checks configurations when a workflow is saved, naming node and field.
    let response = app
        .request(Method::POST, "/api/v1/workflows", Some(&token))
        .json(&through("Score", json!({"depth": 0})))
        .send()
        .await
        .unwrap();
    let (status, error) = json_of(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["node_id"], "custom");
    assert!(
        error["message"].as_str().unwrap().contains("depth"),
        "{error}"
    );
    app.create_workflow(&token, &through("Score", json!({"depth": 2})))
        .await;

    // An update keeps what it does not name, and a bad update changes nothing.
    let (status, updated) = json_of(
        put(&token, "Score", json!({"timeout_ms": 1234}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["endpoint"]["timeout_ms"], 1234);
    assert_eq!(updated["endpoint"]["url"], "http://127.0.0.1:9/score");
    let (status, _) = json_of(
        put(&token, "Score", json!({"endpoint_url": "nope"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, after) = app.get_json("/api/v1/nodes/registry/Score", &token).await;
    assert_eq!(after["endpoint"], updated["endpoint"]);

    // Deactivated, it can no longer be saved in a workflow.
    let (status, _) = json_of(
        put(&token, "Score", json!({"is_active": false}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let response = app
        .request(Method::POST, "/api/v1/workflows", Some(&token))
        .json(&through("Score", json!({"depth": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

/// Reads Server-Sent Events: `(event name, JSON data)` pairs as they arrive.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(app: &TestApp, token: &str, execution_id: &str) -> (StatusCode, Option<Self>) {
        let response = app
            .request(
                Method::GET,
                &format!("/api/v1/executions/{execution_id}/events"),
                Some(token),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status != StatusCode::OK {
            return (status, None);
        }
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        (
            status,
            Some(Self {
                response,
                buffer: String::new(),
            }),
        )
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((
                    name.unwrap_or_default(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("an event within 20 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn all(mut self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn summary(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(name, data)| match data["node_id"].as_str() {
            Some(node) => format!("{name}:{node}"),
            None => name.clone(),
        })
        .collect()
}

#[tokio::test]
async fn execution_events_stream_live_from_the_start_and_replay_when_finished() {
    let app = TestApp::spawn().await;
    let service = FakeNodeService::start().await;
    let token = app.user("events@example.com").await;
    let (status, _) = register(
        &app,
        &token,
        json!({"node_type": "Gate",
        "endpoint_url": format!("{}/gate", service.base), "timeout_ms": 20000, "max_attempts": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let workflow = app
        .create_workflow(&token, &through("Gate", json!({})))
        .await;
    let id = workflow["id"].as_str().unwrap();
    let (status, queued) = execute(&app, &token, id, "", json!({"inputs": {"n": 1}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let execution_id = queued["execution_id"].as_str().unwrap();

    // Connected while the run waits at the gate: everything so far, then the rest live.
    let (status, reader) = SseReader::open(&app, &token, execution_id).await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = reader.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = reader.next().await {
        let at_gate = event.0 == "node_started" && event.1["node_id"] == "custom";
        seen.push(event);
        if at_gate {
            break;
        }
    }
    assert_eq!(
        summary(&seen),
        [
            "execution_queued",
            "execution_started",
            "node_started:start",
            "node_completed:start",
            "node_started:custom"
        ]
    );
    assert_eq!(seen[3].1["output"], json!({"n": 1}));
    service.gate.notify_one();
    let rest = reader.all().await;
    assert_eq!(
        summary(&rest),
        [
            "node_completed:custom",
            "node_started:end",
            "node_completed:end",
            "execution_completed"
        ],
        "the stream ends after the final event"
    );
    assert_eq!(rest[3].1["output"], json!({"opened": true}));

    // Finished: replayed from the record, in the order it ran.
    app.wait_for_execution(&token, execution_id).await;
    let (_, reader) = SseReader::open(&app, &token, execution_id).await;
    let replay = reader.unwrap().all().await;
    assert_eq!(
        summary(&replay),
        [
            "execution_started",
            "node_started:start",
            "node_completed:start",
            "node_started:custom",
            "node_completed:custom",
            "node_started:end",
            "node_completed:end",
            "execution_completed"
        ]
    );
    assert_eq!(replay[4].1["attempts"], 1);

    // Nobody else's, and nothing unknown.
    let other = app.user("events-other@example.com").await;
    assert_eq!(
        SseReader::open(&app, &other, execution_id).await.0,
        StatusCode::NOT_FOUND
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        SseReader::open(&app, &token, &unknown).await.0,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn independent_branches_run_concurrently_and_a_join_waits_for_both() {
    let app = TestApp::spawn().await;
    let service = FakeNodeService::start().await;
    let token = app.user("branches@example.com").await;
    let (status, _) = register(
        &app,
        &token,
        json!({"node_type": "Rendezvous",
        "endpoint_url": format!("{}/rendezvous", service.base), "timeout_ms": 5000,
        "max_attempts": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Each branch's node answers only while the other is running too: run one after the
    // other, they would both time out.
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "fan out, join", "nodes": [
                {"id": "start", "type": "StartNode"},
                {"id": "left", "type": "Rendezvous"},
                {"id": "right", "type": "Rendezvous"},
                {"id": "join", "type": "EndNode"}
            ], "edges": [
                {"source": "start", "target": "left"}, {"source": "start", "target": "right"},
                {"source": "left", "target": "join"}, {"source": "right", "target": "join"}
            ]}),
        )
        .await;
    let execution = run_to_the_end(&app, &token, &workflow, json!("go")).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(
        execution["outputs"],
        json!({"left": {"branch": "left"}, "right": {"branch": "right"}}),
        "the join ran once, on both inputs"
    );
    let at = |id: &str, field: &str| {
        chrono::DateTime::parse_from_rfc3339(node(&execution, id)[field].as_str().unwrap()).unwrap()
    };
    let join_started = at("join", "started_at");
    assert!(join_started >= at("left", "completed_at"));
    assert!(join_started >= at("right", "completed_at"));
    app.stop().await;
}

#[tokio::test]
async fn calls_to_a_host_that_keeps_failing_fail_fast_once_its_circuit_opens() {
    let app = TestApp::spawn().await;
    let service = FakeNodeService::start().await;
    let token = app.user("breaker@example.com").await;
    let (status, _) = register(
        &app,
        &token,
        json!({"node_type": "Maintenance", "endpoint_url": format!("{}/down", service.base),
               "timeout_ms": 2000, "max_attempts": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let workflow = app
        .create_workflow(&token, &through("Maintenance", json!({})))
        .await;
    // The breaker opens after 5 failures in a row (the default): those reach the service...
    for _ in 0..5 {
        let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
        assert_eq!(execution["status"], "failed");
        assert_eq!(execution["error_type"], "network", "{execution}");
    }
    assert_eq!(service.down_calls.load(Ordering::SeqCst), 5);
    // ...later runs fail at once with a retryable error, without calling it.
    for _ in 0..3 {
        let execution = run_to_the_end(&app, &token, &workflow, json!({})).await;
        assert_eq!(execution["status"], "failed");
        assert_eq!(execution["error_type"], "network");
        let error = execution["error"].as_str().unwrap();
        assert!(error.contains("circuit open"), "{error}");
    }
    assert_eq!(service.down_calls.load(Ordering::SeqCst), 5);
    let metrics = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kai_node_circuit_state"), "{metrics}");
    app.stop().await;
}
