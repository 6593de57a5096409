//! Token rotation: the new token works at once; the old one is refused at once, or still
//! accepted for the grace period asked for.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, lone_webhook_workflow};

async fn fire(app: &TestApp, url: &str, token: &str) -> StatusCode {
    app.request(Method::POST, url, Some(token))
        .header("prefer", "respond-async")
        .json(&json!({"ping": true}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn rotate(app: &TestApp, user: &str, webhook_id: &str, body: Value) -> (StatusCode, Value) {
    app.post_json(
        &format!("/api/v1/webhooks/{webhook_id}/rotate-token"),
        user,
        &body,
    )
    .await
}

#[tokio::test]
async fn a_rotated_token_replaces_the_old_one_with_or_without_a_grace_period() {
    let app = TestApp::spawn_api_only().await;
    let user = app.user("rotate@example.com").await;
    let workflow = app.create_workflow(&user, &lone_webhook_workflow()).await;
    let (url, first) = app
        .webhook_of(&user, workflow["id"].as_str().unwrap())
        .await;
    let webhook_id = url.rsplit('/').next().unwrap();
    assert_eq!(fire(&app, &url, &first).await, StatusCode::ACCEPTED);

    // No grace period: the old token is refused at once.
    let (status, rotated) = rotate(&app, &user, webhook_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["security_token"].as_str().unwrap().to_owned();
    assert!(second.starts_with("wht_") && second != first);
    assert!(rotated["previous_token_valid_until"].is_null());
    assert_eq!(fire(&app, &url, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(fire(&app, &url, &second).await, StatusCode::ACCEPTED);
    let (_, listed) = app
        .get_json(
            &format!(
                "/api/v1/webhooks?workflow_id={}",
                workflow["id"].as_str().unwrap()
            ),
            &user,
        )
        .await;
    assert_eq!(
        listed[0]["security_token"],
        second.as_str(),
        "the listing shows the new token"
    );

    // With a grace period both work until it ends; the one before stays refused.
    let (status, rotated) =
        rotate(&app, &user, webhook_id, json!({"grace_period_seconds": 60})).await;
    assert_eq!(status, StatusCode::OK);
    let third = rotated["security_token"].as_str().unwrap().to_owned();
    assert!(rotated["previous_token_valid_until"].is_string());
    assert_eq!(
        fire(&app, &url, &second).await,
        StatusCode::ACCEPTED,
        "in its grace period"
    );
    assert_eq!(fire(&app, &url, &third).await, StatusCode::ACCEPTED);
    assert_eq!(fire(&app, &url, &first).await, StatusCode::UNAUTHORIZED);

    // Bad requests change nothing.
    let (status, error) = rotate(
        &app,
        &user,
        webhook_id,
        json!({"grace_period_seconds": 10_000_000}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("grace_period_seconds")
    );
    let other = app.user("rotate-other@example.com").await;
    let (status, _) = rotate(&app, &other, webhook_id, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's webhook");
    assert_eq!(
        fire(&app, &url, &third).await,
        StatusCode::ACCEPTED,
        "still the third token"
    );
    app.stop().await;
}

/// Runs `kai-api rotate-webhook-tokens` with `args` on `app`'s database.
async fn rotate_command(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-api"))
        .arg("rotate-webhook-tokens")
        .args(args)
        .env("DATABASE_URL", app.env.database_url())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("wht_"), "a token was printed: {text}");
    (output.status.success(), text)
}

#[tokio::test]
async fn the_bulk_rotation_command_rotates_one_owners_or_every_webhook_with_a_grace_period() {
    let app = TestApp::spawn_api_only().await;
    let owner = app.user("bulk-owner@example.com").await;
    let other = app.user("bulk-other@example.com").await;
    let mut owned = Vec::new();
    for _ in 0..3 {
        let workflow = app.create_workflow(&owner, &lone_webhook_workflow()).await;
        owned.push(
            app.webhook_of(&owner, workflow["id"].as_str().unwrap())
                .await,
        );
    }
    let workflow = app.create_workflow(&other, &lone_webhook_workflow()).await;
    let (other_url, other_token) = app
        .webhook_of(&other, workflow["id"].as_str().unwrap())
        .await;
    let owner_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'bulk-owner@example.com'")
            .fetch_one(&app.state.db)
            .await
            .unwrap();

    // Bad input changes nothing.
    let (ok, text) = rotate_command(&app, &["--grace-seconds", "700000"]).await;
    assert!(!ok && text.contains("--grace-seconds"), "{text}");

    // One owner's webhooks, in batches of 2, the old tokens valid for a minute.
    let owner_arg = owner_id.to_string();
    let (ok, text) = rotate_command(
        &app,
        &[
            "--owner",
            &owner_arg,
            "--grace-seconds",
            "60",
            "--batch-size",
            "2",
        ],
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("3 webhook tokens rotated"), "{text}");
    let (_, audit) = app
        .get_json("/api/v1/audit?action=webhook_token_rotated", &owner)
        .await;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "one entry per rotated webhook: {audit}");
    assert!(entries.iter().all(|e| e["actor_type"] == "operator"
        && e["details"]["grace_seconds"] == 60
        && e["target_type"] == "webhook"));
    let (_, theirs) = app
        .get_json("/api/v1/audit?action=webhook_token_rotated", &other)
        .await;
    assert_eq!(
        theirs["items"],
        serde_json::json!([]),
        "the other owner's untouched"
    );
    let (_, listed) = app.get_json("/api/v1/webhooks", &owner).await;
    for (url, old) in &owned {
        let id = url.rsplit('/').next().unwrap();
        let new = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["webhook_id"] == id)
            .unwrap()["security_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(&new, old, "{id} kept its token");
        assert_eq!(fire(&app, url, old).await, StatusCode::ACCEPTED, "grace");
        assert_eq!(fire(&app, url, &new).await, StatusCode::ACCEPTED);
    }
    let (_, others) = app.get_json("/api/v1/webhooks", &other).await;
    assert_eq!(
        others[0]["security_token"],
        other_token.as_str(),
        "another owner's changed"
    );

    // Every webhook, no grace: the previous tokens are refused (once the API's 2 s endpoint
    // cache has moved on).
    let (ok, text) = rotate_command(&app, &[]).await;
    assert!(ok && text.contains("4 webhook tokens rotated"), "{text}");
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    assert_eq!(
        fire(&app, &other_url, &other_token).await,
        StatusCode::UNAUTHORIZED
    );
    let (_, others) = app.get_json("/api/v1/webhooks", &other).await;
    let newest = others[0]["security_token"].as_str().unwrap();
    assert_eq!(fire(&app, &other_url, newest).await, StatusCode::ACCEPTED);
    app.stop().await;
}
