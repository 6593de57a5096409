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
