//! `HttpRequest` (legacy `HttpClientNode`): calls a URL the author chose, through the SSRF guard,
//! with KAI-Fusion's fields: method, templated URL (or the input's `url`), headers, query
//! parameters, templated body, content type, authentication from a credential, timeout,
//! retries (429 and 5xx, honouring `Retry-After`), TLS verification. Every attempt is logged in
//! `http_request_logs`, redacted. A 4xx answer is an output with `success: false` (a workflow
//! can branch on it); 408, 429 and 5xx are retried and fail the node when attempts run out.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::fields::{credential_id, field};
use super::{
    ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput, RunPolicy,
};
use crate::outbound::auth::{AUTH_TYPES, Auth};
use crate::outbound::call::{self, CallError, HttpAnswer, HttpCall, Oversize};
use crate::outbound::redact::Redactor;
use crate::outbound::request_log::HttpLogEntry;
use crate::workflow::template;

pub struct HttpRequest;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const MAX_TIMEOUT_SECS: u64 = 300;
const DEFAULT_RETRIES: u64 = 3;
const MAX_RETRIES: u64 = 10;
const MAX_RETRY_DELAY_SECS: f64 = 60.0;
/// Characters of a body kept in the log.
const LOGGED_BODY_CHARS: usize = 4096;
/// Answers larger than this are parsed in the compute pool, not on the async runtime.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

fn method(config: &Value) -> Result<Method, ConfigError> {
    match field(config, &["method"]) {
        None => Ok(Method::GET),
        Some(Value::String(text)) if METHODS.contains(&text.to_ascii_uppercase().as_str()) => {
            Ok(Method::from_bytes(text.to_ascii_uppercase().as_bytes()).expect("a known method"))
        }
        Some(_) => Err(ConfigError::new(
            "method",
            format!("must be one of {}", METHODS.join(", ")),
        )),
    }
}

/// An object of strings, or that object written as JSON text (as KAI-Fusion's editor saves it).
fn string_pairs(config: &Value, names: &[&str]) -> Result<Vec<(String, String)>, ConfigError> {
    let name = names[0];
    let parsed;
    let object = match field(config, names) {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| ConfigError::new(name, format!("not a JSON object: {e}")))?;
            &parsed
        }
        Some(other) => other,
    };
    let Some(object) = object.as_object() else {
        return Err(ConfigError::new(
            name,
            "must be an object of names to values",
        ));
    };
    object
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((key.clone(), value.to_string())),
            _ => Err(ConfigError::new(
                name,
                format!("`{key}` must be a string, number or boolean"),
            )),
        })
        .collect()
}

fn number(config: &Value, name: &str, default: f64, max: f64) -> Result<f64, ConfigError> {
    let value = match field(config, &[name]) {
        None => return Ok(default),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(v) if (0.0..=max).contains(&v) => Ok(v),
        _ => Err(ConfigError::new(
            name,
            format!("must be a number from 0 to {max}"),
        )),
    }
}

