//! The audit log: security-relevant actions recorded with actor, target, address and time, each
//! owner reading only their own entries, never a secret.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

async fn actions(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, page) = app.get_json(&format!("/api/v1/audit{query}"), token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn security_actions_are_recorded_for_their_owner_only() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("audited@example.com").await;
    let stranger = app.user("stranger@example.com").await;
    // A failed login on the account, and one naming no account.
    for email in ["audited@example.com", "nobody@example.com"] {
        let status = app
            .request(Method::POST, "/api/v1/auth/login", None)
            .header("X-Forwarded-For", "203.0.113.9")
            .json(&json!({"email": email, "password": "not-the-password"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // An API key created and revoked.
    let (status, key) = app
        .post_json(
            "/api/v1/api-keys",
            &token,
            &json!({"name": "ci", "scopes": ["read", "write"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key_id = key["id"].as_str().unwrap().to_owned();
    let secret_key = key["key"].as_str().unwrap().to_owned();
    // A credential created (through the key), changed and deleted.
    let (status, credential) = json_of(
        app.request(Method::POST, "/api/v1/credentials", Some(&secret_key))
            .json(&json!({"name": "openai", "service_type": "openai",
                          "data": {"api_key": "sk-audit-secret-123456"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{credential}");
    let credential_id = credential["id"].as_str().unwrap().to_owned();
    let status = app
        .request(
            Method::PUT,
            &format!("/api/v1/credentials/{credential_id}"),
            Some(&token),
        )
        .json(&json!({"name": "openai-2"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/credentials/{credential_id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A webhook token rotated, the workflow deleted.
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let workflow_id = workflow["id"].as_str().unwrap().to_owned();
    let (url, _) = app.webhook_of(&token, &workflow_id).await;
    let webhook_id = url.rsplit('/').next().unwrap().to_owned();
    let (status, _) = app
        .post_json(
            &format!("/api/v1/webhooks/{webhook_id}/rotate-token"),
            &token,
            &json!({"grace_period_seconds": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let status = app
        .request(
            Method::DELETE,
            &format!("/api/v1/workflows/{workflow_id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);

    let entries = actions(&app, &token, "").await;
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "workflow_deleted",
            "webhook_token_rotated",
            "api_key_revoked",
            "credential_deleted",
            "credential_updated",
            "credential_created",
            "api_key_created",
            "login_failed",
            "login",
            "signup",
        ],
        "newest first"
    );
    let by = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap();
    assert_eq!(by("credential_created")["actor_type"], "api_key");
    assert_eq!(
        by("credential_created")["actor_api_key_id"],
        key_id.as_str()
    );
    assert_eq!(
        by("credential_created")["target_id"],
        credential_id.as_str()
    );
    assert_eq!(by("credential_deleted")["actor_type"], "session");
    assert_eq!(by("api_key_revoked")["target_id"], key_id.as_str());
    assert_eq!(
        by("webhook_token_rotated")["target_id"],
        webhook_id.as_str()
    );
    assert_eq!(by("webhook_token_rotated")["details"]["grace_seconds"], 30);
    assert_eq!(by("workflow_deleted")["target_id"], workflow_id.as_str());
    assert_eq!(by("login_failed")["actor_type"], "anonymous");
    assert_eq!(by("signup")["client_ip"], "127.0.0.1");
    assert!(by("login")["created_at"].is_string());
    // Nothing secret in any entry.
    let text = Value::Array(entries.clone()).to_string();
    assert!(!text.contains("sk-audit-secret"), "{text}");
    assert!(!text.contains(&secret_key[4..]), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    // The stranger sees only their own sign-up and login; the unknown account's failure is
    // no one's to read.
    let theirs = actions(&app, &stranger, "").await;
    let names: Vec<&str> = theirs
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["login", "signup"]);
    let unattributed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE user_id IS NULL")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(unattributed, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_by_cursor_and_filters_by_action() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("pager@example.com").await;
    for i in 0..5 {
        let (status, _) = app
            .post_json(
                "/api/v1/api-keys",
                &token,
                &json!({"name": format!("k{i}"), "scopes": ["read"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, first) = app.get_json("/api/v1/audit?limit=3", &token).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get_json(&format!("/api/v1/audit?limit=3&cursor={cursor}"), &token)
        .await;
    let mut seen: Vec<Value> = first["items"].as_array().unwrap().clone();
    seen.extend(second["items"].as_array().unwrap().iter().cloned());
    // 5 keys, a login and a sign-up: 7 entries; the second page holds the other 4... of 3.
    assert_eq!(seen.len(), 6);
    let ids: std::collections::HashSet<&str> =
        seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6, "no entry twice");
    let only_keys = actions(&app, &token, "?action=api_key_created").await;
    assert_eq!(only_keys.len(), 5);
    let (status, body) = app
        .get_json("/api/v1/audit?action=drop_tables", &token)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"].as_str().unwrap().starts_with("action"),
        "{body}"
    );
    let (status, _) = app.get_json("/api/v1/audit?limit=0", &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
