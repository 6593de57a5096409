//! The node types this engine runs: one line per type.

use super::NodeDefinition;

static NODES: &[&dyn NodeDefinition] = &[
    &super::start::Start,
    &super::webhook_start::WebhookStart,
    &super::end::End,
    &super::condition::Condition,
    &super::respond_to_webhook::RespondToWebhook,
];

/// Every node type this engine runs.
pub fn registry() -> &'static [&'static dyn NodeDefinition] {
    NODES
}

/// The node type with this canonical name.
pub fn find(canonical: &str) -> Option<&'static dyn NodeDefinition> {
    NODES
        .iter()
        .copied()
        .find(|node| node.type_name() == canonical)
}
