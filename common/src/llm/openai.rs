//! A client for OpenAI-compatible servers (OpenAI, vLLM, Ollama, llama.cpp, LocalAI): chat
//! completions, plain or streamed (Server-Sent Events), with tool calls, and embeddings. One call
//! per request: retries belong to the node's run policy, so a failure is classified
//! (`NodeError`) with the server's `Retry-After`, never retried here behind the policy's back.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::nodes::NodeError;
use crate::outbound::redact::Redactor;

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The answer to tool call `id`.
    pub fn tool_result(id: &str, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(id.to_owned()),
            ..Self::new("tool", content)
        }
    }
}

/// A function the model asked to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// What to ask for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub tools: Vec<ToolSpec>,
}

impl ChatRequest {
    fn body(&self, stream: bool) -> Value {
        let mut body = json!({"model": self.model, "messages": self.messages});
        let fields = [
            ("temperature", self.temperature.map(Value::from)),
            ("max_tokens", self.max_tokens.map(Value::from)),
            ("top_p", self.top_p.map(Value::from)),
            ("frequency_penalty", self.frequency_penalty.map(Value::from)),
            ("presence_penalty", self.presence_penalty.map(Value::from)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                body[name] = value;
            }
        }
        if !self.tools.is_empty() {
            body["tools"] = self
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                        "name": tool.name, "description": tool.description,
                        "parameters": tool.parameters}})
                })
                .collect();
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

/// Tokens a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub message: ChatMessage,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

/// Where a server is and how to authenticate with it.
#[derive(Clone)]
pub struct OpenAiServer {
    /// E.g. `https://api.openai.com/v1` (paths are appended: `/chat/completions`).
    pub base_url: Url,
    pub api_key: Option<SecretString>,
    pub organization: Option<String>,
}

impl std::fmt::Debug for OpenAiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiServer")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl OpenAiServer {
    fn endpoint(&self, path: &str) -> Result<Url, NodeError> {
        let base = self.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{path}"))
            .map_err(|e| NodeError::Configuration(format!("base_url: {e}")))
    }

    fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, NodeError> {
        let mut request = http.post(self.endpoint(path)?).timeout(timeout).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        if let Some(organization) = &self.organization {
            request = request.header("OpenAI-Organization", organization);
        }
        Ok(request)
    }

    /// One chat completion.
    pub async fn chat(
        &self,
        http: &reqwest::Client,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, NodeError> {
        let response = self
            .send(self.post(http, "chat/completions", &request.body(false), timeout)?)
            .await?;
        let body: Value = read_json(response, MODEL_SERVER).await?;
        let choice = &body["choices"][0];
        let message: ChatMessage = serde_json::from_value(choice["message"].clone())
            .map_err(|e| NodeError::Configuration(format!("the model's answer: {e}")))?;
        Ok(ChatResponse {
            message,
            finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
            usage: serde_json::from_value(body["usage"].clone()).unwrap_or_default(),
        })
    }

    /// One chat completion streamed: `on_token` gets each piece of text as it arrives; the
    /// whole answer (tool calls assembled from their pieces) is returned at the end.
    pub async fn chat_streamed(
        &self,
        http: &reqwest::Client,
        request: &ChatRequest,
        timeout: Duration,
        mut on_token: impl FnMut(&str),
    ) -> Result<ChatResponse, NodeError> {
        let mut response = self
            .send(self.post(http, "chat/completions", &request.body(true), timeout)?)
            .await?;
        let mut answer = StreamedAnswer::default();
        let mut pending = Vec::new();
        let mut read = 0;
        while let Some(chunk) = next_chunk(&mut response, &mut read, MODEL_SERVER).await? {
            // Only the new bytes are searched: a long line is not rescanned with every piece.
            let mut searched = pending.len();
            pending.extend_from_slice(&chunk);
            while let Some(at) = pending[searched..].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=searched + at).collect();
                searched = 0;
                let line = String::from_utf8_lossy(&line);
                if let Some(token) = answer.read_line(line.trim())? {
                    on_token(&token);
                }
            }
        }
        Ok(answer.finish())
    }

    /// Embeddings of `inputs`, in order.
    pub async fn embed(
        &self,
        http: &reqwest::Client,
        model: &str,
        inputs: &[String],
        dimensions: Option<u32>,
        timeout: Duration,
    ) -> Result<(Vec<Vec<f32>>, Usage), NodeError> {
        if inputs.is_empty() {
            return Ok((Vec::new(), Usage::default()));
        }
        let mut body = json!({"model": model, "input": inputs, "encoding_format": "float"});
        if let Some(dimensions) = dimensions {
            body["dimensions"] = json!(dimensions);
        }
        let response = self
            .send(self.post(http, "embeddings", &body, timeout)?)
            .await?;
        #[derive(Deserialize)]
        struct Embedding {
            index: usize,
            embedding: Vec<f32>,
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Vec<Embedding>,
            #[serde(default)]
            usage: Usage,
        }
        let mut answer: Answer = read_json(response, MODEL_SERVER).await?;
        if answer.data.len() != inputs.len() {
            return Err(NodeError::Configuration(format!(
                "the server returned {} embeddings for {} inputs",
                answer.data.len(),
                inputs.len()
            )));
        }
        answer.data.sort_by_key(|e| e.index);
        Ok((
            answer.data.into_iter().map(|e| e.embedding).collect(),
            answer.usage,
        ))
    }
}

