//! A deterministic OpenAI-compatible server for tests: chat completions answered from a script
//! (text, tool calls, errors with `Retry-After`, delays), plain or streamed as Server-Sent
//! Events; embeddings with stable vectors derived from the text; `/models`. Every request is
//! recorded so tests can check what was sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{Body, EndpointExt, IntoResponse, Request, Response, Route, handler};
use serde_json::{Value, json};

/// One scripted answer of `/chat/completions`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    Text(String),
    /// Calls of tools by name with their arguments.
    ToolCalls(Vec<(String, Value)>),
    /// An error status, with `Retry-After` seconds when given.
    Error(u16, Option<u64>),
    /// Answers after waiting.
    Delayed(Duration, Box<Scripted>),
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Value>>,
    api_key: Option<String>,
    dimensions: usize,
}

pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    state: Arc<State>,
}

impl FakeOpenAi {
    /// A server that accepts `api_key` (any key, or none, when `None`) and embeds in
    /// `dimensions` dimensions.
    pub async fn start(api_key: Option<&str>, dimensions: usize) -> Self {
        let state = Arc::new(State {
            api_key: api_key.map(str::to_owned),
            dimensions,
            ..State::default()
        });
        let routes = Route::new()
            .at("/v1/chat/completions", poem::post(chat))
            .at("/v1/embeddings", poem::post(embeddings))
            .at("/v1/models", poem::get(models))
            .data(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake model server");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("its address"));
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("an acceptor");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
        Self { base_url, state }
    }

    /// Answers the next chat completions with these, in order; after them, each answer echoes
    /// the last user message (`echo: ...`).
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state.script.lock().expect("script").extend(answers);
    }

    /// The bodies of every request received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().expect("requests").clone()
    }
}

fn authorised(state: &State, request: &Request) -> bool {
    let Some(key) = &state.api_key else {
        return true;
    };
    request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {key}"))
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})),
    )
        .into_response()
}

#[handler]
async fn chat(request: &Request, Json(body): Json<Value>, state: Data<&Arc<State>>) -> Response {
    state.requests.lock().expect("requests").push(body.clone());
    if !authorised(&state, request) {
        return refused();
    }
    let scripted = state.script.lock().expect("script").pop_front();
    let mut answer = scripted.unwrap_or_else(|| {
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        Scripted::Text(format!("echo: {last}"))
    });
    while let Scripted::Delayed(delay, inner) = answer {
        tokio::time::sleep(delay).await;
        answer = *inner;
    }
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    match answer {
        Scripted::Error(status, retry_after) => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).expect("a status"))
                .content_type("application/json");
            if let Some(seconds) = retry_after {
                response = response.header("retry-after", seconds.to_string());
            }
            response.body(json!({"error": {"message": format!("scripted {status}")}}).to_string())
        }
        Scripted::Text(text) if stream => sse(&model, text_events(&text)),
        Scripted::ToolCalls(calls) if stream => sse(&model, vec![tool_delta(&calls)]),
        Scripted::Text(text) => completion(
            &model,
            json!({"role": "assistant", "content": text}),
            "stop",
        ),
        Scripted::ToolCalls(calls) => completion(
            &model,
            json!({"role": "assistant", "content": null, "tool_calls": tool_calls(&calls)}),
            "tool_calls",
        ),
        Scripted::Delayed(..) => unreachable!("delays are unwrapped above"),
    }
}

fn tool_calls(calls: &[(String, Value)]) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, (name, arguments))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": arguments.to_string()}})
        })
        .collect()
}

const USAGE: (u64, u64) = (10, 5);

fn completion(model: &str, message: Value, finish_reason: &str) -> Response {
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1,
                  "total_tokens": USAGE.0 + USAGE.1}
    }))
    .into_response()
}

/// Text in pieces of a word each, as a model streams it.
fn text_events(text: &str) -> Vec<Value> {
    text.split_inclusive(' ')
        .map(|piece| json!({"index": 0, "delta": {"content": piece}, "finish_reason": null}))
        .chain(std::iter::once(
            json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
        ))
        .collect()
}

fn tool_delta(calls: &[(String, Value)]) -> Value {
    let mut deltas = tool_calls(calls);
    for (i, call) in deltas.as_array_mut().into_iter().flatten().enumerate() {
        call["index"] = json!(i);
    }
    json!({"index": 0, "delta": {"tool_calls": deltas}, "finish_reason": "tool_calls"})
}

fn sse(model: &str, choices: Vec<Value>) -> Response {
    let mut events: Vec<String> = choices
        .into_iter()
        .map(|choice| {
            let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                               "model": model, "choices": [choice]});
            format!("data: {chunk}\n\n")
        })
        .collect();
    let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1,
                  "total_tokens": USAGE.0 + USAGE.1}});
    events.push(format!("data: {usage}\n\n"));
    events.push("data: [DONE]\n\n".to_owned());
    // One event at a time, so a reader sees tokens before the answer ends.
    let stream = futures::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::io::Error>(event.into_bytes())
    });
    Response::builder()
        .content_type("text/event-stream")
        .body(Body::from_bytes_stream(stream))
}

/// A unit vector derived from `text` alone: the same text always embeds the same way.
pub fn stable_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|i| {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ i as u64;
            for byte in text.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            (hash % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = vector
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

#[handler]
fn embeddings(request: &Request, Json(body): Json<Value>, state: Data<&Arc<State>>) -> Response {
    state.requests.lock().expect("requests").push(body.clone());
    if !authorised(&state, request) {
        return refused();
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let dimensions = body["dimensions"]
        .as_u64()
        .map_or(state.dimensions, |d| d as usize);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index,
                   "embedding": stable_embedding(text, dimensions)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(
        json!({"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

#[handler]
fn models(request: &Request, state: Data<&Arc<State>>) -> Response {
    if !authorised(&state, request) {
        return refused();
    }
    Json(
        json!({"object": "list", "data": [{"id": "fake-chat", "object": "model"},
                                            {"id": "fake-embed", "object": "model"}]}),
    )
    .into_response()
}
