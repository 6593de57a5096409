//! `BufferMemory` (legacy `BufferMemoryNode`) and `ConversationMemory`: an agent's conversation
//! kept in PostgreSQL per owner and session, the last turns shown to the model (`max_turns` or
//! `k`, 5 by default). The original kept ConversationMemory in the process, lost on restart and
//! invisible to other workers; both persist here. The original's `user_id` field is ignored:
//! whose memory it is comes from the run, never from the workflow.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::capability::Provided;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext, fields,
};
use crate::llm::memory_store;

/// A memory node type: its name, and the fields that set its window.
pub struct Memory {
    pub type_name: &'static str,
    pub description: &'static str,
    pub window_fields: &'static [&'static str],
}

pub const BUFFER_MEMORY: Memory = Memory {
    type_name: "BufferMemory",
    description: "Conversation memory kept per session in PostgreSQL: the last turns are shown \
                  to the agent.",
    window_fields: &["max_turns", "k"],
};

pub const CONVERSATION_MEMORY: Memory = Memory {
    type_name: "ConversationMemory",
    description: "A window of the last k turns of a session's conversation, persisted.",
    window_fields: &["k", "max_turns"],
};

const DEFAULT_TURNS: u64 = 5;

impl Memory {
    fn window(&self, config: &Value) -> Result<usize, ConfigError> {
        Ok(fields::integer(config, self.window_fields, 1, 1000)?.unwrap_or(DEFAULT_TURNS) as usize)
    }
}

impl NodeDefinition for Memory {
    fn type_name(&self) -> &str {
        self.type_name
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["memory", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Memory)
    }
    fn description(&self) -> &str {
        self.description
    }
    fn config_schema(&self) -> Value {
        let window =
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_TURNS});
        json!({
            "type": "object",
            "properties": {
                self.window_fields[0]: window,
                "memory_key": {"type": "string", "default": "chat_history"},
                "input_key": {"type": "string", "default": "input"},
                "output_key": {"type": "string", "default": "output"},
                "return_messages": {"type": "boolean", "default": true}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        self.window(config).map(drop)
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async { Err(memory_store::not_a_step()) }.boxed()
    }
    fn provide<'a>(
        &'a self,
        ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async move {
            let window = self
                .window(ctx.config)
                .map_err(|e| NodeError::Configuration(e.to_string()))?;
            memory_store::provide(&ctx, window)
        }
        .boxed()
    }
}