impl OpenAiServer {
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, NodeError> {
        let key = self.api_key.as_ref().map(|key| key.expose_secret());
        send_to(request, MODEL_SERVER, key).await
    }
}

const MODEL_SERVER: &str = "the model server";

/// The most an answer of a model, rerank or search server may weigh: the largest legitimate one
/// is a full embeddings batch (2,048 inputs × 3,072 dimensions as JSON, about 60 MB). A larger
/// answer, or an endless stream, fails the call instead of filling the worker's memory.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Of a failed answer, what is quoted in the error.
const QUOTED_ERROR_BYTES: usize = 4096;

/// The next piece of `response`, counting into `read`; an answer past `MAX_ANSWER_BYTES` fails.
pub(crate) async fn next_chunk(
    response: &mut reqwest::Response,
    read: &mut usize,
    service: &str,
) -> Result<Option<bytes::Bytes>, NodeError> {
    let chunk = response
        .chunk()
        .await
        .map_err(|e| NodeError::Network(format!("reading the answer of {service}: {e}")))?;
    if let Some(chunk) = &chunk {
        *read += chunk.len();
        if *read > MAX_ANSWER_BYTES {
            return Err(NodeError::Configuration(format!(
                "the answer of {service} is larger than {} MiB",
                MAX_ANSWER_BYTES >> 20
            )));
        }
    }
    Ok(chunk)
}

/// Reads a JSON answer of `service`, at most `MAX_ANSWER_BYTES`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    mut response: reqwest::Response,
    service: &str,
) -> Result<T, NodeError> {
    let mut body = Vec::new();
    let mut read = 0;
    while let Some(chunk) = next_chunk(&mut response, &mut read, service).await? {
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| {
        NodeError::Configuration(format!("the answer of {service} is not as expected: {e}"))
    })
}

/// Sends a request to `service` (named in errors) authenticated with `secret`; a failed answer
/// becomes the `NodeError` the retry policy acts on: 429 rate limited (with `Retry-After`), 408
/// and 5xx network errors, 401/403 credential errors, other 4xx configuration errors. The
/// error quotes the start of the answer with `secret` redacted (a server may echo it).
pub(crate) async fn send_to(
    request: reqwest::RequestBuilder,
    service: &str,
    secret: Option<&str>,
) -> Result<reqwest::Response, NodeError> {
    let response = request.send().await.map_err(|e| {
        if let Some(refused) = crate::outbound::refusal_of(&e) {
            NodeError::Configuration(format!("{service}: {refused}"))
        } else if e.is_timeout() {
            NodeError::Network(format!("{service} did not answer in time"))
        } else {
            NodeError::Network(format!("could not reach {service}: {}", e.without_url()))
        }
    })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::nodes::retry::parse_retry_after(v, chrono::Utc::now()));
    let mut quoted = Vec::new();
    let mut response = response;
    while quoted.len() < QUOTED_ERROR_BYTES
        && let Ok(Some(chunk)) = response.chunk().await
    {
        quoted.extend_from_slice(&chunk);
    }
    let text = Redactor::new(secret).text(&String::from_utf8_lossy(&quoted));
    let detail: String = text.chars().take(300).collect();
    Err(match status {
        429 => NodeError::RateLimited(format!("{service} answered 429: {detail}"), retry_after),
        401 | 403 => NodeError::Credential(format!(
            "{service} refused the credential ({status}): {detail}"
        )),
        408 | 500..=599 => NodeError::Network(format!("{service} answered {status}: {detail}")),
        _ => NodeError::Configuration(format!("{service} answered {status}: {detail}")),
    })
}

