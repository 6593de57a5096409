//! `Agent` (legacy `ReactAgent`, `ReactAgentNode`, `ToolAgentNode`): a tool-calling loop. The
//! model at `llm` gets the system prompt, the session's history from the memory at `memory`, and
//! the user prompt; while it asks for tools (from the providers at `tools`) they are called and
//! their answers handed back, up to `max_iterations` model calls. A tool's error goes back to
//! the model as that tool's answer, not a crash. Every model and tool call is recorded as a step
//! (inputs, outputs, tokens, duration) in the node execution's details; streamed text is
//! reported as it arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use serde_json::{Value, json};

use super::capability::{ChatModel, Tool};
use super::fields::{self, as_prompt};
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderInput, RunPolicy,
};
use crate::llm::openai::{ChatMessage, ToolCall, ToolSpec, Usage};
use crate::workflow::template;

pub struct Agent;

const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
const DEFAULT_MAX_ITERATIONS: u64 = 5;
const MAX_ITERATIONS: u64 = 50;
const DEFAULT_TIMEOUT_SECS: f64 = 300.0;
/// A tool's answer is cut to this many characters before it goes back to the model (and into
/// the records): one huge search result must not blow the model's context.
const MAX_TOOL_ANSWER_CHARS: usize = 32 * 1024;

const PROVIDERS: &[ProviderInput] = &[
    ProviderInput::required("llm", Capability::ChatModel),
    ProviderInput::optional("tools", Capability::Tool),
    ProviderInput::optional("memory", Capability::Memory),
];

struct AgentConfig<'a> {
    system_prompt: &'a str,
    user_prompt: Option<&'a str>,
    max_iterations: u32,
    timeout: Duration,
}

impl<'a> AgentConfig<'a> {
    fn parse(config: &'a Value) -> Result<Self, ConfigError> {
        let system_prompt =
            fields::text(config, &["system_prompt"])?.unwrap_or(DEFAULT_SYSTEM_PROMPT);
        let user_prompt = fields::text(config, &["user_prompt_template", "prompt"])?;
        for (name, text) in [
            ("system_prompt", Some(system_prompt)),
            ("user_prompt_template", user_prompt),
        ] {
            if let Some(text) = text {
                template::check(text).map_err(|e| ConfigError::new(name, e))?;
            }
        }
        Ok(Self {
            system_prompt,
            user_prompt,
            max_iterations: fields::integer(config, &["max_iterations"], 1, MAX_ITERATIONS)?
                .unwrap_or(DEFAULT_MAX_ITERATIONS) as u32,
            timeout: Duration::from_secs_f64(
                fields::number(config, &["timeout"], 1.0, 3600.0)?.unwrap_or(DEFAULT_TIMEOUT_SECS),
            ),
        })
    }
}

impl NodeDefinition for Agent {
    fn type_name(&self) -> &str {
        "Agent"
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
    fn provider_inputs(&self) -> &'static [ProviderInput] {
        PROVIDERS
    }
    fn description(&self) -> &str {
        "Answers with a chat model that may call tools, remembering the session's conversation."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "system_prompt": {"type": "string", "default": DEFAULT_SYSTEM_PROMPT},
                "user_prompt_template": {"type": "string", "description": "The user message (templated); default the input's text."},
                "max_iterations": {"type": "integer", "minimum": 1, "maximum": MAX_ITERATIONS, "default": DEFAULT_MAX_ITERATIONS},
                "timeout": {"type": "number", "minimum": 1, "maximum": 3600, "default": DEFAULT_TIMEOUT_SECS}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        AgentConfig::parse(config).map(drop)
    }
    fn policy(&self, config: &Value) -> RunPolicy {
        // One attempt: tools may have effects, and model calls retry on their own.
        AgentConfig::parse(config)
            .map(|c| RunPolicy {
                timeout: c.timeout,
                ..RunPolicy::default()
            })
            .unwrap_or_default()
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        run(ctx).boxed()
    }
}

/// The conversation's session: the trigger's `session_id` (a manual run's inputs, a webhook's
/// payload), else the execution.
pub(super) fn session_of(ctx: &NodeContext<'_>) -> String {
    let trigger = &**ctx.trigger;
    [&trigger["session_id"], &trigger["data"]["session_id"]]
        .into_iter()
        .find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| ctx.run.execution.to_string())
}

async fn render(ctx: &NodeContext<'_>, text: &str, field: &str) -> Result<String, NodeError> {
    template::render_bounded(text, ctx.scope, ctx.input, &ctx.services.compute)
        .await
        .map_err(|e| NodeError::Configuration(format!("field `{field}`: {e}")))
}

