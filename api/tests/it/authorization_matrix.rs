//! The authorization matrix, built from the OpenAPI document itself: every operation that
//! declares a security scheme is called without credentials (401), by another user on the
//! owner's resources (404, exactly as for an id that does not exist, and nothing of the owner's
//! changes), and, when it writes, with the owner's read-only API key (403). Operations without a
//! security scheme must be in the short public list below. A new endpoint is covered without
//! anyone writing a case for it; one whose path names a resource this test cannot make fails
//! here until it is taught how.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use kai_common::jobs::{JobMessage, ManualJobV1};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, lone_webhook_workflow};

/// Operations anyone may call: accounts, webhook ingress (checked by its own token and
/// settings), health and the document.
const PUBLIC: &[&str] = &[
    "POST /api/v1/auth/signup",
    "POST /api/v1/auth/login",
    "GET /api/webhooks/{webhook_id}",
    "POST /api/webhooks/{webhook_id}",
    "PUT /api/webhooks/{webhook_id}",
    "PATCH /api/webhooks/{webhook_id}",
    "DELETE /api/webhooks/{webhook_id}",
    "OPTIONS /api/webhooks/{webhook_id}",
    "GET /api/webhooks/{webhook_id}/info",
    "GET /health",
    "GET /health/detailed",
];

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    secured: bool,
    body: Option<Value>,
    query: Vec<(String, String)>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Follows a `$ref` into the document's components.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A minimal value that satisfies `schema`: required properties only, the first of an enum,
/// lengths and ranges at their least.
fn example(spec: &Value, schema: &Value) -> Value {
    let schema = resolve(spec, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in all {
            if let Value::Object(fields) = example(spec, part) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    if let Some(first) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(|v| v.get(0))
    {
        return example(spec, first);
    }
    if let Some(first) = schema.get("enum").and_then(|v| v.get(0)) {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut fields = Map::new();
            let required: BTreeSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    if required.contains(name.as_str()) {
                        fields.insert(name.clone(), example(spec, property));
                    }
                }
            }
            Value::Object(fields)
        }
        Some("array") => {
            let least = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = example(spec, &schema["items"]);
            Value::Array((0..least).map(|_| item.clone()).collect())
        }
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("uuid") => json!(Uuid::new_v4()),
            Some("date-time") => json!((Utc::now() + chrono::Duration::hours(1)).to_rfc3339()),
            _ => {
                let least = schema.get("minLength").and_then(Value::as_u64).unwrap_or(1);
                json!("x".repeat(least.max(1) as usize))
            }
        },
        Some("integer") | Some("number") => {
            json!(
                schema
                    .get("minimum")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    .max(1)
            )
        }
        Some("boolean") => json!(false),
        _ => json!({}),
    }
}

fn operations(spec: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let body = operation
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .and_then(|content| content.values().next())
                .map(|media| example(spec, &media["schema"]));
            let query = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| {
                    let value = example(spec, &p["schema"]);
                    let text = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    (p["name"].as_str().unwrap().to_owned(), text)
                })
                .collect();
            found.push(Operation {
                method,
                path: path.clone(),
                secured,
                body,
                query,
            });
        }
    }
    found
}

/// The owner's resources, one of each kind a path can name.
struct Owned {
    workflow: String,
    node: String,
    webhook: String,
    credential: String,
    execution: String,
    dead_letter: String,
    api_key: String,
    source: String,
    collection: String,
    job: String,
    node_type: String,
}

impl Owned {
    /// The owner's resource for `{param}` after `segment`; `None` when the test does not know
    /// the kind.
    fn id(&self, segment: &str, param: &str) -> Option<String> {
        let id = match (segment, param) {
            ("workflows", "id") => &self.workflow,
            ("nodes", "node_id") => &self.node,
            ("webhooks", "webhook_id") => &self.webhook,
            ("credentials", "id") => &self.credential,
            ("executions", "id") => &self.execution,
            ("dlq", "id") => &self.dead_letter,
            ("api-keys", "id") => &self.api_key,
            ("sources", "source_id") => &self.source,
            ("collections", "collection_id") => &self.collection,
            ("scheduled", "job_id") => &self.job,
            ("registry", "node_type") => &self.node_type,
            _ => return None,
        };
        Some(id.clone())
    }
}

/// An id of the same shape that names nothing.
fn missing_id(param: &str) -> String {
    match param {
        "webhook_id" => format!("wh_{}", &Uuid::new_v4().simple().to_string()[..24]),
        "node_id" => "no-such-node".into(),
        "node_type" => "NoSuchNodeType".into(),
        _ => Uuid::new_v4().to_string(),
    }
}

