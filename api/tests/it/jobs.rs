//! The job path between API and worker: redelivery, deduplication, poison messages.

use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use kai_common::jobs::{JobMessage, WebhookEvent, WebhookJobV1};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, lone_webhook_workflow};

async fn job_for(app: &TestApp, token: &str) -> JobMessage {
    let workflow = app.create_workflow(token, &lone_webhook_workflow()).await;
    let workflow_id: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    let (_, hooks) = app
        .get_json(
            &format!("/api/v1/webhooks?workflow_id={workflow_id}"),
            token,
        )
        .await;
    JobMessage::WebhookV1(WebhookJobV1 {
        execution_id: Uuid::now_v7(),
        workflow_id,
        workflow_version: 1,
        user_id: app.state.tokens.verify(token).unwrap().sub,
        enqueued_at: Utc::now(),
        event: WebhookEvent {
            webhook_id: hooks[0]["webhook_id"].as_str().unwrap().to_owned(),
            node_id: "webhook-start".into(),
            correlation_id: Uuid::new_v4(),
            http_method: "POST".into(),
            event_type: "webhook.received".into(),
            data: json!({"twice": true}),
            received_at: Utc::now(),
            client_ip: Some("127.0.0.1".into()),
            user_agent: None,
            headers: Default::default(),
            url: "http://test/".into(),
        },
        reply_to: None,
        idempotent: false,
    })
}

async fn stream_messages(js: &jetstream::Context, name: String) -> u64 {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

async fn wait_until_drained(app: &TestApp) {
    for _ in 0..200 {
        if stream_messages(&app.state.js, app.state.names.jobs_stream()).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the jobs stream never drained");
}

#[tokio::test]
async fn the_same_job_delivered_twice_makes_one_execution() {
    let mut app = TestApp::spawn_api_only().await;
    let token = app.user("twice@example.com").await;
    let job = job_for(&app, &token).await;
    let subject = app.state.names.job_subject("webhook");
    // Published twice without a message id, so JetStream stores both: the worker must cope.
    for _ in 0..2 {
        app.state
            .js
            .publish(subject.clone(), job.encode().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(
        stream_messages(&app.state.js, app.state.names.jobs_stream()).await,
        2
    );
    app.start_worker().await;
    wait_until_drained(&app).await;

    let id = job.execution_id();
    let count = |sql: &'static str| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM workflow_executions WHERE id = $1").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM node_executions WHERE execution_id = $1").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM webhook_events WHERE execution_id = $1").await,
        1
    );
    let JobMessage::WebhookV1(webhook_job) = &job else {
        panic!("a webhook job was expected")
    };
    let triggers: i64 =
        sqlx::query_scalar("SELECT trigger_count + (SELECT count(*) FROM webhook_trigger_deltas d WHERE d.webhook_id = e.webhook_id) \
             FROM webhook_endpoints e WHERE webhook_id = $1")
            .bind(&webhook_job.event.webhook_id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(triggers, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_retried_publish_is_stored_once() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("dedupe@example.com").await;
    let job = job_for(&app, &token).await;
    for _ in 0..3 {
        kai_common::nats::publish_job(&app.state.js, &app.state.names, &job)
            .await
            .unwrap();
    }
    assert_eq!(
        stream_messages(&app.state.js, app.state.names.jobs_stream()).await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_not_retried_forever() {
    let app = TestApp::spawn().await;
    let subject = app.state.names.job_subject("webhook");
    app.state
        .js
        .publish(subject, "{\"kind\":\"WebhookV1\",\"not\":\"a job\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_until_drained(&app).await;
    let mut dead = 0;
    for _ in 0..100 {
        dead = stream_messages(&app.state.js, app.state.names.dlq_stream()).await;
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead, 1);
    // Listed for operators (no owner can be read from it), never for a user.
    let (execution, owner, reason): (Option<Uuid>, Option<Uuid>, String) =
        sqlx::query_as("SELECT execution_id, user_id, reason FROM dead_letters")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!((execution, owner), (None, None));
    assert!(reason.starts_with("undecodable job message"), "{reason}");
    let token = app.user("poisoned@example.com").await;
    let (_, listed) = app.get_json("/api/v1/dlq", &token).await;
    assert_eq!(listed["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_job_kind_newer_than_the_worker_is_handed_back_until_its_last_delivery() {
    let app = TestApp::spawn().await;
    let subject = app.state.names.job_subject("webhook");
    // What a newer API could publish during a rolling upgrade.
    let newer = json!({"kind": "WebhookV9", "execution_id": Uuid::now_v7()});
    app.state
        .js
        .publish(subject, newer.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Not dead-lettered as a poison message: still queued for a worker that knows the kind.
    assert_eq!(
        stream_messages(&app.state.js, app.state.names.dlq_stream()).await,
        0
    );
    assert_eq!(
        stream_messages(&app.state.js, app.state.names.jobs_stream()).await,
        1
    );
    let mut listed = None;
    for _ in 0..400 {
        listed = sqlx::query_as::<_, (i32, String)>("SELECT deliveries, reason FROM dead_letters")
            .fetch_optional(&app.state.db)
            .await
            .unwrap();
        if listed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No newer worker came: kept for operators once every delivery was spent.
    let (deliveries, reason) = listed.expect("dead-lettered after its last delivery");
    assert_eq!(deliveries, 5);
    assert!(
        reason.contains("job kind WebhookV9 is unknown to this worker"),
        "{reason}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_on_its_last_delivery() {
    let app = TestApp::spawn().await;
    let token = app.user("lastdelivery@example.com").await;
    let JobMessage::WebhookV1(mut job) = job_for(&app, &token).await else {
        panic!("a webhook job was expected")
    };
    // Published around ingress (which refuses it): PostgreSQL cannot store this payload, so
    // every delivery fails as a database error.
    job.event.data = json!({"note": "x\u{0}y"});
    let job = JobMessage::WebhookV1(job);
    kai_common::nats::publish_job(&app.state.js, &app.state.names, &job)
        .await
        .unwrap();
    let mut dead = 0;
    for _ in 0..400 {
        dead = stream_messages(&app.state.js, app.state.names.dlq_stream()).await;
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dead, 1,
        "the job must leave the queue for the dead-letter stream"
    );
    wait_until_drained(&app).await;
    // Its owner finds it, with the reason and the deliveries made.
    let (_, listed) = app.get_json("/api/v1/dlq", &token).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let letter = &listed["items"][0];
    assert_eq!(letter["execution_id"], job.execution_id().to_string());
    assert_eq!(letter["kind"], "webhook");
    assert_eq!(letter["deliveries"], 5);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 5 deliveries"),
        "{letter}"
    );
    let (_, execution) = app
        .get_json(
            &format!("/api/v1/executions/{}", job.execution_id()),
            &token,
        )
        .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_type"], "dead_letter");
    app.stop().await;
}
