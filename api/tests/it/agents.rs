//! LLM and agent nodes through the queue against the deterministic fake model server: the
//! KAI-Fusion agent exports run unchanged, the tool loop (two tools, one failing), memory per
//! owner and session, streamed tokens on the event stream, `max_iterations`, and credentials
//! (a foreign one refused, none without a default server a credential error).

use std::time::{Duration, Instant};

use kai_common::llm::servers::ModelServersConfig;
use kai_common::testing::fake_openai::{FakeOpenAi, Scripted};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

const KEY: &str = "sk-fake-agent-key";

/// The API and a worker whose default model server is `fake`.
async fn app_with_models(fake: &FakeOpenAi) -> TestApp {
    let mut app = TestApp::spawn_api_only().await;
    let root = fake.root.clone();
    app.start_worker_with(|config| config.models = ModelServersConfig::all_at(&root))
        .await;
    app
}

fn export(name: &str) -> Value {
    let path = format!(
        "{}/tests/it/fixtures/kai-fusion/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if body.get("name").is_none() {
        body["name"] = json!(name);
    }
    body
}

/// Runs workflow `id` with `inputs`, waiting; the execution record.
async fn execute(app: &TestApp, token: &str, id: &str, inputs: Value) -> Value {
    app.execute_and_wait(token, id, inputs).await
}

fn node<'a>(execution: &'a Value, id_prefix: &str) -> &'a Value {
    execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"].as_str().unwrap().starts_with(id_prefix))
        .unwrap_or_else(|| panic!("no node {id_prefix} in {execution}"))
}

