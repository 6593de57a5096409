//! `OpenAIChat` (legacy `OpenAINode`) and `OpenAICompatibleNode`: a chat model on any
//! OpenAI-compatible server, with the original's fields (model, temperature, max_tokens, top_p,
//! penalties, timeout, streaming). As a provider it is the model of the agent it feeds; where
//! data edges reach it (older exports wire `OpenAINode` between steps) it also answers its
//! input as a step. The server is its credential's (`openai` / `openai_compatible`), its own
//! `base_url` (both behind the SSRF guard), else the operator's default
//! (`KAI_OPENAI_BASE_URL`). An inline `api_key` in the configuration is ignored: secrets live
//! in credentials.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::capability::{ChatModel, Provided};
use super::fields::{self, as_prompt};
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext, RunPolicy,
};
use crate::llm::chat::{CallPolicy, OpenAiChat};
use crate::llm::connection::{self, Target};
use crate::llm::openai::{ChatMessage, ChatRequest};
use crate::nodes::services::{NodeServices, RunIds};
use crate::workflow::template;

/// OpenAI's chat model; `base_url` only through a credential or the operator.
pub struct OpenAIChat;
/// The same model on a server the author names (`base_url`).
pub struct OpenAICompatibleNode;

const DEFAULT_MODEL: &str = "gpt-4o";
const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
const DEFAULT_RETRIES: u64 = 2;

/// A chat node's configuration, read once and checked when the workflow is saved.
#[derive(Debug, Clone)]
struct ChatConfig {
    settings: ChatRequest,
    timeout: Duration,
    max_retries: u32,
    streaming: bool,
    base_url: Option<String>,
    credential_id: Option<String>,
    system_prompt: Option<String>,
    prompt: Option<String>,
}

impl ChatConfig {
    fn parse(config: &Value) -> Result<Self, ConfigError> {
        let float = |names: &[&str], min, max| fields::number(config, names, min, max);
        let base_url = fields::text(config, &["base_url"])?;
        if let Some(url) = base_url
            && !template::is_template(url)
        {
            url::Url::parse(url)
                .map_err(|e| ConfigError::new("base_url", format!("not a URL: {e}")))?;
        }
        Ok(Self {
            settings: ChatRequest {
                model: fields::text(config, &["model_name", "model"])?
                    .unwrap_or(DEFAULT_MODEL)
                    .to_owned(),
                temperature: float(&["temperature"], 0.0, 2.0)?,
                max_tokens: fields::integer(config, &["max_tokens"], 1, 1_000_000)?
                    .map(|n| n as u32),
                top_p: float(&["top_p"], 0.0, 1.0)?,
                frequency_penalty: float(&["frequency_penalty"], -2.0, 2.0)?,
                presence_penalty: float(&["presence_penalty"], -2.0, 2.0)?,
                ..ChatRequest::default()
            },
            timeout: Duration::from_secs_f64(
                float(&["timeout", "request_timeout"], 1.0, 600.0)?.unwrap_or(DEFAULT_TIMEOUT_SECS),
            ),
            max_retries: fields::integer(config, &["max_retries"], 0, 10)?
                .unwrap_or(DEFAULT_RETRIES) as u32,
            streaming: fields::boolean(config, &["streaming"])?.unwrap_or(false),
            base_url: base_url.map(str::to_owned),
            credential_id: fields::credential_id(config).map(str::to_owned),
            system_prompt: fields::text(config, &["system_prompt"])?.map(str::to_owned),
            prompt: fields::text(config, &["prompt", "user_prompt"])?.map(str::to_owned),
        })
    }

    /// The configured model, connected for the run's owner.
    async fn model(
        &self,
        node_id: &str,
        run: &RunIds,
        services: &NodeServices,
    ) -> Result<OpenAiChat, NodeError> {
        let connection = connection::connect(
            Target {
                node_id,
                credential_id: self.credential_id.as_deref(),
                base_url: self.base_url.as_deref(),
                default: services.models.chat.as_ref(),
                default_setting: "KAI_OPENAI_BASE_URL",
            },
            run,
            services,
        )
        .await?;
        Ok(OpenAiChat {
            connection,
            settings: self.settings.clone(),
            streaming: self.streaming,
            policy: CallPolicy {
                timeout: self.timeout,
                max_retries: self.max_retries,
                backoff: Duration::from_secs(1),
            },
        })
    }

    /// The step's whole budget: every attempt and the waits between them.
    fn step_timeout(&self) -> Duration {
        (self.timeout + Duration::from_secs(30)) * (self.max_retries + 1)
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "credential_id": {"type": "string", "description": "An `openai` or `openai_compatible` credential; without one the deployment's default model server is used."},
            "model_name": {"type": "string", "default": DEFAULT_MODEL},
            "model": {"type": "string", "description": "The same as model_name."},
            "base_url": {"type": "string", "description": "OpenAI-compatible server, e.g. http://host:8080/v1 (passes the SSRF guard)."},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "timeout": {"type": "number", "minimum": 1, "maximum": 600, "default": DEFAULT_TIMEOUT_SECS},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": DEFAULT_RETRIES},
            "streaming": {"type": "boolean", "default": false},
            "system_prompt": {"type": "string", "description": "As a step: the system message."},
            "prompt": {"type": "string", "description": "As a step: the user message (templated); default the input."}
        }
    })
}

