//! CodeNode through the queue: Python and JavaScript, their limits (an endless loop, a huge
//! allocation, opening a file or a socket) failing only their own run, and KAI-Fusion's webhook
//! template shape: WebhookTrigger → HttpRequest (credential) → CodeNode → RespondToWebhook.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::upstream::{GOOD_KEY, Upstream};

fn through_code(language: &str, code: &str, timeout: u64) -> Value {
    json!({"name": format!("{language} code"), "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "code", "type": "CodeNode",
         "data": {"language": language, "code": code, "timeout": timeout}},
        {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "start", "target": "code"}, {"source": "code", "target": "end"}]})
}

/// Runs `workflow` with `inputs`, waiting for the result.
async fn run(app: &TestApp, token: &str, workflow: &Value, inputs: Value) -> Value {
    let created = app.create_workflow(token, workflow).await;
    app.execute_and_wait(token, created["id"].as_str().unwrap(), inputs)
        .await
}

fn code_output(execution: &Value) -> &Value {
    &execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "code")
        .unwrap_or_else(|| panic!("no code node in {execution}"))["outputs"]
}

#[tokio::test]
async fn python_and_javascript_run_on_the_input_and_their_printed_output_is_the_result() {
    let app = TestApp::spawn().await;
    let token = app.user("code@example.com").await;
    let python = "total = sum(node_data['numbers'])\nprint({'total': total, 'name': node_data['name'].upper()})";
    let execution = run(
        &app,
        &token,
        &through_code("python", python, 10),
        json!({"numbers": [1, 2, 3], "name": "ada"}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(code_output(&execution), &json!({"total": 6, "name": "ADA"}));

    let javascript = "const total = node_data.numbers.reduce((a, b) => a + b, 0);\n\
                      console.log(JSON.stringify({total, name: node_data.name.toUpperCase()}));";
    let execution = run(
        &app,
        &token,
        &through_code("javascript", javascript, 10),
        json!({"numbers": [4, 5], "name": "grace"}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(
        code_output(&execution),
        &json!({"total": 9, "name": "GRACE"})
    );

    // Templated first, as KAI-Fusion does; plain text stays text.
    let templated = "print('hello ' + ${{ input.name | tojson }})";
    let execution = run(
        &app,
        &token,
        &through_code("python", templated, 10),
        json!({"name": "Lin"}),
    )
    .await;
    assert_eq!(code_output(&execution), &json!("hello Lin"));
    app.stop().await;
}

#[tokio::test]
async fn endless_loops_huge_allocations_and_host_access_fail_only_their_own_run() {
    let app = TestApp::spawn().await;
    let token = app.user("code-limits@example.com").await;
    // Endless loops get 2 s; the rest 60 s, so that they stop on their own limit.
    for (language, code, timeout, says) in [
        ("python", "while True:\n    pass", 2, "time limit"),
        ("javascript", "for (;;) {}", 2, "time limit"),
        ("python", "x = 'a' * (1024 ** 3)", 60, "memory"),
        (
            "javascript",
            "const a = []; for (;;) a.push(new Array(100000).fill(1));",
            60,
            "memory",
        ),
        ("python", "print(open('/etc/passwd').read())", 60, "open"),
        ("python", "import socket", 60, "socket"),
        (
            "javascript",
            "require('fs').readFileSync('/etc/passwd')",
            60,
            "require is not defined",
        ),
        (
            "javascript",
            "fetch('http://127.0.0.1/')",
            60,
            "fetch is not defined",
        ),
    ] {
        let started = Instant::now();
        let workflow = through_code(language, code, timeout);
        let execution = run(&app, &token, &workflow, json!({})).await;
        assert_eq!(
            execution["status"], "failed",
            "{language} {code}: {execution}"
        );
        assert_eq!(execution["error_type"], "configuration");
        let error = execution["error"].as_str().unwrap();
        assert!(error.contains(says), "{language} {code}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{language} {code} took {:?}",
            started.elapsed()
        );
    }

    // While two endless loops run, other runs (with and without code) finish at once.
    let looping = app
        .create_workflow(&token, &through_code("python", "while True:\n    pass", 8))
        .await;
    for _ in 0..2 {
        let (status, _) = app
            .post_json(
                &format!(
                    "/api/v1/workflows/{}/execute",
                    looping["id"].as_str().unwrap()
                ),
                &token,
                &json!({"inputs": {}}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let execution = run(
        &app,
        &token,
        &through_code("javascript", "print(JSON.stringify(node_data))", 5),
        json!({"still": "answering"}),
    )
    .await;
    assert_eq!(code_output(&execution), &json!({"still": "answering"}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a run waited {:?} behind the loops",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_template_shape_calls_out_transforms_in_code_and_answers_the_caller() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let token = app.user("code-webhook@example.com").await;
    let key = app
        .credential(&token, "svc", "bearer", json!({"token": GOOD_KEY}))
        .await;
    let code = "response = ${{ lookup.content | tojson }}\n\
                lines = [line.strip() for line in response['body'].splitlines() if line.strip()]\n\
                return_body = {'values': lines, 'method': response['method']}\n\
                print(return_body)\n";
    let workflow = json!({"name": "webhook → http → code → respond", "flow_data": {
    "nodes": [
        {"id": "WebhookTrigger__1", "type": "WebhookTrigger",
         "data": {"name": "webhook_trigger", "inputs": {"http_method": "POST"}}},
        {"id": "HttpRequest__2", "type": "HttpRequest",
         "data": {"name": "lookup", "inputs": {
            "method": "POST", "url": upstream.url("/echo"), "content_type": "text",
            "request_body": "{{ webhook_trigger.text }}",
            "auth_type": "bearer", "credential_id": key}}},
        {"id": "CodeNode__3", "type": "CodeNode",
         "data": {"name": "code_node_3", "code": code, "language": "python", "timeout": 30,
                  "continue_on_error": false, "enable_validation": true}},
        {"id": "RespondToWebhook__4", "type": "RespondToWebhook",
         "data": {"inputs": {"status_code": "200", "response_config": "all_incoming_items"}}}
    ],
    "edges": [
        {"id": "e1", "source": "WebhookTrigger__1", "sourceHandle": "webhook_data",
         "target": "HttpRequest__2", "targetHandle": "input"},
        {"id": "e2", "source": "HttpRequest__2", "sourceHandle": "output",
         "target": "CodeNode__3", "targetHandle": "input"},
        {"id": "e3", "source": "CodeNode__3", "sourceHandle": "output",
         "target": "RespondToWebhook__4", "targetHandle": "input"}
    ]}});
    let created = app.create_workflow(&token, &workflow).await;
    let (url, secret) = app
        .webhook_of(&token, created["id"].as_str().unwrap())
        .await;
    let response = app
        .request(Method::POST, &url, Some(&secret))
        .json(&json!({"text": "first\n  second  \n\nthird"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"values": ["first", "second", "third"], "method": "POST"})
    );
    assert_eq!(
        upstream.echoed()[0]["headers"]["authorization"],
        format!("Bearer {GOOD_KEY}")
    );
    app.stop().await;
}
