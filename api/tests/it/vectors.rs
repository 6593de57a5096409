//! Vector collections through HTTP: the seed's `TestVectorStoreIntegration`, each distance
//! strategy's order and scores, filters and thresholds, MMR, the dimension mismatch, a name
//! holding SQL, another owner's collection, re-ingesting and deleting documents, statistics and
//! their cache, the index built after the first load with the right operator class,
//! half-precision storage past 2,000 dimensions, and concurrent writers of one document.

use std::time::{Duration, Instant};

use kai_common::llm::servers::ModelServersConfig;
use kai_common::testing::fake_openai::{FakeOpenAi, stable_embedding};
use kai_common::vectors::write::{self, NewChunk};
use kai_common::vectors::{Collection, catalogue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const COLLECTIONS: &str = "/api/v1/vectors/collections";

/// The API alone, its embeddings server the fake (vectors of `dimensions`), building indexes
/// after `after_rows` chunks and 100 ms without writes.
async fn app(fake: &FakeOpenAi, after_rows: i64) -> TestApp {
    let root = fake.root.clone();
    TestApp::spawn_api_only_with(|config| {
        config.models = ModelServersConfig::all_at(&root);
        config.vector_index.after_rows = after_rows;
        config.vector_index.quiet = Duration::from_millis(100);
    })
    .await
}

async fn collection(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, created) = app.post_json(COLLECTIONS, token, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn add(app: &TestApp, token: &str, id: &str, documents: Value) -> (StatusCode, Value) {
    app.post_json(
        &format!("{COLLECTIONS}/{id}/documents"),
        token,
        &json!({ "documents": documents }),
    )
    .await
}

async fn search(app: &TestApp, token: &str, id: &str, body: Value) -> Value {
    let (status, found) = app
        .post_json(&format!("{COLLECTIONS}/{id}/search"), token, &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found
}

fn ids(found: &Value) -> Vec<&str> {
    found["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect()
}

/// The definition of the collection's approximate index, once built.
async fn index_definition(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'kai_vectors' AND indexname = $1",
    )
    .bind(format!("c_{}_embedding", id.replace('-', "")))
    .fetch_optional(&app.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_seeds_vector_store_test_passes_through_http() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("seed-vectors@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "test_docs", "embedding_dimension": 1536}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["distance_strategy"], "cosine");
    assert_eq!(created["index_type"], "hnsw");
    let (status, stored) = add(
        &app,
        &token,
        id,
        json!([{"content": "Test document 1", "metadata": {"source": "test"},
                "embedding": vec![0.1; 1536]}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");

    let (status, results) = app
        .get_json(&format!("{COLLECTIONS}/{id}/search?query=test&k=5"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(results["documents"].as_array().unwrap().len(), 1);
    assert_eq!(results["documents"][0]["content"], "Test document 1");
    assert_eq!(
        results["documents"][0]["metadata"],
        json!({"source": "test"})
    );
    // The text query was embedded by the deployment's embeddings server.
    let embedded = fake.received_at("/v1/embeddings");
    assert_eq!(embedded.len(), 1);
    assert_eq!(embedded[0].body["input"], json!(["test"]));
    app.stop().await;
}

#[tokio::test]
async fn each_distance_strategy_orders_and_scores_as_documented() {
    let fake = FakeOpenAi::start(None, 3).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("distances@example.com").await;
    let documents = json!([
        {"id": "east", "content": "east", "embedding": [1.0, 0.0, 0.0]},
        {"id": "north", "content": "north", "embedding": [0.0, 1.0, 0.0]},
        {"id": "near-east", "content": "near east", "embedding": [0.9, 0.1, 0.0]},
    ]);
    let expected = [
        ("cosine", [1.0, 0.9 / 0.82f64.sqrt(), 0.0]),
        (
            "l2",
            [1.0, 1.0 / (1.0 + 0.02f64.sqrt()), 1.0 / (1.0 + 2f64.sqrt())],
        ),
        ("inner_product", [1.0, 0.9, 0.0]),
    ];
    for (distance, scores) in expected {
        let created = collection(
            &app,
            &token,
            json!({"collection_name": distance, "embedding_dimension": 3,
                   "distance_strategy": distance}),
        )
        .await;
        let id = created["id"].as_str().unwrap();
        assert_eq!(
            add(&app, &token, id, documents.clone()).await.0,
            StatusCode::CREATED
        );
        let found = search(
            &app,
            &token,
            id,
            json!({"embedding": [1.0, 0.0, 0.0], "k": 3}),
        )
        .await;
        assert_eq!(ids(&found), ["east", "near-east", "north"], "{distance}");
        assert_eq!(found["distance_strategy"], distance);
        for (hit, score) in found["documents"].as_array().unwrap().iter().zip(scores) {
            let got = hit["score"].as_f64().unwrap();
            assert!((got - score).abs() < 1e-5, "{distance}: {got} vs {score}");
        }
        // A threshold leaves out what scores below it.
        let close = search(
            &app,
            &token,
            id,
            json!({"embedding": [1.0, 0.0, 0.0], "k": 3, "threshold": 0.85}),
        )
        .await;
        assert_eq!(ids(&close), ["east", "near-east"], "{distance}");
    }
    app.stop().await;
}

#[tokio::test]
async fn filters_select_by_metadata_and_mmr_trades_relevance_for_diversity() {
    let fake = FakeOpenAi::start(None, 3).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("filters@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "langs", "embedding_dimension": 3}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let documents = json!([
        {"id": "a", "content": "a", "embedding": [1.0, 0.0, 0.0], "metadata": {"lang": "en", "tags": ["x"]}},
        {"id": "a-copy", "content": "a again", "embedding": [0.999, 0.01, 0.0], "metadata": {"lang": "en"}},
        {"id": "b", "content": "b", "embedding": [0.8, 0.0, 0.6], "metadata": {"lang": "de", "tags": ["x", "y"]}},
        {"id": "c", "content": "c", "embedding": [0.0, 1.0, 0.0], "metadata": {"lang": "de"}},
    ]);
    assert_eq!(
        add(&app, &token, id, documents).await.0,
        StatusCode::CREATED
    );
    let german = search(
        &app,
        &token,
        id,
        json!({"embedding": [1.0, 0.0, 0.0], "k": 10, "filter": {"lang": "de"}}),
    )
    .await;
    assert_eq!(ids(&german), ["b", "c"]);
    // Containment reaches into arrays.
    let tagged = search(
        &app,
        &token,
        id,
        json!({"embedding": [1.0, 0.0, 0.0], "k": 10, "filter": {"tags": ["y"]}}),
    )
    .await;
    assert_eq!(ids(&tagged), ["b"]);
    // The GET form takes the filter as JSON text.
    let (status, by_get) = app
        .get_json(
            &format!("{COLLECTIONS}/{id}/search?query=q&k=10&filter=%7B%22lang%22%3A%22en%22%7D"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_get}");
    assert_eq!(by_get["documents"].as_array().unwrap().len(), 2);
    let (status, bad) = app
        .get_json(
            &format!("{COLLECTIONS}/{id}/search?query=q&filter=%5B1%5D"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("filter"), "{bad}");

    let similar = search(
        &app,
        &token,
        id,
        json!({"embedding": [1.0, 0.0, 0.2], "k": 2}),
    )
    .await;
    assert_eq!(ids(&similar), ["a", "a-copy"]);
    let diverse = search(
        &app,
        &token,
        id,
        json!({"embedding": [1.0, 0.0, 0.2], "k": 2, "search_type": "mmr"}),
    )
    .await;
    // The near-copy of the best match adds nothing: the relevant, different `b` comes second.
    assert_eq!(ids(&diverse), ["a", "b"], "{diverse}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_dimension_is_refused_saying_expected_and_got_and_stores_nothing() {
    let fake = FakeOpenAi::start(None, 3).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("dimensions@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "three", "embedding_dimension": 3}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (status, refused) = add(
        &app,
        &token,
        id,
        json!([{"id": "ok", "content": "fine", "embedding": [1.0, 0.0, 0.0]},
               {"id": "bad", "content": "short", "embedding": [1.0, 0.0]}]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["message"],
        "documents[1].embedding has 2 dimensions; the collection expects 3"
    );
    let (_, stats) = app
        .get_json(&format!("{COLLECTIONS}/{id}/stats"), &token)
        .await;
    assert_eq!(stats["chunks"], 0, "{stats}");
    // A body that is not a documents list says which field is wrong (read by serde straight
    // into the documents, not through a JSON tree).
    for (body, wrong) in [
        (
            json!({"documents": [{"content": "x", "embeddings": [1.0, 0.0, 0.0]}]}),
            "unknown field `embeddings`",
        ),
        (
            json!({"documents": [{"id": "no-content"}]}),
            "missing field `content`",
        ),
        (
            json!({"documents": [{"content": "x", "embedding": ["a", 0.0, 0.0]}]}),
            "invalid type: string \"a\", expected f32",
        ),
    ] {
        let (status, refused) = app
            .post_json(&format!("{COLLECTIONS}/{id}/documents"), &token, &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        let message = refused["message"].as_str().unwrap();
        assert!(message.contains(wrong), "{message}");
    }
    // A query vector of the wrong size, too.
    let (status, refused) = app
        .post_json(
            &format!("{COLLECTIONS}/{id}/search"),
            &token,
            &json!({"embedding": [1.0, 0.0, 0.0, 0.0]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["message"],
        "the query embedding has 4 dimensions; the collection expects 3"
    );
    // An embedder whose vectors do not fit the collection (the model is known for 1,536, the
    // server answers 3): said with the model's name.
    let wide = collection(
        &app,
        &token,
        json!({"collection_name": "openai-size", "embedding_dimension": 1536}),
    )
    .await;
    let (status, refused) = add(
        &app,
        &token,
        wide["id"].as_str().unwrap(),
        json!([{"content": "embed me"}]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["message"],
        "the embedder `text-embedding-3-small` returns 3 dimensions; the collection expects 1536"
    );
    // Bad collection fields name themselves.
    let (status, refused) = app
        .post_json(
            COLLECTIONS,
            &token,
            &json!({"collection_name": "wide", "embedding_dimension": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("index_type none")
    );
    let (status, _) = app
        .post_json(
            COLLECTIONS,
            &token,
            &json!({"collection_name": "x", "embedding_dimension": 3, "distance_strategy": "manhattan"}),
        )
        .await;
    assert!(status.is_client_error());
    app.stop().await;
}

#[tokio::test]
async fn a_name_holding_sql_is_stored_as_text_and_another_owner_gets_404() {
    let fake = FakeOpenAi::start(None, 2).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("sql-owner@example.com").await;
    let name = "docs\"; DROP TABLE users; --' OR 1=1";
    let created = collection(
        &app,
        &token,
        json!({"collection_name": name, "embedding_dimension": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["collection_name"], name);
    assert_eq!(
        add(
            &app,
            &token,
            id,
            json!([{"id": "d", "content": "c", "embedding": [1.0, 0.0]}])
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (_, list) = app.get_json(COLLECTIONS, &token).await;
    assert_eq!(list["collections"][0]["collection_name"], name);
    assert_eq!(list["collections"][0]["chunk_count"], 1);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(users, 1);
    // The same name again is a conflict.
    let (status, _) = app
        .post_json(
            COLLECTIONS,
            &token,
            &json!({"collection_name": name, "embedding_dimension": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let other = app.user("sql-other@example.com").await;
    let base = format!("{COLLECTIONS}/{id}");
    for (method, path, body) in [
        (Method::GET, base.clone(), None),
        (Method::GET, format!("{base}/stats"), None),
        (Method::GET, format!("{base}/search?query=x"), None),
        (
            Method::POST,
            format!("{base}/search"),
            Some(json!({"embedding": [1.0, 0.0]})),
        ),
        (
            Method::POST,
            format!("{base}/documents"),
            Some(json!({"documents": [{"content": "x", "embedding": [1.0, 0.0]}]})),
        ),
        (
            Method::DELETE,
            format!("{base}/documents?document_ids=d"),
            None,
        ),
        (Method::DELETE, base.clone(), None),
    ] {
        let mut request = app.request(method.clone(), &path, Some(&other));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (_, others) = app.get_json(COLLECTIONS, &other).await;
    assert_eq!(others["collections"], json!([]));
    // Other owners may use the same name.
    collection(
        &app,
        &other,
        json!({"collection_name": name, "embedding_dimension": 2}),
    )
    .await;
    let (_, still) = app.get_json(&format!("{base}/stats"), &token).await;
    assert_eq!(still["chunks"], 1);
    app.stop().await;
}

#[tokio::test]
async fn re_ingesting_replaces_chunks_and_deleting_a_document_removes_them_all() {
    let fake = FakeOpenAi::start(None, 4).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("reingest@example.com").await;
    // Dimension 4 with the default model: the fake is asked for 4 dimensions.
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "manual", "embedding_dimension": 4}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let chunks = |texts: &[&str]| {
        json!(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"id": "manual", "chunk_index": i, "content": t}))
                .collect::<Vec<_>>()
        )
    };
    let (status, first) = add(&app, &token, id, chunks(&["one", "two", "three"])).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["chunks_written"], 3);
    assert_eq!(fake.received_at("/v1/embeddings")[0].body["dimensions"], 4);
    let (_, second) = add(&app, &token, id, chunks(&["one", "two, revised"])).await;
    assert_eq!(second["chunks_replaced"], 3);
    // Documents without an id are named by their content: the same text twice is one document.
    for _ in 0..2 {
        add(&app, &token, id, json!([{"content": "same text"}])).await;
    }
    let (_, stats) = app
        .get_json(&format!("{COLLECTIONS}/{id}/stats"), &token)
        .await;
    assert_eq!(
        (stats["documents"].clone(), stats["chunks"].clone()),
        (json!(2), json!(3)),
        "{stats}"
    );
    let found = search(
        &app,
        &token,
        id,
        json!({"embedding": stable_embedding("two, revised", 4), "k": 1}),
    )
    .await;
    assert_eq!(found["documents"][0]["content"], "two, revised");
    assert_eq!(found["documents"][0]["chunk_index"], 1);

    let response = app
        .request(
            Method::DELETE,
            &format!("{COLLECTIONS}/{id}/documents?document_ids=manual"),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, stats) = app
        .get_json(&format!("{COLLECTIONS}/{id}/stats"), &token)
        .await;
    assert_eq!(
        (stats["documents"].clone(), stats["chunks"].clone()),
        (json!(1), json!(1)),
        "{stats}"
    );
    // Deleting by document id goes through the (document_id, chunk_index) key's index.
    let key: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'kai_vectors' AND indexname = $1",
    )
    .bind(format!("c_{}_chunk", id.replace('-', "")))
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert!(key.contains("(document_id, chunk_index)"), "{key}");
    app.stop().await;
}

/// The collection behind `id`, as the write path reads it.
async fn stored_collection(app: &TestApp, id: &str) -> Collection {
    let id: uuid::Uuid = id.parse().unwrap();
    let owner: uuid::Uuid =
        sqlx::query_scalar("SELECT user_id FROM vector_collections WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    catalogue::get(&app.state.db, owner, id).await.unwrap()
}

fn chunk(document: &str, index: i32) -> NewChunk {
    NewChunk {
        document_id: document.to_owned(),
        chunk_index: index,
        content: format!("{document} {index}"),
        metadata: json!({}),
        embedding: vec![1.0, index as f32],
    }
}

#[tokio::test]
async fn writers_of_one_document_take_turns() {
    let fake = FakeOpenAi::start(None, 2).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("turns@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "turns", "embedding_dimension": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let stored = stored_collection(&app, id).await;
    // A first writer of document `a` (chunks 0 to 2), not yet committed.
    let mut first = app.state.db.begin().await.unwrap();
    let chunks: Vec<NewChunk> = (0..3).map(|i| chunk("a", i)).collect();
    write::replace_documents_in(&mut first, &stored, &chunks, false)
        .await
        .unwrap();
    // A second writer of `a`, with chunk indexes the first does not use, waits for it (on the
    // document's row: writers of other documents do not, as the benchmark shows)...
    let db = app.state.db.clone();
    let collection = stored.clone();
    let second = tokio::spawn(async move {
        write::replace_documents(&db, &collection, &[chunk("a", 5)], false).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second writer of `a` did not wait"
    );
    first.commit().await.unwrap();
    // ...then replaces everything the first stored: `a` is the second version alone.
    let summary = second.await.unwrap().unwrap();
    assert_eq!(summary.chunks_replaced, 3);
    write::replace_documents(&app.state.db, &stored, &[chunk("b", 0)], false)
        .await
        .unwrap();
    let chunks: Vec<(String, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT document_id, chunk_index FROM {} ORDER BY 1, 2",
        stored.table()
    )))
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(chunks, [("a".to_owned(), 5), ("b".to_owned(), 0)]);
    let (_, stats) = app
        .get_json(&format!("{COLLECTIONS}/{id}/stats"), &token)
        .await;
    assert_eq!(
        (stats["documents"].clone(), stats["chunks"].clone()),
        (json!(2), json!(2))
    );
    let count: i64 =
        sqlx::query_scalar("SELECT document_count FROM vector_collections WHERE id = $1")
            .bind(stored.id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(count, 2);
    app.stop().await;
}

#[tokio::test]
async fn stats_are_cached_until_the_next_write() {
    let fake = FakeOpenAi::start(None, 2).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("stats@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "s", "embedding_dimension": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let stats_path = format!("{COLLECTIONS}/{id}/stats");
    let (_, first) = app.get_json(&stats_path, &token).await;
    assert_eq!(
        (first["cached"].clone(), first["chunks"].clone()),
        (json!(false), json!(0))
    );
    assert!(first["total_bytes"].as_i64().unwrap() > 0);
    let (_, again) = app.get_json(&stats_path, &token).await;
    assert_eq!(again["cached"], true);
    add(
        &app,
        &token,
        id,
        json!([{"id": "x", "content": "x", "embedding": [0.0, 1.0]}]),
    )
    .await;
    let (_, after) = app.get_json(&stats_path, &token).await;
    assert_eq!(
        (after["cached"].clone(), after["chunks"].clone()),
        (json!(false), json!(1))
    );
    app.stop().await;
}

/// Waits until the collection's index is built.
async fn wait_for_index(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, collection) = app.get_json(&format!("{COLLECTIONS}/{id}"), token).await;
        if collection["index_status"] == "ready" {
            return collection;
        }
        assert!(Instant::now() < deadline, "no index: {collection}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_index_is_built_after_the_first_load_with_the_distances_operator_class() {
    let fake = FakeOpenAi::start(None, 8).await;
    let app = app(&fake, 20).await;
    let token = app.user("index@example.com").await;
    let cases = [
        (
            json!({"collection_name": "hnsw-l2", "embedding_dimension": 8, "distance_strategy": "l2",
                "index_params": {"m": 8, "ef_construction": 32}}),
            [
                "USING hnsw",
                "vector_l2_ops",
                "m='8'",
                "ef_construction='32'",
            ],
        ),
        (
            json!({"collection_name": "ivf-ip", "embedding_dimension": 8, "distance_strategy": "inner_product",
                "index_type": "ivfflat"}),
            ["USING ivfflat", "vector_ip_ops", "lists='1'", "embedding"],
        ),
        (
            json!({"collection_name": "wide", "embedding_dimension": 2100}),
            ["USING hnsw", "halfvec_cosine_ops", "embedding", "hnsw"],
        ),
    ];
    for (body, expected) in cases {
        let created = collection(&app, &token, body).await;
        let id = created["id"].as_str().unwrap();
        let dimension = created["embedding_dimension"].as_u64().unwrap() as usize;
        assert_eq!(created["index_status"], "deferred");
        // Ten rows: still exact search, no index.
        let rows = |from: usize, to: usize| {
            json!(
                (from..to)
                    .map(
                        |i| json!({"id": format!("d{i}"), "content": format!("text {i}"),
                               "embedding": stable_embedding(&format!("text {i}"), dimension)})
                    )
                    .collect::<Vec<_>>()
            )
        };
        add(&app, &token, id, rows(0, 10)).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(index_definition(&app, id).await, None);
        // Past the threshold, once writes pause, the index is built.
        add(&app, &token, id, rows(10, 40)).await;
        let ready = wait_for_index(&app, &token, id).await;
        let definition = index_definition(&app, id).await.expect("an index");
        for part in expected {
            assert!(definition.contains(part), "{part} in {definition}");
        }
        if dimension > 2000 {
            assert_eq!(ready["storage"], "halfvec");
        }
        let (_, stats) = app
            .get_json(&format!("{COLLECTIONS}/{id}/stats"), &token)
            .await;
        assert!(stats["vector_index_bytes"].as_i64().unwrap() > 0, "{stats}");
        assert!(stats["index_build_ms"].is_i64(), "{stats}");
        // The indexed collection finds an exact match first.
        let found = search(
            &app,
            &token,
            id,
            json!({"embedding": stable_embedding("text 17", dimension), "k": 3}),
        )
        .await;
        assert_eq!(ids(&found)[0], "d17", "{found}");
    }
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_collection_drops_its_table() {
    let fake = FakeOpenAi::start(None, 2).await;
    let app = app(&fake, 10_000).await;
    let token = app.user("drop@example.com").await;
    let created = collection(
        &app,
        &token,
        json!({"collection_name": "gone", "embedding_dimension": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let table = format!("kai_vectors.c_{}", id.replace('-', ""));
    let exists = |db: sqlx::PgPool, table: String| async move {
        sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(&db)
            .await
            .unwrap()
            .is_some()
    };
    assert!(exists(app.state.db.clone(), table.clone()).await);
    let response = app
        .request(Method::DELETE, &format!("{COLLECTIONS}/{id}"), Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!exists(app.state.db.clone(), table).await);
    let (status, _) = app.get_json(&format!("{COLLECTIONS}/{id}"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An embedder credential that is not yours is refused when the collection is created.
    let (status, refused) = app
        .post_json(
            COLLECTIONS,
            &token,
            &json!({"collection_name": "e", "embedding_dimension": 2,
                    "embedder": {"credential_id": "nobodys", "model": "m"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("embedder.credential_id")
    );
    app.stop().await;
}