/// `path` with each `{param}` replaced: by the owner's resource, or by a missing one.
fn fill(path: &str, owned: &Owned, missing: bool) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut filled = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => {
                let previous = segments[i - 1];
                let id = owned.id(previous, param).unwrap_or_else(|| {
                    panic!("{path}: no resource for {{{param}}} after `{previous}`; teach Owned")
                });
                filled.push(if missing { missing_id(param) } else { id });
            }
            None => filled.push((*segment).to_owned()),
        }
    }
    filled.join("/")
}

async fn call(
    app: &TestApp,
    operation: &Operation,
    path: &str,
    credential: Credential<'_>,
) -> (StatusCode, Value) {
    let query = serde_urlencoded::to_string(&operation.query).unwrap();
    let url = if query.is_empty() {
        format!("{}{path}", app.base)
    } else {
        format!("{}{path}?{query}", app.base)
    };
    let mut request = app.client.request(operation.method.clone(), url);
    request = match credential {
        Credential::None => request,
        Credential::Bearer(token) => request.bearer_auth(token),
        Credential::Key(key) => request.header("X-API-Key", key),
    };
    if let Some(body) = &operation.body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[derive(Clone, Copy)]
enum Credential<'a> {
    None,
    Bearer(&'a str),
    Key(&'a str),
}

async fn make_resources(app: &TestApp, token: &str) -> (Owned, String) {
    let post = |path: &str, body: Value| {
        let path = path.to_owned();
        async move {
            let (status, created) = app.post_json(&path, token, &body).await;
            assert!(status.is_success(), "{path}: {status} {created}");
            created
        }
    };
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let runs = post(
        "/api/v1/workflows",
        json!({"name": "runs", "nodes": [{"id": "start", "type": "StartNode"},
            {"id": "end", "type": "EndNode"}], "edges": [{"source": "start", "target": "end"}]}),
    )
    .await;
    let workflow = id_of(&runs);
    let hooked = app.create_workflow(token, &lone_webhook_workflow()).await;
    let (url, _) = app.webhook_of(token, hooked["id"].as_str().unwrap()).await;
    let timed = post(
        "/api/v1/workflows",
        json!({"name": "timed", "nodes": [
            {"id": "timer", "type": "TimerStartNode", "data": {"interval_seconds": 3600}},
            {"id": "end", "type": "EndNode"}], "edges": [{"source": "timer", "target": "end"}]}),
    )
    .await;
    let (_, jobs) = app
        .get_json(
            &format!("/api/v1/jobs/scheduled?workflow_id={}", id_of(&timed)),
            token,
        )
        .await;
    let credential = post(
        "/api/v1/credentials",
        json!({"name": "key", "service_type": "openai", "data": {"api_key": "sk-matrix-0001"}}),
    )
    .await;
    let executed = post(
        &format!("/api/v1/workflows/{workflow}/execute"),
        json!({"inputs": {}}),
    )
    .await;
    let execution = executed["execution_id"].as_str().unwrap().to_owned();
    let read_key = post(
        "/api/v1/api-keys",
        json!({"name": "reader", "scopes": ["read"]}),
    )
    .await;
    let other_key = post(
        "/api/v1/api-keys",
        json!({"name": "target", "scopes": ["write"]}),
    )
    .await;
    let source = post(
        "/api/v1/documents/sources",
        json!({"name": "docs", "source_type": "web_scraper",
               "source_config": {"urls": ["https://example.com/"], "collection_name": "site"}}),
    )
    .await;
    let collection = post(
        "/api/v1/vectors/collections",
        json!({"collection_name": "matrix", "embedding_dimension": 3}),
    )
    .await;
    post(
        "/api/v1/nodes/registry",
        json!({"node_type": "MatrixNode", "endpoint_url": "http://127.0.0.1:9/run"}),
    )
    .await;
    // A job for a version that does not exist dies on its first delivery: a dead letter.
    let job = JobMessage::ManualV1(ManualJobV1 {
        execution_id: Uuid::now_v7(),
        workflow_id: workflow.parse().unwrap(),
        workflow_version: 99,
        user_id: app.state.tokens.verify(token).unwrap().sub,
        enqueued_at: Utc::now(),
        inputs: json!({}),
        reply_to: None,
    });
    kai_common::nats::publish_job(&app.state.js, &app.state.names, &job)
        .await
        .unwrap();
    let mut dead_letter = None;
    for _ in 0..200 {
        let (_, page) = app.get_json("/api/v1/dlq", token).await;
        if let Some(id) = page["items"][0]["id"].as_str() {
            dead_letter = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The execution is recorded before the matrix runs.
    for _ in 0..200 {
        let (status, _) = app
            .get_json(&format!("/api/v1/executions/{execution}"), token)
            .await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let owned = Owned {
        workflow,
        node: "start".into(),
        webhook: url.rsplit('/').next().unwrap().to_owned(),
        credential: id_of(&credential),
        execution,
        dead_letter: dead_letter.expect("a dead letter"),
        api_key: id_of(&other_key),
        source: id_of(&source),
        collection: id_of(&collection),
        job: id_of(&jobs[0]),
        node_type: "MatrixNode".into(),
    };
    (owned, read_key["key"].as_str().unwrap().to_owned())
}

/// Everything of everyone's that a request could change, for before-and-after comparison.
async fn snapshot(app: &TestApp) -> BTreeMap<&'static str, Value> {
    // Each table whole, but for what changes by itself: a run's progress, a key's last use.
    const TABLES: &[(&str, &[&str])] = &[
        ("users", &[]),
        ("api_keys", &["last_used_at"]),
        ("user_credentials", &[]),
        ("workflows", &[]),
        ("workflow_versions", &[]),
        (
            "workflow_executions",
            &[
                "status",
                "started_at",
                "completed_at",
                "outputs",
                "error_message",
                "updated_at",
                "duration_ms",
            ],
        ),
        ("webhook_endpoints", &[]),
        (
            "scheduled_jobs",
            &["next_run_at", "last_run_at", "updated_at"],
        ),
        ("dead_letters", &[]),
        ("document_sources", &[]),
        ("document_processing_jobs", &[]),
        ("vector_collections", &[]),
        ("node_registry", &[]),
        ("node_configurations", &[]),
    ];
    let mut state = BTreeMap::new();
    for (table, volatile) in TABLES {
        let rows: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]'::jsonb) \
             FROM (SELECT to_jsonb(t) - $1::text[] AS r FROM {table} t) s"
        )))
        .bind(volatile.to_vec())
        .fetch_one(&app.state.db)
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        state.insert(*table, rows);
    }
    state
}