fn timeout(config: &Value) -> Result<Duration, ConfigError> {
    let seconds = number(
        config,
        "timeout",
        DEFAULT_TIMEOUT_SECS as f64,
        MAX_TIMEOUT_SECS as f64,
    )?;
    if seconds <= 0.0 {
        return Err(ConfigError::new("timeout", "must be more than 0 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn auth_type(config: &Value) -> Result<&str, ConfigError> {
    match field(config, &["auth_type"]) {
        None => Ok("none"),
        Some(Value::String(kind)) if AUTH_TYPES.contains(&kind.as_str()) => Ok(kind),
        Some(_) => Err(ConfigError::new(
            "auth_type",
            format!("must be one of {}", AUTH_TYPES.join(", ")),
        )),
    }
}

fn verify_tls(config: &Value) -> Result<bool, ConfigError> {
    match field(config, &["verify_ssl"]) {
        None => Ok(true),
        Some(Value::Bool(verify)) => Ok(*verify),
        Some(_) => Err(ConfigError::new("verify_ssl", "must be true or false")),
    }
}

/// The media type of `content_type`, which may be a short name (`json`, `form`, `text`, `xml`).
fn content_type(config: &Value) -> Result<String, ConfigError> {
    let text = match field(config, &["content_type"]) {
        None => return Ok("application/json".to_owned()),
        Some(Value::String(text)) => text.trim(),
        Some(_) => return Err(ConfigError::new("content_type", "must be a media type")),
    };
    Ok(match text {
        "" | "json" => "application/json".to_owned(),
        "form" | "form-urlencoded" => "application/x-www-form-urlencoded".to_owned(),
        "text" => "text/plain".to_owned(),
        "xml" => "application/xml".to_owned(),
        other if other.contains('/') && reqwest::header::HeaderValue::from_str(other).is_ok() => {
            other.to_owned()
        }
        _ => {
            return Err(ConfigError::new(
                "content_type",
                "must be json, form, text, xml or a media type such as text/csv",
            ));
        }
    })
}

/// The configured URL (templated), when there is one.
fn url_template(config: &Value) -> Option<&str> {
    field(config, &["url"])
        .and_then(Value::as_str)
        .filter(|url| !url.trim().is_empty())
}

const BODY_FIELDS: &[&str] = &["request_body", "body"];

/// The URL to call: the configured one rendered, else the input's `url` (or the input itself
/// when it is a string).
async fn resolve_url(ctx: &NodeContext<'_>) -> Result<url::Url, NodeError> {
    let text = match url_template(ctx.config) {
        Some(url) => render_field(ctx, url, "url").await?,
        None => match &**ctx.input {
            Value::String(url) => url.clone(),
            input => input
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    NodeError::Configuration(
                        "field `url`: empty, and the input carries no `url`".to_owned(),
                    )
                })?,
        },
    };
    url::Url::parse(text.trim())
        .map_err(|e| NodeError::Configuration(format!("field `url`: not a valid URL: {e}")))
}

/// The body as text: a string rendered through the templates, a JSON value serialised.
async fn resolve_body(
    ctx: &NodeContext<'_>,
    method: &Method,
) -> Result<Option<Vec<u8>>, NodeError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(None);
    }
    match field(ctx.config, BODY_FIELDS) {
        None => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => render_field(ctx, text, "request_body")
            .await
            .map(|body| Some(body.into_bytes())),
        Some(value) => Ok(Some(value.to_string().into_bytes())),
    }
}

/// A templated field rendered (off the async runtime when it is heavy); the error names it.
async fn render_field(ctx: &NodeContext<'_>, text: &str, field: &str) -> Result<String, NodeError> {
    template::render_bounded(text, ctx.scope, ctx.input, &ctx.services.compute)
        .await
        .map_err(|e| NodeError::Configuration(format!("field `{field}`: {e}")))
}

/// Renders the values of name/value pairs.
async fn render_pairs(
    ctx: &NodeContext<'_>,
    pairs: Vec<(String, String)>,
    field: &str,
) -> Result<Vec<(String, String)>, NodeError> {
    let mut rendered = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let value = render_field(ctx, &value, &format!("{field}.{name}")).await?;
        rendered.push((name, value));
    }
    Ok(rendered)
}

