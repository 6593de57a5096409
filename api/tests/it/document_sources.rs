//! Document sources processed by the worker: end to end with progress reaching 100 % and each
//! failed page's error; processed again without duplicates; one job at a time; bad
//! configurations refused naming the field; another owner's source 404. (A worker killed
//! mid-job: `worker/tests/it/document_jobs.rs`, with real processes.)

use std::time::{Duration, Instant};

use kai_common::llm::servers::ModelServersConfig;
use kai_common::testing::fake_openai::FakeOpenAi;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::site::{ExampleSite, article};

const SOURCES: &str = "/api/v1/documents/sources";

/// The API alone (workers are started by each test), models at `fake`.
async fn api(fake: &FakeOpenAi) -> TestApp {
    let root = fake.root.clone();
    TestApp::spawn_api_only_with(|config| config.models = ModelServersConfig::all_at(&root)).await
}

async fn worker(
    app: &mut TestApp,
    fake: &FakeOpenAi,
    site: &ExampleSite,
) -> tokio::task::AbortHandle {
    let root = fake.root.clone();
    let outbound = site.outbound();
    app.start_abortable_worker(|config| {
        config.models = ModelServersConfig::all_at(&root);
        config.outbound = outbound;
        config.ack_wait = Duration::from_secs(2);
    })
    .await
}

async fn source(app: &TestApp, token: &str, urls: &[String]) -> String {
    let (status, created) = app
        .post_json(
            SOURCES,
            token,
            &json!({"name": "docs", "source_type": "web_scraper",
                    "source_config": {"urls": urls, "collection_name": "site", "chunk_size": 300,
                                      "chunk_overlap": 50, "retries": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn status(app: &TestApp, token: &str, id: &str) -> Value {
    let (code, status) = app.get_json(&format!("{SOURCES}/{id}/status"), token).await;
    assert_eq!(code, StatusCode::OK, "{status}");
    status
}

async fn wait_until(app: &TestApp, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = status(app, token, id).await;
        if done(&current) {
            return current;
        }
        assert!(Instant::now() < deadline, "not reached: {current}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(status: &Value) -> bool {
    matches!(
        status["job"]["status"].as_str(),
        Some("completed" | "failed")
    )
}

async fn chunk_count(app: &TestApp, token: &str) -> i64 {
    let (_, list) = app.get_json("/api/v1/vectors/collections", token).await;
    list["collections"][0]["chunk_count"].as_i64().unwrap()
}

fn pages(site: &ExampleSite, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            site.page(
                &format!("docs.example.com/p{i}"),
                "text/html",
                article(&format!("Page {i}"), &format!("topic{i}"), 6),
            );
            format!("https://docs.example.com/p{i}")
        })
        .collect()
}

#[tokio::test]
async fn a_source_is_processed_end_to_end_and_again_without_duplicates() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = ExampleSite::start().await;
    let mut urls = pages(&site, 3);
    urls.push("https://docs.example.com/missing".into());
    let mut app = api(&fake).await;
    worker(&mut app, &fake, &site).await;
    let token = app.user("sources@example.com").await;
    let id = source(&app, &token, &urls).await;
    assert_eq!(status(&app, &token, &id).await["job"], Value::Null);

    let (code, started) = app
        .post_json(&format!("{SOURCES}/{id}/process"), &token, &json!({}))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["total_items"], 4);
    let done = wait_until(&app, &token, &id, finished).await;
    let job = &done["job"];
    assert_eq!(job["status"], "completed", "{done}");
    assert_eq!(job["progress_percentage"], 100);
    assert_eq!(
        (job["processed_items"].clone(), job["failed_items"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(job["errors"][0]["item"], "https://docs.example.com/missing");
    assert_eq!(job["errors"][0]["error"], "the server answered 404");
    assert_eq!(done["processing_status"], "completed");
    assert_eq!(done["document_count"], 3);
    let stored = job["chunks_stored"].as_i64().unwrap();
    assert!(stored >= 6, "{job}");
    assert_eq!(chunk_count(&app, &token).await, stored);

    // Again: the same pages replace their chunks.
    let (code, _) = app
        .post_json(&format!("{SOURCES}/{id}/process"), &token, &json!({}))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let again = wait_until(&app, &token, &id, |s| {
        finished(s) && s["job"]["job_id"] != job["job_id"]
    })
    .await;
    assert_eq!(again["job"]["chunks_stored"], stored);
    assert_eq!(chunk_count(&app, &token).await, stored);

    // One job at a time.
    site.set_delay(Duration::from_millis(300));
    let (code, _) = app
        .post_json(&format!("{SOURCES}/{id}/process"), &token, &json!({}))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (code, refused) = app
        .post_json(&format!("{SOURCES}/{id}/process"), &token, &json!({}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    app.stop().await;
}

#[tokio::test]
async fn sources_are_checked_and_owned() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = api(&fake).await;
    let token = app.user("source-checks@example.com").await;
    for (body, expected) in [
        (
            json!({"source_type": "web_scraper", "source_config": {"urls": ["https://a.example"]}}),
            "source_config.collection_name is required",
        ),
        (
            json!({"source_type": "web_scraper", "source_config": {"collection_name": "kb"}}),
            "nothing to process",
        ),
        (
            json!({"source_type": "api", "source_config": {"collection_name": "kb",
            "documents": [{"content": "x"}], "chunk_size": 100, "chunk_overlap": 100}}),
            "chunk_overlap (100) must be smaller than chunk_size (100)",
        ),
        (
            json!({"source_type": "rss", "source_config": {}}),
            "source_type `rss`",
        ),
        (
            json!({"source_type": "web_scraper", "source_config": {"collection_name": "kb",
            "urls": ["file:///etc/passwd"]}}),
            "http(s)",
        ),
    ] {
        let (status, refused) = app.post_json(SOURCES, &token, &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused}"
        );
        let message = refused["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
    let (status, created) = app
        .post_json(
            SOURCES,
            &token,
            &json!({"source_type": "api", "source_config": {"collection_name": "kb",
                    "documents": [{"id": "a", "content": "Alpha."}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (_, list) = app.get_json(&format!("{SOURCES}?type=api"), &token).await;
    assert_eq!(list["sources"].as_array().unwrap().len(), 1);
    let other = app.user("source-other@example.com").await;
    for (method, path) in [
        (Method::GET, format!("{SOURCES}/{id}")),
        (Method::GET, format!("{SOURCES}/{id}/status")),
        (Method::POST, format!("{SOURCES}/{id}/process")),
        (Method::DELETE, format!("{SOURCES}/{id}")),
    ] {
        let response = app
            .request(method.clone(), &path, Some(&other))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (_, theirs) = app.get_json(SOURCES, &other).await;
    assert_eq!(theirs["sources"], json!([]));
    app.stop().await;
}
