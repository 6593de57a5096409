//! `EndNode`: ends a run; its output (the run's result) is its input.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};

pub struct End;

impl NodeDefinition for End {
    fn type_name(&self) -> &'static str {
        "EndNode"
    }

    fn description(&self) -> &'static str {
        "Ends a run; its input is the run's result."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({"type": "object", "properties": {}})
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

    fn validate(&self, _config: &Value) -> Result<(), ConfigError> {
        Ok(())
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move { Ok(NodeOutput::all(ctx.input.clone())) }.boxed()
    }
}
