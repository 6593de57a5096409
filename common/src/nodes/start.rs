//! `StartNode`: the manual entry point. Its output is `initial_input` when set, else the run's
//! input. Older exports also put one after a timer (`timer → start → ...`): there, unless it
//! has its own `initial_input`, it passes on what reaches it.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};

pub struct Start;

impl NodeDefinition for Start {
    fn type_name(&self) -> &'static str {
        "StartNode"
    }

    fn description(&self) -> &'static str {
        "Starts a run by hand; passes on `initial_input`, or the run's input."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "initial_input": {"type": "string", "description": "What the run starts with."}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Entry
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &["input"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        match config.get("initial_input") {
            None | Some(Value::Null | Value::String(_)) => Ok(()),
            Some(_) => Err(ConfigError::new("initial_input", "must be a string")),
        }
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let value = match ctx.config.get("initial_input") {
                Some(Value::String(text)) if !text.is_empty() => Value::String(text.clone()).into(),
                _ if !ctx.input.is_null() => ctx.input.clone(),
                _ => ctx.trigger.clone(),
            };
            Ok(NodeOutput::all(value))
        }
        .boxed()
    }
}
