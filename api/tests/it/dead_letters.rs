//! Dead letters through the API: listed for their owner only, replayed once as a new execution
//! of the workflow's current version, deleted with their stream copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use kai_common::jobs::{JobMessage, ManualJobV1};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

async fn dead_letters(app: &TestApp, token: &str) -> Value {
    let (status, page) = app.get_json("/api/v1/dlq", token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// Publishes a job for a version of `workflow_id` that does not exist (it dies on its first
/// delivery) and waits until its owner lists one dead letter; its execution id and the page.
async fn dead_job(app: &TestApp, token: &str, workflow_id: Uuid, inputs: Value) -> (Uuid, Value) {
    let dead_id = Uuid::now_v7();
    let job = JobMessage::ManualV1(ManualJobV1 {
        execution_id: dead_id,
        workflow_id,
        workflow_version: 99,
        user_id: app.state.tokens.verify(token).unwrap().sub,
        enqueued_at: Utc::now(),
        inputs,
        reply_to: None,
    });
    kai_common::nats::publish_job(&app.state.js, &app.state.names, &job)
        .await
        .unwrap();
    let mut page = Value::Null;
    for _ in 0..200 {
        page = dead_letters(app, token).await;
        if page["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(page["total"], 1, "{page}");
    (dead_id, page)
}

#[tokio::test]
async fn a_dead_letter_is_listed_for_its_owner_replayed_once_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.user("dlq@example.com").await;
    let stranger = app.user("dlq-stranger@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "runs", "nodes": [
            {"id": "start", "type": "StartNode"}, {"id": "end", "type": "EndNode"}
        ], "edges": [{"source": "start", "target": "end"}]}),
        )
        .await;
    let workflow_id: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    // A job for a version that does not exist dies on its first delivery.
    let (dead_id, page) = dead_job(&app, &token, workflow_id, json!({"n": 1})).await;
    let letter = &page["items"][0];
    assert_eq!(letter["execution_id"], dead_id.to_string());
    assert_eq!(letter["workflow_id"], workflow_id.to_string());
    assert_eq!(letter["kind"], "manual");
    assert_eq!(letter["deliveries"], 1);
    assert!(
        letter["reason"].as_str().unwrap().contains("deleted"),
        "{letter}"
    );
    assert_eq!(dead_letters(&app, &stranger).await["total"], 0);
    let id = letter["id"].as_str().unwrap();
    // Whoever holds the execution id finds why it never ran.
    let (status, dead) = app
        .get_json(&format!("/api/v1/executions/{dead_id}"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    assert_eq!(dead["status"], "failed");
    assert_eq!(dead["error_type"], "dead_letter");
    assert_eq!(dead["error"], letter["reason"]);

    // Replayed: the same inputs run as a new execution of the current version.
    let path = format!("/api/v1/dlq/{id}/replay");
    let (status, _) = app.post_json(&path, &stranger, &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, replayed) = app.post_json(&path, &token, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["replay_of"], dead_id.to_string());
    let new_id = replayed["execution_id"].as_str().unwrap();
    let execution = app.wait_for_execution(&token, new_id).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["workflow_version"], 1);
    assert_eq!(execution["inputs"], json!({"n": 1}));
    let (status, again) = app.post_json(&path, &token, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["message"].as_str().unwrap().contains(new_id));
    let page = dead_letters(&app, &token).await;
    assert_eq!(page["items"][0]["replayed_execution_id"], new_id);
    let (_, audit) = app
        .get_json("/api/v1/audit?action=dead_letter_replayed", &token)
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["target_id"], id);
    assert_eq!(audit["items"][0]["details"]["execution_id"], new_id);

    // Deleted, with its copy in the stream.
    let dlq = app.state.names.dlq_stream();
    let stored = || async {
        let mut stream = app.state.js.get_stream(dlq.clone()).await.unwrap();
        stream.info().await.unwrap().state.messages
    };
    assert_eq!(stored().await, 1);
    let letter_path = format!("/api/v1/dlq/{id}");
    let response = app
        .request(Method::DELETE, &letter_path, Some(&stranger))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .request(Method::DELETE, &letter_path, Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(dead_letters(&app, &token).await["total"], 0);
    assert_eq!(stored().await, 0);
    let (status, _) = app.get_json("/api/v1/dlq?limit=0", &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn a_dead_letter_whose_workflow_is_gone_cannot_be_replayed() {
    let app = TestApp::spawn().await;
    let token = app.user("dlq-gone@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "gone", "nodes": [
                {"id": "start", "type": "StartNode"}
            ]}),
        )
        .await;
    let workflow_id: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    let (_, page) = dead_job(&app, &token, workflow_id, json!({})).await;
    let id = page["items"][0]["id"]
        .as_str()
        .expect("a dead letter")
        .to_owned();
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/workflows/{workflow_id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let (status, body) = app
        .post_json(&format!("/api/v1/dlq/{id}/replay"), &token, &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("workflow"));
    let page = dead_letters(&app, &token).await;
    assert_eq!(page["items"][0]["replayed_execution_id"], Value::Null);
    app.stop().await;
}

/// A service that answers 503 until it is switched up.
#[poem::handler]
fn maybe_down(up: poem::web::Data<&Arc<AtomicBool>>) -> poem::Response {
    use poem::IntoResponse;
    if up.load(Ordering::SeqCst) {
        poem::web::Json(json!({"ok": true})).into_response()
    } else {
        (poem::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
    }
}

#[tokio::test]
async fn a_run_failing_on_a_service_outage_is_dead_lettered_and_replayed_when_it_is_back() {
    use poem::EndpointExt;
    let app = TestApp::spawn().await;
    let token = app.user("dlq-outage@example.com").await;
    let up = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let routes = poem::Route::new().at("/run", poem::post(maybe_down).data(up.clone()));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
    let (status, _) = app
        .post_json(
            "/api/v1/nodes/registry",
            &token,
            &json!({"node_type": "Upstream", "endpoint_url": format!("{base}/run"),
                    "timeout_ms": 2000, "max_attempts": 2, "backoff_ms": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "upstream", "nodes": [
            {"id": "start", "type": "StartNode"},
            {"id": "call", "type": "Upstream"},
            {"id": "end", "type": "EndNode"}
        ], "edges": [{"source": "start", "target": "call"}, {"source": "call", "target": "end"}]}),
        )
        .await;
    let id = workflow["id"].as_str().unwrap();
    let (_, queued) = app
        .post_json(
            &format!("/api/v1/workflows/{id}/execute"),
            &token,
            &json!({"inputs": {"order": 7}}),
        )
        .await;
    let failed_id = queued["execution_id"].as_str().unwrap().to_owned();
    let failed = app.wait_for_execution(&token, &failed_id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_type"], "network");

    let mut page = Value::Null;
    for _ in 0..100 {
        page = dead_letters(&app, &token).await;
        if page["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letter = &page["items"][0];
    assert_eq!(letter["execution_id"], failed_id.as_str(), "{page}");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed after its last attempt"),
        "{letter}"
    );

    // The service is back: the replay runs through.
    up.store(true, Ordering::SeqCst);
    let (status, replayed) = app
        .post_json(
            &format!("/api/v1/dlq/{}/replay", letter["id"].as_str().unwrap()),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    let again = app
        .wait_for_execution(&token, replayed["execution_id"].as_str().unwrap())
        .await;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["inputs"], json!({"order": 7}));
    app.stop().await;
}
