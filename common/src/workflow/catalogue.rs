//! The node types this engine can run, and the legacy names KAI-Fusion exports still use.

/// A node type the engine knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// Manual entry point; its output is `initial_input` or the run's input.
    Start,
    /// Entry point of a webhook-triggered run; its output is the webhook event.
    WebhookStart,
    /// Terminal node; its output is its input.
    End,
}

impl NodeType {
    /// Resolves a type name as written in a workflow, including KAI-Fusion's legacy names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "StartNode" | "Start" => Some(Self::Start),
            "WebhookStartNode" | "WebhookTrigger" | "WebhookNode" => Some(Self::WebhookStart),
            "EndNode" | "End" => Some(Self::End),
            _ => None,
        }
    }

    /// The canonical type name (what is stored and reported).
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "StartNode",
            Self::WebhookStart => "WebhookStartNode",
            Self::End => "EndNode",
        }
    }

    /// Entry points start a run: a graph needs at least one.
    pub fn is_entry(self) -> bool {
        matches!(self, Self::Start | Self::WebhookStart)
    }

    /// Every type this engine can run, by canonical name.
    pub fn all() -> &'static [NodeType] {
        &[Self::Start, Self::WebhookStart, Self::End]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_import_as_canonical_ones() {
        assert_eq!(
            NodeType::parse("WebhookTrigger"),
            Some(NodeType::WebhookStart)
        );
        assert_eq!(
            NodeType::parse("WebhookStartNode").unwrap().name(),
            "WebhookStartNode"
        );
        assert_eq!(NodeType::parse("NoSuchNode"), None);
    }
}
