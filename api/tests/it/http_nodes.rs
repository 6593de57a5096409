//! HttpRequest nodes through the queue against a fake upstream: every option, credentials at
//! run time, retries and the breaker, the size cap, redacted request logs, and the SSRF guard.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::upstream::{GOOD_KEY, GOOD_PASSWORD, Upstream};

fn through_http(config: Value) -> Value {
    json!({"name": "http", "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "call", "type": "HttpRequest", "data": config},
        {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "start", "target": "call"}, {"source": "call", "target": "end"}]})
}

/// Saves `config` as a Start → HttpRequest → End workflow, runs it with `inputs`, and returns
/// the finished execution.
async fn run_http(app: &TestApp, token: &str, config: Value, inputs: Value) -> Value {
    let workflow = app.create_workflow(token, &through_http(config)).await;
    let id = workflow["id"].as_str().unwrap();
    let (status, queued) = app
        .post_json(
            &format!("/api/v1/workflows/{id}/execute"),
            token,
            &json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let execution_id = queued["execution_id"].as_str().unwrap();
    for _ in 0..400 {
        let execution = app.wait_for_execution(token, execution_id).await;
        if execution["status"] != "running" && execution["status"] != "pending" {
            return execution;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {execution_id} did not finish");
}

fn call_node(execution: &Value) -> &Value {
    execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "call")
        .unwrap_or_else(|| panic!("no call node in {execution}"))
}

/// The owner's HTTP request logs of one execution, once the background writer has them.
async fn logs_of(app: &TestApp, token: &str, execution_id: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..100 {
        let (status, page) = app
            .get_json(
                &format!("/api/v1/tools/http/logs?execution_id={execution_id}"),
                token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.len() >= at_least {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} HTTP logs for {execution_id}");
}

#[tokio::test]
async fn http_request_sends_every_option_with_a_credential_and_logs_it_redacted() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let token = app.user("http-options@example.com").await;
    let bearer = app
        .credential(&token, "api", "bearer", json!({"token": GOOD_KEY}))
        .await;

    let config = json!({
        "method": "POST",
        "url": format!("{}/echo/{{{{ input.item }}}}", upstream.base),
        "custom_headers": "{\"X-Trace\": \"t-{{ input.item }}\"}",
        "url_params": {"q": "{{ input.query }}", "page": 2},
        "request_body": "{\"name\": {{ input.name | tojson }}}",
        "content_type": "json",
        "auth_type": "bearer",
        "credential_id": bearer,
        "timeout": 5,
        "max_retries": 0,
        "verify_ssl": true
    });
    let execution = run_http(
        &app,
        &token,
        config,
        json!({"item": "42", "query": "rust lang", "name": "Ada"}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");

    // What the upstream received: every option applied, the real token sent.
    let seen = upstream.echoed();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let request = &seen[0];
    assert_eq!(request["method"], "POST");
    let uri = request["uri"].as_str().unwrap();
    assert!(uri.starts_with("/echo/42?"), "{uri}");
    assert!(
        uri.contains("q=rust+lang") && uri.contains("page=2"),
        "{uri}"
    );
    assert_eq!(request["headers"]["x-trace"], "t-42");
    assert_eq!(request["headers"]["content-type"], "application/json");
    assert_eq!(
        request["headers"]["authorization"],
        format!("Bearer {GOOD_KEY}")
    );
    assert_eq!(request["body"], "{\"name\": \"Ada\"}");

    // The output in KAI-Fusion's shape; the echoed token is redacted from the record.
    let output = &call_node(&execution)["outputs"];
    assert_eq!(output["status_code"], 200, "{output}");
    assert_eq!(output["success"], true);
    assert_eq!(output["response"]["is_json"], true);
    assert_eq!(output["response"]["method"], "POST");
    assert_eq!(output["content"]["method"], "POST");
    assert!(output["documents"][0]["page_content"].is_string());
    let record = execution.to_string();
    assert!(!record.contains(GOOD_KEY), "the token is in the execution");

    // Logged once, redacted: no token anywhere in the log row or the API's answer.
    let execution_id = execution["id"].as_str().unwrap();
    let logs = logs_of(&app, &token, execution_id, 1).await;
    let log = &logs[0];
    assert_eq!(log["node_id"], "call");
    assert_eq!(log["method"], "POST");
    assert_eq!(log["response_status"], 200);
    assert_eq!(log["workflow_id"], execution["workflow_id"]);
    assert!(
        log["url"].as_str().unwrap().contains("q=rust+lang"),
        "{log}"
    );
    assert!(!log.to_string().contains(GOOD_KEY), "{log}");
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT row_to_json(l)::text FROM http_request_logs l")
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert!(!rows.is_empty());
    for (row,) in &rows {
        assert!(!row.contains(GOOD_KEY), "{row}");
    }

    // Basic auth: the password reaches the server and nowhere else.
    let basic = app
        .credential(
            &token,
            "basic",
            "basic_auth",
            json!({"username": "ada", "password": GOOD_PASSWORD}),
        )
        .await;
    let execution = run_http(
        &app,
        &token,
        json!({"url": format!("{}/protected", upstream.base), "auth_type": "basic",
               "credential_id": basic}),
        json!({}),
    )
    .await;
    assert_eq!(
        call_node(&execution)["outputs"]["status_code"],
        200,
        "{execution}"
    );
    let logs = logs_of(&app, &token, execution["id"].as_str().unwrap(), 1).await;
    assert!(!logs[0].to_string().contains(GOOD_PASSWORD));
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT row_to_json(l)::text FROM http_request_logs l")
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    for (row,) in &rows {
        assert!(!row.contains(GOOD_PASSWORD), "{row}");
    }

    // The URL from the input, a 4xx handed on as `success: false`, GET without a body.
    let execution = run_http(
        &app,
        &token,
        json!({"max_retries": 0}),
        json!({"url": format!("{}/status/404", upstream.base)}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let output = &call_node(&execution)["outputs"];
    assert_eq!(output["status_code"], 404);
    assert_eq!(output["success"], false);
    assert_eq!(output["content"], "status 404");
    app.stop().await;
}

#[tokio::test]
async fn a_credential_of_another_user_fails_the_node_at_run_time_without_its_secret() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let owner = app.user("cred-owner@example.com").await;
    let thief = app.user("cred-thief@example.com").await;
    let theirs = app
        .credential(&owner, "mine", "bearer", json!({"token": GOOD_KEY}))
        .await;
    let execution = run_http(
        &app,
        &thief,
        json!({"url": upstream.url("/echo"), "auth_type": "bearer", "credential_id": theirs}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_type"], "credential");
    let error = execution["error"].as_str().unwrap();
    assert!(
        error.contains("call") && error.contains("does not exist or is not yours"),
        "{error}"
    );
    assert!(!execution.to_string().contains(GOOD_KEY));
    assert!(upstream.echoed().is_empty(), "the call went out");
    app.stop().await;
}

#[tokio::test]
async fn http_request_honours_retry_after_retries_server_errors_and_opens_the_breaker() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let token = app.user("http-retries@example.com").await;

    // 429 with Retry-After: 1, then 200: one retry, after at least the second asked for.
    let execution = run_http(
        &app,
        &token,
        json!({"url": upstream.url("/limited"), "max_retries": 2, "retry_delay": 0.01}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let node = call_node(&execution);
    assert_eq!(node["attempts"], 2);
    let started: chrono::DateTime<chrono::Utc> =
        node["started_at"].as_str().unwrap().parse().unwrap();
    let completed: chrono::DateTime<chrono::Utc> =
        node["completed_at"].as_str().unwrap().parse().unwrap();
    assert!(
        completed - started >= chrono::TimeDelta::milliseconds(950),
        "Retry-After was not honoured: {}",
        completed - started
    );
    let logs = logs_of(&app, &token, execution["id"].as_str().unwrap(), 2).await;
    let mut statuses: Vec<i64> = logs
        .iter()
        .map(|l| l["response_status"].as_i64().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 429]);

    // A service that is down: every attempt made, then the run fails as a network error.
    let down = json!({"url": upstream.url("/down"), "max_retries": 4, "retry_delay": 0.01});
    let execution = run_http(&app, &token, down.clone(), json!({})).await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_type"], "network");
    assert_eq!(call_node(&execution)["attempts"], 5);
    assert_eq!(upstream.seen.down_calls.load(Ordering::SeqCst), 5);

    // Five failures in a row opened the host's breaker: the next run fails fast, no call out.
    let execution = run_http(
        &app,
        &token,
        json!({"url": upstream.url("/down"), "max_retries": 0}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert!(
        execution["error"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{execution}"
    );
    assert_eq!(upstream.seen.down_calls.load(Ordering::SeqCst), 5);
    app.stop().await;
}

#[tokio::test]
async fn answers_beyond_the_size_cap_and_endless_bodies_fail_the_node_clearly() {
    let mut app = TestApp::spawn_api_only().await;
    app.start_worker_with(|config| config.outbound.http_max_response_bytes = 100_000)
        .await;
    let upstream = Upstream::start().await;
    let token = app.user("http-cap@example.com").await;

    let fits = run_http(
        &app,
        &token,
        json!({"url": upstream.url("/big?bytes=90000"), "max_retries": 0}),
        json!({}),
    )
    .await;
    assert_eq!(fits["status"], "completed", "{fits}");
    assert_eq!(
        call_node(&fits)["outputs"]["content"]
            .as_str()
            .unwrap()
            .len(),
        90_000
    );

    for path in ["/big?bytes=100001", "/endless"] {
        let execution = run_http(
            &app,
            &token,
            json!({"url": upstream.url(path), "max_retries": 0, "timeout": 20}),
            json!({}),
        )
        .await;
        assert_eq!(execution["status"], "failed", "{path}: {execution}");
        let error = execution["error"].as_str().unwrap();
        assert!(
            error.contains("larger than 100000 bytes")
                && error.contains("KAI_HTTP_MAX_RESPONSE_BYTES"),
            "{path}: {error}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn internal_addresses_are_refused_by_the_ssrf_guard_in_every_notation() {
    let mut app = TestApp::spawn_api_only().await;
    // A deployment's default: nothing internal allowed.
    app.start_worker_with(|config| config.outbound.http_allowed_hosts = Default::default())
        .await;
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let token = app.user("http-ssrf@example.com").await;
    for (url, rule) in [
        (format!("http://127.0.0.1:{port}/echo"), "loopback"),
        (format!("http://localhost:{port}/echo"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/echo"), "loopback"),
        (format!("http://2130706433:{port}/echo"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "link-local",
        ),
        ("http://10.1.2.3/".to_owned(), "private"),
    ] {
        let execution = run_http(
            &app,
            &token,
            json!({"url": url, "max_retries": 3, "retry_delay": 0.01}),
            json!({}),
        )
        .await;
        assert_eq!(execution["status"], "failed", "{url}: {execution}");
        assert_eq!(execution["error_type"], "configuration", "{url}");
        let error = execution["error"].as_str().unwrap();
        assert!(
            error.contains("SSRF guard") && error.contains(rule),
            "{url}: {error}"
        );
        assert_eq!(call_node(&execution)["attempts"], 1, "{url}: retried");
    }
    assert!(upstream.echoed().is_empty(), "a refused call went out");
    app.stop().await;
}

#[tokio::test]
async fn an_allowed_host_that_redirects_to_an_internal_one_is_refused() {
    let mut app = TestApp::spawn_api_only().await;
    // 127.0.0.2 stands for a public host the operator allowed; 127.0.0.1 stays refused.
    app.start_worker_with(|config| {
        config.outbound.http_allowed_hosts = "127.0.0.2".parse().unwrap();
    })
    .await;
    let internal = Upstream::start().await;
    let public = Upstream::start_on("127.0.0.2:0").await;
    let token = app.user("http-redirect@example.com").await;
    let target = internal.url("/echo");
    let execution = run_http(
        &app,
        &token,
        json!({"url": format!("{}/redirect?to={target}", public.base), "max_retries": 0}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    let error = execution["error"].as_str().unwrap();
    assert!(
        error.contains("SSRF guard") && error.contains("127.0.0.1"),
        "{error}"
    );
    assert!(internal.echoed().is_empty());

    // Without the redirect the allowed host answers.
    let execution = run_http(
        &app,
        &token,
        json!({"url": public.url("/echo"), "max_retries": 0}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    app.stop().await;
}

#[tokio::test]
async fn a_kai_fusion_webhook_workflow_calls_out_with_a_credential_and_answers_its_caller() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let token = app.user("http-webhook@example.com").await;
    let key = app
        .credential(&token, "svc", "api_key", json!({"api_key": GOOD_KEY}))
        .await;
    // KAI-Fusion's export format: `data.inputs` holds the configuration, edges name handles.
    let workflow = json!({"name": "webhook → http → respond", "flow_data": {
    "nodes": [
        {"id": "WebhookTrigger__1", "type": "WebhookTrigger",
         "data": {"name": "webhook_trigger", "inputs": {"http_method": "POST"}}},
        {"id": "HttpRequest__2", "type": "HttpRequest",
         "data": {"name": "lookup", "inputs": {
            "method": "POST", "url": upstream.url("/echo/orders"),
            "request_body": "{\"order\": {{ webhook_trigger.order | tojson }}}",
            "auth_type": "api_key", "credential_id": key}}},
        {"id": "RespondToWebhook__3", "type": "RespondToWebhook",
         "data": {"inputs": {"status_code": "201",
            "response_body": "{\"sent\": {{ lookup.content.body | tojson }}, \"status\": {{ lookup.status_code }}}"}}}
    ],
    "edges": [
        {"id": "e1", "source": "WebhookTrigger__1", "sourceHandle": "webhook_data",
         "target": "HttpRequest__2", "targetHandle": "input"},
        {"id": "e2", "source": "HttpRequest__2", "sourceHandle": "output",
         "target": "RespondToWebhook__3", "targetHandle": "input"}
    ]}});
    let created = app.create_workflow(&token, &workflow).await;
    let (url, secret) = app
        .webhook_of(&token, created["id"].as_str().unwrap())
        .await;
    let response = app
        .request(Method::POST, &url, None)
        .bearer_auth(&secret)
        .json(&json!({"order": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"sent": "{\"order\": 7}", "status": 200}));
    assert_eq!(upstream.echoed()[0]["headers"]["x-api-key"], GOOD_KEY);
    app.stop().await;
}

#[tokio::test]
async fn tls_certificates_are_verified_unless_verify_ssl_is_false() {
    let app = TestApp::spawn().await;
    let url = crate::upstream::self_signed_https().await;
    let token = app.user("http-tls@example.com").await;
    let execution = run_http(
        &app,
        &token,
        json!({"url": url, "max_retries": 0}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    let error = execution["error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    let execution = run_http(
        &app,
        &token,
        json!({"url": url, "max_retries": 0, "verify_ssl": false}),
        json!({}),
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(call_node(&execution)["outputs"]["content"], "ok");
    app.stop().await;
}
