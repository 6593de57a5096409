//! The node configuration API: each change validated like a whole save and saved as a version.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app.request(method, path, Some(token));
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

#[tokio::test]
async fn nodes_are_added_changed_and_removed_one_at_a_time_as_new_versions() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("node-config@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &json!({"name": "nodes", "nodes": [
            {"id": "start", "type": "StartNode", "position": {"x": 0, "y": 0}},
            {"id": "end", "type": "EndNode"}
        ], "edges": [{"source": "start", "target": "end"}]}),
        )
        .await;
    let id = workflow["id"].as_str().unwrap();
    let nodes = format!("/api/v1/workflows/{id}/nodes");
    let version = || async {
        let (_, workflow) = app
            .get_json(&format!("/api/v1/workflows/{id}"), &token)
            .await;
        workflow["version"].as_i64().unwrap()
    };

    let (status, listed) = call(&app, Method::GET, &nodes, &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["start", "end"]);
    assert_eq!(listed[0]["position"], json!({"x": 0, "y": 0}));
    assert_eq!(listed[0]["workflow_version"], 1);

    let (status, added) = call(
        &app,
        Method::POST,
        &nodes,
        &token,
        Some(json!({
            "node_id": "check", "node_type": "ConditionNode",
            "configuration": {"operation": "contains", "value2": "a"},
            "edges": [{"source": "start", "target": "check"}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["workflow_version"], 2);
    assert_eq!(added["configuration"]["operation"], "contains");
    assert_eq!(version().await, 2);

    // Refused changes name what is wrong and store nothing.
    for (body, expected, node) in [
        (
            json!({"node_id": "check", "node_type": "EndNode"}),
            StatusCode::CONFLICT,
            None,
        ),
        (
            json!({"node_id": "c2", "node_type": "ConditionNode", "configuration": {"operation": "nope"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("c2"),
        ),
        (
            json!({"node_id": "c3", "node_type": "EndNode", "edges": [{"source": "ghost", "target": "c3"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ghost"),
        ),
        (
            json!({"node_id": "c4", "node_type": "EndNode", "edges": [{"source": "c4", "target": "start"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("start"),
        ),
        (
            json!({"node_id": "c5"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ] {
        let (status, error) = call(&app, Method::POST, &nodes, &token, Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {error}");
        if let Some(node) = node {
            assert_eq!(error["node_id"], node, "{body}: {error}");
        }
    }
    assert_eq!(version().await, 2, "nothing refused was stored");

    let check = format!("{nodes}/check");
    let (status, changed) = call(
        &app,
        Method::PUT,
        &check,
        &token,
        Some(json!({"configuration": {"operation": "equal", "value2": "b"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["workflow_version"], 3);
    assert_eq!(
        changed["configuration"],
        json!({"operation": "equal", "value2": "b"})
    );
    let (status, _) = call(
        &app,
        Method::PUT,
        &check,
        &token,
        Some(json!({"node_type": "NoSuchType"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("{nodes}/ghost"),
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Removing the only entry node would leave an invalid graph.
    let (status, error) = call(
        &app,
        Method::DELETE,
        &format!("{nodes}/start"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = call(&app, Method::DELETE, &check, &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, workflow) = app
        .get_json(&format!("/api/v1/workflows/{id}"), &token)
        .await;
    assert_eq!(workflow["version"], 4);
    assert_eq!(
        workflow["edges"],
        json!([{"source": "start", "target": "end"}]),
        "its edges went with it"
    );
    let (_, listed) = call(&app, Method::GET, &nodes, &token, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Saving the whole workflow keeps the node configurations in step.
    let response = app
        .request(Method::PUT, &format!("/api/v1/workflows/{id}"), Some(&token))
        .json(&json!({"nodes": [{"id": "only", "type": "StartNode", "data": {"initial_input": "x"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, listed) = call(&app, Method::GET, &nodes, &token, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["configuration"], json!({"initial_input": "x"}));

    let other = app.user("node-config-other@example.com").await;
    let (status, _) = call(&app, Method::GET, &nodes, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &app,
        Method::POST,
        &nodes,
        &other,
        Some(json!({"node_type": "EndNode"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
