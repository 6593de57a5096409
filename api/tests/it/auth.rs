//! Accounts, tokens and tenancy; failed logins limited per account and per address, alike for
//! accounts that exist and those that do not, in Redis or, without it, per replica.

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

    // Not the email address, nor its part before the @.
    for password in ["grace.hopper@example.com", "GRACE.HOPPER"] {
        let (status, body) =
            signup(json!({"email": "grace.hopper@example.com", "password": password})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        assert_eq!(
            body["message"],
            "password: must not be the email address or its part before the @"
        );
    }

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
            &[],
            std::time::Duration::from_secs(60),
        );
        other.issue(user_id, 0).unwrap()
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

/// A login attempt: status, `Retry-After` and body.
async fn login(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = app
        .request(Method::POST, "/api/v1/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json_of(response).await;
    (status, retry_after, body)
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_alike_whether_or_not_it_exists() {
    let app = TestApp::spawn_api_only_with(|config| {
        config.login_limits.per_account = 3;
        config.login_limits.window = std::time::Duration::from_secs(60);
    })
    .await;
    app.user("guessed@example.com").await;
    app.user("bystander@example.com").await;
    let mut answers = Vec::new();
    for email in ["guessed@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let (status, _, _) = login(&app, email, "wrong-password").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}");
        }
        // Over the limit: refused even with the right password, with when to come back.
        let (status, retry_after, body) = login(&app, email, "correct-horse-battery").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{email}: {body}");
        let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&seconds), "{seconds}");
        answers.push(body);
    }
    // An account that exists and one that does not get the same answer.
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["error"], "rate_limited");
    // Email case does not make a new account to guess at; another account is not held up.
    let (status, _, _) = login(&app, "GUESSED@example.com", "correct-horse-battery").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = login(&app, "bystander@example.com", "correct-horse-battery").await;
    assert_eq!(status, StatusCode::OK);
    // A successful login clears its account's count.
    for _ in 0..2 {
        login(&app, "bystander@example.com", "wrong-password").await;
    }
    let (status, _, _) = login(&app, "bystander@example.com", "correct-horse-battery").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        login(&app, "bystander@example.com", "wrong-password").await;
    }
    let (status, _, _) = login(&app, "bystander@example.com", "correct-horse-battery").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the count was not cleared by the success"
    );
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_address() {
    let app = TestApp::spawn_api_only_with(|config| {
        config.login_limits.per_address = 4;
    })
    .await;
    app.user("real@example.com").await;
    for n in 0..4 {
        let (status, _, _) = login(&app, &format!("guess{n}@example.com"), "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, retry_after, _) = login(&app, "real@example.com", "correct-horse-battery").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some());
    app.stop().await;
}

#[tokio::test]
async fn without_redis_each_replica_still_limits_failed_logins() {
    // Nothing listens on port 1: every Redis call fails and the replica counts on its own.
    let app = TestApp::spawn_api_only_with(|config| {
        config.common.redis_url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
        config.login_limits.per_account = 2;
    })
    .await;
    app.user("offline@example.com").await;
    for _ in 0..2 {
        let (status, _, _) = login(&app, "offline@example.com", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, retry_after, _) =
        login(&app, "offline@example.com", "correct-horse-battery").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some());
    app.stop().await;
}

#[tokio::test]
async fn tokens_of_a_previous_jwt_secret_pass_until_it_is_retired() {
    const OLD: &str = "the-old-jwt-secret-of-at-least-32-characters";
    const NEW: &str = "the-new-jwt-secret-of-at-least-32-characters";
    let secret = |s: &str| secrecy::SecretString::from(s.to_owned());
    let mut app = TestApp::spawn_api_only_with(|config| {
        config.secrets.jwt_secret = Some(secret(NEW));
        config.secrets.jwt_secrets_previous = kai_common::config::SecretList(vec![secret(OLD)]);
    })
    .await;
    // A second API on the same database with the old secret retired.
    let retired = app
        .another_api(|config| config.secrets.jwt_secret = Some(secret(NEW)))
        .await;
    let token = app.user("rotation@example.com").await;
    let user = app.state.tokens.verify(&token).unwrap().sub;
    let old_token =
        kai_api::auth::token::TokenKeys::new(&secret(OLD), &[], std::time::Duration::from_secs(60))
            .issue(user, 0)
            .unwrap();
    let status = |base: &str, token: &str| {
        let request = app.request(
            Method::GET,
            &format!("{base}/api/v1/workflows"),
            Some(token),
        );
        async move { request.send().await.unwrap().status() }
    };
    // Both secrets pass where the old one is listed as previous...
    assert_eq!(status(&app.base, &old_token).await, StatusCode::OK);
    assert_eq!(status(&app.base, &token).await, StatusCode::OK);
    // ...and only the current one where it is not.
    assert_eq!(status(&retired, &token).await, StatusCode::OK);
    assert_eq!(status(&retired, &old_token).await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
