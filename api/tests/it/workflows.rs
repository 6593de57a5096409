//! Workflows: validation on save, versions, webhook registration kept in step with the graph.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

async fn post_workflow(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    json_of(
        app.request(Method::POST, "/api/v1/workflows", Some(token))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn invalid_graphs_are_refused_naming_the_node_and_nothing_is_stored() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("invalid@example.com").await;

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"name": "x", "nodes": [
            {"id": "s", "type": "StartNode"}, {"id": "warp", "type": "WarpDrive"}
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["node_id"], "warp");
    assert!(body["message"].as_str().unwrap().contains("WarpDrive"));

    let (status, body) = post_workflow(&app, &token, json!({"name": "x", "nodes": [
        {"id": "s", "type": "StartNode"}, {"id": "a", "type": "EndNode"}, {"id": "b", "type": "EndNode"}
    ], "edges": [
        {"source": "s", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}
    ]}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"].as_str().unwrap().contains("cycle"),
        "{body}"
    );

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"name": "x", "nodes": [{"id": "s", "type": "StartNode"}],
        "edges": [{"id": "e9", "source": "s", "target": "ghost"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["node_id"], "ghost");

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"name": "x", "nodes": [{"id": "e", "type": "EndNode"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().contains("entry"));

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"nodes": [{"id": "s", "type": "StartNode"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().starts_with("name"));

    let (status, _) = post_workflow(&app, &token, json!({"name": "no graph"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, list) = app.get_json("/api/v1/workflows", &token).await;
    assert_eq!(list, json!([]));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_versions")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.stop().await;
}

#[tokio::test]
async fn kai_fusion_flow_data_imports_with_legacy_type_names() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("import@example.com").await;
    let body: Value =
        serde_json::from_str(include_str!("../../../examples/webhook-echo.json")).unwrap();
    let workflow = app.create_workflow(&token, &body).await;
    assert_eq!(workflow["version"], 1);
    assert_eq!(workflow["nodes"].as_array().unwrap().len(), 2);
    let (_, hooks) = app
        .get_json(
            &format!(
                "/api/v1/webhooks?workflow_id={}",
                workflow["id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(hooks[0]["node_id"], "WebhookTrigger__demo");
    let webhook_id = hooks[0]["webhook_id"].as_str().unwrap();
    assert!(
        webhook_id.starts_with("wh_") && webhook_id.len() == 27,
        "{webhook_id}"
    );
    assert!(hooks[0]["security_token"].as_str().unwrap().len() >= 64);
    app.stop().await;
}

#[tokio::test]
async fn saving_versions_keeps_the_webhook_of_a_kept_node_and_removes_a_removed_one() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("versions@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let id = workflow["id"].as_str().unwrap();
    let (_, before) = app
        .get_json(&format!("/api/v1/webhooks?workflow_id={id}"), &token)
        .await;

    let update = json!({"name": "renamed", "nodes": [
        {"id": "webhook-start", "type": "WebhookStartNode", "data": {"timeout": 10}},
        {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "webhook-start", "target": "end"}]});
    let (status, updated) = json_of(
        app.request(
            Method::PUT,
            &format!("/api/v1/workflows/{id}"),
            Some(&token),
        )
        .json(&update)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["name"], "renamed");
    let (_, after) = app
        .get_json(&format!("/api/v1/webhooks?workflow_id={id}"), &token)
        .await;
    assert_eq!(after[0]["webhook_id"], before[0]["webhook_id"]);
    assert_eq!(after[0]["security_token"], before[0]["security_token"]);
    assert_eq!(after[0]["config"]["webhook_timeout"], 10);

    // A rename alone does not make a version.
    let (_, renamed) = json_of(
        app.request(
            Method::PUT,
            &format!("/api/v1/workflows/{id}"),
            Some(&token),
        )
        .json(&json!({"name": "again"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(renamed["version"], 2);

    let no_webhook = json!({"nodes": [{"id": "start", "type": "StartNode"}]});
    let (status, _) = json_of(
        app.request(
            Method::PUT,
            &format!("/api/v1/workflows/{id}"),
            Some(&token),
        )
        .json(&no_webhook)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, gone) = app
        .get_json(&format!("/api/v1/webhooks?workflow_id={id}"), &token)
        .await;
    assert_eq!(gone, json!([]));

    // Every saved graph is kept, immutable.
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT version FROM workflow_versions WHERE workflow_id = $1::uuid ORDER BY version",
    )
    .bind(id)
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    let rewrite =
        sqlx::query("UPDATE workflow_versions SET flow_data = '{}' WHERE workflow_id = $1::uuid")
            .bind(id)
            .execute(&app.state.db)
            .await;
    assert!(rewrite.is_err(), "versions must be immutable");
    app.stop().await;
}

#[tokio::test]
async fn execution_listing_pages_and_filters() {
    let app = TestApp::spawn().await;
    let token = app.user("paging@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let id = workflow["id"].as_str().unwrap();
    let (url, secret) = app.webhook_of(&token, id).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, body) = json_of(
            app.request(Method::POST, &url, Some(&secret))
                .json(&json!({"n": n}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        ids.push(body["execution_id"].as_str().unwrap().to_owned());
    }
    let (_, page) = app
        .get_json(
            &format!("/api/v1/workflows/{id}/executions?limit=2"),
            &token,
        )
        .await;
    let page: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let (_, rest) = app
        .get_json(
            &format!("/api/v1/workflows/{id}/executions?limit=2&offset=2"),
            &token,
        )
        .await;
    assert_eq!(rest[0]["id"], ids[0].as_str());
    let (_, failed) = app
        .get_json(
            &format!("/api/v1/workflows/{id}/executions?status=failed"),
            &token,
        )
        .await;
    assert_eq!(failed, json!([]));
    let (status, _) = app
        .get_json(
            &format!("/api/v1/workflows/{id}/executions?status=bogus"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .get_json(
            &format!("/api/v1/workflows/{id}/executions?limit=0"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
