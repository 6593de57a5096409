//! API keys (shown once, stored hashed, scoped, expiring, revoked at once on every replica) and
//! the revocation of access tokens by logout and by a password change.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of};

async fn create_key(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    json_of(
        app.request(Method::POST, "/api/v1/api-keys", Some(token))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Status of `method path` at `base` with `key` in `X-API-Key`.
async fn with_header_key(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    key: &str,
) -> StatusCode {
    app.client
        .request(method, format!("{base}{path}"))
        .header("X-API-Key", key)
        .json(&crate::helpers::lone_webhook_workflow())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_works_as_bearer_or_header() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("keys@example.com").await;
    let (status, created) = create_key(
        &app,
        &token,
        json!({"name": "ci deploys", "scopes": ["read", "write"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kai_") && key.len() == 47, "{key}");
    assert_eq!(created["key_prefix"], key[..12]);
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert_eq!(created["name"], "ci deploys");
    assert!(created["last_used_at"].is_null());

    // Only a digest is stored.
    let stored: Vec<(String, String)> = sqlx::query_as("SELECT key_prefix, key_hash FROM api_keys")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].1.contains(&key[4..]) && stored[0].1 != key);

    // As bearer and as X-API-Key.
    let (status, _) = json_of(
        app.request(Method::GET, "/api/v1/workflows", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let status = with_header_key(&app, &app.base, Method::POST, "/api/v1/workflows", &key).await;
    assert_eq!(status, StatusCode::CREATED);
    // With both headers, Authorization is the credential, whatever X-API-Key holds.
    let (status, _) = json_of(
        app.request(Method::GET, "/api/v1/workflows", Some(&token))
            .header("X-API-Key", "kai_not-a-key")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = json_of(
        app.request(Method::GET, "/api/v1/workflows", Some("not-a-token"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The list never shows the key, and records its use.
    let mut last_used = Value::Null;
    for _ in 0..50 {
        let (status, list) = json_of(
            app.request(Method::GET, "/api/v1/api-keys", Some(&token))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!list.to_string().contains(&key[4..]), "{list}");
        last_used = list["api_keys"][0]["last_used_at"].clone();
        if !last_used.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(last_used.is_string(), "last_used_at recorded");

    // A key cannot mint keys, log out or change the password.
    for (path, body) in [
        ("/api/v1/api-keys", json!({"name": "k", "scopes": ["read"]})),
        ("/api/v1/auth/logout", json!({})),
        (
            "/api/v1/auth/password",
            json!({"current_password": "correct-horse-battery", "new_password": "another-horse-99"}),
        ),
    ] {
        let (status, body) = json_of(
            app.request(Method::POST, path, Some(&key))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("access token"),
            "{body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_read_key_reads_but_cannot_write_naming_the_scope() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("reader@example.com").await;
    let (_, created) = create_key(
        &app,
        &token,
        json!({"name": "dashboards", "scopes": ["read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    let status = with_header_key(&app, &app.base, Method::GET, "/api/v1/workflows", key).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = json_of(
        app.request(Method::POST, "/api/v1/workflows", Some(key))
            .json(&crate::helpers::lone_webhook_workflow())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("write scope"),
        "{body}"
    );
    // A question asked by POST is a read.
    let (status, body) = json_of(
        app.request(Method::POST, "/api/v1/executions/lookup", Some(key))
            .json(&json!({"ids": [uuid::Uuid::new_v4()]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let workflows: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(workflows, 0, "the refused write changed nothing");
    app.stop().await;
}

#[tokio::test]
async fn revoked_expired_and_malformed_keys_are_refused_on_every_replica() {
    let mut app = TestApp::spawn_api_only().await;
    let other = app.another_api(|_| {}).await;
    let token = app.user("revoker@example.com").await;
    let (_, created) = create_key(
        &app,
        &token,
        json!({"name": "soon gone", "scopes": ["read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    for base in [&app.base, &other] {
        let status = with_header_key(&app, base, Method::GET, "/api/v1/workflows", &key).await;
        assert_eq!(status, StatusCode::OK, "{base} before revocation");
    }
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    for base in [&app.base, &other] {
        let (status, body) = json_of(
            app.client
                .get(format!("{base}/api/v1/workflows"))
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{base} after revocation");
        assert_eq!(
            body["message"],
            "the API key is invalid or has been revoked"
        );
    }
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND, "already revoked");

    // Expired.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, created) = create_key(
        &app,
        &token,
        json!({"name": "expiring", "scopes": ["read"], "expires_at": soon}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second'")
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = json_of(
        app.request(Method::GET, "/api/v1/workflows", Some(key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "the API key has expired");

    // Malformed or unknown.
    for bad in ["kai_short", &format!("kai_{}", "A".repeat(43))] {
        let status = with_header_key(&app, &app.base, Method::GET, "/api/v1/workflows", bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_key_requests_are_refused_naming_the_field_and_another_user_s_key_is_404() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("picky@example.com").await;
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(3651)).to_rfc3339();
    for (body, status, field) in [
        (
            json!({"name": "x", "scopes": ["admin"]}),
            StatusCode::BAD_REQUEST,
            "found \"admin\"",
        ),
        (
            json!({"name": "x", "scopes": []}),
            StatusCode::BAD_REQUEST,
            "scopes",
        ),
        (
            json!({"name": "", "scopes": ["read"]}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "  ", "scopes": ["read"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": past}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": far}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "admin": true}),
            StatusCode::BAD_REQUEST,
            "admin",
        ),
    ] {
        let (got, answer) = create_key(&app, &token, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{body}: {answer}"
        );
    }
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(keys, 0, "nothing was created");

    let (_, created) = create_key(&app, &token, json!({"name": "mine", "scopes": ["read"]})).await;
    let other = app.user("stranger@example.com").await;
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap()),
            Some(&other),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = json_of(
        app.request(Method::GET, "/api/v1/api-keys", Some(&other))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["api_keys"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn logout_and_a_password_change_revoke_earlier_tokens_on_every_replica() {
    let mut app = TestApp::spawn_api_only().await;
    let other = app.another_api(|_| {}).await;
    let status = |base: String, token: String| {
        let request = app.request(
            Method::GET,
            &format!("{base}/api/v1/workflows"),
            Some(&token),
        );
        async move { request.send().await.unwrap().status() }
    };
    let first = app.user("leaving@example.com").await;
    let second = login(&app, "correct-horse-battery").await;
    let (_, created) = create_key(&app, &first, json!({"name": "stays", "scopes": ["read"]})).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let status_code = app
        .request(Method::POST, "/api/v1/auth/logout", Some(&first))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status_code, StatusCode::NO_CONTENT);
    for base in [app.base.clone(), other.clone()] {
        for token in [&first, &second] {
            assert_eq!(
                status(base.clone(), token.clone()).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            status(base.clone(), key.clone()).await,
            StatusCode::OK,
            "keys stay"
        );
    }
    let (_, body) = json_of(
        app.request(Method::GET, "/api/v1/workflows", Some(&first))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // A new login works; a password change revokes it and answers with a working token.
    let third = login(&app, "correct-horse-battery").await;
    assert_eq!(status(other.clone(), third.clone()).await, StatusCode::OK);
    let change = |current: &str, new: &str| {
        let request = app
            .request(Method::POST, "/api/v1/auth/password", Some(&third))
            .json(&json!({"current_password": current, "new_password": new}));
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (code, body) = change("not-my-password", "brand-new-horse-7").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("current_password")
    );
    let (code, body) = change("correct-horse-battery", "leaving").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "too short: {body}");
    let (code, body) = change("correct-horse-battery", "LEAVING@example.com").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("new_password"),
        "{body}"
    );
    assert_eq!(
        status(app.base.clone(), third.clone()).await,
        StatusCode::OK,
        "refusals changed nothing"
    );

    let (code, body) = change("correct-horse-battery", "brand-new-horse-7").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let fourth = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(other.clone(), third).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(other, fourth).await, StatusCode::OK);
    let (code, _) = json_of(
        app.request(Method::POST, "/api/v1/auth/login", None)
            .json(&json!({"email": "leaving@example.com", "password": "correct-horse-battery"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "the old password is gone");
    login(&app, "brand-new-horse-7").await;
    app.stop().await;
}

async fn login(app: &TestApp, password: &str) -> String {
    let (status, body) = json_of(
        app.request(Method::POST, "/api/v1/auth/login", None)
            .json(&json!({"email": "leaving@example.com", "password": password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}
