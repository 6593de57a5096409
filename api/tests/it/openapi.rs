//! The OpenAPI document covers every endpoint, and the docs UI is served.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_document_lists_every_endpoint() {
    let app = TestApp::spawn_api_only().await;
    let response = app
        .request(Method::GET, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spec: Value = response.json().await.unwrap();
    let mut paths: Vec<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/auth/login",
            "/api/v1/auth/signup",
            "/api/v1/credentials",
            "/api/v1/credentials/{id}",
            "/api/v1/credentials/{id}/test",
            "/api/v1/dlq",
            "/api/v1/dlq/{id}",
            "/api/v1/dlq/{id}/replay",
            "/api/v1/documents/sources",
            "/api/v1/documents/sources/{source_id}",
            "/api/v1/documents/sources/{source_id}/process",
            "/api/v1/documents/sources/{source_id}/status",
            "/api/v1/executions/lookup",
            "/api/v1/executions/{id}",
            "/api/v1/executions/{id}/cancel",
            "/api/v1/executions/{id}/events",
            "/api/v1/jobs/scheduled",
            "/api/v1/jobs/scheduled/preview",
            "/api/v1/jobs/scheduled/{job_id}",
            "/api/v1/jobs/scheduled/{job_id}/executions",
            "/api/v1/jobs/scheduled/{job_id}/trigger",
            "/api/v1/nodes/registry",
            "/api/v1/nodes/registry/{node_type}",
            "/api/v1/tools/http/logs",
            "/api/v1/tools/http/test",
            "/api/v1/vectors/collections",
            "/api/v1/vectors/collections/{collection_id}",
            "/api/v1/vectors/collections/{collection_id}/documents",
            "/api/v1/vectors/collections/{collection_id}/search",
            "/api/v1/vectors/collections/{collection_id}/stats",
            "/api/v1/webhooks",
            "/api/v1/webhooks/{webhook_id}",
            "/api/v1/webhooks/{webhook_id}/logs",
            "/api/v1/webhooks/{webhook_id}/rotate-token",
            "/api/v1/workflows",
            "/api/v1/workflows/{id}",
            "/api/v1/workflows/{id}/execute",
            "/api/v1/workflows/{id}/executions",
            "/api/v1/workflows/{id}/executions/summaries",
            "/api/v1/workflows/{id}/nodes",
            "/api/v1/workflows/{id}/nodes/{node_id}",
            "/api/webhooks/{webhook_id}",
            "/api/webhooks/{webhook_id}/info",
            "/health",
            "/health/detailed",
            "/metrics",
        ]
    );
    assert!(
        spec["components"]["securitySchemes"]
            .as_object()
            .is_some_and(|s| !s.is_empty())
    );

    let docs = app
        .request(Method::GET, "/docs", None)
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let headers = format!("{:?}", docs.headers());
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{headers} {html}");

    let (status, body) = crate::helpers::json_of(
        app.request(Method::GET, "/no/such/route", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");

    let metrics = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kai_api_requests_total"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_each_dependency() {
    let app = TestApp::spawn_api_only().await;
    let (status, body) = crate::helpers::json_of(
        app.request(Method::GET, "/health", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    let (status, body) = crate::helpers::json_of(
        app.request(Method::GET, "/health/detailed", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for check in ["database", "nats", "redis"] {
        assert_eq!(body["checks"][check]["status"], "healthy", "{check}");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_redis_the_api_is_degraded_but_stays_ready() {
    let env = kai_common::testing::TestEnv::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Nothing listens on port 1: Redis is "down" for this API.
    let api = kai_api::testing::start_with(&env, shutdown.clone(), |config| {
        config.common.redis_url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
    })
    .await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/health/detailed", api.base))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::json_of(response).await;
    // Rate limits fall back to per-replica limits without Redis: leaving every replica in its
    // load balancer is right, so readiness stays 200 and says what is missing.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"]["status"], "unhealthy");
    assert_eq!(body["checks"]["database"]["status"], "healthy");
    assert_eq!(body["checks"]["nats"]["status"], "healthy");
    let live = client
        .get(format!("{}/health", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    shutdown.cancel();
    let _ = api.server.await;
    api.state.db.close().await;
    env.cleanup().await;
}
