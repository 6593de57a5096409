//! `RespondToWebhook`: ends the run and decides what a caller waiting on the webhook gets: the
//! status code, headers and body (`response_config`: `json` renders `response_body`,
//! `all_incoming_items` sends the node's input, `no_data` sends nothing).

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use poem::http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::jobs::WebhookResponse;
use crate::workflow::template;

pub struct RespondToWebhook;

const MODES: &[&str] = &["json", "all_incoming_items", "no_data"];
/// Headers the server itself owns.
const RESERVED_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// `status_code`, written as a number or (as KAI-Fusion does) a string; default 200.
fn status_code(config: &Value) -> Result<u16, ConfigError> {
    let status = match config.get("status_code") {
        None | Some(Value::Null) => return Ok(200),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match status {
        Some(code @ 100..=599) => Ok(code as u16),
        _ => Err(ConfigError::new(
            "status_code",
            "must be an HTTP status between 100 and 599",
        )),
    }
}

/// `response_headers`: an object of strings, or that object written as a JSON string.
fn headers(config: &Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let field = "response_headers";
    let parsed;
    let object = match config.get(field) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| ConfigError::new(field, format!("not a JSON object: {e}")))?;
            &parsed
        }
        Some(other) => other,
    };
    let Some(object) = object.as_object() else {
        return Err(ConfigError::new(
            field,
            "must be an object of header names to values",
        ));
    };
    let mut headers = BTreeMap::new();
    for (name, value) in object {
        let Some(value) = value.as_str() else {
            return Err(ConfigError::new(
                field,
                format!("header `{name}` must be a string"),
            ));
        };
        let lower = name.to_ascii_lowercase();
        if HeaderName::try_from(lower.as_str()).is_err() || HeaderValue::from_str(value).is_err() {
            return Err(ConfigError::new(
                field,
                format!("header `{name}` is not a valid header"),
            ));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(ConfigError::new(
                field,
                format!("header `{name}` is set by the server"),
            ));
        }
        headers.insert(lower, value.to_owned());
    }
    Ok(headers)
}

fn mode(config: &Value) -> Result<&str, ConfigError> {
    match config.get("response_config") {
        None | Some(Value::Null) => Ok("json"),
        Some(Value::String(mode)) if MODES.contains(&mode.as_str()) => Ok(mode),
        Some(_) => Err(ConfigError::new(
            "response_config",
            format!("must be one of {}", MODES.join(", ")),
        )),
    }
}

fn content_type(config: &Value) -> Result<String, ConfigError> {
    match config.get("content_type") {
        None | Some(Value::Null) => Ok("application/json".to_owned()),
        Some(Value::String(text)) if HeaderValue::from_str(text).is_ok() && !text.is_empty() => {
            Ok(text.clone())
        }
        Some(_) => Err(ConfigError::new(
            "content_type",
            "must be a media type such as text/plain",
        )),
    }
}

impl NodeDefinition for RespondToWebhook {
    fn type_name(&self) -> &'static str {
        "RespondToWebhook"
    }

    fn description(&self) -> &'static str {
        "Ends a run and chooses the status, headers and body a waiting webhook caller gets."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "status_code": {"type": ["string", "integer"], "default": "200"},
                "response_config": {"type": "string", "enum": MODES, "default": "json"},
                "response_body": {"description": "Templated text (JSON when it parses) or a JSON value."},
                "response_headers": {"type": ["object", "string"],
                    "additionalProperties": {"type": "string"}},
                "content_type": {"type": "string", "default": "application/json"}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::End
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "target"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        status_code(config)?;
        headers(config)?;
        mode(config)?;
        content_type(config)?;
        match config.get("response_body") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(body)) => {
                template::check(body).map_err(|e| ConfigError::new("response_body", e))
            }
            // A JSON value given as is.
            Some(_) => Ok(()),
        }
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let invalid = |e: ConfigError| NodeError::Configuration(e.to_string());
            let config = ctx.config;
            let content_type = content_type(config).map_err(invalid)?;
            let body = match mode(config).map_err(invalid)? {
                "no_data" => Value::Null,
                "all_incoming_items" => Value::clone(ctx.input),
                _ => match config.get("response_body") {
                    Some(Value::String(text)) if !text.trim().is_empty() => {
                        let rendered = template::render_bounded(
                            text,
                            ctx.scope,
                            ctx.input,
                            &ctx.services.compute,
                        )
                        .await
                        .map_err(|e| {
                            NodeError::Configuration(format!("field `response_body`: {e}"))
                        })?;
                        // A body that renders to JSON is sent as that JSON value.
                        serde_json::from_str(&rendered).unwrap_or(Value::String(rendered))
                    }
                    None | Some(Value::Null | Value::String(_)) => Value::clone(ctx.input),
                    Some(other) => other.clone(),
                },
            };
            let response = WebhookResponse {
                status: status_code(config).map_err(invalid)?,
                content_type,
                headers: headers(config).map_err(invalid)?,
                body,
            };
            let value = json!({
                "status_code": response.status,
                "headers": response.headers,
                "content_type": response.content_type,
                "body": response.body,
            });
            Ok(NodeOutput {
                value: value.into(),
                route: None,
                response: Some(response),
                details: None,
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_kai_fusion_settings() {
        let node = RespondToWebhook;
        assert!(
            node.validate(&json!({"status_code": "201", "response_headers": "{\"X-A\": \"1\"}"}))
                .is_ok()
        );
        let err = node.validate(&json!({"status_code": "abc"})).unwrap_err();
        assert_eq!(err.field, "status_code");
        let err = node
            .validate(&json!({"response_headers": {"Content-Length": "3"}}))
            .unwrap_err();
        assert_eq!(err.field, "response_headers");
        let err = node
            .validate(&json!({"response_config": "everything"}))
            .unwrap_err();
        assert_eq!(err.field, "response_config");
    }
}