/// The messages of the `n`th chat request the fake received.
fn chat_messages(fake: &FakeOpenAi, n: usize) -> Vec<Value> {
    fake.received_at("/v1/chat/completions")[n].body["messages"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn basic_agent_export_answers_and_remembers_each_owners_session() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = app_with_models(&fake).await;
    let ada = app.user("ada@example.com").await;
    let eve = app.user("eve@example.com").await;
    let flow = export("basic-agent.json");
    let ada_flow = app.create_workflow(&ada, &flow).await;
    let eve_flow = app.create_workflow(&eve, &flow).await;
    let ada_id = ada_flow["id"].as_str().unwrap();

    let first = execute(
        &app,
        &ada,
        ada_id,
        json!({"input": "My name is Ada", "session_id": "chat-1"}),
    )
    .await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["outputs"]["output"], "echo: My name is Ada");
    assert_eq!(first["outputs"]["status"], "finished");
    let agent = node(&first, "Agent__");
    assert_eq!(agent["details"]["usage"]["total_tokens"], 15);
    assert_eq!(agent["details"]["steps"][0]["type"], "model");
    assert_eq!(agent["details"]["model"], "gpt-4o");

    let second = execute(
        &app,
        &ada,
        ada_id,
        json!({"input": "What is my name?", "session_id": "chat-1"}),
    )
    .await;
    assert_eq!(second["status"], "completed", "{second}");
    let seen = chat_messages(&fake, 1);
    let texts: Vec<(&str, &str)> = seen
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts[1..],
        [
            ("user", "My name is Ada"),
            ("assistant", "echo: My name is Ada"),
            ("user", "What is my name?")
        ],
        "the second run continues the session"
    );

    // Another owner's run with the same session id starts afresh.
    let theirs = execute(
        &app,
        &eve,
        eve_flow["id"].as_str().unwrap(),
        json!({"input": "Who am I?", "session_id": "chat-1"}),
    )
    .await;
    assert_eq!(theirs["status"], "completed", "{theirs}");
    let seen = chat_messages(&fake, 2);
    assert_eq!(seen.len(), 2, "system and the new message only: {seen:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_timer_webhook_template_and_legacy_webhook_exports_run() {
    let fake = FakeOpenAi::start(Some(KEY), 8).await;
    let mut app = TestApp::spawn_api_only().await;
    let root = fake.root.clone();
    app.start_worker_with(|config| {
        let mut models = ModelServersConfig::all_at(&root);
        models.openai_api_key.0 = Some(KEY.to_owned().into());
        config.models = models;
    })
    .await;
    let token = app.user("exports@example.com").await;

    // test_timer_workflow.json: a manual timer feeding an agent.
    let timer = app
        .create_workflow(&token, &export("test_timer_workflow.json"))
        .await;
    let run = execute(&app, &token, timer["id"].as_str().unwrap(), json!(null)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(
        run["outputs"]["output"]
            .as_str()
            .unwrap()
            .starts_with("echo: "),
        "{run}"
    );
    assert_eq!(
        chat_messages(&fake, 0)[0]["content"],
        "You are a test agent for TimerStartNode functionality."
    );

    // Webhook-Template.json names the OpenAI credential it was exported with: the owner has it.
    let template = export("Webhook-Template.json");
    let credential_id = template["flow_data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "OpenAIChat")
        .unwrap()["data"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = app
        .credential(
            &token,
            "openai",
            "openai",
            json!({"api_key": KEY, "base_url": fake.base_url}),
        )
        .await;
    give_credential_id(&app, &created, &credential_id, json!({"api_key": KEY})).await;
    let workflow = app.create_workflow(&token, &template).await;
    let (url, secret) = app
        .webhook_of(&token, workflow["id"].as_str().unwrap())
        .await;
    fake.script([Scripted::Text(
        "startlist/\nred\ngreen\nblue\nendlist/".into(),
    )]);
    let response = app
        .request(Method::POST, &url, Some(&secret))
        .json(&json!({"input_text": "three colours"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"values": ["red", "green", "blue"]}));
    let asked = fake.received_at("/v1/chat/completions");
    let asked = asked.last().unwrap();
    assert_eq!(
        asked.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert!(
        asked.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("- Prompt: three colours"),
        "the system prompt is templated from the payload"
    );

    // webhook_test.json: OpenAINode answers as a step, then HttpClientNode calls httpbin.org
    // (unreachable from the test machine, so it fails as a network error after running).
    let legacy = app
        .create_workflow(&token, &export("webhook_test.json"))
        .await;
    let id = legacy["id"].as_str().unwrap();
    let (status, queued) = app
        .post_json(
            &format!("/api/v1/workflows/{id}/execute"),
            &token,
            &json!({"inputs": {"message": "Process this webhook data"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let run = app
        .wait_for_execution(&token, queued["execution_id"].as_str().unwrap())
        .await;
    let openai = node(&run, "openai_1");
    assert_eq!(openai["status"], "completed", "{run}");
    assert_eq!(
        openai["outputs"]["output"],
        "echo: Process this webhook data"
    );
    assert_eq!(openai["details"]["usage"]["total_tokens"], 15);
    let http = node(&run, "http_client_1");
    assert!(http["attempts"].as_i64().unwrap() >= 1, "{run}");
    app.stop().await;
}

/// Gives credential `from` the id `to` (re-sealed under it, as the exporting instance had it).
async fn give_credential_id(app: &TestApp, from: &str, to: &str, secret: Value) {
    let from = Uuid::parse_str(from).unwrap();
    let to = Uuid::parse_str(to).unwrap();
    let (owner,): (Uuid,) = sqlx::query_as("SELECT user_id FROM user_credentials WHERE id = $1")
        .bind(from)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let sealed = app
        .state
        .credential_keys
        .seal(to, owner, secret.to_string().as_bytes());
    sqlx::query(
        "UPDATE user_credentials SET id = $2, encrypted_secret = $3, key_id = $4 WHERE id = $1",
    )
    .bind(from)
    .bind(to)
    .bind(&sealed.bytes)
    .bind(&sealed.key_id)
    .execute(&app.state.db)
    .await
    .unwrap();
}

fn agent_with_tools(tavily_a: &str, tavily_b: &str, max_iterations: u64, streaming: bool) -> Value {
    json!({"name": "tool agent", "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "agent", "type": "Agent", "data": {
            "system_prompt": "Use the tools.", "max_iterations": max_iterations}},
        {"id": "model", "type": "OpenAIChat", "data": {"model_name": "fake-chat",
            "streaming": streaming}},
        {"id": "web", "type": "TavilySearch", "data": {"credential_id": tavily_a, "max_results": 2}},
        {"id": "broken", "type": "TavilySearch", "data": {"credential_id": tavily_b}},
        {"id": "end", "type": "EndNode"}
    ], "edges": [
        {"source": "start", "target": "agent"},
        {"source": "model", "sourceHandle": "llm", "target": "agent", "targetHandle": "llm"},
        {"source": "web", "target": "agent", "targetHandle": "tools"},
        {"source": "broken", "target": "agent", "targetHandle": "tools"},
        {"source": "agent", "target": "end"}
    ]})
}

#[tokio::test]
async fn an_agent_calls_two_tools_and_a_failing_tool_answers_with_its_error() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = app_with_models(&fake).await;
    let token = app.user("tools@example.com").await;
    let good = app
        .credential(&token, "tavily", "tavily", json!({"api_key": "tvly-good"}))
        .await;
    // A Tavily "server" that answers 404 for every search.
    let bad = app
        .credential(
            &token,
            "tavily elsewhere",
            "tavily",
            json!({"api_key": "tvly-bad", "base_url": format!("{}/missing", fake.root)}),
        )
        .await;
    let workflow = app
        .create_workflow(&token, &agent_with_tools(&good, &bad, 5, false))
        .await;
    fake.script([
        Scripted::ToolCalls(vec![
            ("tavily_search".into(), json!({"query": "rust async"})),
            ("tavily_search_2".into(), json!({"query": "anything"})),
        ]),
        Scripted::Text("Rust async is built on futures.".into()),
    ]);
    let run = execute(
        &app,
        &token,
        workflow["id"].as_str().unwrap(),
        json!({"input": "Tell me about rust async"}),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["output"], "Rust async is built on futures.");
    assert_eq!(run["outputs"]["iterations"], 2);

    let searched = fake.received_at("/search");
    assert_eq!(searched.len(), 1);
    assert_eq!(
        searched[0].authorization.as_deref(),
        Some("Bearer tvly-good")
    );
    assert_eq!(
        searched[0].body,
        json!({"query": "rust async", "max_results": 2, "search_depth": "basic",
               "include_answer": true, "include_domains": [], "exclude_domains": []})
    );

    let messages = chat_messages(&fake, 1);
    let tool_answers: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_answers.len(), 2);
    let found: Value = serde_json::from_str(tool_answers[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(found["answer"], "An answer about rust async.");
    assert_eq!(found["results"].as_array().unwrap().len(), 2);
    let failed = tool_answers[1]["content"].as_str().unwrap();
    assert!(
        failed.starts_with("error: ") && failed.contains("404"),
        "{failed}"
    );
    assert!(
        !failed.contains("tvly-bad"),
        "no secret in the tool's answer"
    );
    let offered = &fake.received_at("/v1/chat/completions")[0].body["tools"];
    assert_eq!(offered[1]["function"]["name"], "tavily_search_2");

    let steps = node(&run, "agent")["details"]["steps"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["model", "tool", "tool", "model"]);
    assert_eq!(steps[1]["arguments"], json!({"query": "rust async"}));
    assert_eq!(
        steps[0]["input"][1],
        json!({"role": "user", "content": "Tell me about rust async"}),
        "a model step records what it was sent"
    );
    let second_input = steps[3]["input"].as_array().unwrap();
    assert_eq!(
        second_input.len(),
        2,
        "the two tools' answers: {second_input:?}"
    );
    assert!(second_input.iter().all(|m| m["role"] == "tool"));
    assert_eq!(steps[2]["error"], true);
    assert!(steps.iter().all(|s| s["duration_ms"].is_number()));
    assert_eq!(node(&run, "agent")["details"]["usage"]["total_tokens"], 30);
    app.stop().await;
}

#[tokio::test]
async fn hitting_max_iterations_ends_with_a_clear_status() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = app_with_models(&fake).await;
    let token = app.user("loop@example.com").await;
    let good = app
        .credential(&token, "tavily", "tavily", json!({"api_key": "tvly-good"}))
        .await;
    let workflow = app
        .create_workflow(&token, &agent_with_tools(&good, &good, 2, false))
        .await;
    let again = || Scripted::ToolCalls(vec![("tavily_search".into(), json!({"query": "more"}))]);
    fake.script([again(), again(), again()]);
    let run = execute(&app, &token, workflow["id"].as_str().unwrap(), json!("go")).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["status"], "max_iterations");
    assert_eq!(run["outputs"]["iterations"], 2);
    assert!(
        run["outputs"]["output"]
            .as_str()
            .unwrap()
            .contains("max_iterations")
    );
    assert_eq!(fake.received_at("/v1/chat/completions").len(), 2);
    assert_eq!(
        fake.received_at("/search").len(),
        1,
        "the last model call's tool calls are not run"
    );
    app.stop().await;
}

#[tokio::test]
async fn streamed_tokens_reach_the_event_stream_before_the_run_ends() {
    let fake = FakeOpenAi::start(None, 8).await;
    fake.set_stream_delay(Duration::from_millis(250));
    let app = app_with_models(&fake).await;
    let token = app.user("stream@example.com").await;
    let good = app
        .credential(&token, "tavily", "tavily", json!({"api_key": "tvly-good"}))
        .await;
    let workflow = app
        .create_workflow(&token, &agent_with_tools(&good, &good, 3, true))
        .await;
    fake.script([Scripted::Text("one two three four".into())]);
    let id = workflow["id"].as_str().unwrap();
    let (status, queued) = app
        .post_json(
            &format!("/api/v1/workflows/{id}/execute"),
            &token,
            &json!({"inputs": "count"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let execution = queued["execution_id"].as_str().unwrap();
    let response = app
        .request(
            Method::GET,
            &format!("/api/v1/executions/{execution}/events"),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut response = response;
    let mut text = String::new();
    let mut first_token_at = None;
    let mut tokens = Vec::new();
    let started = Instant::now();
    'read: while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("events keep coming")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let event: Value = serde_json::from_str(data).unwrap();
            match event["event"].as_str().unwrap() {
                "node_progress" if event["output"]["type"] == "token" => {
                    first_token_at.get_or_insert(started.elapsed());
                    tokens.push(event["output"]["token"].as_str().unwrap().to_owned());
                }
                "execution_completed" | "execution_failed" => {
                    let ended_at = started.elapsed();
                    let first = first_token_at.expect("tokens before the end");
                    assert!(
                        ended_at - first >= Duration::from_millis(500),
                        "the first token came {first:?}, the end {ended_at:?}"
                    );
                    break 'read;
                }
                _ => {}
            }
        }
    }
    assert_eq!(tokens.concat(), "one two three four");
    app.stop().await;
}

#[tokio::test]
async fn a_foreign_credential_is_refused_and_no_default_server_is_a_credential_error() {
    let fake = FakeOpenAi::start(Some(KEY), 8).await;
    // No default model server.
    let app = TestApp::spawn().await;
    let owner = app.user("owner@example.com").await;
    let thief = app.user("thief@example.com").await;
    let theirs = app
        .credential(
            &owner,
            "openai",
            "openai",
            json!({"api_key": KEY, "base_url": fake.base_url}),
        )
        .await;
    let flow = |credential: &str| {
        json!({"name": "chat", "nodes": [
            {"id": "start", "type": "StartNode", "data": {"initial_input": "hi"}},
            {"id": "chat", "type": "OpenAIChat", "data": {"credential_id": credential}},
            {"id": "end", "type": "EndNode"}
        ], "edges": [{"source": "start", "target": "chat"}, {"source": "chat", "target": "end"}]})
    };
    let stolen = app.create_workflow(&thief, &flow(&theirs)).await;
    let run = execute(&app, &thief, stolen["id"].as_str().unwrap(), json!(null)).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_type"], "credential");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("chat"), "{error}");
    assert!(!error.contains(KEY));
    assert!(fake.requests().is_empty(), "nothing was sent with it");

    let own = app.create_workflow(&owner, &flow(&theirs)).await;
    let run = execute(&app, &owner, own["id"].as_str().unwrap(), json!(null)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["output"], "echo: hi");

    let none = app.create_workflow(&owner, &flow("")).await;
    let run = execute(&app, &owner, none["id"].as_str().unwrap(), json!(null)).await;
    assert_eq!(run["error_type"], "credential", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("KAI_OPENAI_BASE_URL"),
        "{run}"
    );
    app.stop().await;
}

#[tokio::test]
async fn wiring_a_provider_to_the_wrong_input_or_leaving_out_the_model_is_refused_on_save() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("wiring@example.com").await;
    let memory_as_model = json!({"name": "bad", "nodes": [
        {"id": "start", "type": "StartNode"}, {"id": "agent", "type": "Agent"},
        {"id": "memory", "type": "BufferMemory"}
    ], "edges": [{"source": "start", "target": "agent"},
        {"id": "e2", "source": "memory", "target": "agent", "targetHandle": "llm"}]});
    let (status, answer) = app
        .post_json("/api/v1/workflows", &token, &memory_as_model)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["message"].as_str().unwrap().contains(
            "provides a memory, but input `llm` of node `agent` (Agent) accepts a chat_model"
        ),
        "{answer}"
    );
    let no_model = json!({"name": "bad", "nodes": [
        {"id": "start", "type": "StartNode"}, {"id": "agent", "type": "Agent"}
    ], "edges": [{"source": "start", "target": "agent"}]});
    let (status, answer) = app.post_json("/api/v1/workflows", &token, &no_model).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("needs a chat_model"),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_long_run_is_visible_while_it_runs_and_its_owner_can_cancel_it() {
    let fake = FakeOpenAi::start(None, 8).await;
    fake.set_latency(Duration::from_secs(60));
    // No worker yet: the run stays queued.
    let mut app = TestApp::spawn_api_only().await;
    let token = app.user("watcher@example.com").await;
    let other = app.user("stranger@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "slow model", "nodes": [
                {"id": "start", "type": "StartNode", "data": {"initial_input": "think hard"}},
                {"id": "chat", "type": "OpenAIChat", "data": {"timeout": 120}},
                {"id": "end", "type": "EndNode"}
            ], "edges": [{"source": "start", "target": "chat"}, {"source": "chat", "target": "end"}]}),
        )
        .await;
    let workflow_id = workflow["id"].as_str().unwrap();
    let (status, queued) = app
        .post_json(
            &format!("/api/v1/workflows/{workflow_id}/execute"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let id = queued["execution_id"].as_str().unwrap();
    let (status, waiting) = app
        .get_json(&format!("/api/v1/executions/{id}"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert_eq!(waiting["workflow_id"], workflow_id);
    let (status, _) = app
        .get_json(&format!("/api/v1/executions/{id}"), &other)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's");

    let root = fake.root.clone();
    app.start_worker_with(|config| config.models = ModelServersConfig::all_at(&root))
        .await;
    // The start node's event follows the run's own by a moment (both are published in the
    // background): wait for the first settled node, then check that only it has settled.
    let running = poll(&app, &token, id, |e| {
        e["status"] == "running"
            && e["node_executions"]
                .as_array()
                .is_some_and(|nodes| !nodes.is_empty())
    })
    .await;
    let settled: Vec<&str> = running["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(settled, ["start"], "the nodes settled so far: {running}");
    // Listed as running once the worker has recorded it (after half a second).
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = app
            .get_json(
                &format!("/api/v1/workflows/{workflow_id}/executions"),
                &token,
            )
            .await
            .1;
        if listed.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id && e["status"] == "running"),
        "{listed}"
    );

    let cancel = format!("/api/v1/executions/{id}/cancel");
    let (status, _) = app.post_json(&cancel, &other, &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the owner may cancel");
    let started = Instant::now();
    let (status, answer) = app.post_json(&cancel, &token, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "cancelling");
    let cancelled = poll(&app, &token, id, |e| e["status"] != "running").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the model call was dropped"
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["error_type"], "cancelled");
    assert!(
        cancelled["node_executions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["node_id"] != "chat" && n["node_id"] != "end"),
        "{cancelled}"
    );
    let (status, answer) = app.post_json(&cancel, &token, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(fake.received_at("/v1/chat/completions").len(), 1);
    app.stop().await;
}

/// Polls execution `id` until `done` holds of it.
async fn poll(app: &TestApp, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let (status, execution) = app
            .get_json(&format!("/api/v1/executions/{id}"), token)
            .await;
        if status == StatusCode::OK && done(&execution) {
            return execution;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} never reached the expected state");
}

#[tokio::test]
async fn an_openai_compatible_step_reaches_the_server_its_template_names_through_the_guard() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = TestApp::spawn().await;
    let token = app.user("compatible@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "compatible", "nodes": [
                {"id": "start", "type": "StartNode"},
                {"id": "chat", "type": "OpenAICompatibleNode",
                 "data": {"base_url": "{{ input.server }}", "model": "local"}},
                {"id": "end", "type": "EndNode"}
            ], "edges": [{"source": "start", "target": "chat"}, {"source": "chat", "target": "end"}]}),
        )
        .await;
    let id = workflow["id"].as_str().unwrap();
    let run = execute(
        &app,
        &token,
        id,
        json!({"server": fake.base_url, "input": "hello there"}),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"]["output"], "echo: hello there");
    assert_eq!(
        fake.received_at("/v1/chat/completions")[0].body["model"],
        "local"
    );

    // An internal address the operator did not allow is refused by the SSRF guard.
    let run = execute(
        &app,
        &token,
        id,
        json!({"server": "http://169.254.169.254/v1", "input": "steal"}),
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("base_url"), "{run}");
    app.stop().await;
}
