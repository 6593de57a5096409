//! The retrieval exports run unchanged through the queue: `rag-pipeline.json` (scrape → chunk →
//! embed → store, again without duplicates), `RAG-Usage-Flow.json` (an agent answering with the
//! retriever tool, reranked), `test.json` (load → split → store → rerank → answer with sources)
//! and `ingestion_workflow.json` (from its timer); the scraper's robots.txt and SSRF refusals and
//! its two requests per host. `example.com` is the local `ExampleSite`, the models the fake.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kai_common::llm::servers::ModelServersConfig;
use kai_common::testing::fake_openai::{FakeOpenAi, Scripted};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::site::{ExampleSite, article};

/// The API and a worker whose model servers are `fake` and whose web is `site`.
async fn app(fake: &FakeOpenAi, site: &ExampleSite) -> TestApp {
    let root = fake.root.clone();
    let mut app = TestApp::spawn_api_only_with(|config| {
        config.models = ModelServersConfig::all_at(&root);
    })
    .await;
    let outbound = site.outbound();
    app.start_worker_with(|config| {
        config.models = ModelServersConfig::all_at(&root);
        config.outbound = outbound;
    })
    .await;
    app
}

/// An export exactly as KAI-Fusion wrote it.
fn export(name: &str) -> Value {
    let path = format!(
        "{}/tests/it/fixtures/kai-fusion/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn import(app: &TestApp, token: &str, name: &str) -> String {
    let (status, created) = app
        .post_json("/api/v1/workflows", token, &export(name))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{name}: {created}");
    created["id"].as_str().unwrap().to_owned()
}

fn node<'a>(execution: &'a Value, id_prefix: &str) -> &'a Value {
    execution["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"].as_str().unwrap().starts_with(id_prefix))
        .unwrap_or_else(|| panic!("no node {id_prefix} in {execution}"))
}

async fn collection_named(app: &TestApp, token: &str, name: &str) -> Value {
    let (_, list) = app.get_json("/api/v1/vectors/collections", token).await;
    list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection_name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no collection {name} in {list}"))
}

#[tokio::test]
async fn rag_pipeline_scrapes_chunks_embeds_and_stores_and_again_without_duplicates() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = ExampleSite::start().await;
    site.page(
        "docs.example.com/robots.txt",
        "text/plain",
        "User-agent: *\nDisallow: /private\n",
    );
    site.page(
        "docs.example.com/guide",
        "text/html",
        article("The Guide", "installation", 20),
    );
    let app = app(&fake, &site).await;
    let token = app.user("rag-pipeline@example.com").await;
    let id = import(&app, &token, "rag-pipeline.json").await;
    let inputs = json!({"input": "https://docs.example.com/guide", "collection_name": "kb"});

    let first = app.execute_and_wait(&token, &id, inputs.clone()).await;
    assert_eq!(first["status"], "completed", "{first}");
    let scraped = &node(&first, "WebScraper")["outputs"];
    let page = &scraped["documents"][0];
    assert_eq!(page["metadata"]["source"], "https://docs.example.com/guide");
    assert_eq!(page["metadata"]["title"], "The Guide");
    let text = page["page_content"].as_str().unwrap();
    assert!(
        text.starts_with("The Guide\nParagraph 0 about installation"),
        "{text}"
    );
    assert!(
        !text.contains("Home | Blog") && !text.contains("tracking"),
        "{text}"
    );
    let split = &node(&first, "ChunkSplitter")["outputs"];
    let chunks = split["stats"]["total_chunks"].as_u64().unwrap();
    assert!(chunks >= 3, "{split}");
    assert_eq!(split["chunks"][1]["metadata"]["chunk_index"], 1);
    let stored = &node(&first, "VectorStoreOrchestrator")["outputs"]["storage_stats"];
    assert_eq!(stored["chunks_written"], chunks, "{stored}");
    assert_eq!(stored["embedding_dimension"], 1536);
    assert_eq!(
        first["outputs"]["storage_stats"]["chunks_written"], chunks,
        "{first}"
    );

    // The same page again replaces its chunks.
    let second = app.execute_and_wait(&token, &id, inputs).await;
    assert_eq!(second["status"], "completed", "{second}");
    let stored = &node(&second, "VectorStoreOrchestrator")["outputs"]["storage_stats"];
    assert_eq!(stored["chunks_replaced"], chunks, "{stored}");
    let kb = collection_named(&app, &token, "kb").await;
    assert_eq!(kb["chunk_count"], chunks, "{kb}");
    assert_eq!(kb["embedder"]["model"], "text-embedding-3-small");

    // Without a collection name anywhere, the run fails saying so.
    let bare = app
        .execute_and_wait(
            &token,
            &id,
            json!({"input": "https://docs.example.com/guide"}),
        )
        .await;
    assert_eq!(bare["status"], "failed");
    assert!(
        bare["error"].as_str().unwrap().contains("collection_name"),
        "{bare}"
    );
    app.stop().await;
}

