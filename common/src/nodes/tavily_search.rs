//! `TavilySearch`: a web search tool for agents, on Tavily's API (`POST {base}/search` with
//! `{query, max_results, search_depth, include_answer, include_domains, exclude_domains}` and the
//! key as a bearer token; answered with `{answer, results: [{title, url, content, score}]}`).
//! The key comes from a `tavily` credential; the base URL from the credential (behind the SSRF
//! guard) or the operator (`KAI_TAVILY_BASE_URL`, Tavily's own by default).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::capability::{Provided, Tool};
use super::fields;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use crate::llm::connection::guarded_url;
use crate::llm::openai::{ToolSpec, read_json, send_to};
use crate::llm::policy::CallPolicy;

pub struct TavilySearch;

const DEFAULT_MAX_RESULTS: u64 = 5;
const DEPTHS: &[&str] = &["basic", "advanced"];
const TIMEOUT: Duration = Duration::from_secs(30);

struct SearchConfig {
    max_results: u64,
    search_depth: String,
    include_answer: bool,
    include_domains: Vec<String>,
    exclude_domains: Vec<String>,
}

/// Domains as a list, or comma/newline-separated text as the editor saves them.
fn domains(config: &Value, name: &str) -> Result<Vec<String>, ConfigError> {
    let split = |text: &str| {
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match fields::field(config, &[name]) {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(split(text)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|d| d.trim().to_owned())
                    .ok_or_else(|| ConfigError::new(name, "must be a list of domains"))
            })
            .collect(),
        Some(_) => Err(ConfigError::new(name, "must be a list of domains")),
    }
}

impl SearchConfig {
    fn parse(config: &Value) -> Result<Self, ConfigError> {
        let depth = fields::text(config, &["search_depth"])?.unwrap_or("basic");
        if !DEPTHS.contains(&depth) {
            return Err(ConfigError::new(
                "search_depth",
                "must be basic or advanced",
            ));
        }
        Ok(Self {
            max_results: fields::integer(config, &["max_results"], 1, 20)?
                .unwrap_or(DEFAULT_MAX_RESULTS),
            search_depth: depth.to_owned(),
            include_answer: fields::boolean(config, &["include_answer"])?.unwrap_or(true),
            include_domains: domains(config, "include_domains")?,
            exclude_domains: domains(config, "exclude_domains")?,
        })
    }
}

/// The tool an agent calls.
struct Search {
    config: SearchConfig,
    base_url: Url,
    api_key: SecretString,
    http: reqwest::Client,
}

impl Search {
    async fn search(&self, query: &str) -> Result<Value, NodeError> {
        let url = format!("{}/search", self.base_url.as_str().trim_end_matches('/'));
        let body = json!({
            "query": query,
            "max_results": self.config.max_results,
            "search_depth": self.config.search_depth,
            "include_answer": self.config.include_answer,
            "include_domains": self.config.include_domains,
            "exclude_domains": self.config.exclude_domains,
        });
        let request = self
            .http
            .post(url)
            .timeout(TIMEOUT)
            .bearer_auth(self.api_key.expose_secret())
            .json(&body);
        let key = Some(self.api_key.expose_secret());
        let answer: Value = read_json(send_to(request, "Tavily", key).await?, "Tavily").await?;
        let results: Vec<Value> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                json!({"title": r["title"], "url": r["url"], "content": r["content"],
                       "score": r["score"]})
            })
            .collect();
        Ok(json!({"answer": answer["answer"], "results": results}))
    }
}

impl Tool for Search {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "tavily_search".to_owned(),
            description: "Searches the web and returns the most relevant pages (title, url, \
                          content) and a short answer. Use it for current events and facts."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to search for."}},
                "required": ["query"]
            }),
        }
    }

    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, NodeError>> {
        async move {
            let query = arguments["query"]
                .as_str()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .ok_or_else(|| {
                    NodeError::Configuration("tavily_search needs a `query`".to_owned())
                })?;
            let policy = CallPolicy {
                timeout: TIMEOUT,
                max_retries: 2,
                backoff: Duration::from_secs(1),
            };
            policy.run(|| self.search(query), || true).await
        }
        .boxed()
    }
}

impl NodeDefinition for TavilySearch {
    fn type_name(&self) -> &str {
        "TavilySearch"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["tool", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Tool)
    }
    fn description(&self) -> &str {
        "A web search tool for agents (Tavily)."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "credential_id": {"type": "string", "description": "A `tavily` credential."},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "default": DEFAULT_MAX_RESULTS},
                "search_depth": {"enum": DEPTHS, "default": "basic"},
                "include_answer": {"type": "boolean", "default": true},
                "include_domains": {"type": "string", "description": "Comma-separated."},
                "exclude_domains": {"type": "string", "description": "Comma-separated."}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        SearchConfig::parse(config).map(drop)
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async {
            Err(NodeError::Configuration(
                "a tool is not a step: connect it to an agent's `tools` input".to_owned(),
            ))
        }
        .boxed()
    }
    fn provide<'a>(
        &'a self,
        ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async move {
            let config = SearchConfig::parse(ctx.config)
                .map_err(|e| NodeError::Configuration(e.to_string()))?;
            let node = ctx.node_id;
            let id = fields::credential_id(ctx.config).ok_or_else(|| {
                NodeError::Credential(format!(
                    "node {node}: TavilySearch needs a `tavily` credential"
                ))
            })?;
            let credential = ctx.services.credential(ctx.run, node, id).await?;
            if credential.kind.name != "tavily" {
                return Err(NodeError::Credential(format!(
                    "node {node}: credential `{}` is a `{}` credential, not `tavily`",
                    credential.name, credential.kind.name
                )));
            }
            let api_key = credential
                .field("api_key")
                .map(|k| SecretString::from(k.to_owned()))
                .ok_or_else(|| {
                    NodeError::Credential(format!("node {node}: the credential has no api_key"))
                })?;
            let (base_url, http) = match credential.field("base_url") {
                Some(base) => guarded_url(node, base, ctx.services)?,
                None => (
                    ctx.services.models.tavily.clone().ok_or_else(|| {
                        NodeError::Configuration(format!(
                            "node {node}: no Tavily address (KAI_TAVILY_BASE_URL) is configured"
                        ))
                    })?,
                    ctx.services.models.http.clone(),
                ),
            };
            Ok(Provided::Tool(Arc::new(Search {
                config,
                base_url,
                api_key,
                http,
            })))
        }
        .boxed()
    }
}
