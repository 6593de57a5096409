//! Custom node types: registered by users through the registry API and backed by an HTTP
//! endpoint they run. The worker POSTs `{node_id, node_type, config, inputs}` (string config
//! rendered through the templates first) and the JSON answer becomes the node's output. The
//! endpoint's status says what kind of failure it was, so the engine's retry policy applies.

use std::time::Duration;

use crate::json::SharedValue;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput, RunPolicy,
};
use crate::compute::ComputePool;
use crate::workflow::template::{self, TemplateScope};

/// The largest answer a custom node's endpoint may give.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error answer is quoted in the node's error.
const QUOTED_ERROR_CHARS: usize = 200;

/// Where a custom node type runs and how the engine treats it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    /// `http` or `https` URL the worker POSTs to.
    pub url: String,
    /// Time one attempt may take.
    #[serde(default = "HttpEndpoint::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts for a retryable failure (connection error, 429, 5xx, timeout).
    #[serde(default = "HttpEndpoint::default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles after each.
    #[serde(default = "HttpEndpoint::default_backoff_ms")]
    pub backoff_ms: u64,
}

impl HttpEndpoint {
    pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
    pub const MAX_ATTEMPTS: u32 = 10;
    pub const MAX_BACKOFF_MS: u64 = 60_000;

    pub fn default_timeout_ms() -> u64 {
        30_000
    }

    pub fn default_max_attempts() -> u32 {
        3
    }

    pub fn default_backoff_ms() -> u64 {
        500
    }

    /// Checks the URL and the limits; the error names the field.
    pub fn check(&self) -> Result<url::Url, ConfigError> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::new("endpoint_url", format!("not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(
                "endpoint_url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if !(1..=Self::MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                "timeout_ms",
                format!("must be between 1 and {}", Self::MAX_TIMEOUT_MS),
            ));
        }
        if !(1..=Self::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be between 1 and {}", Self::MAX_ATTEMPTS),
            ));
        }
        if self.backoff_ms > Self::MAX_BACKOFF_MS {
            return Err(ConfigError::new(
                "backoff_ms",
                format!("must be at most {}", Self::MAX_BACKOFF_MS),
            ));
        }
        Ok(url)
    }
}

/// One custom node type, ready to validate configurations and run.
pub struct HttpNodeType {
    name: String,
    description: String,
    url: url::Url,
    config_schema: Value,
    validator: jsonschema::Validator,
    policy: RunPolicy,
}

impl HttpNodeType {
    /// Builds a node type from its registration; the error names the field at fault.
    pub fn new(
        name: &str,
        description: &str,
        endpoint: &HttpEndpoint,
        config_schema: Value,
    ) -> Result<Self, ConfigError> {
        let url = endpoint.check()?;
        let validator = compile_schema(&config_schema)?;
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            url,
            config_schema,
            validator,
            policy: RunPolicy {
                timeout: Duration::from_millis(endpoint.timeout_ms),
                max_attempts: endpoint.max_attempts,
                backoff: Duration::from_millis(endpoint.backoff_ms),
            },
        })
    }
}

/// Compiles a configuration schema, refusing one that is not a valid JSON Schema.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, ConfigError> {
    if !schema.is_object() {
        return Err(ConfigError::new(
            "config_schema",
            "must be a JSON Schema object",
        ));
    }
    jsonschema::meta::validate(schema)
        .map_err(|e| ConfigError::new("config_schema", format!("not a valid JSON Schema: {e}")))?;
    jsonschema::validator_for(schema)
        .map_err(|e| ConfigError::new("config_schema", format!("not a valid JSON Schema: {e}")))
}

