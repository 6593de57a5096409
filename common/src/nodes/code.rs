//! `CodeNode`: runs the author's Python or JavaScript in an embedded sandbox (see `sandbox`):
//! the code is templated first (as KAI-Fusion did), the input is `node_data`, and the output is
//! what the code prints, as JSON when it parses (a printed Python dict or list counts), else the
//! text; without printed output, the value the code ends with. It runs on the compute pool,
//! bounded in time, memory and output, so an endless loop or a huge allocation fails this node
//! with a clear error and nothing else notices.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{
    ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput, RunPolicy,
};
use crate::sandbox::{self, Limits, SandboxError};
use crate::workflow::template;

pub struct Code;

const LANGUAGES: &[&str] = &["python", "javascript"];
const MAX_CODE_BYTES: usize = 256 * 1024;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const MAX_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Python,
    JavaScript,
}

fn language(config: &Value) -> Result<Language, ConfigError> {
    match config.get("language") {
        None | Some(Value::Null) => Ok(Language::Python),
        Some(Value::String(name)) => match name.to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Ok(Language::Python),
            "javascript" | "js" => Ok(Language::JavaScript),
            _ => Err(ConfigError::new(
                "language",
                format!("must be one of {}", LANGUAGES.join(", ")),
            )),
        },
        Some(_) => Err(ConfigError::new("language", "must be a string")),
    }
}

fn code(config: &Value) -> Result<&str, ConfigError> {
    match config.get("code") {
        Some(Value::String(code)) if !code.trim().is_empty() => {
            if code.len() > MAX_CODE_BYTES {
                return Err(ConfigError::new(
                    "code",
                    format!("at most {MAX_CODE_BYTES} bytes"),
                ));
            }
            Ok(code)
        }
        _ => Err(ConfigError::new("code", "required: the code to run")),
    }
}

fn timeout(config: &Value) -> Result<Duration, ConfigError> {
    let seconds = match config.get("timeout") {
        None | Some(Value::Null) => return Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s > 0.0 && s <= MAX_TIMEOUT_SECS as f64 => Ok(Duration::from_secs_f64(s)),
        _ => Err(ConfigError::new(
            "timeout",
            format!("must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds"),
        )),
    }
}

fn flag(config: &Value, name: &str) -> Result<bool, ConfigError> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(ConfigError::new(name, "must be true or false")),
    }
}

/// The node's output from what the code printed and ended with.
fn output_of(language: Language, finished: sandbox::Finished) -> Value {
    let printed = finished.printed.trim();
    if printed.is_empty() {
        return finished.result.unwrap_or(Value::Null);
    }
    if let Ok(json) = serde_json::from_str(printed) {
        return json;
    }
    if language == Language::Python
        && let Some(literal) = sandbox::python::literal(printed)
    {
        return literal;
    }
    Value::String(printed.to_owned())
}

impl Code {
    async fn run(&self, ctx: NodeContext<'_>) -> Result<NodeOutput, NodeError> {
        let invalid = |e: ConfigError| NodeError::Configuration(e.to_string());
        let config = ctx.config;
        let language = language(config).map_err(invalid)?;
        let source = template::render_bounded(
            code(config).map_err(invalid)?,
            ctx.scope,
            ctx.input,
            &ctx.services.compute,
        )
        .await
        .map_err(|e| NodeError::Configuration(format!("field `code`: {e}")))?;
        let limits = Limits {
            time: timeout(config).map_err(invalid)?,
            ..Limits::default()
        };
        let input = Value::clone(ctx.input);
        let ran = ctx
            .services
            .compute
            .run(move || {
                let finished = match language {
                    Language::Python => sandbox::python::run(&source, &input, &limits),
                    Language::JavaScript => sandbox::javascript::run(&source, &input, &limits),
                }?;
                Ok::<_, SandboxError>(output_of(language, finished))
            })
            .await;
        match ran {
            Ok(value) => Ok(NodeOutput::all(value)),
            // KAI-Fusion's `continue_on_error`: the failure becomes the output.
            Err(error) if flag(config, "continue_on_error").unwrap_or(false) => Ok(
                NodeOutput::all(json!({"success": false, "error": error.to_string()})),
            ),
            // Running it again would fail the same way: never retried.
            Err(error) => Err(NodeError::Configuration(error.to_string())),
        }
    }
}

impl NodeDefinition for Code {
    fn type_name(&self) -> &'static str {
        "CodeNode"
    }

    fn description(&self) -> &'static str {
        "Runs Python or JavaScript in a sandbox on the input (`node_data`); its output is what the code prints."
    }

    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["code"],
            "properties": {
                "language": {"type": "string", "enum": LANGUAGES, "default": "python"},
                "code": {"type": "string", "maxLength": MAX_CODE_BYTES,
                    "description": "Templated first; `node_data` holds the input. What it prints is the output (JSON when it parses)."},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECS,
                    "default": DEFAULT_TIMEOUT_SECS, "description": "Seconds the code may run."},
                "continue_on_error": {"type": "boolean", "default": false,
                    "description": "A failure becomes the output `{success: false, error}` instead of failing the run."},
                "enable_validation": {"type": "boolean"}
            }
        })
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
        language(config)?;
        template::check(code(config)?).map_err(|e| ConfigError::new("code", e))?;
        timeout(config)?;
        flag(config, "continue_on_error")?;
        flag(config, "enable_validation")?;
        Ok(())
    }

    fn policy(&self, config: &Value) -> RunPolicy {
        let limit = timeout(config).unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        RunPolicy {
            // The sandbox stops the code at its limit; this only backs it up.
            timeout: limit + Duration::from_secs(5),
            max_attempts: 1,
            backoff: Duration::from_secs(1),
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
    fn configurations_are_checked_naming_the_field() {
        let node = Code;
        assert!(node.validate(&json!({"code": "print(1)"})).is_ok());
        assert!(
            node.validate(
                &json!({"language": "javascript", "code": "print(1)", "timeout": 5,
                                  "continue_on_error": false, "enable_validation": true})
            )
            .is_ok()
        );
        for (config, field) in [
            (json!({}), "code"),
            (json!({"code": "  "}), "code"),
            (json!({"code": "{{ broken"}), "code"),
            (json!({"code": "x", "language": "ruby"}), "language"),
            (json!({"code": "x", "timeout": 0}), "timeout"),
            (json!({"code": "x", "timeout": 301}), "timeout"),
            (
                json!({"code": "x", "continue_on_error": "yes"}),
                "continue_on_error",
            ),
        ] {
            assert_eq!(node.validate(&config).unwrap_err().field, field, "{config}");
        }
    }

    #[test]
    fn output_is_printed_json_a_printed_python_literal_text_or_the_final_value() {
        let finished = |printed: &str, result: Option<Value>| sandbox::Finished {
            printed: printed.to_owned(),
            result,
        };
        assert_eq!(
            output_of(Language::JavaScript, finished("{\"a\":1}\n", None)),
            json!({"a": 1})
        );
        assert_eq!(
            output_of(Language::Python, finished("{'values': ['x']}\n", None)),
            json!({"values": ["x"]})
        );
        assert_eq!(
            output_of(Language::Python, finished("hello\n", None)),
            json!("hello")
        );
        assert_eq!(
            output_of(Language::JavaScript, finished("", Some(json!(3)))),
            json!(3)
        );
        assert_eq!(output_of(Language::Python, finished("", None)), Value::Null);
    }
}