/// The breaker key of a URL: its host and port.
fn host_of(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or("unknown"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The node's output in KAI-Fusion's shape.
fn output(answer: &HttpAnswer, method: &Method, content: Value, is_json: bool) -> Value {
    let headers: Map<String, Value> = answer
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    let duration_ms = answer.duration.as_secs_f64() * 1000.0;
    let success = (200..300).contains(&answer.status);
    let page_content = match &content {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    json!({
        "response": {
            "status_code": answer.status,
            "headers": headers,
            "content": content,
            "is_json": is_json,
            "url": answer.url.as_str(),
            "method": method.as_str(),
            "duration_ms": duration_ms,
        },
        "status_code": answer.status,
        "content": content,
        "headers": headers,
        "success": success,
        "documents": [{
            "page_content": page_content,
            "metadata": {"source": answer.url.as_str(), "status_code": answer.status},
        }],
    })
}

/// The body as JSON when it is JSON, else as text.
fn parse_body(body: &[u8]) -> (Value, bool) {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if !body.is_empty() => (value, true),
        _ => (
            Value::String(String::from_utf8_lossy(body).into_owned()),
            false,
        ),
    }
}

/// What a failed or refused answer means for the retry policy; `None` for an answer the node
/// hands on.
fn failure_of(answer: &HttpAnswer) -> Option<NodeError> {
    let status = answer.status;
    let retry_after = answer
        .header("retry-after")
        .and_then(|v| super::retry::parse_retry_after(v, chrono::Utc::now()));
    match status {
        429 => Some(NodeError::RateLimited(
            "the server answered 429 Too Many Requests".to_owned(),
            retry_after,
        )),
        503 if retry_after.is_some() => Some(NodeError::RateLimited(
            "the server answered 503 Service Unavailable".to_owned(),
            retry_after,
        )),
        408 | 500..=599 => Some(NodeError::Network(format!("the server answered {status}"))),
        _ => None,
    }
}

impl HttpRequest {
    fn check(&self, config: &Value) -> Result<(), ConfigError> {
        method(config)?;
        string_pairs(config, &["custom_headers", "headers"])?;
        string_pairs(config, &["url_params", "params", "query_params"])?;
        content_type(config)?;
        timeout(config)?;
        let retries = number(
            config,
            "max_retries",
            DEFAULT_RETRIES as f64,
            MAX_RETRIES as f64,
        )?;
        if retries.fract() != 0.0 {
            return Err(ConfigError::new("max_retries", "must be a whole number"));
        }
        number(config, "retry_delay", 1.0, MAX_RETRY_DELAY_SECS)?;
        verify_tls(config)?;
        if auth_type(config)? != "none" && credential_id(config).is_none() {
            return Err(ConfigError::new(
                "credential_id",
                "required when auth_type is not none",
            ));
        }
        if let Some(url) = url_template(config) {
            if template::is_template(url) {
                template::check(url).map_err(|e| ConfigError::new("url", e))?;
            } else {
                let parsed = url::Url::parse(url.trim())
                    .map_err(|e| ConfigError::new("url", format!("not a valid URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::new(
                        "url",
                        "must be an http:// or https:// URL",
                    ));
                }
            }
        }
        if let Some(Value::String(body)) = field(config, BODY_FIELDS) {
            template::check(body).map_err(|e| ConfigError::new("request_body", e))?;
        }
        Ok(())
    }

    async fn run(&self, ctx: NodeContext<'_>) -> Result<NodeOutput, NodeError> {
        let invalid = |e: ConfigError| NodeError::Configuration(e.to_string());
        let config = ctx.config;
        let method = method(config).map_err(invalid)?;
        let url = resolve_url(&ctx).await?;
        let auth = match credential_id(config) {
            None => Auth::None,
            Some(id) => {
                let credential = ctx.services.credential(ctx.run, ctx.node_id, id).await?;
                let kind = auth_type(config).map_err(invalid)?;
                Auth::from_credential(kind, &credential)
                    .map_err(|e| NodeError::Credential(format!("node {}: {e}", ctx.node_id)))?
            }
        };
        let headers = string_pairs(config, &["custom_headers", "headers"]).map_err(invalid)?;
        let query =
            string_pairs(config, &["url_params", "params", "query_params"]).map_err(invalid)?;
        let call = HttpCall {
            headers: render_pairs(&ctx, headers, "custom_headers").await?,
            query: render_pairs(&ctx, query, "url_params").await?,
            body: resolve_body(&ctx, &method).await?,
            content_type: Some(content_type(config).map_err(invalid)?),
            auth,
            timeout: timeout(config).map_err(invalid)?,
            verify_tls: verify_tls(config).map_err(invalid)?,
            method: method.clone(),
            url,
        };
        let services = ctx.services;
        let breaker = services.breakers.call(&host_of(&call.url))?;
        let started = chrono::Utc::now();
        let limit = services.outbound.max_response_bytes;
        let sent = call::send(&services.outbound, &call, limit, Oversize::Fail).await;
        // Log rows and the output keep no secret of the credential, wherever it shows up.
        let redactor = Redactor::new(call.auth.secrets().iter().map(String::as_str));
        self.log(&ctx, &call, &sent, started, &redactor);
        let answer = match sent {
            Ok(answer) => answer,
            Err(error) => {
                // A refusal or a bad request says nothing about the host's health.
                breaker.finish(matches!(
                    error,
                    CallError::Guard(_) | CallError::Refused(_) | CallError::Invalid(_)
                ));
                return Err(match error {
                    CallError::Timeout(after) => NodeError::Timeout(after),
                    CallError::Network(message) => NodeError::Network(message),
                    other => NodeError::Configuration(other.to_string()),
                });
            }
        };
        breaker.finish(answer.status < 500);
        if let Some(failure) = failure_of(&answer) {
            return Err(failure);
        }
        // A server that reflects the credential (an echo, an error page) must not put it into
        // the execution's records.
        let parse = move |answer: HttpAnswer| {
            let (content, is_json) = parse_body(&answer.body);
            redactor.json_values(&output(&answer, &method, content, is_json))
        };
        let value = if answer.body.len() > PARSE_INLINE_BYTES {
            services.compute.run(move || parse(answer)).await
        } else {
            parse(answer)
        };
        Ok(NodeOutput::all(value))
    }

    /// Logs one attempt, redacted (the credential's secrets and secret-named fields).
    fn log(
        &self,
        ctx: &NodeContext<'_>,
        call: &HttpCall,
        sent: &Result<HttpAnswer, CallError>,
        started: chrono::DateTime<chrono::Utc>,
        redactor: &Redactor,
    ) {
        let mut logged_url = call.url.clone();
        if !call.query.is_empty() {
            logged_url.query_pairs_mut().extend_pairs(&call.query);
        }
        let request_headers = redactor.headers(
            call.headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .chain(call.content_type.as_deref().map(|c| ("content-type", c))),
        );
        let (status, response_headers, response_body, response_bytes, error) = match sent {
            Ok(answer) => (
                Some(i32::from(answer.status)),
                redactor.headers(answer.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                redactor.body(&answer.body, LOGGED_BODY_CHARS),
                Some(answer.body.len() as i64),
                None,
            ),
            Err(error) => (
                None,
                Value::Null,
                Value::Null,
                None,
                Some(redactor.text(&error.to_string())),
            ),
        };
        let duration = (chrono::Utc::now() - started).num_milliseconds();
        ctx.services.http_logs.record(HttpLogEntry {
            user_id: ctx.run.owner,
            workflow_id: Some(ctx.run.workflow),
            execution_id: Some(ctx.run.execution),
            node_id: ctx.node_id.to_owned(),
            method: call.method.as_str().to_owned(),
            url: redactor.url(&logged_url),
            request_headers,
            request_body: call
                .body
                .as_deref()
                .map_or(Value::Null, |b| redactor.body(b, LOGGED_BODY_CHARS)),
            response_status: status,
            response_headers,
            response_body,
            duration_ms: i32::try_from(duration).unwrap_or(i32::MAX),
            request_bytes: call.body.as_ref().map_or(0, Vec::len) as i64,
            response_bytes,
            error,
            retry_count: i32::try_from(ctx.attempt.saturating_sub(1)).unwrap_or(i32::MAX),
            created_at: started,
        });
    }
}

impl NodeDefinition for HttpRequest {
    fn type_name(&self) -> &'static str {
        "HttpRequest"
    }

    fn description(&self) -> &'static str {
        "Calls an HTTP API (any method, headers, query, body, credential auth) and passes on its answer."
    }

    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": METHODS, "default": "GET"},
                "url": {"type": "string", "description": "Templated; empty: the input's `url`."},
                "custom_headers": {"type": ["object", "string"],
                    "additionalProperties": {"type": "string"},
                    "description": "Header names to templated values (or that object as JSON text)."},
                "url_params": {"type": ["object", "string"],
                    "additionalProperties": {"type": "string"},
                    "description": "Query parameters to templated values."},
                "request_body": {"description": "Templated text, or a JSON value sent as JSON."},
                "content_type": {"type": "string", "default": "json",
                    "description": "json, form, text, xml or a media type."},
                "auth_type": {"type": "string", "enum": AUTH_TYPES, "default": "none"},
                "credential_id": {"type": "string", "format": "uuid",
                    "description": "A credential of yours (bearer, basic_auth, api_key, header_auth...)."},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECS,
                    "default": DEFAULT_TIMEOUT_SECS, "description": "Seconds per attempt."},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES,
                    "default": DEFAULT_RETRIES,
                    "description": "Retries after a 408, 429, 5xx, timeout or connection error."},
                "retry_delay": {"type": "number", "minimum": 0, "maximum": MAX_RETRY_DELAY_SECS,
                    "default": 1, "description": "Seconds before the first retry; doubles, or the server's Retry-After when longer."},
                "verify_ssl": {"type": "boolean", "default": true}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "response", "documents"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "url"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        self.check(config)
    }

    fn policy(&self, config: &Value) -> RunPolicy {
        let timeout = timeout(config).unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        let retries = number(
            config,
            "max_retries",
            DEFAULT_RETRIES as f64,
            MAX_RETRIES as f64,
        )
        .unwrap_or(DEFAULT_RETRIES as f64);
        let delay = number(config, "retry_delay", 1.0, MAX_RETRY_DELAY_SECS).unwrap_or(1.0);
        RunPolicy {
            // The call's own timeout fires first, with the clearer error.
            timeout: timeout + Duration::from_secs(5),
            max_attempts: retries as u32 + 1,
            backoff: Duration::from_secs_f64(delay),
        }
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        self.run(ctx).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kai_fusion_and_legacy_configurations_validate() {
        let node = HttpRequest;
        assert!(node.validate(&json!({})).is_ok());
        assert!(
            node.validate(&json!({
                "method": "POST", "url": "https://example.com/{{ input.id }}",
                "custom_headers": "{\"X-A\": \"1\"}", "url_params": {"q": "{{ input.q }}"},
                "request_body": "{\"a\": {{ input.a | tojson }}}", "content_type": "json",
                "auth_type": "bearer", "credential_id": "6f1c0d3e-0000-4000-8000-000000000001",
                "timeout": 10, "max_retries": 2, "retry_delay": 0.5, "verify_ssl": false
            }))
            .is_ok()
        );
        // The legacy node's `body`.
        assert!(
            node.validate(&json!({"method": "POST", "url": "https://httpbin.org/post",
                                  "content_type": "json", "body": "{\"r\": \"{{ result }}\"}"}))
                .is_ok()
        );
        for (config, field) in [
            (json!({"method": "FETCH"}), "method"),
            (json!({"url": "ftp://example.com"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"timeout": 0}), "timeout"),
            (json!({"timeout": 100000}), "timeout"),
            (json!({"max_retries": 11}), "max_retries"),
            (json!({"max_retries": 2.5}), "max_retries"),
            (json!({"auth_type": "bearer"}), "credential_id"),
            (
                json!({"auth_type": "digest", "credential_id": "x"}),
                "auth_type",
            ),
            (json!({"custom_headers": "[1]"}), "custom_headers"),
            (
                json!({"custom_headers": {"X": {"nested": 1}}}),
                "custom_headers",
            ),
            (json!({"verify_ssl": "no"}), "verify_ssl"),
            (json!({"request_body": "{{ unclosed"}), "request_body"),
        ] {
            assert_eq!(node.validate(&config).unwrap_err().field, field, "{config}");
        }
    }

    #[test]
    fn retries_follow_the_configuration() {
        let policy =
            HttpRequest.policy(&json!({"max_retries": 2, "retry_delay": 0.25, "timeout": 3}));
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.backoff, Duration::from_millis(250));
        assert_eq!(policy.timeout, Duration::from_secs(8));
        assert_eq!(HttpRequest.policy(&json!({})).max_attempts, 4);
    }
}
