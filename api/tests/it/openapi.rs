//! The OpenAPI document covers every endpoint (checked against the route files' declarations),
//! undeclared methods are 405 with `Allow` on every path, security headers are on every response,
//! and the docs UI is served under a policy allowing only its own scripts.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    // Bodies that refuse unknown fields say so.
    assert_eq!(
        spec["components"]["schemas"]["ApiKeyIn"]["additionalProperties"],
        false
    );
    let mut paths: Vec<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/api-keys",
            "/api/v1/api-keys/{id}",
            "/api/v1/audit",
            "/api/v1/auth/login",
            "/api/v1/auth/logout",
            "/api/v1/auth/password",
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

/// Every `(path, METHOD)` the route files declare with `#[oai(path = ..., method = ...)]`, in the
/// document's spelling (`{param}`): what the server answers, read from its source.
fn declared_in_source() -> BTreeSet<(String, String)> {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut declared = BTreeSet::new();
    for file in std::fs::read_dir(routes).unwrap() {
        let source = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for attribute in source.split("#[oai(").skip(1) {
            let attribute = &attribute[..attribute.find(")]").unwrap_or(attribute.len())];
            let quoted = |key: &str| {
                let start = attribute.find(&format!("{key} = \""))? + key.len() + 4;
                let end = attribute[start..].find('"')? + start;
                Some(attribute[start..end].to_owned())
            };
            if let (Some(path), Some(method)) = (quoted("path"), quoted("method")) {
                let path = path
                    .split('/')
                    .map(|segment| match segment.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => segment.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                declared.insert((path, method.to_uppercase()));
            }
        }
    }
    declared
}

async fn document(app: &TestApp) -> Value {
    app.request(Method::GET, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(|method| (path.clone(), method.to_uppercase()))
        })
        .collect()
}

#[tokio::test]
async fn every_operation_the_server_answers_is_in_the_document() {
    let app = TestApp::spawn_api_only().await;
    let spec = document(&app).await;
    let in_source = declared_in_source();
    assert!(in_source.len() > 50, "{in_source:?}");
    let in_document = documented(&spec);
    let missing: Vec<_> = in_source.difference(&in_document).collect();
    let extra: Vec<_> = in_document.difference(&in_source).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "answered but not documented: {missing:?}; documented but not declared: {extra:?}"
    );
    assert!(in_document.contains(&("/api/v1/webhooks".to_owned(), "GET".to_owned())));
    app.stop().await;
}