/// A streamed answer put together from its events.
#[derive(Default)]
struct StreamedAnswer {
    content: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    usage: Usage,
}

impl StreamedAnswer {
    /// Reads one line of the event stream; the text it adds, if any.
    fn read_line(&mut self, line: &str) -> Result<Option<String>, NodeError> {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            return Ok(None);
        };
        if data == "[DONE]" || data.is_empty() {
            return Ok(None);
        }
        let event: Value = serde_json::from_str(data).map_err(|e| {
            NodeError::Configuration(format!("the model's stream is not JSON: {e}"))
        })?;
        if let Ok(usage) = serde_json::from_value::<Usage>(event["usage"].clone()) {
            self.usage = usage;
        }
        let choice = &event["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
        }
        let delta = &choice["delta"];
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0) as usize;
            while self.tool_calls.len() <= index {
                self.tool_calls.push(ToolCall {
                    id: String::new(),
                    kind: function_type(),
                    function: FunctionCall {
                        name: String::new(),
                        arguments: String::new(),
                    },
                });
            }
            let assembled = &mut self.tool_calls[index];
            if let Some(id) = call["id"].as_str() {
                assembled.id.push_str(id);
            }
            if let Some(name) = call["function"]["name"].as_str() {
                assembled.function.name.push_str(name);
            }
            if let Some(arguments) = call["function"]["arguments"].as_str() {
                assembled.function.arguments.push_str(arguments);
            }
        }
        match delta["content"].as_str() {
            Some(text) if !text.is_empty() => {
                self.content.push_str(text);
                Ok(Some(text.to_owned()))
            }
            _ => Ok(None),
        }
    }

    fn finish(self) -> ChatResponse {
        ChatResponse {
            message: ChatMessage {
                role: "assistant".to_owned(),
                content: (!self.content.is_empty()).then_some(self.content),
                tool_calls: self.tool_calls,
                tool_call_id: None,
            },
            finish_reason: self.finish_reason,
            usage: self.usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_assembled_from_its_events() {
        let mut answer = StreamedAnswer::default();
        let lines = [
            r#"data: {"choices":[{"delta":{"role":"assistant","content":"Hel"}}]}"#,
            "",
            r#"data: {"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"search","arguments":"{\"q\":"}}]}}]}"#,
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"rust\"}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
            "data: [DONE]",
        ];
        let tokens: Vec<String> = lines
            .iter()
            .filter_map(|line| answer.read_line(line).unwrap())
            .collect();
        assert_eq!(tokens, ["Hel", "lo"]);
        let response = answer.finish();
        assert_eq!(response.message.content.as_deref(), Some("Hello"));
        assert_eq!(response.message.tool_calls[0].function.name, "search");
        assert_eq!(
            response.message.tool_calls[0].function.arguments,
            r#"{"q":"rust"}"#
        );
        assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(response.usage.total_tokens, 8);
    }

    #[test]
    fn requests_carry_only_what_is_set() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new("user", "hi")],
            temperature: Some(0.0),
            tools: vec![ToolSpec {
                name: "search".into(),
                description: "web search".into(),
                parameters: json!({"type": "object"}),
            }],
            ..ChatRequest::default()
        };
        let body = request.body(true);
        assert_eq!(body["temperature"], 0.0);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["tools"][0]["function"]["name"], "search");
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "hi"})
        );
    }
}