/// `config` with every string rendered through the templates (a heavy one off the async
/// runtime, on `pool`); the error names the field.
fn render_config<'a>(
    config: &'a Value,
    scope: &'a TemplateScope,
    input: &'a SharedValue,
    path: String,
    pool: &'a ComputePool,
) -> BoxFuture<'a, Result<Value, NodeError>> {
    Box::pin(async move {
        Ok(match config {
            Value::String(text) => Value::String(
                template::render_bounded(text, scope, input, pool)
                    .await
                    .map_err(|e| NodeError::Configuration(format!("field `{path}`: {e}")))?,
            ),
            Value::Array(items) => {
                let mut rendered = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    rendered.push(render_config(item, scope, input, path, pool).await?);
                }
                Value::Array(rendered)
            }
            Value::Object(fields) => {
                let mut rendered = Map::new();
                for (key, value) in fields {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    let value = render_config(value, scope, input, path, pool).await?;
                    rendered.insert(key.clone(), value);
                }
                Value::Object(rendered)
            }
            other => other.clone(),
        })
    })
}

/// The start of an error answer, for the node's error message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text.chars().take(QUOTED_ERROR_CHARS).collect();
    if text.chars().count() > QUOTED_ERROR_CHARS {
        quoted.push('…');
    }
    quoted
}

/// Reads an answer, refusing one larger than `MAX_ANSWER_BYTES` without reading the rest.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, NodeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| NodeError::Network(format!("reading the endpoint's answer: {e}")))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(NodeError::Configuration(format!(
                "the endpoint's answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The breaker key of a URL: its host and port.
