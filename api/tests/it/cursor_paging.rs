//! Cursor pagination of the growing listings and the execution lookup: pages over rows that share
//! one timestamp neither skip nor repeat a row, and a cursor is refused with 400 when malformed,
//! combined with an offset, or taken from another listing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

/// Rows a batch writes with one timestamp: more than a page, so pages split inside the tie.
const TIED_ROWS: usize = 23;

async fn user_id(app: &TestApp, email: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

/// `count` executions of `workflow` all started at `at`, as one write batch records them.
async fn tied_executions(
    app: &TestApp,
    (workflow, user): (Uuid, Uuid),
    at: DateTime<Utc>,
    count: usize,
) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, \
            trigger_type, status, inputs, enqueued_at, started_at, completed_at) \
         SELECT id, $2, 1, $3, 'manual', 'completed', '{}', $4, $4, $4 FROM unnest($1::uuid[]) id",
    )
    .bind(&ids)
    .bind(workflow)
    .bind(user)
    .bind(at)
    .execute(&app.state.db)
    .await
    .unwrap();
    ids
}

/// Walks a listing whose next cursor is in the `X-Next-Cursor` header; returns every row's id
/// and how many pages it took.
async fn walk_by_header(app: &TestApp, token: &str, path: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let response = app
            .request(Method::GET, &url, Some(token))
            .send()
            .await
            .unwrap();
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, page) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        pages += 1;
        ids.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match next {
            Some(next) => cursor = Some(next),
            None => return (ids, pages),
        }
    }
}

/// Walks a listing answering `{items, next_cursor}`.
async fn walk_by_field(app: &TestApp, token: &str, path: &str) -> (Vec<Value>, usize) {
    let (mut items, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let (status, page) = app.get_json(&url, token).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (items, pages),
        }
    }
}

fn assert_each_once(listed: &[String], expected: &[Uuid]) {
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a row repeated: {listed:?}");
    let expected: HashSet<String> = expected.iter().map(Uuid::to_string).collect();
    let listed: HashSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed, expected, "rows skipped or foreign");
}

#[tokio::test]
async fn cursor_pages_over_rows_sharing_a_timestamp_neither_skip_nor_repeat() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("tied@example.com").await;
    let user = user_id(&app, "tied@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let workflow: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    let at = Utc::now() - chrono::Duration::minutes(5);
    let owner = (workflow, user);
    // Rows either side of the tie, so the walk crosses into and out of it.
    let later = tied_executions(&app, owner, at + chrono::Duration::seconds(1), 2).await;
    let tied = tied_executions(&app, owner, at, TIED_ROWS).await;
    let earlier = tied_executions(&app, owner, at - chrono::Duration::seconds(1), 1).await;
    let ids: Vec<Uuid> = [later.clone(), tied.clone(), earlier].concat();

    let listing = format!("/api/v1/workflows/{workflow}/executions?limit=4");
    let (listed, pages) = walk_by_header(&app, &token, &listing).await;
    assert_each_once(&listed, &ids);
    assert_eq!(pages, ids.len().div_ceil(4));
    assert_each_once(&listed[..2], &later);
    assert_eq!(
        listed.last().unwrap(),
        &ids.last().unwrap().to_string(),
        "newest first"
    );

    let summaries = format!("/api/v1/workflows/{workflow}/executions/summaries?limit=5");
    let (items, _) = walk_by_field(&app, &token, &summaries).await;
    let listed: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_each_once(&listed, &ids);
    assert!(
        items[0].get("inputs").is_none(),
        "summaries carry no inputs"
    );
    assert_eq!(items[0]["status"], "completed");

    // Filters keep the cursor's order: the tie alone, by time range.
    let tie_only = format!(
        "/api/v1/workflows/{workflow}/executions?limit=6&start_date={}&end_date={}",
        at.to_rfc3339().replace('+', "%2B"),
        (at + chrono::Duration::milliseconds(1))
            .to_rfc3339()
            .replace('+', "%2B"),
    );
    let (listed, _) = walk_by_header(&app, &token, &tie_only).await;
    assert_each_once(&listed, &tied);
    app.stop().await;
}

