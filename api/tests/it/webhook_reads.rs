//! Reading about a webhook: its call log (owner only: every call, accepted or refused, newest
//! first, paged) and its public info (anyone: how to call it, nothing secret).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, lone_webhook_workflow};

#[tokio::test]
async fn a_webhook_s_calls_are_listed_newest_first_with_their_total() {
    let app = TestApp::spawn().await;
    let token = app.user("logs@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let (url, secret) = app
        .webhook_of(&token, workflow["id"].as_str().unwrap())
        .await;
    let webhook_id = url.rsplit('/').next().unwrap().to_owned();
    for n in 0..3 {
        let response = app
            .request(Method::POST, &url, Some(&secret))
            .header("prefer", "respond-async")
            .json(&json!({"n": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        // Distinct timestamps, so the order is the order of the calls.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = app
        .request(Method::POST, &url, Some("wht_wrong"))
        .json(&json!({"n": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let logs = format!("/api/v1/webhooks/{webhook_id}/logs");
    // Accepted calls are written with their execution, refusals by a background writer.
    let mut page = Value::Null;
    for _ in 0..100 {
        let (status, body) = app.get_json(&logs, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        page = body;
        if page["total"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(page["total"], 4, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items[0]["response_status"], 401, "the refusal came last");
    assert!(
        items[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("token")
    );
    assert!(items[0]["execution_id"].is_null());
    let payloads: Vec<&Value> = items[1..].iter().map(|i| &i["payload"]["n"]).collect();
    assert_eq!(payloads, [&json!(2), &json!(1), &json!(0)], "newest first");
    assert!(items[1]["execution_id"].is_string());

    let (_, second_page) = app
        .get_json(&format!("{logs}?limit=2&offset=2"), &token)
        .await;
    assert_eq!(second_page["total"], 4, "the total counts every page");
    assert_eq!(second_page["items"].as_array().unwrap().len(), 2);
    assert_eq!(second_page["items"][1]["payload"]["n"], 0);

    let future = "2999-01-01T00:00:00Z";
    let (_, none) = app
        .get_json(&format!("{logs}?start_date={future}"), &token)
        .await;
    assert_eq!(none["total"], 0);
    let (status, error) = app
        .get_json(
            &format!("{logs}?start_date={future}&end_date=2000-01-01T00:00:00Z"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = app.get_json(&format!("{logs}?limit=0"), &token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, error) = app
        .get_json(&format!("{logs}?start_date=yesterday"), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["message"].as_str().is_some(), "{error}");

    let other = app.user("logs-other@example.com").await;
    let (status, _) = app.get_json(&logs, &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's webhook");
    let (status, _) = app
        .get_json("/api/v1/webhooks/wh_000000000000000000000000/logs", &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn webhook_info_is_public_and_tells_no_secret() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("info@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let (url, secret) = app
        .webhook_of(&token, workflow["id"].as_str().unwrap())
        .await;
    let response = app
        .request(Method::GET, &format!("{url}/info"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&secret), "the token is never shown");
    assert!(
        !text.contains(workflow["id"].as_str().unwrap()),
        "nor the workflow"
    );
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["webhook_url"], url);
    assert_eq!(info["is_active"], true);
    assert_eq!(info["authentication_required"], true);
    assert_eq!(info["methods"], json!(["POST"]));
    assert_eq!(info["auth_mode"], "bearer");
    assert_eq!(info["response_mode"], "sync");
    assert_eq!(info["rate_limit_per_minute"], 60);
    assert_eq!(info["webhook_timeout_secs"], 30);
    for unknown in ["wh_000000000000000000000000", "not-a-webhook"] {
        let response = app
            .request(Method::GET, &format!("/api/webhooks/{unknown}/info"), None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{unknown}");
    }
    app.stop().await;
}
