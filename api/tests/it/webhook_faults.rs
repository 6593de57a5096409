//! Webhook ingress when its dependencies misbehave: rate limits shared by two API processes
//! through Redis, Redis lost mid-test (local limits), NATS lost (503 in bounded time, then
//! recovery without a restart) and a full job queue (503).

use std::time::{Duration, Instant};

use kai_common::test_proxy::TcpProxy;
use kai_common::testing::service_addr;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{TestApp, lone_webhook_workflow};

/// A workflow whose webhook allows `per_minute` calls: (url, token).
async fn limited_hook(app: &TestApp, email: &str, per_minute: u32) -> (String, String) {
    let token = app.user(email).await;
    let mut workflow = lone_webhook_workflow();
    workflow["nodes"][0]["data"]["rate_limit_per_minute"] = json!(per_minute);
    let workflow = app.create_workflow(&token, &workflow).await;
    app.webhook_of(&token, workflow["id"].as_str().unwrap())
        .await
}

/// An asynchronous call to a webhook, ready to send.
fn async_call(app: &TestApp, url: &str, secret: &str) -> reqwest::RequestBuilder {
    app.request(Method::POST, url, Some(secret))
        .header("Prefer", "respond-async")
        .json(&json!({}))
}

async fn call_status(app: &TestApp, url: &str, secret: &str) -> StatusCode {
    async_call(app, url, secret).send().await.unwrap().status()
}

