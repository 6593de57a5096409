//! `ConditionNode`: compares `value1` (templated; empty means the node's input) with `value2` and
//! routes its input on to `true_output` or `false_output`. The branch not taken is skipped.

use futures::FutureExt;
use futures::future::BoxFuture;
use regex::RegexBuilder;
use serde_json::Value;

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::workflow::template;

pub struct Condition;

const OPERATIONS: &[&str] = &[
    "equal",
    "not_equal",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "regex",
    "is_empty",
    "not_empty",
];

fn text_field<'a>(config: &'a Value, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ConfigError::new(field, "must be a string")),
    }
}

/// Text of a value for comparison: strings as they are, anything else as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl NodeDefinition for Condition {
    fn type_name(&self) -> &'static str {
        "ConditionNode"
    }

    fn description(&self) -> &'static str {
        "Compares two values and routes its input to `true_output` or `false_output`."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "value1": {"type": "string", "description": "Templated; empty means the input."},
                "operation": {"type": "string", "enum": OPERATIONS, "default": "equal"},
                "value2": {"type": "string", "description": "Templated."},
                "case_sensitive": {"type": "boolean", "default": false}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["true_output", "false_output"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &["input"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        let operation = text_field(config, "operation")?.unwrap_or("equal");
        if !OPERATIONS.contains(&operation) {
            return Err(ConfigError::new(
                "operation",
                format!("`{operation}` is not one of {}", OPERATIONS.join(", ")),
            ));
        }
        for field in ["value1", "value2"] {
            if let Some(text) = text_field(config, field)? {
                template::check(text).map_err(|e| ConfigError::new(field, e))?;
            }
        }
        if operation == "regex"
            && let Some(pattern) = text_field(config, "value2")?
            && !template::is_template(pattern)
        {
            RegexBuilder::new(pattern)
                .build()
                .map_err(|e| ConfigError::new("value2", format!("not a valid regex: {e}")))?;
        }
        if let Some(flag) = config.get("case_sensitive")
            && !flag.is_null()
            && !flag.is_boolean()
        {
            return Err(ConfigError::new("case_sensitive", "must be true or false"));
        }
        Ok(())
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let config = ctx.config;
            let render = async |field: &str| -> Result<Option<String>, NodeError> {
                match config.get(field).and_then(Value::as_str) {
                    Some(text) if !text.is_empty() => {
                        template::render_bounded(text, ctx.scope, ctx.input, &ctx.services.compute)
                            .await
                            .map(Some)
                            .map_err(|e| NodeError::Configuration(format!("field `{field}`: {e}")))
                    }
                    _ => Ok(None),
                }
            };
            let value1 = render("value1")
                .await?
                .unwrap_or_else(|| as_text(ctx.input));
            let value2 = render("value2").await?.unwrap_or_default();
            let operation = config
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("equal");
            let case_sensitive = config
                .get("case_sensitive")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let fold = |s: &str| {
                if case_sensitive {
                    s.to_owned()
                } else {
                    s.to_lowercase()
                }
            };
            let (a, b) = (fold(&value1), fold(&value2));
            let outcome = match operation {
                "equal" => a == b,
                "not_equal" => a != b,
                "contains" => a.contains(&b),
                "not_contains" => !a.contains(&b),
                "starts_with" => a.starts_with(&b),
                "ends_with" => a.ends_with(&b),
                "is_empty" => value1.trim().is_empty(),
                "not_empty" => !value1.trim().is_empty(),
                "regex" => RegexBuilder::new(&value2)
                    .case_insensitive(!case_sensitive)
                    .build()
                    .map_err(|e| {
                        NodeError::Configuration(format!("field `value2`: not a valid regex: {e}"))
                    })?
                    .is_match(&value1),
                other => {
                    return Err(NodeError::Configuration(format!(
                        "unknown operation `{other}`"
                    )));
                }
            };
            let route = if outcome {
                "true_output"
            } else {
                "false_output"
            };
            Ok(NodeOutput::routed(ctx.input.clone(), route))
        }
        .boxed()
    }
}