#[tokio::test]
async fn every_operation_checks_credentials_ownership_and_scope() {
    let app = TestApp::spawn().await;
    let owner = app.user("matrix-owner@example.com").await;
    let intruder = app.user("matrix-intruder@example.com").await;
    let (owned, read_key) = make_resources(&app, &owner).await;
    let spec: Value = app
        .request(Method::GET, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operations = operations(&spec);
    assert!(operations.len() > 60, "{} operations", operations.len());

    let public: BTreeSet<String> = operations
        .iter()
        .filter(|o| !o.secured)
        .map(Operation::name)
        .collect();
    let expected: BTreeSet<String> = PUBLIC.iter().map(|s| s.to_string()).collect();
    assert_eq!(public, expected, "operations without a security scheme");

    let before = snapshot(&app).await;
    let mut failures = Vec::new();
    let (mut ownership_checks, mut scope_checks) = (0, 0);
    for operation in operations.iter().filter(|o| o.secured) {
        let name = operation.name();
        let path = fill(&operation.path, &owned, false);

        // No credentials.
        let (status, body) = call(&app, operation, &path, Credential::None).await;
        if status != StatusCode::UNAUTHORIZED || body["error"] != "unauthorized" {
            failures.push(format!("{name} without credentials: {status} {body}"));
        }

        // Another user on the owner's resources: as for a resource that does not exist.
        if operation.path.contains('{') {
            ownership_checks += 1;
            let (theirs, body) = call(&app, operation, &path, Credential::Bearer(&intruder)).await;
            let missing_path = fill(&operation.path, &owned, true);
            let (missing, _) = call(
                &app,
                operation,
                &missing_path,
                Credential::Bearer(&intruder),
            )
            .await;
            let hidden = theirs == StatusCode::NOT_FOUND
                || (theirs == missing
                    && matches!(
                        theirs,
                        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                    ));
            if !hidden {
                failures.push(format!(
                    "{name} by another user: {theirs} {body} (a missing id: {missing})"
                ));
            }
        }

        // The owner's read-only key.
        let (status, body) = call(&app, operation, &path, Credential::Key(&read_key)).await;
        let writes = !matches!(operation.method, Method::GET | Method::HEAD);
        let reading_post = [
            "/api/v1/executions/lookup",
            "/api/v1/jobs/scheduled/preview",
            "/api/v1/vectors/collections/{collection_id}/search",
        ]
        .contains(&operation.path.as_str());
        if writes && !reading_post {
            scope_checks += 1;
            if status != StatusCode::FORBIDDEN
                || !body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("write scope")
            {
                failures.push(format!("{name} with a read key: {status} {body}"));
            }
        } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            failures.push(format!("{name} (a read) with a read key: {status} {body}"));
        }
    }
    assert!(
        ownership_checks >= 35,
        "{ownership_checks} ownership checks"
    );
    assert!(scope_checks >= 30, "{scope_checks} scope checks");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let after = snapshot(&app).await;
    for (table, rows) in &before {
        assert_eq!(&after[table], rows, "{table} changed by refused requests");
    }
    app.stop().await;
}
