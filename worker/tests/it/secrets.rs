//! A credential's secret never reaches the worker's logs: a real `kai-worker` process logging at
//! debug level runs an HttpRequest with a bearer token and basic-auth password against a server
//! that fails (so the node is retried and its errors are logged) and echoes what it was sent.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, fire};

const TOKEN: &str = "tok-never-logged-7f3a9c21e5";
const PASSWORD: &str = "pw-never-logged-4b8d0e62";

/// Answers every request 500 with the request (headers included) as its body.
async fn failing_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let body = String::from_utf8_lossy(&request[..n]).into_owned();
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn credentials_never_appear_in_the_worker_s_logs() {
    let harness = Harness::start().await;
    let url = failing_echo().await;
    let token = harness.token("secrets@example.com").await;
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-worker"))
        .envs(harness.env.env_vars())
        .env("KAI_WORKER_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
        .env("KAI_HTTP_ALLOWED_HOSTS", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kai-worker starts");

    let mut workflows = Vec::new();
    for (kind, data, auth_type) in [
        ("bearer", json!({"token": TOKEN}), "bearer"),
        (
            "basic_auth",
            json!({"username": "ada", "password": PASSWORD}),
            "basic",
        ),
    ] {
        let credential = harness
            .post(
                &token,
                "/api/v1/credentials",
                &json!({"name": kind, "service_type": kind, "data": data}),
            )
            .await;
        let call = json!({"type": "HttpRequest", "data": {
            "url": url, "method": "POST", "auth_type": auth_type,
            "credential_id": credential["id"], "max_retries": 1, "retry_delay": 0.01,
            "request_body": "{{ input | tojson }}"}});
        let hook = harness.hook_for(&token, Some(call)).await;
        let (accepted, _) = fire(harness.client.clone(), &hook, 1, 1).await;
        assert_eq!(accepted.len(), 1);
        workflows.push(hook.workflow_id);
    }
    for workflow in &workflows {
        harness
            .wait_for_executions(*workflow, 1, Duration::from_secs(30))
            .await;
        let runs = harness.executions(*workflow).await;
        assert_eq!(runs[0].1, "failed", "the upstream always fails");
    }

    worker.start_kill().unwrap();
    let mut logs = String::new();
    let mut stdout = worker.stdout.take().unwrap();
    let mut stderr = worker.stderr.take().unwrap();
    stdout.read_to_string(&mut logs).await.unwrap();
    stderr.read_to_string(&mut logs).await.unwrap();
    let _ = worker.wait().await;
    // The worker did log the calls and their retries...
    assert!(
        logs.contains("retrying node"),
        "nothing was logged:\n{logs}"
    );
    // ...and never a secret, nor basic auth's encoded pair.
    use base64::Engine;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("ada:{PASSWORD}"));
    for secret in [TOKEN, PASSWORD, pair.as_str()] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
    // Nor did the records keep it.
    let records: Vec<(String,)> = sqlx::query_as(
        "SELECT row_to_json(e)::text FROM workflow_executions e \
         UNION ALL SELECT row_to_json(n)::text FROM node_executions n \
         UNION ALL SELECT row_to_json(l)::text FROM http_request_logs l",
    )
    .fetch_all(&harness.state.db)
    .await
    .unwrap();
    assert!(records.len() >= 4);
    for (record,) in &records {
        for secret in [TOKEN, PASSWORD, pair.as_str()] {
            assert!(!record.contains(secret), "{record}");
        }
    }
    harness.stop().await;
}
