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
