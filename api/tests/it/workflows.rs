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
        json!({"name": "  ", "nodes": [{"id": "s", "type": "StartNode"}]}),
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

    // A bare `{nodes, edges}` export has no name: it gets one.
    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"nodes": [{"id": "s", "type": "StartNode"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["name"]
            .as_str()
            .unwrap()
            .starts_with("Untitled workflow 20"),
        "{body}"
    );
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

/// Where the KAI-Fusion exports are: `KAI_FUSION_EXAMPLES`, or `shared/kai-fusion-examples`
/// beside the repository (as the project's machines lay it out).
fn kai_fusion_examples() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("KAI_FUSION_EXAMPLES")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/kai-fusion-examples")
        });
    dir.is_dir().then_some(dir)
}

#[tokio::test]
async fn every_kai_fusion_export_imports_or_names_each_type_not_available_yet() {
    let Some(dir) = kai_fusion_examples() else {
        eprintln!("KAI-Fusion examples not found; set KAI_FUSION_EXAMPLES to run this test");
        return;
    };
    let app = TestApp::spawn_api_only().await;
    let token = app.user("exports@example.com").await;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the eight exports in {}",
        dir.display()
    );
    let mut runnable = 0;
    for path in files {
        // Unchanged: an export without a name gets a default one.
        let body: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let flow = body.get("flow_data").unwrap_or(&body).clone();
        let unavailable: Vec<(String, &str)> = flow["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|node| {
                let written = node["type"].as_str().unwrap();
                let canonical = kai_common::workflow::catalogue::canonical_name(written)
                    .unwrap_or_else(|| {
                        panic!("{}: `{written}` is not in the catalogue", path.display())
                    });
                kai_common::workflow::catalogue::implemented(written)
                    .is_none()
                    .then(|| (node["id"].as_str().unwrap().to_owned(), canonical))
            })
            .collect();
        let (status, answer) = post_workflow(&app, &token, body).await;
        if unavailable.is_empty() {
            assert_eq!(status, StatusCode::CREATED, "{}: {answer}", path.display());
            runnable += 1;
        } else {
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}: {answer}",
                path.display()
            );
            let message = answer["message"].as_str().unwrap();
            for (node_id, canonical) in &unavailable {
                assert!(
                    message.contains(canonical),
                    "{}: {canonical} not named in {message}",
                    path.display()
                );
                assert!(
                    message.contains(node_id.as_str()),
                    "{}: {node_id} not named in {message}",
                    path.display()
                );
            }
        }
    }
    let (_, list) = app.get_json("/api/v1/workflows", &token).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        runnable,
        "only the runnable exports are stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_management_body_is_refused_with_413() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("big@example.com").await;
    let huge = json!({"name": "big", "description": "x".repeat(6 * 1024 * 1024),
        "nodes": [{"id": "s", "type": "StartNode"}]});
    let (status, body) = post_workflow(&app, &token, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "payload_too_large");
    let (_, list) = app.get_json("/api/v1/workflows", &token).await;
    assert_eq!(list, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn bad_node_config_and_bad_handles_are_refused_naming_the_node() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("config@example.com").await;
    let (status, body) = post_workflow(&app, &token, json!({"name": "x", "nodes": [
        {"id": "s", "type": "StartNode"},
        {"id": "check", "type": "ConditionNode", "data": {"operation": "regex", "value2": "(unclosed"}}
    ], "edges": [{"source": "s", "target": "check"}]}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["node_id"], "check");
    assert!(
        body["message"].as_str().unwrap().contains("field `value2`"),
        "{body}"
    );

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"name": "x", "nodes": [
        {"id": "s", "type": "StartNode"}, {"id": "e", "type": "EndNode"}
    ], "edges": [{"id": "e1", "source": "s", "sourceHandle": "nowhere", "target": "e"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["node_id"], "s");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no output handle `nowhere`"),
        "{body}"
    );

    let (status, body) = post_workflow(
        &app,
        &token,
        json!({"name": "x", "nodes": [
        {"id": "s", "type": "StartNode", "data": {"initial_input": "{{ broken"}},
        {"id": "check", "type": "ConditionNode", "data": {"value1": "{{ broken"}}
    ], "edges": [{"source": "s", "target": "check"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["node_id"], "check", "{body}");

    let (_, list) = app.get_json("/api/v1/workflows", &token).await;
    assert_eq!(list, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn an_execution_queued_before_an_update_runs_the_version_it_was_queued_with() {
    let mut app = TestApp::spawn_api_only().await;
    let token = app.user("queued@example.com").await;
    let v1 = json!({"name": "v", "nodes": [
        {"id": "hook", "type": "WebhookStartNode"},
        {"id": "v1_end", "type": "EndNode"}
    ], "edges": [{"source": "hook", "target": "v1_end"}]});
    let workflow = app.create_workflow(&token, &v1).await;
    let id = workflow["id"].as_str().unwrap();
    let (url, secret) = app.webhook_of(&token, id).await;
    // No worker yet: the job waits in the queue while the workflow changes.
    let (status, queued) = json_of(
        app.request(Method::POST, &url, Some(&secret))
            .header("Prefer", "respond-async")
            .json(&json!({"n": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let v2 = json!({"nodes": [
        {"id": "hook", "type": "WebhookStartNode"},
        {"id": "check", "type": "ConditionNode", "data": {"operation": "not_empty"}},
        {"id": "v2_end", "type": "EndNode"}
    ], "edges": [
        {"source": "hook", "target": "check"},
        {"source": "check", "sourceHandle": "true_output", "target": "v2_end"}
    ]});
    let (status, updated) = json_of(
        app.request(
            Method::PUT,
            &format!("/api/v1/workflows/{id}"),
            Some(&token),
        )
        .json(&v2)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["version"], 2);

    app.start_worker().await;
    let execution = app
        .wait_for_execution(&token, queued["execution_id"].as_str().unwrap())
        .await;
    assert_eq!(execution["workflow_version"], 1);
    let ran: Vec<&str> = execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert!(
        ran.contains(&"v1_end") && !ran.contains(&"check"),
        "{ran:?}"
    );

    // A call made now runs version 2.
    let (_, now) = json_of(
        app.request(Method::POST, &url, Some(&secret))
            .json(&json!({"n": 2}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let execution = app
        .wait_for_execution(&token, now["execution_id"].as_str().unwrap())
        .await;
    assert_eq!(execution["workflow_version"], 2);
    app.stop().await;
}

#[tokio::test]
async fn the_node_registry_lists_every_built_in_type_with_its_schema() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("registry@example.com").await;
    let (status, list) = app.get_json("/api/v1/nodes/registry", &token).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_type"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = kai_common::nodes::registry()
        .iter()
        .map(|n| n.type_name())
        .collect();
    expected.sort();
    assert_eq!(names, expected);

    // By a KAI-Fusion legacy name too.
    let (status, condition) = app
        .get_json("/api/v1/nodes/registry/ConditionNode", &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(condition["category"], "processor");
    assert_eq!(condition["node_class"], "builtin");
    assert_eq!(
        condition["schema_definition"]["outputs"],
        json!(["true_output", "false_output"])
    );
    assert!(condition["schema_definition"]["config"]["properties"]["operation"]["enum"].is_array());
    let (status, webhook) = app
        .get_json("/api/v1/nodes/registry/WebhookTrigger", &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(webhook["node_type"], "WebhookStartNode");

    let (status, _) = app
        .get_json("/api/v1/nodes/registry/Teleporter", &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json_of(
        app.request(Method::GET, "/api/v1/nodes/registry", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn a_workflow_retry_policy_is_stored_and_a_bad_one_refused() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("retry-policy@example.com").await;
    let graph = |retry: Value| {
        json!({"name": "retrying", "nodes": [{"id": "start", "type": "StartNode"}],
               "retry": retry})
    };
    let (status, body) = post_workflow(&app, &token, graph(json!({"max_attempts": 0}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("retry.max_attempts")
    );
    let (_, listed) = app.get_json("/api/v1/workflows", &token).await;
    assert_eq!(listed, json!([]), "nothing stored");

    let (status, created) = post_workflow(
        &app,
        &token,
        graph(json!({"max_attempts": 4, "backoff_ms": 250})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, stored) = app
        .get_json(
            &format!("/api/v1/workflows/{}", created["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(
        stored["retry"],
        json!({"max_attempts": 4, "backoff_ms": 250}),
        "{stored}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_workflow_as_read_can_be_sent_back_unchanged() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("round-trip@example.com").await;
    // Created in KAI-Fusion's export shape (`flow_data`), read back in the documented one.
    let (status, created) = post_workflow(
        &app,
        &token,
        json!({"name": "round trip", "description": "both shapes", "icon": "ignored",
               "retry": {"max_attempts": 3, "backoff_ms": 100},
               "flow_data": {"nodes": [
                   {"id": "start", "type": "StartNode", "position": {"x": 1, "y": 2}},
                   {"id": "end", "type": "EndNode", "data": {"label": "done"}}],
                 "edges": [{"id": "e1", "source": "start", "target": "end"}]}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, read) = app
        .get_json(&format!("/api/v1/workflows/{id}"), &token)
        .await;
    assert!(read.get("flow_data").is_none(), "one shape: {read}");

    // Posted back as it was read: a copy with the same graph, name and settings.
    let (status, copy) = post_workflow(&app, &token, read.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    assert_ne!(copy["id"], read["id"]);
    for field in [
        "name",
        "description",
        "nodes",
        "edges",
        "retry",
        "is_active",
    ] {
        assert_eq!(copy[field], read[field], "{field}");
    }
    // Put back as it was read: saved, nothing changed but the version.
    let (status, saved) = app
        .put_json(&format!("/api/v1/workflows/{id}"), &token, &read)
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    for field in ["name", "description", "nodes", "edges", "retry"] {
        assert_eq!(saved[field], read[field], "{field}");
    }
    app.stop().await;
}