/// The Prometheus text of the API at `base`.
async fn metrics_of(app: &TestApp, base: &str) -> String {
    app.request(Method::GET, &format!("{base}/metrics"), None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A `kai-api` process in the test's environment; killed when dropped.
async fn api_process(app: &TestApp) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-api"))
        .envs(app.env.env_vars())
        .env("KAI_API_ADDR", format!("127.0.0.1:{port}"))
        .env("KAI_PUBLIC_URL", &base)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("kai-api starts");
    for _ in 0..300 {
        let ready = app
            .request(Method::GET, &format!("{base}/health"), None)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ready {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the second kai-api never answered");
}

#[tokio::test]
async fn the_rate_limit_is_exact_across_two_api_processes() {
    let app = TestApp::spawn_api_only().await;
    let (url, secret) = limited_hook(&app, "shared@example.com", 10).await;
    let (mut second, second_base) = api_process(&app).await;
    let path = url.strip_prefix(&app.base).unwrap().to_owned();
    let second_url = format!("{second_base}{path}");
    // 40 calls at once, half through each process.
    let calls = (0..40).map(|n| {
        let target = if n % 2 == 0 { &url } else { &second_url };
        call_status(&app, target, &secret)
    });
    let statuses = futures::future::join_all(calls).await;
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted, limited), (10, 30), "{statuses:?}");
    // Neither process fell back to counting alone.
    assert!(!app.state.rate_limiter.degraded());
    let metrics = metrics_of(&app, &second_base).await;
    assert!(
        metrics.contains("kai_rate_limiter_fallback 0"),
        "the second process counts in Redis"
    );
    second.kill().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn with_redis_gone_each_replica_limits_locally_and_keeps_serving() {
    let redis = TcpProxy::start(service_addr("REDIS_URL", "redis://127.0.0.1:6379")).await;
    let redis_url = format!("redis://{}", redis.addr());
    let app = TestApp::spawn_api_only_with(|config| {
        config.common.redis_url = SecretString::from(redis_url);
    })
    .await;
    let (url, secret) = limited_hook(&app, "noredis@example.com", 5).await;
    for _ in 0..2 {
        assert_eq!(call_status(&app, &url, &secret).await, StatusCode::ACCEPTED);
    }

    redis.cut();
    // Still served, now counted by this replica alone (a fresh budget of 5).
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(call_status(&app, &url, &secret).await);
    }
    assert_eq!(&statuses[..5], &[StatusCode::ACCEPTED; 5], "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no call waits on the dead Redis"
    );
    assert!(app.state.rate_limiter.degraded());
    let metrics = metrics_of(&app, &app.base).await;
    assert!(
        metrics.contains("kai_rate_limiter_fallback 1"),
        "the fallback is visible"
    );
    assert!(metrics.contains(r#"kai_webhooks_rejected_total{reason="rate_limited"} 1"#));

    // Back to shared limits once Redis answers again (the probe runs every second).
    redis.restore();
    let mut recovered = false;
    for _ in 0..100 {
        // Only calls made while degraded start the probe.
        call_status(&app, &url, &secret).await;
        if !app.state.rate_limiter.degraded() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "shared limits resume");
    app.stop().await;
}

#[tokio::test]
async fn with_nats_gone_ingress_answers_503_in_bounded_time_then_recovers() {
    let nats = TcpProxy::start(service_addr("NATS_URL", "nats://127.0.0.1:4222")).await;
    let nats_url = format!("nats://{}", nats.addr());
    let app = TestApp::spawn_api_only_with(|config| {
        config.common.nats_url = SecretString::from(nats_url);
    })
    .await;
    let (url, secret) = limited_hook(&app, "nonats@example.com", 0).await;
    assert_eq!(call_status(&app, &url, &secret).await, StatusCode::ACCEPTED);

    nats.cut();
    let started = Instant::now();
    let response = async_call(&app, &url, &secret).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(waited < Duration::from_secs(7), "answered in {waited:?}");

    nats.restore();
    let mut recovered = false;
    for _ in 0..60 {
        if call_status(&app, &url, &secret).await == StatusCode::ACCEPTED {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "ingress recovers without a restart");
    app.stop().await;
}

#[tokio::test]
async fn a_full_job_queue_answers_503_keeps_what_it_stored_and_resumes_as_workers_drain_it() {
    let mut app = TestApp::spawn_api_only_with(|config| config.common.jobs_max_messages = 3).await;
    let (url, secret) = limited_hook(&app, "full@example.com", 0).await;
    let mut accepted = Vec::new();
    for _ in 0..3 {
        let response = async_call(&app, &url, &secret).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = response.json().await.unwrap();
        accepted.push(body["execution_id"].as_str().unwrap().to_owned());
    }
    for _ in 0..3 {
        let response = async_call(&app, &url, &secret).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }
    // Refusals dropped none of the stored jobs (discard "new", never "old").
    let depth = kai_common::nats::queue_depth(&app.state.js, &app.state.names).await;
    assert_eq!(depth, Some(3));

    // A worker drains the queue; ingest takes calls again by itself, with no restart.
    app.start_worker().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        let response = async_call(&app, &url, &secret).send().await.unwrap();
        if response.status() == StatusCode::ACCEPTED {
            let body: serde_json::Value = response.json().await.unwrap();
            break body["execution_id"].as_str().unwrap().to_owned();
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "ingest never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    accepted.push(resumed);
    // Every accepted call ran (its execution id is the record's key: once).
    for execution_id in &accepted {
        wait_until_completed(&app, execution_id).await;
    }
    app.stop().await;
}

/// Waits until execution `execution_id` is recorded as completed (at most 30 s).
async fn wait_until_completed(app: &TestApp, execution_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_executions WHERE id = $1::uuid AND status = 'completed'",
        )
        .bind(execution_id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        if runs == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{execution_id} never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn calls_to_many_webhooks_at_once_are_limited_each_on_its_own() {
    let app = TestApp::spawn_api_only().await;
    let mut hooks = Vec::new();
    for (n, limit) in [3, 5, 1].into_iter().enumerate() {
        hooks.push((
            limited_hook(&app, &format!("many{n}@example.com"), limit).await,
            limit as usize,
        ));
    }
    // Twelve calls to each webhook, interleaved and all at once: they share round trips.
    let app_ref = &app;
    let hooks_ref = &hooks;
    let calls = (0..12).flat_map(|_| {
        (0..hooks_ref.len()).map(move |n| {
            let (url, secret) = &hooks_ref[n].0;
            async move { (n, call_status(app_ref, url, secret).await) }
        })
    });
    let statuses = futures::future::join_all(calls).await;
    for (n, (_, limit)) in hooks.iter().enumerate() {
        let accepted = statuses
            .iter()
            .filter(|(hook, status)| *hook == n && *status == StatusCode::ACCEPTED)
            .count();
        assert_eq!(accepted, *limit, "webhook {n}: {statuses:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_call_while_no_server_leads_the_jobs_stream_is_stored_once_one_does() {
    let app = TestApp::spawn_api_only().await;
    let (hook, secret) = limited_hook(&app, "election@example.com", 0).await;
    // No server answers for the stream (as during a leader election): publishes find no
    // responder. It is back a second later.
    let js = app.state.js.clone();
    let names = app.state.names.clone();
    js.delete_stream(names.jobs_stream()).await.unwrap();
    let settings = (&app.env.common_config()).into();
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        kai_common::nats::ensure_streams(&js, &names, settings)
            .await
            .unwrap();
    });
    let started = Instant::now();
    assert_eq!(
        call_status(&app, &hook, &secret).await,
        StatusCode::ACCEPTED
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    back.await.unwrap();
    // Stored once, however many times it was offered meanwhile.
    let depth = kai_common::nats::queue_depth(&app.state.js, &app.state.names).await;
    assert_eq!(depth, Some(1));
    app.stop().await;
}
