//! The OpenAI-compatible client against the deterministic fake server.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;

use super::openai::{ChatMessage, ChatRequest, OpenAiServer, ToolSpec};
use crate::nodes::NodeError;
use crate::testing::fake_openai::{FakeOpenAi, Scripted, stable_embedding};

const KEY: &str = "sk-fake-test-key";
const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    crate::tls::install_crypto_provider();
    reqwest::Client::new()
}

fn server(fake: &FakeOpenAi, key: &str) -> OpenAiServer {
    OpenAiServer {
        base_url: fake.base_url.parse().unwrap(),
        api_key: Some(SecretString::from(key.to_owned())),
        organization: None,
    }
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        model: "fake-chat".into(),
        messages: vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", text),
        ],
        temperature: Some(0.0),
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn chat_answers_plain_and_streamed_with_usage() {
    let fake = FakeOpenAi::start(Some(KEY), 8).await;
    let http = client();
    let openai = server(&fake, KEY);
    let answer = openai.chat(&http, &ask("hello"), TIMEOUT).await.unwrap();
    assert_eq!(answer.message.content.as_deref(), Some("echo: hello"));
    assert_eq!(answer.usage.total_tokens, 15);
    assert_eq!(fake.requests()[0]["temperature"], 0.0);

    fake.script([Scripted::Text("one two three".into())]);
    let mut tokens = Vec::new();
    let answer = openai
        .chat_streamed(&http, &ask("count"), TIMEOUT, |t| tokens.push(t.to_owned()))
        .await
        .unwrap();
    assert_eq!(tokens, ["one ", "two ", "three"]);
    assert_eq!(answer.message.content.as_deref(), Some("one two three"));
    assert_eq!(answer.usage.total_tokens, 15);
    assert_eq!(fake.requests()[1]["stream"], true);
}

#[tokio::test]
async fn tool_calls_come_back_plain_and_streamed() {
    let fake = FakeOpenAi::start(None, 8).await;
    let http = client();
    let openai = server(&fake, "unused");
    let mut request = ask("search for rust");
    request.tools = vec![ToolSpec {
        name: "search".into(),
        description: "web search".into(),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
    }];
    let call = Scripted::ToolCalls(vec![("search".into(), json!({"q": "rust"}))]);
    fake.script([call.clone(), call]);
    for streamed in [false, true] {
        let answer = if streamed {
            openai
                .chat_streamed(&http, &request, TIMEOUT, |_| {})
                .await
                .unwrap()
        } else {
            openai.chat(&http, &request, TIMEOUT).await.unwrap()
        };
        let calls = &answer.message.tool_calls;
        assert_eq!(calls.len(), 1, "streamed: {streamed}");
        assert_eq!(calls[0].function.name, "search");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&calls[0].function.arguments).unwrap(),
            json!({"q": "rust"})
        );
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    }
    assert_eq!(fake.requests()[0]["tools"][0]["function"]["name"], "search");
}