fn add_usage(total: &mut Usage, more: &Usage) {
    total.prompt_tokens += more.prompt_tokens;
    total.completion_tokens += more.completion_tokens;
    total.total_tokens += more.total_tokens;
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// The agent's tools by the name the model sees (a repeated name gets a suffix).
fn toolbox(ctx: &NodeContext<'_>) -> (Vec<ToolSpec>, HashMap<String, Arc<dyn Tool>>) {
    let mut specs = Vec::new();
    let mut by_name = HashMap::new();
    for tool in ctx.providers.tools("tools") {
        let mut spec = tool.spec();
        let base = spec.name.clone();
        let mut n = 1;
        while by_name.contains_key(&spec.name) {
            n += 1;
            spec.name = format!("{base}_{n}");
        }
        by_name.insert(spec.name.clone(), tool.clone());
        specs.push(spec);
    }
    (specs, by_name)
}

/// One tool call's answer as the model will read it, and its step record.
async fn call_tool(
    call: &ToolCall,
    tools: &HashMap<String, Arc<dyn Tool>>,
    iteration: u32,
) -> (String, Value) {
    let started = Instant::now();
    let arguments: Result<Value, String> = if call.function.arguments.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str(&call.function.arguments)
            .map_err(|e| format!("the arguments are not JSON: {e}"))
    };
    let outcome = match (tools.get(&call.function.name), arguments.clone()) {
        (None, _) => Err(format!("there is no tool named `{}`", call.function.name)),
        (Some(_), Err(e)) => Err(e),
        (Some(tool), Ok(arguments)) => tool.call(arguments).await.map_err(|e| e.to_string()),
    };
    let (mut answer, failed) = match outcome {
        Ok(Value::String(text)) => (text, false),
        Ok(value) => (value.to_string(), false),
        Err(error) => (format!("error: {error}"), true),
    };
    if answer.chars().count() > MAX_TOOL_ANSWER_CHARS {
        answer = answer
            .chars()
            .take(MAX_TOOL_ANSWER_CHARS)
            .collect::<String>()
            + " [cut]";
    }
    let step = json!({
        "type": "tool",
        "iteration": iteration,
        "tool": call.function.name,
        "call_id": call.id,
        "arguments": arguments.unwrap_or_else(|_| Value::String(call.function.arguments.clone())),
        "output": answer,
        "error": failed,
        "duration_ms": millis(started),
    });
    (answer, step)
}

async fn run(ctx: NodeContext<'_>) -> Result<NodeOutput, NodeError> {
    let config =
        AgentConfig::parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
    let model: &Arc<dyn ChatModel> = ctx.providers.chat_model("llm").ok_or_else(|| {
        NodeError::Configuration("no chat model is connected to `llm`".to_owned())
    })?;
    let memory = ctx.providers.memory("memory");
    let session = session_of(&ctx);
    let prompt = match config.user_prompt {
        Some(text) => render(&ctx, text, "user_prompt_template").await?,
        None => String::new(),
    };
    let prompt = if prompt.trim().is_empty() {
        as_prompt(ctx.input)
    } else {
        prompt
    };
    let mut messages = vec![ChatMessage::new(
        "system",
        render(&ctx, config.system_prompt, "system_prompt").await?,
    )];
    if let Some(memory) = memory {
        messages.extend(memory.load(&session).await?);
    }
    messages.push(ChatMessage::new("user", prompt.clone()));
    let (specs, tools) = toolbox(&ctx);

    let mut steps = Vec::new();
    let mut usage = Usage::default();
    let mut answer = None;
    let mut iterations = 0;
    // Messages up to here were recorded as an earlier step's input.
    let mut recorded = 0;
    while iterations < config.max_iterations {
        iterations += 1;
        let iteration = iterations;
        let sink = |token: &str| {
            ctx.events.progress(
                ctx.node_id,
                &json!({"type": "token", "token": token, "iteration": iteration}),
            );
        };
        let started = Instant::now();
        let response = model.complete(&messages, &specs, Some(&sink)).await?;
        add_usage(&mut usage, &response.usage);
        steps.push(json!({
            "type": "model",
            "iteration": iteration,
            "messages": messages.len(),
            // What this call added to the conversation: the prompt (with the system message and
            // history) first, then the tools' answers.
            "input": &messages[recorded..],
            "output": response.message.content,
            "tool_calls": response.message.tool_calls.iter()
                .map(|c| json!({"id": c.id, "tool": c.function.name, "arguments": c.function.arguments}))
                .collect::<Vec<_>>(),
            "finish_reason": response.finish_reason,
            "usage": response.usage,
            "duration_ms": millis(started),
        }));
        if response.message.tool_calls.is_empty() {
            answer = Some(response.message.content.unwrap_or_default());
            break;
        }
        if iterations == config.max_iterations {
            // No model call is left to read their answers: the tools are not called.
            break;
        }
        let calls = response.message.tool_calls.clone();
        messages.push(response.message);
        recorded = messages.len();
        // The model asked for these together: they run concurrently, answered in its order.
        let answers = join_all(calls.iter().map(|call| call_tool(call, &tools, iteration))).await;
        for (call, (text, step)) in calls.iter().zip(answers) {
            ctx.events
                .progress(ctx.node_id, &json!({"type": "tool", "step": &step}));
            steps.push(step);
            messages.push(ChatMessage::tool_result(&call.id, text));
        }
    }

    let (status, output) = match answer {
        Some(text) => {
            if let Some(memory) = memory {
                memory.save(&session, &prompt, &text).await?;
            }
            ("finished", text)
        }
        None => (
            "max_iterations",
            format!(
                "The agent stopped after {} model calls (max_iterations) without a final answer.",
                config.max_iterations
            ),
        ),
    };
    Ok(NodeOutput::all(json!({
        "output": output,
        "status": status,
        "iterations": iterations,
        "session_id": session,
        "usage": usage,
    }))
    .with_details(json!({
        "model": model.model(),
        "usage": usage,
        "steps": steps,
    })))
}