/// Stores the refund policy in `kb` through the API.
async fn refund_policy(app: &TestApp, token: &str) {
    let (status, created) = app
        .post_json(
            "/api/v1/vectors/collections",
            token,
            &json!({"collection_name": "kb", "embedding_dimension": 1536}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, stored) = app
        .post_json(
            &format!("/api/v1/vectors/collections/{id}/documents"),
            token,
            &json!({"documents": [
                {"id": "policy", "content": "refund window", "metadata": {"source": "policy.md"}},
                {"id": "shipping", "content": "Shipping takes five days.", "metadata": {"source": "shipping.md"}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
}

#[tokio::test]
async fn rag_usage_flow_answers_with_the_retriever_tool_reranked() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = ExampleSite::start().await;
    let app = app(&fake, &site).await;
    let token = app.user("rag-usage@example.com").await;
    refund_policy(&app, &token).await;
    let id = import(&app, &token, "RAG-Usage-Flow.json").await;
    fake.script([
        Scripted::ToolCalls(vec![(
            "search_kb".into(),
            json!({"query": "refund window"}),
        )]),
        Scripted::Text("Refunds are accepted within the refund window.".into()),
    ]);
    let execution = app
        .execute_and_wait(
            &token,
            &id,
            json!({"input": "How long do I have for a refund?", "collection_name": "kb"}),
        )
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(
        node(&execution, "Agent")["outputs"]["output"],
        "Refunds are accepted within the refund window."
    );
    // The model was offered the tool and got the stored passage back, reranked by the
    // deployment's rerank server (the export's Cohere reranker names no credential).
    let chats = fake.received_at("/v1/chat/completions");
    assert_eq!(chats[0].body["tools"][0]["function"]["name"], "search_kb");
    let tool_answer = chats[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer: Value = serde_json::from_str(&tool_answer).unwrap();
    assert_eq!(
        answer["documents"][0]["content"], "refund window",
        "{answer}"
    );
    assert_eq!(answer["documents"][0]["metadata"]["reranked_by"], "cohere");
    assert_eq!(fake.received_at("/v2/rerank").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn test_json_loads_splits_stores_reranks_and_answers_with_sources() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = ExampleSite::start().await;
    site.page(
        "docs.example.com/",
        "text/html",
        article("Docs", "deployment", 12),
    );
    let app = app(&fake, &site).await;
    let token = app.user("test-json@example.com").await;
    // A bare {nodes, edges} export without a name.
    let id = import(&app, &token, "test.json").await;
    fake.script([Scripted::Text("Deploy with step 3 [1].".into())]);
    let execution = app
        .execute_and_wait(&token, &id, json!({"question": "How do I deploy?"}))
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let answer = &node(&execution, "rag")["outputs"];
    assert_eq!(answer["answer"], "Deploy with step 3 [1].");
    assert_eq!(answer["question"], "How do I deploy?");
    assert_eq!(answer["collection"], "knowledge_base");
    let sources = answer["sources"].as_array().unwrap();
    assert!(!sources.is_empty() && sources.len() <= 10, "{answer}");
    assert_eq!(
        sources[0]["metadata"]["source"],
        "https://docs.example.com/"
    );
    assert!(
        sources[0]["metadata"]["reranked_by"].is_string(),
        "{answer}"
    );
    // The model answered from the retrieved passages.
    let prompt = fake.received_at("/v1/chat/completions")[0].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("Question: How do I deploy?"), "{prompt}");
    assert!(prompt.contains("deployment guide explains"), "{prompt}");
    let kb = collection_named(&app, &token, "knowledge_base").await;
    assert!(kb["chunk_count"].as_i64().unwrap() >= 2, "{kb}");
    app.stop().await;
}

#[tokio::test]
async fn ingestion_workflow_runs_from_its_timer_node() {
    let fake = FakeOpenAi::start(None, 1536).await;
    let site = ExampleSite::start().await;
    site.page(
        "example.com/docs",
        "text/html",
        article("Docs", "billing", 8),
    );
    let app = app(&fake, &site).await;
    let token = app.user("ingestion@example.com").await;
    let id = import(&app, &token, "ingestion_workflow.json").await;
    let (_, jobs) = app
        .get_json(&format!("/api/v1/jobs/scheduled?workflow_id={id}"), &token)
        .await;
    let job = jobs.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, triggered) = app
        .post_json(
            &format!("/api/v1/jobs/scheduled/{job}/trigger"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{triggered}");
    let execution = app
        .wait_for_execution(&token, triggered["execution_id"].as_str().unwrap())
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let kb = collection_named(&app, &token, "document_knowledge_base").await;
    assert!(kb["chunk_count"].as_i64().unwrap() >= 1, "{kb}");
    // robots.txt was asked for before the page (none exists: everything is allowed).
    let requests = site.requests();
    assert_eq!(
        requests[..2],
        ["example.com/robots.txt", "example.com/docs"]
    );
    app.stop().await;
}

/// A workflow of one WebScraper with `config`.
fn scraper(config: Value) -> Value {
    json!({"name": "scrape", "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "scrape", "type": "WebScraper", "data": config},
        {"id": "end", "type": "EndNode"}],
      "edges": [{"source": "start", "target": "scrape"}, {"source": "scrape", "target": "end"}]})
}

#[tokio::test]
async fn the_scraper_honours_robots_txt_refuses_internal_addresses_and_limits_each_host() {
    let fake = FakeOpenAi::start(None, 8).await;
    let site = ExampleSite::start().await;
    site.page(
        "docs.example.com/robots.txt",
        "text/plain",
        "User-agent: *\nDisallow: /private\n",
    );
    site.page(
        "docs.example.com/private/page",
        "text/html",
        article("Secret", "secrets", 3),
    );
    for i in 0..6 {
        site.page(
            &format!("docs.example.com/page{i}"),
            "text/html",
            article("Page", "pages", 3),
        );
    }
    let app = app(&fake, &site).await;
    let token = app.user("scraper@example.com").await;

    let refused = app
        .create_workflow(
            &token,
            &scraper(json!({"urls": "https://docs.example.com/private/page\nhttp://10.1.2.3/admin\nhttp://169.254.169.254/latest/meta-data", "retries": 0})),
        )
        .await;
    let execution = app
        .execute_and_wait(&token, refused["id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(execution["status"], "failed", "{execution}");
    let error = execution["error"].as_str().unwrap();
    assert!(error.contains("robots.txt disallows this page"), "{error}");
    assert!(
        error.contains("10.1.2.3") || error.matches("refused").count() >= 2,
        "{error}"
    );
    assert!(
        !site
            .requests()
            .contains(&"docs.example.com/private/page".to_owned())
    );

    // Told not to, it reads the page robots.txt disallows.
    let allowed = app
        .create_workflow(
            &token,
            &scraper(
                json!({"urls": "https://docs.example.com/private/page", "respect_robots": false}),
            ),
        )
        .await;
    let execution = app
        .execute_and_wait(&token, allowed["id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");

    // Six pages of one host, five at a time allowed in all: never more than two at once there.
    site.set_delay(Duration::from_millis(150));
    let urls: Vec<String> = (0..6)
        .map(|i| format!("https://docs.example.com/page{i}"))
        .collect();
    let many = app
        .create_workflow(
            &token,
            &scraper(json!({"urls": urls.join("\n"), "max_concurrent": 5})),
        )
        .await;
    site.max_in_flight.store(0, Ordering::SeqCst);
    let execution = app
        .execute_and_wait(&token, many["id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(node(&execution, "scrape")["outputs"]["stats"]["scraped"], 6);
    assert_eq!(site.max_in_flight.load(Ordering::SeqCst), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_loader_reads_inline_pdf_and_markdown_files_and_the_splitter_keeps_their_headings() {
    use base64::Engine;
    let fake = FakeOpenAi::start(None, 8).await;
    let site = ExampleSite::start().await;
    site.page(
        "docs.example.com/manual.md",
        "text/plain",
        "# Manual\nIntro text.\n## Setup\nInstall it with the installer.\n## Use\nRun it daily.\n",
    );
    let app = app(&fake, &site).await;
    let token = app.user("loader@example.com").await;
    let pdf = base64::engine::general_purpose::STANDARD.encode(kai_common::testing::one_page_pdf(
        "Quarterly report numbers",
    ));
    let workflow = json!({"name": "load", "nodes": [
        {"id": "start", "type": "StartNode"},
        {"id": "pdf", "type": "DocumentLoader", "data": {"content_base64": pdf, "source_name": "report.pdf"}},
        {"id": "md", "type": "DocumentLoader", "data": {"web_urls": "https://docs.example.com/manual.md"}},
        {"id": "split", "type": "ChunkSplitter", "data": {"split_strategy": "markdown_headers", "chunk_size": 200, "chunk_overlap": 0}},
        {"id": "end", "type": "EndNode"}],
      "edges": [{"source": "start", "target": "pdf"}, {"source": "start", "target": "md"},
                {"source": "pdf", "target": "split"}, {"source": "md", "target": "split"},
                {"source": "split", "target": "end"}]});
    let created = app.create_workflow(&token, &workflow).await;
    let execution = app
        .execute_and_wait(&token, created["id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let pdf_doc = &node(&execution, "pdf")["outputs"]["documents"][0];
    assert_eq!(pdf_doc["metadata"]["content_type"], "pdf");
    assert_eq!(pdf_doc["metadata"]["source"], "report.pdf");
    assert!(
        pdf_doc["page_content"]
            .as_str()
            .unwrap()
            .contains("Quarterly report numbers")
    );
    let chunks = node(&execution, "split")["outputs"]["chunks"]
        .as_array()
        .unwrap()
        .clone();
    let setup = chunks
        .iter()
        .find(|c| c["page_content"].as_str().unwrap().starts_with("## Setup"))
        .unwrap_or_else(|| panic!("{chunks:?}"));
    assert_eq!(setup["metadata"]["h1"], "Manual");
    assert_eq!(setup["metadata"]["h2"], "Setup");
    assert_eq!(
        setup["metadata"]["source"],
        "https://docs.example.com/manual.md"
    );
    assert_eq!(setup["metadata"]["content_type"], "markdown");
    // A size that cannot work is refused when the workflow is saved.
    let (status, refused) = app
        .post_json(
            "/api/v1/workflows",
            &token,
            &json!({"name": "bad", "nodes": [{"id": "start", "type": "StartNode"},
                {"id": "split", "type": "ChunkSplitter", "data": {"chunk_size": 100, "chunk_overlap": 150}}],
              "edges": [{"source": "start", "target": "split"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("chunk_overlap (150) must be smaller than chunk_size (100)"),
        "{refused}"
    );
    app.stop().await;
}
