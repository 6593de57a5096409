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
