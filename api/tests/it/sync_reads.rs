//! Read-your-writes for synchronous callers: once a webhook has answered with its run's result,
//! `GET /api/v1/executions/{id}` shows that execution at once, on any API replica.

use std::sync::Arc;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of};

/// Concurrent callers, and synchronous calls each makes one after the other.
const CALLERS: usize = 16;
const CALLS_EACH: usize = 25;

#[tokio::test]
async fn every_synchronous_answer_is_readable_at_once_from_any_replica() {
    let mut app = TestApp::spawn().await;
    let other_api = app.another_api(|_| {}).await;
    let token = app.user("read-your-writes@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "echo", "nodes": [
                {"id": "hook", "type": "WebhookStartNode",
                 "data": {"rate_limit_per_minute": 100_000, "timeout": 30}},
                {"id": "end", "type": "EndNode"}
            ], "edges": [{"source": "hook", "target": "end"}]}),
        )
        .await;
    let (url, secret) = app
        .webhook_of(&token, workflow["id"].as_str().unwrap())
        .await;
    let app = Arc::new(app);

    let callers = (0..CALLERS).map(|caller| {
        let (app, url, secret, token) = (app.clone(), url.clone(), secret.clone(), token.clone());
        // Half the callers read from the replica that did not answer them.
        let reader = if caller % 2 == 0 {
            app.base.clone()
        } else {
            other_api.clone()
        };
        async move {
            let mut unreadable = Vec::new();
            for call in 0..CALLS_EACH {
                let payload = json!({"caller": caller, "call": call});
                let (status, answer) = json_of(
                    app.request(Method::POST, &url, Some(&secret))
                        .json(&payload)
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                assert_eq!(answer["status"], "completed", "{answer}");
                let execution_id = answer["execution_id"].as_str().unwrap();
                let (status, execution) = json_of(
                    app.request(
                        Method::GET,
                        &format!("{reader}/api/v1/executions/{execution_id}"),
                        Some(&token),
                    )
                    .send()
                    .await
                    .unwrap(),
                )
                .await;
                if !shows_the_answered_run(status, &execution, &payload) {
                    let shown: String = execution.to_string().chars().take(300).collect();
                    unreadable.push(format!("{execution_id}: {status} {shown}"));
                }
            }
            unreadable
        }
    });
    let unreadable: Vec<String> = join_all(callers).await.into_iter().flatten().collect();
    assert!(
        unreadable.is_empty(),
        "{} of {} answered executions were not readable right after their answer, e.g. {:?}",
        unreadable.len(),
        CALLERS * CALLS_EACH,
        unreadable.iter().take(3).collect::<Vec<_>>()
    );
    Arc::into_inner(app).unwrap().stop().await;
}

/// The execution as recorded: finished, with the call's payload and both nodes' runs.
fn shows_the_answered_run(status: StatusCode, execution: &Value, payload: &Value) -> bool {
    status == StatusCode::OK
        && execution["status"] == "completed"
        && execution["inputs"]["data"] == *payload
        && execution["node_executions"]
            .as_array()
            .is_some_and(|nodes| nodes.len() == 2)
}
