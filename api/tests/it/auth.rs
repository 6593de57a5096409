//! Accounts, tokens and tenancy.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

#[tokio::test]
async fn signup_and_login_validate_their_input() {
    let app = TestApp::spawn_api_only().await;
    let signup = |body: serde_json::Value| {
        let request = app
            .request(Method::POST, "/api/v1/auth/signup", None)
            .json(&body);
        async move { json_of(request.send().await.unwrap()).await }
    };

    let (status, body) = signup(json!({"email": "a@example.com", "password": "long-enough"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["email"], "a@example.com");
    assert!(body["id"].is_string());
    assert!(body.get("password_hash").is_none());

    let (status, _) = signup(json!({"email": "A@example.com", "password": "long-enough"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "emails are case-insensitive");

    let (status, body) = signup(json!({"email": "not-an-email", "password": "long-enough"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().starts_with("email"));

    let (status, body) = signup(json!({"email": "b@example.com", "password": "short"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().starts_with("password"));

    let (status, _) = signup(json!({"email": "b@example.com"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let login = |password: &str| {
        let request = app
            .request(Method::POST, "/api/v1/auth/login", None)
            .json(&json!({"email": "a@example.com", "password": password}));
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, body) = login("long-enough").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let (status, _) = login("wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = json_of(
        app.request(Method::POST, "/api/v1/auth/login", None)
            .json(&json!({"email": "nobody@example.com", "password": "long-enough"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn protected_endpoints_refuse_missing_bad_and_expired_tokens() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("tokens@example.com").await;
    let user_id = app.state.tokens.verify(&token).unwrap().sub;
    let expired = app.state.tokens.issue_expired(user_id).unwrap();
    let forged = {
        let other = kai_api::auth::token::TokenKeys::new(
            &secrecy::SecretString::from("some-other-secret-of-at-least-32-chars".to_owned()),
            std::time::Duration::from_secs(60),
        );
        other.issue(user_id).unwrap()
    };

    for path in ["/api/v1/workflows", "/api/v1/webhooks"] {
        let (status, body) =
            json_of(app.request(Method::GET, path, None).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_eq!(body["error"], "unauthorized");

        let (status, _) = json_of(
            app.request(Method::GET, path, Some("garbage"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a garbage token"
        );

        let (status, _) = json_of(
            app.request(Method::GET, path, Some(&forged))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a forged token"
        );

        let (status, body) = json_of(
            app.request(Method::GET, path, Some(&expired))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with an expired token"
        );
        assert!(body["message"].as_str().unwrap().contains("expired"));

        let (status, _) = json_of(
            app.request(Method::GET, path, Some(&token))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    app.stop().await;
}

#[tokio::test]
async fn another_user_s_resources_answer_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@example.com").await;
    let bob = app.user("bob@example.com").await;
    let workflow = app.create_workflow(&alice, &lone_webhook_workflow()).await;
    let id = workflow["id"].as_str().unwrap();
    let (url, secret) = app.webhook_of(&alice, id).await;
    let (_, run) = json_of(
        app.request(Method::POST, &url, Some(&secret))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let execution_id = run["execution_id"].as_str().unwrap();

    for path in [
        format!("/api/v1/workflows/{id}"),
        format!("/api/v1/workflows/{id}/executions"),
        format!("/api/v1/executions/{execution_id}"),
        format!("/api/v1/webhooks?workflow_id={id}"),
    ] {
        let (status, body) = app.get_json(&path, &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, bob_hooks) = app.get_json("/api/v1/webhooks", &bob).await;
    assert_eq!(bob_hooks, json!([]));
    let (_, bob_workflows) = app.get_json("/api/v1/workflows", &bob).await;
    assert_eq!(bob_workflows, json!([]));

    let put = app
        .request(Method::PUT, &format!("/api/v1/workflows/{id}"), Some(&bob))
        .json(&json!({"name": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NOT_FOUND);
    let delete = app
        .request(
            Method::DELETE,
            &format!("/api/v1/workflows/{id}"),
            Some(&bob),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);

    // Alice still has everything.
    let (status, still) = app
        .get_json(&format!("/api/v1/workflows/{id}"), &alice)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["name"], "Test Webhook Workflow");
    app.stop().await;
}
