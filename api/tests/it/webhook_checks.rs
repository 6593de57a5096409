//! Every check webhook ingress makes, through HTTP against real services: each refusal with its
//! status and no job published, GET payloads, Standard Webhooks signatures, idempotent retries,
//! CORS, and the management API that configures them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kai_api::webhooks::signature;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

/// A user with one lone-webhook workflow: (token, workflow id, webhook url, webhook id, secret).
struct Hook {
    token: String,
    workflow_id: String,
    url: String,
    id: String,
    secret: String,
}

async fn hook(app: &TestApp, email: &str) -> Hook {
    let token = app.user(email).await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let workflow_id = workflow["id"].as_str().unwrap().to_owned();
    let (url, secret) = app.webhook_of(&token, &workflow_id).await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    Hook {
        token,
        workflow_id,
        url,
        id,
        secret,
    }
}

async fn configure(app: &TestApp, hook: &Hook, body: Value) -> (StatusCode, Value) {
    app.put_json(&format!("/api/v1/webhooks/{}", hook.id), &hook.token, &body)
        .await
}

/// Sends `chunks` chunks of `size` spaces with no declared length; returns the status code.
async fn chunked_status(app: &TestApp, hook: &Hook, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let path = hook.url.strip_prefix(&app.base).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        hook.secret
    );
    let mut request = head.into_bytes();
    for _ in 0..chunks {
        request.extend(format!("{size:x}\r\n").bytes());
        request.extend(std::iter::repeat_n(b' ', size));
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(&request).await;
    let mut answer = vec![0u8; 64];
    let read = stream.read(&mut answer).await.unwrap();
    let line = String::from_utf8_lossy(&answer[..read]).to_string();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn queue_depth(app: &TestApp) -> u64 {
    kai_common::nats::queue_depth(&app.state.js, &app.state.names)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_refusal_has_its_status_and_publishes_no_job() {
    let app = TestApp::spawn_api_only().await;
    let hook = hook(&app, "checks@example.com").await;
    let post = |body: Value| {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Prefer", "respond-async")
            .json(&body)
    };
    let send = |builder: reqwest::RequestBuilder| async move {
        let response = builder.send().await.unwrap();
        let headers = response.headers().clone();
        let (status, body) = json_of(response).await;
        (status, body, headers)
    };

    // 405 names the methods that are accepted.
    let (status, body, headers) = send(
        app.request(Method::PATCH, &hook.url, Some(&hook.secret))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "POST");
    assert_eq!(body["error"], "method_not_allowed");

    // 403 for an address outside the allow-list (this client is 127.0.0.1).
    let (status, _) = configure(
        &app,
        &hook,
        json!({"config": {"allowed_ips": ["10.9.0.0/16"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(post(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("127.0.0.1"));
    configure(
        &app,
        &hook,
        json!({"config": {"allowed_ips": ["127.0.0.0/8", "::1"]}}),
    )
    .await;

    // 401 without the token.
    let (status, _, _) = send(app.request(Method::POST, &hook.url, None).json(&json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // 413 from the declared length, and from a streamed body without one.
    configure(&app, &hook, json!({"config": {"max_payload_size": 1}})).await;
    let big = json!({"blob": "x".repeat(2000)});
    let (status, body, _) = send(post(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("1 KiB"));
    assert_eq!(chunked_status(&app, &hook, 4, 600).await, 413);

    // 415 and 400.
    let (status, _, _) = send(
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("content-type", "text/plain")
            .body("hi"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, _) = send(
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // 422 for an event type the webhook does not accept: from the header, then the body.
    configure(
        &app,
        &hook,
        json!({"config": {"allowed_event_types": ["order.created"]}}),
    )
    .await;
    let (status, body, _) = send(post(json!({})).header("X-Event-Type", "order.deleted")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("order.deleted"));
    let (status, _, _) = send(post(json!({"type": "order.paid"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        queue_depth(&app).await,
        0,
        "no refused call published a job"
    );

    // 429 past the limit, with Retry-After; the calls before it were accepted.
    configure(&app, &hook, json!({"config": {"rate_limit_per_minute": 2}})).await;
    for _ in 0..2 {
        let (status, body, _) = send(post(json!({"event_type": "order.created"}))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body, headers) = send(post(json!({"event_type": "order.created"}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        queue_depth(&app).await,
        2,
        "only the accepted calls published jobs"
    );

    // Every refusal was recorded, and counted as an error of the webhook.
    let mut recorded = 0;
    for _ in 0..100 {
        recorded = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM webhook_events WHERE webhook_id = $1 AND response_status >= 400",
        )
        .bind(&hook.id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        if recorded == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded, 10);
    let (_, webhook) = app
        .get_json(&format!("/api/v1/webhooks/{}", hook.id), &hook.token)
        .await;
    assert_eq!(webhook["error_count"], 10, "{webhook}");
    assert_eq!(webhook["trigger_count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_address_is_the_caller_s() {
    let mut app = TestApp::spawn_api_only().await;
    let hook = hook(&app, "proxy@example.com").await;
    configure(
        &app,
        &hook,
        json!({"config": {"allowed_ips": ["203.0.113.0/24"]}}),
    )
    .await;
    let behind_proxy = app
        .another_api(|config| {
            config.trusted_proxies =
                kai_api::config::Networks(vec!["127.0.0.0/8".parse().unwrap()]);
        })
        .await;
    let call = |base: &str| {
        app.request(
            Method::POST,
            &format!("{base}/api/webhooks/{}", hook.id),
            Some(&hook.secret),
        )
        .header("X-Forwarded-For", "198.51.100.7, 203.0.113.5")
        .header("Prefer", "respond-async")
        .json(&json!({}))
    };
    // The replica that trusts this peer believes the header; the other does not.
    let trusted = call(&behind_proxy).send().await.unwrap();
    assert_eq!(trusted.status(), StatusCode::ACCEPTED);
    let direct = call(&app.base).send().await.unwrap();
    assert_eq!(direct.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn get_calls_hand_the_query_string_to_the_workflow() {
    let app = TestApp::spawn().await;
    let hook = hook(&app, "get@example.com").await;
    let (status, body) = configure(
        &app,
        &hook,
        json!({"config": {"allowed_methods": ["GET", "POST"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["config"]["allowed_methods"], json!(["GET", "POST"]));
    let response = app
        .request(
            Method::GET,
            &format!("{}?order=A-1&tag=x&tag=y", hook.url),
            Some(&hook.secret),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"]["data"],
        json!({"order": "A-1", "tag": ["x", "y"]})
    );
    app.stop().await;
}

#[tokio::test]
async fn signed_calls_valid_expired_tampered_and_replayed() {
    let app = TestApp::spawn().await;
    let hook = hook(&app, "hmac@example.com").await;
    let (status, body) = configure(&app, &hook, json!({"config": {"auth_mode": "hmac"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The signing secret in the form Standard Webhooks libraries take.
    let secret = body["signing_secret"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let signed = |id: &str, timestamp: i64, signed_body: &str, sent_body: &str| {
        app.request(Method::POST, &hook.url, None)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature::sign(&key, id, timestamp, signed_body.as_bytes()),
            )
            .body(sent_body.to_owned())
    };

    let body = r#"{"order":"A-7"}"#;
    let (status, first) = json_of(signed("msg_1", now, body, body).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["result"]["data"]["order"], "A-7");

    let (status, error) =
        json_of(signed("msg_2", now - 600, body, body).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error["message"].as_str().unwrap().contains("5 minutes"));

    let (status, error) = json_of(
        signed("msg_3", now, body, r#"{"order":"A-8"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error["message"].as_str().unwrap().contains("signature"));

    // A bearer token is not a signature.
    let response = app
        .request(Method::POST, &hook.url, Some(&hook.secret))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The sender retries msg_1: answered like the first call, not a new run.
    let response = signed("msg_1", now, body, body).send().await.unwrap();
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let (status, replay) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay, first);
    let (_, executions) = app
        .get_json(
            &format!("/api/v1/workflows/{}/executions", hook.workflow_id),
            &hook.token,
        )
        .await;
    assert_eq!(executions.as_array().unwrap().len(), 1, "{executions}");
    app.stop().await;
}

#[tokio::test]
async fn idempotent_retries_make_one_execution_even_beyond_the_duplicate_window() {
    let app = TestApp::spawn().await;
    let hook = hook(&app, "idem@example.com").await;
    let call = |key: &str, n: u32| {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Idempotency-Key", key)
            .json(&json!({"attempt": n}))
    };
    let (status, first) = json_of(call("order-17-created", 1).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let execution_id = first["execution_id"].as_str().unwrap().to_owned();
    // Retries with the same payload are answered like the first call: its result.
    for _ in 0..2 {
        let response = call("order-17-created", 1).send().await.unwrap();
        assert_eq!(response.headers()["idempotent-replayed"], "true");
        let (status, retry) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{retry}");
        assert_eq!(retry, first);
    }
    // Another payload under a key already used is refused, and changes nothing.
    let (status, refused) = json_of(call("order-17-created", 2).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("different payload"),
        "{refused}"
    );

    // Past JetStream's duplicate window the job reaches a worker again (here: published with
    // another message id); the worker finds the execution recorded and runs nothing.
    let stored: (Value,) =
        sqlx::query_as("SELECT inputs FROM workflow_executions WHERE id = $1::uuid")
            .bind(&execution_id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    let mut retry_job = job_of(&app, &hook, &execution_id, &stored.0).await;
    if let kai_common::jobs::JobMessage::WebhookV1(job) = &mut retry_job {
        job.event.data = json!({"attempt": 99});
    }
    let subject = app.state.names.job_subject(retry_job.subject_kind());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "beyond-the-window");
    app.state
        .js
        .publish_with_headers(subject, headers, retry_job.encode().unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    for _ in 0..100 {
        if queue_depth(&app).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queue_depth(&app).await, 0, "the worker took the job");
    let (_, executions) = app
        .get_json(
            &format!("/api/v1/workflows/{}/executions", hook.workflow_id),
            &hook.token,
        )
        .await;
    assert_eq!(executions.as_array().unwrap().len(), 1, "{executions}");
    assert_eq!(executions[0]["inputs"]["data"], json!({"attempt": 1}));
    // Ran once: the record alone would not show a second run (its write is a no-op).
    assert_eq!(runs_started(&app, &execution_id).await, 1);

    // An asynchronous call's retry is answered like it: accepted, the same execution.
    let async_call = || call("order-18-created", 1).header("Prefer", "respond-async");
    let (status, queued) = json_of(async_call().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let (status, again) = json_of(async_call().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["execution_id"], queued["execution_id"]);
    assert_eq!(again["status"], "duplicate");

    // A key that is not one is refused.
    let response = app
        .request(Method::POST, &hook.url, Some(&hook.secret))
        .header("Idempotency-Key", "x".repeat(300))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_while_the_first_call_is_unanswered_is_409_and_publishes_its_job() {
    let app = TestApp::spawn().await;
    let hook = hook(&app, "inflight@example.com").await;
    // A first call claimed its key, then its API died before publishing the job.
    let key = "order-19-created";
    let body = r#"{"attempt":1}"#;
    let execution_id = kai_api::webhooks::idempotency::execution_id(&hook.id, key);
    sqlx::query(
        "INSERT INTO webhook_idempotency_keys (execution_id, webhook_id, fingerprint) \
         VALUES ($1, $2, $3)",
    )
    .bind(execution_id)
    .bind(&hook.id)
    .bind(kai_api::webhooks::idempotency_store::fingerprint(
        "POST",
        body.as_bytes(),
    ))
    .execute(&app.state.db)
    .await
    .unwrap();
    let call = || {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body)
    };
    let (status, busy) = json_of(call().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .unwrap()
            .contains("still being processed"),
        "{busy}"
    );
    // The retry published the job: it runs, once, and a later retry gets its result.
    let mut finished = Value::Null;
    for _ in 0..200 {
        let (status, execution) = app
            .get_json(&format!("/api/v1/executions/{execution_id}"), &hook.token)
            .await;
        if status == StatusCode::OK && execution["status"] == "completed" {
            finished = execution;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished["status"], "completed", "the job was not lost");
    let response = call().send().await.unwrap();
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let (status, replay) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["execution_id"], execution_id.to_string());
    assert_eq!(replay["status"], "completed");
    assert_eq!(
        replay["result"]["data"]["attempt"], 1,
        "{replay} vs {finished}"
    );
    assert_eq!(runs_started(&app, &execution_id.to_string()).await, 1);
    app.stop().await;
}

/// How many times a worker started running `execution_id`, from its progress events.
async fn runs_started(app: &TestApp, execution_id: &str) -> usize {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures::StreamExt;
    let stream = app
        .state
        .js
        .get_stream(app.state.names.events_stream())
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: app
                .state
                .names
                .events_subject(execution_id.parse().unwrap()),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut started = 0;
    // Events are published just after the run; a quiet half second means none are left.
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        let event: kai_common::events::ExecutionEvent =
            serde_json::from_slice(&message.payload).unwrap();
        if event.event == kai_common::events::EventKind::ExecutionStarted {
            started += 1;
        }
    }
    started
}

/// The job of the webhook call recorded with `inputs` (its event).
async fn job_of(
    app: &TestApp,
    hook: &Hook,
    execution_id: &str,
    inputs: &Value,
) -> kai_common::jobs::JobMessage {
    let event: kai_common::jobs::WebhookEvent = serde_json::from_value(inputs.clone()).unwrap();
    kai_common::jobs::JobMessage::WebhookV1(kai_common::jobs::WebhookJobV1 {
        execution_id: execution_id.parse().unwrap(),
        workflow_id: hook.workflow_id.parse().unwrap(),
        workflow_version: 1,
        user_id: sqlx::query_scalar("SELECT user_id FROM workflows WHERE id = $1::uuid")
            .bind(&hook.workflow_id)
            .fetch_one(&app.state.db)
            .await
            .unwrap(),
        enqueued_at: chrono::Utc::now(),
        event,
        reply_to: None,
        idempotent: true,
    })
}

#[tokio::test]
async fn cors_preflight_and_answers_honour_allowed_origins() {
    let app = TestApp::spawn_api_only().await;
    let hook = hook(&app, "cors@example.com").await;
    configure(
        &app,
        &hook,
        json!({"config": {"allowed_origins": ["https://app.example.com"]}}),
    )
    .await;
    let preflight = |origin: &str| {
        app.request(Method::OPTIONS, &hook.url, None)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let response = preflight("https://app.example.com").await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-methods"], "POST");
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(
        preflight("https://evil.example").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // The answer itself carries the header for an allowed origin, and none for another.
    let call = |origin: &str| {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Origin", origin)
            .header("Prefer", "respond-async")
            .json(&json!({}))
            .send()
    };
    let response = call("https://app.example.com").await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let response = call("https://evil.example").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    configure(&app, &hook, json!({"config": {"enable_cors": false}})).await;
    assert_eq!(
        preflight("https://app.example.com").await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    app.stop().await;
}

#[tokio::test]
async fn webhooks_are_created_updated_and_deleted_through_the_management_api() {
    let app = TestApp::spawn_api_only().await;
    let hook = hook(&app, "manage@example.com").await;

    // Bad configuration is refused naming the key, and changes nothing.
    for (config, key) in [
        (json!({"allowed_ips": ["300.1.1.1"]}), "allowed_ips"),
        (json!({"auth_mode": "none"}), "auth_mode"),
        (json!({"response_mode": "later"}), "response_mode"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let (status, body) = configure(&app, &hook, json!({ "config": config })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["message"].as_str().unwrap().contains(key), "{body}");
    }
    // In a node, the same mistake is refused when the workflow is saved, naming the node.
    let mut bad = lone_webhook_workflow();
    bad["nodes"][0]["data"]["allowed_ips"] = json!("10.0.0.0/99");
    let (status, body) = app.post_json("/api/v1/workflows", &hook.token, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["node_id"], "webhook-start");
    assert!(body["message"].as_str().unwrap().contains("allowed_ips"));
    let (status, body) = configure(&app, &hook, json!({"config": "fast"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, unchanged) = app
        .get_json(&format!("/api/v1/webhooks/{}", hook.id), &hook.token)
        .await;
    assert_eq!(unchanged["config"]["allowed_ips"], json!([]));

    // Switched off: 410; on again: accepted.
    let (status, body) = configure(&app, &hook, json!({"is_active": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_active"], false);
    let call = || {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Prefer", "respond-async")
            .json(&json!({}))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::GONE);
    configure(&app, &hook, json!({"is_active": true})).await;
    assert_eq!(call().await.unwrap().status(), StatusCode::ACCEPTED);

    // A setting made here survives a save of the workflow that does not set it.
    configure(
        &app,
        &hook,
        json!({"config": {"rate_limit_per_minute": 1234}}),
    )
    .await;
    let mut workflow = lone_webhook_workflow();
    workflow["description"] = json!("saved again");
    let (status, saved) = app
        .put_json(
            &format!("/api/v1/workflows/{}", hook.workflow_id),
            &hook.token,
            &workflow,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, after_save) = app
        .get_json(&format!("/api/v1/webhooks/{}", hook.id), &hook.token)
        .await;
    assert_eq!(after_save["config"]["rate_limit_per_minute"], 1234);

    // Deleted: the URL is gone; POST gives the node a new endpoint, once.
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/webhooks/{}", hook.id),
            Some(&hook.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(call().await.unwrap().status(), StatusCode::NOT_FOUND);
    let create = json!({"workflow_id": hook.workflow_id, "node_id": "webhook-start",
        "config": {"response_mode": "async"}});
    let (status, created) = app
        .post_json("/api/v1/webhooks", &hook.token, &create)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_ne!(created["webhook_id"], hook.id.as_str());
    assert!(
        created["webhook_url"]
            .as_str()
            .unwrap()
            .starts_with(&app.base)
    );
    assert!(
        created["security_token"]
            .as_str()
            .unwrap()
            .starts_with("wht_")
    );
    assert_eq!(created["config"]["response_mode"], "async");
    let (status, _) = app
        .post_json("/api/v1/webhooks", &hook.token, &create)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // An async webhook answers 202 without `Prefer`.
    let response = app
        .request(
            Method::POST,
            created["webhook_url"].as_str().unwrap(),
            Some(created["security_token"].as_str().unwrap()),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let (status, body) = app
        .post_json(
            "/api/v1/webhooks",
            &hook.token,
            &json!({"workflow_id": hook.workflow_id, "node_id": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Another user sees none of it.
    let other = app.user("other@example.com").await;
    let (status, _) = app
        .get_json(
            &format!(
                "/api/v1/webhooks/{}",
                created["webhook_id"].as_str().unwrap()
            ),
            &other,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post_json("/api/v1/webhooks", &other, &create).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_changes_of_different_keys_all_land() {
    let app = TestApp::spawn_api_only().await;
    let hook = hook(&app, "concurrent@example.com").await;
    let changes = [
        json!({"allowed_event_types": ["a.b"]}),
        json!({"max_payload_size": 7}),
        json!({"rate_limit_per_minute": 77}),
        json!({"webhook_timeout": 17}),
        json!({"node_behavior": "start_only"}),
        json!({"allowed_origins": ["https://x.example"]}),
        json!({"allowed_ips": ["10.1.0.0/16"]}),
        json!({"response_mode": "async"}),
    ];
    let puts = changes
        .iter()
        .map(|change| configure(&app, &hook, json!({ "config": change })));
    for (status, body) in futures::future::join_all(puts).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, webhook) = app
        .get_json(&format!("/api/v1/webhooks/{}", hook.id), &hook.token)
        .await;
    for change in &changes {
        let (key, value) = change.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&webhook["config"][key], value, "{key} was lost: {webhook}");
    }
    app.stop().await;
}

/// A body within the webhook's own limit whose job NATS cannot carry is refused with 413 naming
/// the queue's limit (not a 503 the caller would retry for ever), logged, and not enqueued.
#[tokio::test]
async fn a_body_too_large_for_the_queue_is_413_naming_its_limit() {
    let app = TestApp::spawn().await;
    let hook = hook(&app, "queue-limit@example.com").await;
    configure(&app, &hook, json!({"config": {"max_payload_size": 10240}})).await;
    let max = app.state.js.client().max_payload();
    let post = |padding: usize| {
        app.request(Method::POST, &hook.url, Some(&hook.secret))
            .header("Prefer", "respond-async")
            .json(&json!({"blob": "x".repeat(padding)}))
    };

    // The body alone fits NATS; with the call's details around it, the job does not.
    let response = post(max - 100).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("at most {max} bytes")),
        "{message}"
    );
    let mut stream = app
        .state
        .js
        .get_stream(app.state.names.jobs_stream())
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "nothing enqueued"
    );

    let (status, logs) = app
        .get_json(&format!("/api/v1/webhooks/{}/logs", hook.id), &hook.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        logs.to_string().contains("too large for the job queue"),
        "{logs}"
    );

    // Half of it is carried.
    let response = post(max / 2).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.stop().await;
}
