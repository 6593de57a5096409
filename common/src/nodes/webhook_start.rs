//! `WebhookStartNode` (KAI-Fusion's `WebhookTrigger`): the entry point of a webhook-triggered
//! run. Its output is the webhook event; its endpoint settings are read when the workflow is
//! saved (see the API's webhook registry).

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};

pub struct WebhookStart;

impl NodeDefinition for WebhookStart {
    fn type_name(&self) -> &'static str {
        "WebhookStartNode"
    }

    fn description(&self) -> &'static str {
        "Starts a run when its webhook is called; passes on the webhook event."
    }

    fn config_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "webhook_timeout": {"type": "integer", "minimum": 1, "maximum": 300, "default": 30,
                    "description": "Seconds a caller waits for the result before getting 202."},
                "authentication_required": {"type": "boolean", "default": true},
                "max_payload_size": {"type": "integer", "minimum": 1, "default": 1024,
                    "description": "KiB."},
                "rate_limit_per_minute": {"type": "integer", "minimum": 0, "default": 60}
            }
        })
    }

    fn category(&self) -> NodeCategory {
        NodeCategory::Entry
    }

    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "webhook_data"]
    }

    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        for field in [
            "timeout",
            "webhook_timeout",
            "max_payload_size",
            "rate_limit_per_minute",
        ] {
            if let Some(value) = config.get(field)
                && !value.is_null()
                && value.as_u64().is_none()
            {
                return Err(ConfigError::new(field, "must be a non-negative integer"));
            }
        }
        Ok(())
    }

    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move { Ok(NodeOutput::all(ctx.trigger.clone())) }.boxed()
    }
}