#[tokio::test]
async fn dead_letters_sharing_a_timestamp_page_by_cursor_without_a_recount() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("dlq-pages@example.com").await;
    let user = user_id(&app, "dlq-pages@example.com").await;
    let ids: Vec<Uuid> = (0..TIED_ROWS).map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "INSERT INTO dead_letters (id, user_id, subject, reason, payload, deliveries, created_at) \
         SELECT id, $2, 'kai.jobs.webhook', 'test', '\\x00', 5, now() FROM unnest($1::uuid[]) id",
    )
    .bind(&ids)
    .bind(user)
    .execute(&app.state.db)
    .await
    .unwrap();
    let (first_status, first) = app.get_json("/api/v1/dlq?limit=10", &token).await;
    assert_eq!(first_status, StatusCode::OK);
    assert_eq!(first["total"], TIED_ROWS, "the first page counts");
    let (items, pages) = walk_by_field(&app, &token, "/api/v1/dlq?limit=10").await;
    let listed: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_each_once(&listed, &ids);
    assert_eq!(pages, 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get_json(&format!("/api/v1/dlq?limit=10&cursor={cursor}"), &token)
        .await;
    assert!(
        second["total"].is_null(),
        "a cursor page does not count again: {second}"
    );
    let (_, replayed) = app.get_json("/api/v1/dlq?replayed=true", &token).await;
    assert_eq!(replayed["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_is_refused_when_malformed_combined_with_offset_or_from_another_listing() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("cursors@example.com").await;
    let user = user_id(&app, "cursors@example.com").await;
    let mut workflows = Vec::new();
    for _ in 0..2 {
        let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
        let workflow: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
        tied_executions(&app, (workflow, user), Utc::now(), 5).await;
        workflows.push(workflow);
    }
    let (first, other) = (workflows[0], workflows[1]);
    let response = app
        .request(
            Method::GET,
            &format!("/api/v1/workflows/{first}/executions?limit=2"),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    let cursor = response.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_owned();

    let refused = [
        (
            format!("/api/v1/workflows/{first}/executions?cursor=not-a-cursor"),
            "not a cursor",
        ),
        (
            format!(
                "/api/v1/workflows/{first}/executions?cursor={}",
                &cursor[..cursor.len() - 3]
            ),
            "not a cursor",
        ),
        (
            format!("/api/v1/workflows/{first}/executions?cursor={cursor}&offset=2"),
            "offset",
        ),
        (
            format!("/api/v1/workflows/{other}/executions?cursor={cursor}"),
            "another listing",
        ),
        (format!("/api/v1/dlq?cursor={cursor}"), "another listing"),
    ];
    for (path, says) in refused {
        let (status, body) = app.get_json(&path, &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default().to_owned() + &body.to_string();
        assert!(
            message.contains("cursor") && message.contains(says),
            "{path}: {body}"
        );
    }
    // The summaries listing continues the full listing's cursor (same order, same listing).
    let (status, _) = app
        .get_json(
            &format!("/api/v1/workflows/{first}/executions/summaries?cursor={cursor}"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_lookup_answers_which_ids_exist_for_their_owner_only() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("lookup@example.com").await;
    let stranger = app.user("lookup-stranger@example.com").await;
    let user = user_id(&app, "lookup@example.com").await;
    let workflow = app.create_workflow(&token, &lone_webhook_workflow()).await;
    let workflow: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    let ids = tied_executions(&app, (workflow, user), Utc::now(), 2).await;
    let unknown = Uuid::now_v7();
    let asked = json!({"ids": [ids[0], unknown, ids[1], ids[0]]});

    let (status, answer) = app
        .post_json("/api/v1/executions/lookup", &token, &asked)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let found: HashSet<&str> = answer["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        found,
        HashSet::from([ids[0].to_string().as_str(), ids[1].to_string().as_str()])
    );
    assert_eq!(answer["missing"], json!([unknown]));
    assert_eq!(answer["found"][0]["status"], "completed");

    let (_, theirs) = app
        .post_json("/api/v1/executions/lookup", &stranger, &asked)
        .await;
    assert_eq!(
        theirs["found"],
        json!([]),
        "another owner's executions are not found"
    );
    assert_eq!(theirs["missing"].as_array().unwrap().len(), 3);

    for bad in [json!({"ids": []}), json!({"ids": vec![Uuid::nil(); 5001]})] {
        let (status, body) = app
            .post_json("/api/v1/executions/lookup", &token, &bad)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains("5000"), "{body}");
    }
    app.stop().await;
}