/// Both node types: they differ only in name and description.
macro_rules! chat_node {
    ($node:ident, $name:literal, $description:literal) => {
        impl NodeDefinition for $node {
            fn type_name(&self) -> &str {
                $name
            }
            fn category(&self) -> NodeCategory {
                NodeCategory::Provider
            }
            fn output_handles(&self) -> &'static [&'static str] {
                &["llm", "output"]
            }
            fn input_handles(&self) -> &'static [&'static str] {
                &["input"]
            }
            fn provides(&self) -> Option<Capability> {
                Some(Capability::ChatModel)
            }
            fn also_a_step(&self) -> bool {
                true
            }
            fn description(&self) -> &str {
                $description
            }
            fn config_schema(&self) -> Value {
                schema()
            }
            fn validate(&self, config: &Value) -> Result<(), ConfigError> {
                ChatConfig::parse(config).map(drop)
            }
            fn policy(&self, config: &Value) -> RunPolicy {
                ChatConfig::parse(config)
                    .map(|c| RunPolicy {
                        timeout: c.step_timeout(),
                        ..RunPolicy::default()
                    })
                    .unwrap_or_default()
            }
            fn execute<'a>(
                &'a self,
                ctx: NodeContext<'a>,
            ) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
                answer(ctx).boxed()
            }
            fn provide<'a>(
                &'a self,
                ctx: ProviderContext<'a>,
            ) -> BoxFuture<'a, Result<Provided, NodeError>> {
                provide(ctx).boxed()
            }
        }
    };
}

chat_node!(
    OpenAIChat,
    "OpenAIChat",
    "An OpenAI chat model for agents, or answering its input as a step."
);
chat_node!(
    OpenAICompatibleNode,
    "OpenAICompatibleNode",
    "A chat model on any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LocalAI)."
);

fn configuration(config: &Value) -> Result<ChatConfig, NodeError> {
    ChatConfig::parse(config).map_err(|e| NodeError::Configuration(e.to_string()))
}

/// `config` with its `base_url` rendered (it may name the server through a template).
async fn with_base_url_rendered(
    mut config: ChatConfig,
    scope: &crate::workflow::template::TemplateScope,
    input: &crate::json::SharedValue,
    services: &NodeServices,
) -> Result<ChatConfig, NodeError> {
    if let Some(url) = &config.base_url {
        config.base_url = Some(
            template::render_bounded(url, scope, input, &services.compute)
                .await
                .map_err(|e| NodeError::Configuration(format!("field `base_url`: {e}")))?,
        );
    }
    Ok(config)
}

async fn provide(ctx: ProviderContext<'_>) -> Result<Provided, NodeError> {
    let config = configuration(ctx.config)?;
    let config =
        with_base_url_rendered(config, ctx.scope, &Value::Null.into(), ctx.services).await?;
    let model = config.model(ctx.node_id, ctx.run, ctx.services).await?;
    Ok(Provided::ChatModel(Arc::new(model)))
}

/// As a step: one answer to the input (or the rendered `prompt`), streamed to watchers.
async fn answer(ctx: NodeContext<'_>) -> Result<NodeOutput, NodeError> {
    let config = configuration(ctx.config)?;
    let config = with_base_url_rendered(config, ctx.scope, ctx.input, ctx.services).await?;
    let render = |text: &str, field: &'static str| {
        let ctx = &ctx;
        let text = text.to_owned();
        async move {
            template::render_bounded(&text, ctx.scope, ctx.input, &ctx.services.compute)
                .await
                .map_err(|e| NodeError::Configuration(format!("field `{field}`: {e}")))
        }
    };
    let prompt = match &config.prompt {
        Some(prompt) => render(prompt, "prompt").await?,
        None => as_prompt(ctx.input),
    };
    let mut messages = Vec::new();
    if let Some(system) = &config.system_prompt {
        messages.push(ChatMessage::new(
            "system",
            render(system, "system_prompt").await?,
        ));
    }
    messages.push(ChatMessage::new("user", prompt));
    let model = config.model(ctx.node_id, ctx.run, ctx.services).await?;
    let sink = |token: &str| {
        ctx.events
            .progress(ctx.node_id, &json!({"type": "token", "token": token}));
    };
    let started = std::time::Instant::now();
    let response = model.complete(&messages, &[], Some(&sink)).await?;
    let text = response.message.content.clone().unwrap_or_default();
    let usage = json!(response.usage);
    Ok(NodeOutput::all(json!({
        "output": text,
        "model": model.model(),
        "finish_reason": response.finish_reason,
        "usage": usage,
    }))
    .with_details(json!({
        "model": model.model(),
        "usage": usage,
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
    })))
}