#[tokio::test]
async fn failures_are_classified_for_the_run_policy_and_never_retried_here() {
    let fake = FakeOpenAi::start(Some(KEY), 8).await;
    let http = client();
    let openai = server(&fake, KEY);
    fake.script([
        Scripted::Error(429, Some(7)),
        Scripted::Error(503, None),
        Scripted::Error(400, None),
    ]);
    match openai.chat(&http, &ask("a"), TIMEOUT).await {
        Err(error @ NodeError::RateLimited(..)) => {
            assert_eq!(error.retry_after(), Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        openai.chat(&http, &ask("b"), TIMEOUT).await,
        Err(NodeError::Network(_))
    ));
    assert!(matches!(
        openai.chat(&http, &ask("c"), TIMEOUT).await,
        Err(NodeError::Configuration(_))
    ));
    // One request per call: no hidden retries.
    assert_eq!(fake.requests().len(), 3);
    let wrong = server(&fake, "sk-wrong");
    match wrong.chat(&http, &ask("d"), TIMEOUT).await {
        Err(NodeError::Credential(message)) => assert!(!message.contains("sk-wrong")),
        other => panic!("{other:?}"),
    }
    fake.script([Scripted::Delayed(
        Duration::from_secs(5),
        Box::new(Scripted::Text("late".into())),
    )]);
    assert!(matches!(
        openai
            .chat(&http, &ask("e"), Duration::from_millis(200))
            .await,
        Err(NodeError::Network(m)) if m.contains("in time")
    ));
}

#[tokio::test]
async fn embeddings_are_stable_ordered_and_an_empty_input_is_not_a_call() {
    let fake = FakeOpenAi::start(Some(KEY), 8).await;
    let http = client();
    let openai = server(&fake, KEY);
    let inputs = vec!["alpha".to_owned(), "beta".to_owned()];
    let (vectors, _) = openai
        .embed(&http, "fake-embed", &inputs, None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        vectors,
        [stable_embedding("alpha", 8), stable_embedding("beta", 8)]
    );
    let (vectors, _) = openai
        .embed(&http, "fake-embed", &inputs[..1], Some(4), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(vectors[0].len(), 4);
    let calls = fake.requests().len();
    let (none, _) = openai
        .embed(&http, "fake-embed", &[], None, TIMEOUT)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(fake.requests().len(), calls);
}

mod providers {
    //! The providers model nodes build, against the fake: retries under the node's policy,
    //! batching, the dimension probe, Cohere's rerank shape.

    use std::time::Instant;

    use super::*;
    use crate::llm::chat::OpenAiChat;
    use crate::llm::cohere::CohereReranker;
    use crate::llm::connection::Connection;
    use crate::llm::embedder::OpenAiEmbedder;
    use crate::llm::policy::CallPolicy;
    use crate::nodes::capability::{ChatModel, Embedder, Reranker};

    fn policy(max_retries: u32) -> CallPolicy {
        CallPolicy {
            timeout: TIMEOUT,
            max_retries,
            backoff: Duration::from_millis(10),
        }
    }

    fn connection(fake: &FakeOpenAi) -> Connection {
        Connection {
            server: server(fake, KEY),
            http: client(),
        }
    }

    fn chat(fake: &FakeOpenAi, streaming: bool, max_retries: u32) -> OpenAiChat {
        OpenAiChat {
            connection: connection(fake),
            settings: ChatRequest {
                model: "fake-chat".into(),
                ..ChatRequest::default()
            },
            streaming,
            policy: policy(max_retries),
        }
    }

    #[tokio::test]
    async fn a_429_is_retried_after_its_retry_after_and_a_500_with_backoff() {
        let fake = FakeOpenAi::start(Some(KEY), 8).await;
        fake.script([
            Scripted::Error(429, Some(1)),
            Scripted::Error(500, None),
            Scripted::Text("finally".into()),
        ]);
        let started = Instant::now();
        let messages = [ChatMessage::new("user", "hi")];
        let answer = chat(&fake, false, 2)
            .complete(&messages, &[], None)
            .await
            .unwrap();
        assert_eq!(answer.message.content.as_deref(), Some("finally"));
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After: 1 was honoured"
        );
        assert_eq!(fake.requests().len(), 3);

        fake.script([Scripted::Error(503, None), Scripted::Error(503, None)]);
        let error = chat(&fake, false, 1)
            .complete(&messages, &[], None)
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::Network(_)), "{error}");
        assert_eq!(fake.requests().len(), 5, "one retry, then the failure");
    }

    #[tokio::test]
    async fn streamed_tokens_reach_the_sink_and_a_refused_key_is_not_retried() {
        let fake = FakeOpenAi::start(Some(KEY), 8).await;
        fake.script([Scripted::Text("a b c".into())]);
        let seen = std::sync::Mutex::new(Vec::new());
        let sink = |t: &str| seen.lock().unwrap().push(t.to_owned());
        let messages = [ChatMessage::new("user", "hi")];
        chat(&fake, true, 2)
            .complete(&messages, &[], Some(&sink))
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), ["a ", "b ", "c"]);

        let mut wrong = chat(&fake, false, 3);
        wrong.connection.server.api_key = Some(SecretString::from("sk-wrong".to_owned()));
        let calls = fake.requests().len();
        let error = wrong.complete(&messages, &[], None).await.unwrap_err();
        assert!(matches!(error, NodeError::Credential(_)), "{error}");
        assert!(!error.to_string().contains("sk-wrong"));
        assert_eq!(fake.requests().len(), calls + 1);
    }

    #[tokio::test]
    async fn embeddings_go_in_batches_and_an_unknown_model_is_probed_once() {
        let fake = FakeOpenAi::start(Some(KEY), 12).await;
        let embedder = OpenAiEmbedder {
            connection: connection(&fake),
            model: "local-e5".into(),
            dimensions: None,
            batch_size: 2,
            policy: policy(0),
            probed: Default::default(),
            credential_id: None,
        };
        let texts: Vec<String> = (0..5).map(|i| format!("text {i}")).collect();
        let vectors = embedder.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), 5);
        assert_eq!(vectors[4], stable_embedding("text 4", 12));
        let sizes: Vec<usize> = fake
            .received_at("/v1/embeddings")
            .iter()
            .map(|r| r.body["input"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(embedder.embed(&[]).await.unwrap().is_empty());
        assert_eq!(
            embedder.dimension().await.unwrap(),
            12,
            "learnt from the answers"
        );
        assert_eq!(
            fake.received_at("/v1/embeddings").len(),
            3,
            "no call for none"
        );

        let fresh = OpenAiEmbedder {
            probed: Default::default(),
            ..embedder
        };
        assert_eq!(fresh.dimension().await.unwrap(), 12);
        assert_eq!(fresh.dimension().await.unwrap(), 12);
        assert_eq!(fake.received_at("/v1/embeddings").len(), 4, "probed once");

        // A server that is not OpenAI's answering to an OpenAI model's name (a local model
        // standing in for it) is asked, not taken at the model's published size.
        let stand_in = OpenAiEmbedder {
            model: "text-embedding-3-small".into(),
            probed: Default::default(),
            ..fresh
        };
        assert_eq!(stand_in.dimension().await.unwrap(), 12);
    }

    #[tokio::test]
    async fn cohere_rerank_sends_v2_shape_and_reads_indices() {
        let fake = FakeOpenAi::start(None, 8).await;
        let reranker = CohereReranker {
            base_url: fake.root.parse().unwrap(),
            api_key: Some(SecretString::from("co-key".to_owned())),
            http: client(),
            model: "rerank-english-v3.0".into(),
            top_n: None,
            policy: policy(0),
        };
        let documents = [
            "cats purr",
            "rust borrow checker",
            "the borrow checker in rust",
        ]
        .map(str::to_owned);
        let ranked = reranker
            .rerank("rust borrow checker", &documents, Some(2))
            .await
            .unwrap();
        assert_eq!(ranked.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
        let sent = &fake.received_at("/v2/rerank")[0];
        assert_eq!(sent.authorization.as_deref(), Some("Bearer co-key"));
        assert_eq!(
            sent.body,
            json!({"model": "rerank-english-v3.0", "query": "rust borrow checker",
                   "documents": documents, "top_n": 2})
        );
    }
}

mod hostile_servers {
    //! Servers a workflow author points at may echo the key or never stop answering.

    use poem::{Body, Response, Route, handler, http::StatusCode, post};

    use super::*;

    #[handler]
    fn echo_key(request: &poem::Request) -> Response {
        let key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(format!("{{\"error\": \"bad request made with {key}\"}}"))
    }

    #[handler]
    fn endless() -> Response {
        let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
        let stream = futures::stream::repeat(chunk).map(Ok::<_, std::io::Error>);
        Response::builder()
            .content_type("application/json")
            .body(Body::from_bytes_stream(stream))
    }

    async fn start() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let routes = Route::new()
            .at("/echo/chat/completions", post(echo_key))
            .at("/endless/chat/completions", post(endless))
            .at("/endless/embeddings", post(endless));
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
        root
    }

    use futures::StreamExt;

    #[tokio::test]
    async fn an_echoed_key_is_redacted_and_an_endless_answer_stops_at_the_limit() {
        let root = start().await;
        let http = client();
        let at = |path: &str| OpenAiServer {
            base_url: format!("{root}/{path}").parse().unwrap(),
            api_key: Some(SecretString::from(KEY.to_owned())),
            organization: None,
        };
        let error = at("echo")
            .chat(&http, &ask("hi"), TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("bad request made with Bearer"),
            "{error}"
        );
        assert!(!error.to_string().contains(KEY), "{error}");

        let long = Duration::from_secs(120);
        for outcome in [
            at("endless").chat(&http, &ask("hi"), long).await.map(drop),
            at("endless")
                .chat_streamed(&http, &ask("hi"), long, |_| {})
                .await
                .map(drop),
            at("endless")
                .embed(&http, "m", &["x".to_owned()], None, long)
                .await
                .map(drop),
        ] {
            let error = outcome.unwrap_err();
            assert!(error.to_string().contains("larger than 64 MiB"), "{error}");
        }
    }
}
