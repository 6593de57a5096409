//! A chat model on an OpenAI-compatible server, as OpenAIChat and OpenAICompatibleNode provide
//! it: the node's sampling settings, its timeout, plain or streamed answers, and its retry
//! policy (429 and 5xx retried with backoff, honouring `Retry-After`) applied per model call, so
//! an agent's tool calls are never redone because its model hiccupped.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::connection::Connection;
use super::openai::{ChatMessage, ChatRequest, ChatResponse, ToolSpec};
pub use super::policy::CallPolicy;
use crate::nodes::NodeError;
use crate::nodes::capability::{ChatModel, TokenSink};

/// A configured chat model.
pub struct OpenAiChat {
    pub connection: Connection,
    /// Model and sampling settings; messages and tools are filled per call.
    pub settings: ChatRequest,
    pub streaming: bool,
    pub policy: CallPolicy,
}

impl OpenAiChat {
    async fn attempt(
        &self,
        request: &ChatRequest,
        tokens: Option<TokenSink<'_>>,
        streamed_any: &AtomicBool,
    ) -> Result<ChatResponse, NodeError> {
        let Connection { server, http } = &self.connection;
        if self.streaming {
            server
                .chat_streamed(http, request, self.policy.timeout, |token| {
                    streamed_any.store(true, Ordering::Relaxed);
                    if let Some(sink) = tokens {
                        sink(token);
                    }
                })
                .await
        } else {
            server.chat(http, request, self.policy.timeout).await
        }
    }
}

impl ChatModel for OpenAiChat {
    fn model(&self) -> &str {
        &self.settings.model
    }

    fn streams(&self) -> bool {
        self.streaming
    }

    fn complete<'a>(
        &'a self,
        messages: &'a [ChatMessage],
        tools: &'a [ToolSpec],
        tokens: Option<TokenSink<'a>>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>> {
        async move {
            let request = ChatRequest {
                messages: messages.to_vec(),
                tools: tools.to_vec(),
                ..self.settings.clone()
            };
            // Once text has been streamed to watchers a retry would show it twice.
            let streamed_any = AtomicBool::new(false);
            self.policy
                .run(
                    || self.attempt(&request, tokens, &streamed_any),
                    || !streamed_any.load(Ordering::Relaxed),
                )
                .await
        }
        .boxed()
    }
}
