//! A deterministic OpenAI-compatible server for tests: chat completions answered from a script
//! (text, tool calls, errors with `Retry-After`, delays), plain or streamed as Server-Sent
//! Events; embeddings with stable vectors derived from the text; `/models`. It also speaks
//! Tavily's `/search` and Cohere's `/v2/rerank`, answering from the request alone. Every request
//! is recorded so tests can check what was sent.

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

/// A request as received: its path, `Authorization` header and JSON body.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Value>>,
    received: Mutex<Vec<Received>>,
    /// How long every chat answer waits (a slow model server).
    latency: Mutex<Duration>,
    /// The pause before each event of a streamed answer.
    stream_delay: Mutex<Option<Duration>>,
    api_key: Option<String>,
    dimensions: usize,
}

pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// `http://127.0.0.1:PORT` (Tavily's and Cohere's paths are under it).
    pub root: String,
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
            .at("/search", poem::post(tavily_search))
            .at("/v2/rerank", poem::post(cohere_rerank))
            .around(record)
            .data(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake model server");
        let root = format!("http://{}", listener.local_addr().expect("its address"));
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("an acceptor");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
        Self {
            base_url: format!("{root}/v1"),
            root,
            state,
        }
    }

    /// Every chat answer from now on waits `latency` first (a slow model server).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().expect("latency") = latency;
    }

    /// Streamed answers pause `delay` before each event (5 ms by default).
    pub fn set_stream_delay(&self, delay: Duration) {
        *self.state.stream_delay.lock().expect("stream delay") = Some(delay);
    }

    /// The requests received at `path` (e.g. `/search`), in order.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("received")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
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
    let latency = *state.latency.lock().expect("latency");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
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
        Scripted::Text(text) if stream => sse(&model, text_events(&text), stream_delay(&state)),
        Scripted::ToolCalls(calls) if stream => {
            sse(&model, vec![tool_delta(&calls)], stream_delay(&state))
        }
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

fn stream_delay(state: &State) -> Duration {
    state
        .stream_delay
        .lock()
        .expect("stream delay")
        .unwrap_or(Duration::from_millis(5))
}

fn sse(model: &str, choices: Vec<Value>, delay: Duration) -> Response {
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
    let stream = futures::stream::iter(events).then(move |event| async move {
        tokio::time::sleep(delay).await;
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

/// Records every request's path, `Authorization` and JSON body before it is answered.
async fn record<E: poem::Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    let state = request
        .data::<Arc<State>>()
        .cloned()
        .expect("the fake's state");
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let bytes = body.into_vec().await.unwrap_or_default();
    state.received.lock().expect("received").push(Received {
        path,
        authorization,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    let request = Request::from_parts(parts, Body::from_vec(bytes));
    next.call(request).await.map(IntoResponse::into_response)
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Tavily's `/search`: one result per requested slot, derived from the query.
#[handler]
fn tavily_search(Json(body): Json<Value>) -> Response {
    let query = body["query"].as_str().unwrap_or_default();
    let count = body["max_results"].as_u64().unwrap_or(5).min(3);
    let results: Vec<Value> = (1..=count)
        .map(|i| {
            json!({"title": format!("Result {i} for {query}"),
                   "url": format!("https://example.com/{i}"),
                   "content": format!("Page {i} about {query}."),
                   "score": 1.0 - i as f64 / 10.0, "raw_content": null})
        })
        .collect();
    Json(
        json!({"query": query, "answer": format!("An answer about {query}."),
                "results": results, "images": [], "response_time": 0.01}),
    )
    .into_response()
}

/// Cohere's `/v2/rerank`: documents scored by the share of query words they contain.
#[handler]
fn cohere_rerank(Json(body): Json<Value>) -> Response {
    let query = words(body["query"].as_str().unwrap_or_default());
    let documents: Vec<String> = body["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.as_str().unwrap_or_default().to_owned())
        .collect();
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(index, document)| {
            let words = words(document);
            let hits = query.iter().filter(|w| words.contains(w)).count();
            (index, hits as f64 / query.len().max(1) as f64)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(body["top_n"].as_u64().map_or(scored.len(), |n| n as usize));
    let results: Vec<Value> = scored
        .into_iter()
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    Json(json!({"id": "rerank-fake", "results": results,
                "meta": {"billed_units": {"search_units": 1}}}))
    .into_response()
}
