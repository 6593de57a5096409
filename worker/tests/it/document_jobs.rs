//! A document source's job survives `kill -9` of the worker running it: another worker takes
//! the redelivered job, carries on from the first page not stored, and the collection ends with
//! every chunk once; pages stored before the kill are not embedded again.

use std::time::{Duration, Instant};

use kai_common::testing::fake_openai::FakeOpenAi;
use poem::web::Path;
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener};
use serde_json::{Value, json};

use crate::harness::Harness;

const ACK_WAIT_SECS: u64 = 2;
const PAGES: usize = 8;

/// Pages `/p/{n}` on loopback, each answered after `delay`; the server's base URL.
async fn pages(delay: Duration) -> String {
    #[handler]
    async fn page(
        Path(n): Path<usize>,
        delay: poem::web::Data<&Duration>,
    ) -> poem::web::Html<String> {
        tokio::time::sleep(**delay).await;
        let paragraphs: String = (0..6)
            .map(|i| format!("<p>Page {n}, paragraph {i}: words about topic {n} that fill a chunk of text.</p>"))
            .collect();
        poem::web::Html(format!(
            "<html><body><h1>Page {n}</h1>{paragraphs}</body></html>"
        ))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let app = Route::new().at("/p/:n", get(page)).data(delay);
    tokio::spawn(Server::new(TcpListener::bind(addr)).run(app));
    tokio::time::sleep(Duration::from_millis(100)).await;
    format!("http://{addr}")
}

async fn status(harness: &Harness, token: &str, source: &str) -> Value {
    harness
        .client
        .get(format!(
            "{}/api/v1/documents/sources/{source}/status",
            harness.base()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_until(
    harness: &Harness,
    token: &str,
    source: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let current = status(harness, token, source).await;
        if done(&current) {
            return current;
        }
        assert!(Instant::now() < deadline, "not reached: {current}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_document_job_stores_every_chunk_once() {
    let harness = Harness::start().await;
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = pages(Duration::from_millis(250)).await;
    let token = harness.token("documents@example.com").await;
    let urls: Vec<String> = (0..PAGES).map(|n| format!("{site}/p/{n}")).collect();
    let source = harness
        .post(
            &token,
            "/api/v1/documents/sources",
            &json!({"source_type": "web_scraper", "source_config": {
                "urls": urls, "collection_name": "site", "chunk_size": 300, "chunk_overlap": 50,
                "retries": 0, "respect_robots": false}}),
        )
        .await;
    let source = source["id"].as_str().unwrap().to_owned();
    let models = [("KAI_OPENAI_BASE_URL", format!("{}/v1", fake.root))];
    let mut first = harness.spawn_worker_with(ACK_WAIT_SECS, &models);
    harness
        .post(
            &token,
            &format!("/api/v1/documents/sources/{source}/process"),
            &json!({}),
        )
        .await;

    let midway = wait_until(&harness, &token, &source, |s| {
        s["job"]["processed_items"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let at_kill = status(&harness, &token, &source).await["job"]["processed_items"]
        .as_i64()
        .unwrap();
    assert!(
        at_kill < PAGES as i64,
        "the kill must come before the end: {midway}"
    );

    let _second = harness.spawn_worker_with(ACK_WAIT_SECS, &models);
    let done = wait_until(&harness, &token, &source, |s| {
        matches!(s["job"]["status"].as_str(), Some("completed" | "failed"))
    })
    .await;
    let job = &done["job"];
    assert_eq!(job["status"], "completed", "{done}");
    assert_eq!(job["processed_items"], PAGES);
    assert_eq!(job["progress_percentage"], 100);

    // Every chunk once: the collection holds what the job says it stored, one row per
    // (page, chunk).
    let stored = job["chunks_stored"].as_i64().unwrap();
    let (rows, distinct): (i64, i64) = {
        let collection: uuid::Uuid =
            sqlx::query_scalar("SELECT id FROM vector_collections WHERE collection_name = 'site'")
                .fetch_one(&harness.state.db)
                .await
                .unwrap();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(DISTINCT (document_id, chunk_index)) FROM kai_vectors.c_{}",
            collection.simple()
        )))
        .fetch_one(&harness.state.db)
        .await
        .unwrap()
    };
    assert_eq!((rows, distinct), (stored, stored));
    // One embeddings request per page; only the page in flight at the kill may have been
    // embedded twice.
    let firsts: Vec<String> = fake
        .received_at("/v1/embeddings")
        .iter()
        .map(|r| r.body["input"][0].as_str().unwrap().to_owned())
        // The embedder's size, asked once before the collection was created.
        .filter(|text| text != "dimension probe")
        .collect();
    let mut unique = firsts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), PAGES);
    assert!(
        firsts.len() - unique.len() <= 1,
        "{} pages embedded twice",
        firsts.len() - unique.len()
    );
    eprintln!(
        "killed after {at_kill} of {PAGES} pages; {} embedding requests",
        firsts.len()
    );
    harness.stop().await;
}