#[tokio::test]
async fn undeclared_methods_are_405_with_allow_on_every_path() {
    let app = TestApp::spawn_api_only().await;
    let spec = document(&app).await;
    let every = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let declared: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let mut allowed: Vec<&str> = every
            .iter()
            .map(Method::as_str)
            .filter(|m| {
                declared.iter().any(|d| d == m)
                    || (*m == "HEAD" && declared.iter().any(|d| d == "GET"))
            })
            .collect();
        allowed.dedup();
        // Parameters filled with a well-formed id: routing does not depend on the value.
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in &every {
            let response = app
                .request(method.clone(), &concrete, None)
                .send()
                .await
                .unwrap();
            if allowed.contains(&method.as_str()) {
                assert_ne!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is declared"
                );
            } else {
                assert_eq!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(
                    response.headers()["allow"].to_str().unwrap(),
                    allowed.join(", "),
                    "{method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
    // The documentation's own paths too.
    let response = app
        .request(Method::TRACE, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    app.stop().await;
}

#[tokio::test]
async fn responses_carry_security_headers_and_the_docs_page_a_policy_for_its_own_scripts() {
    let app = TestApp::spawn_api_only().await;
    for path in ["/health", "/api/v1/workflows", "/no/such/route", "/docs"] {
        let response = app.request(Method::GET, path, None).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(
            headers.contains_key("content-security-policy"),
            path == "/docs",
            "{path}"
        );
    }
    let docs = app
        .request(Method::GET, "/docs", None)
        .send()
        .await
        .unwrap();
    let policy = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = docs.text().await.unwrap();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    let scripts_directive = policy.split(';').nth(1).unwrap();
    assert!(!policy.contains("unsafe-eval") && !scripts_directive.contains("unsafe-inline"));
    // The hash of each inline script of the page as served, and nothing else.
    let scripts = kai_api::security_headers::inline_scripts(&html);
    assert!(
        scripts.len() >= 2 && scripts[0].len() > 100_000,
        "{}",
        scripts.len()
    );
    let expected: Vec<String> = scripts
        .iter()
        .map(|script| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(script))))
        .collect();
    assert_eq!(
        scripts_directive.trim(),
        format!("script-src {}", expected.join(" ")),
        "{policy}"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_and_health_are_on_the_operations_port_and_can_leave_the_public_one() {
    // By default both ports serve the metrics (of the requests made so far).
    let app = TestApp::spawn_api_only().await;
    let _ = app
        .request(Method::GET, "/health", None)
        .send()
        .await
        .unwrap();
    for base in [&app.base, &app.ops_base] {
        let metrics = app
            .request(Method::GET, &format!("{base}/metrics"), None)
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), StatusCode::OK, "{base}");
        assert!(
            metrics
                .text()
                .await
                .unwrap()
                .contains("kai_api_requests_total")
        );
    }
    app.stop().await;

    let app = TestApp::spawn_api_only_with(|config| config.public_metrics = false).await;
    let public = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(public.headers().get("allow").is_none());
    let ops = |path: &str| {
        app.request(Method::GET, &format!("{}{path}", app.ops_base), None)
            .send()
    };
    let metrics = ops("/metrics").await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("kai_api_requests_total")
    );
    let (status, ready) = crate::helpers::json_of(ops("/health/detailed").await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "healthy", "{ready}");
    let (status, live) = crate::helpers::json_of(ops("/health").await.unwrap()).await;
    assert_eq!(
        (status, live["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
    // The public port's API and health go on.
    let (status, _) = crate::helpers::json_of(
        app.request(Method::GET, "/health", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn absent_values_are_left_out_not_null() {
    // The document declares optional fields by type without `nullable` (found by
    // schemathesis: `next_cursor: null`, `expires_at: null` broke the response schemas).
    let app = TestApp::spawn_api_only().await;
    let token = app.user("no-nulls@example.com").await;
    let (status, _) = app
        .post_json(
            "/api/v1/api-keys",
            &token,
            &serde_json::json!({"name": "k", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for path in [
        "/api/v1/api-keys",
        "/api/v1/audit",
        "/api/v1/dlq",
        "/api/v1/credentials",
    ] {
        let (status, body) = app.get_json(path, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.to_string().contains("null"), "{path}: {body}");
    }
    app.stop().await;
}

/// Every bound, enumeration and pattern the handlers enforce is in the served document where
/// it belongs: a renamed operation, parameter or field fails here instead of silently losing its
/// declaration.
#[tokio::test]
async fn the_document_declares_what_the_handlers_enforce() {
    let app = TestApp::spawn_api_only().await;
    let mut spec = document(&app).await;
    for rule in kai_api::contract::declared::rules() {
        let targets = kai_api::contract::place_mut(&mut spec, &rule.place);
        assert!(
            !targets.is_empty(),
            "{:?} is not in the document",
            rule.place
        );
        for target in targets {
            for (key, value) in rule.keywords.as_object().unwrap() {
                let served = target.get(key).unwrap_or(&Value::Null);
                assert!(
                    includes(served, value),
                    "{:?}: {key} is {served}",
                    rule.place
                );
            }
        }
    }
    // Free text says it cannot hold NUL; optional request fields that accept null say so.
    let name = &spec["components"]["schemas"]["WorkflowIn"]["properties"]["description"];
    assert_eq!(name["pattern"], "^[^\\x00]*$");
    assert_eq!(name["nullable"], true);
    let k = &spec["components"]["schemas"]["SearchIn"]["properties"]["k"];
    assert_eq!(
        (k["minimum"].as_u64(), k["maximum"].as_u64()),
        (Some(1), Some(1000))
    );
}

/// Whether `served` says at least what `declared` says (objects may carry more keywords, such
/// as the NUL pattern every free-text string gets).
fn includes(served: &Value, declared: &Value) -> bool {
    match (served, declared) {
        (Value::Object(served), Value::Object(declared)) => declared
            .iter()
            .all(|(key, value)| served.get(key).is_some_and(|s| includes(s, value))),
        _ => served == declared,
    }
}