fn host_of(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or("unknown"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// What an endpoint's answer means: the output, or a failure classified by its status.
fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Value, NodeError> {
    let code = status.as_u16();
    match code {
        200..=299 if body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
        200..=299 => serde_json::from_slice(body).map_err(|e| {
            NodeError::Configuration(format!(
                "the endpoint answered {code} with a body that is not JSON: {e}"
            ))
        }),
        // 429, or a 503 that says when to come back: wait as asked.
        429 => Err(NodeError::RateLimited(
            format!("the endpoint answered 429: {}", quote(body)),
            retry_after,
        )),
        503 if retry_after.is_some() => Err(NodeError::RateLimited(
            format!("the endpoint answered 503: {}", quote(body)),
            retry_after,
        )),
        401 | 403 => Err(NodeError::Credential(format!(
            "the endpoint answered {code}: {}",
            quote(body)
        ))),
        408 | 500..=599 => Err(NodeError::Network(format!(
            "the endpoint answered {code}: {}",
            quote(body)
        ))),
        _ => Err(NodeError::Configuration(format!(
            "the endpoint answered {code}: {}",
            quote(body)
        ))),
    }
}

impl NodeDefinition for HttpNodeType {
    fn type_name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn config_schema(&self) -> Value {
        self.config_schema.clone()
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &["input"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        match self.validator.iter_errors(config).next() {
            None => Ok(()),
            Some(error) => {
                let path = error.instance_path().to_string();
                let field = path.trim_start_matches('/').replace('/', ".");
                let field = if field.is_empty() { "(config)" } else { &field };
                Err(ConfigError::new(field, error.to_string()))
            }
        }
    }

    fn policy(&self, _config: &Value) -> RunPolicy {
        self.policy
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let pool = &ctx.services.compute;
            let config =
                render_config(ctx.config, ctx.scope, ctx.input, String::new(), pool).await?;
            let request = json!({
                "node_id": ctx.node_id,
                "node_type": self.name,
                "config": config,
                "inputs": ctx.input,
            });
            // The endpoint is a URL its author chose: it passes the SSRF guard, and a refusal is
            // a configuration error (never retried).
            let http = ctx.services.outbound.client(true);
            http.check_url(&self.url)
                .map_err(|e| NodeError::Configuration(format!("the endpoint: {e}")))?;
            let call = ctx.services.breakers.call(&host_of(&self.url))?;
            // The URL is not quoted in errors: it may carry credentials.
            let response = http
                .client()
                .post(self.url.clone())
                .json(&request)
                .send()
                .await
                .map_err(|e| match crate::outbound::refusal_of(&e) {
                    Some(refused) => NodeError::Configuration(format!("the endpoint: {refused}")),
                    None => NodeError::Network(format!(
                        "could not reach the endpoint: {}",
                        e.without_url()
                    )),
                })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| super::retry::parse_retry_after(v, chrono::Utc::now()));
            let body = read_capped(response).await?;
            // The host is in trouble when it fails on its side; refusals and rate limits are
            // answers.
            call.finish(!status.is_server_error());
            classify(status, retry_after, &body).map(NodeOutput::all)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> HttpEndpoint {
        HttpEndpoint {
            url: "http://127.0.0.1:9/run".into(),
            timeout_ms: 1000,
            max_attempts: 2,
            backoff_ms: 10,
        }
    }

    #[test]
    fn statuses_are_classified_for_the_retry_policy() {
        let ok = classify(reqwest::StatusCode::OK, None, br#"{"a":1}"#).unwrap();
        assert_eq!(ok, json!({"a": 1}));
        assert_eq!(
            classify(reqwest::StatusCode::NO_CONTENT, None, b"").unwrap(),
            Value::Null
        );
        let retryable = |code: u16| {
            classify(reqwest::StatusCode::from_u16(code).unwrap(), None, b"nope")
                .unwrap_err()
                .is_retryable()
        };
        assert!(retryable(503) && retryable(500) && retryable(429) && retryable(408));
        assert!(!retryable(400) && !retryable(401) && !retryable(404));
        assert!(matches!(
            classify(reqwest::StatusCode::OK, None, b"<html>"),
            Err(NodeError::Configuration(_))
        ));
        let asked = Some(Duration::from_secs(7));
        let busy = classify(reqwest::StatusCode::SERVICE_UNAVAILABLE, asked, b"busy");
        assert_eq!(busy.unwrap_err().retry_after(), asked);
        let limited = classify(reqwest::StatusCode::TOO_MANY_REQUESTS, asked, b"slow");
        assert_eq!(limited.unwrap_err().retry_after(), asked);
    }

    #[test]
    fn configurations_are_checked_against_the_registered_schema() {
        let node = HttpNodeType::new(
            "Sentiment",
            "scores text",
            &endpoint(),
            json!({"type": "object", "required": ["language"],
                   "properties": {"language": {"type": "string"},
                                  "depth": {"type": "integer", "minimum": 1}}}),
        )
        .unwrap();
        assert!(node.validate(&json!({"language": "en"})).is_ok());
        assert_eq!(node.validate(&json!({})).unwrap_err().field, "(config)");
        let error = node
            .validate(&json!({"language": "en", "depth": 0}))
            .unwrap_err();
        assert_eq!(error.field, "depth", "{error}");
    }

    #[test]
    fn bad_registrations_name_the_field() {
        let schema = json!({"type": "object"});
        let mut bad = endpoint();
        bad.url = "ftp://example.com".into();
        let error = HttpNodeType::new("X", "", &bad, schema.clone())
            .err()
            .unwrap();
        assert_eq!(error.field, "endpoint_url");
        let mut bad = endpoint();
        bad.max_attempts = 0;
        let error = HttpNodeType::new("X", "", &bad, schema).err().unwrap();
        assert_eq!(error.field, "max_attempts");
        let error = HttpNodeType::new("X", "", &endpoint(), json!({"type": "no-such-type"}))
            .err()
            .unwrap();
        assert_eq!(error.field, "config_schema");
    }

    #[tokio::test]
    async fn string_config_is_rendered_with_the_field_named_on_error() {
        let scope = TemplateScope::default();
        let pool = ComputePool::new(1);
        let input: SharedValue = json!({"name": "Ada"}).into();
        let config =
            json!({"greeting": "hi {{ input.name }}", "n": 2, "list": ["{{ input.name }}"]});
        let rendered = render_config(&config, &scope, &input, String::new(), &pool)
            .await
            .unwrap();
        assert_eq!(
            rendered,
            json!({"greeting": "hi Ada", "n": 2, "list": ["Ada"]})
        );
        let null: SharedValue = Value::Null.into();
        let config = json!({"outer": {"inner": "{{ missing.x }}"}});
        let error = render_config(&config, &scope, &null, String::new(), &pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("field `outer.inner`"), "{error}");
    }
}
