//! `WebScraper` (legacy `WebScraperNode`): fetches web pages and hands on their readable text as
//! documents. URLs come from `urls` (newlines or commas) and the input (`input_urls`); every
//! address goes through the SSRF guard, robots.txt is honoured unless `respect_robots` is false,
//! at most two requests run per host (and `max_concurrent` in all), `remove_selectors` strips
//! navigation and the like, pages shorter than `min_content_length` are left out. A page that
//! fails is listed in `errors`; the node fails only when no page could be read.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

use super::fields;
use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::documents::fetch::{FetchSettings, Fetcher};
use crate::documents::html::{self, DEFAULT_REMOVE_SELECTORS};
use crate::documents::load::{failure, load_url};
use crate::documents::{Document, urls_from_input, urls_in};

pub struct WebScraper;

pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (compatible; KAI-Fusion/2.1.0; Web-Scraper)";
const DEFAULT_MIN_LENGTH: u64 = 100;
const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
const DEFAULT_RETRIES: u64 = 3;
const DEFAULT_CONCURRENCY: u64 = 5;
/// Most URLs one run scrapes.
pub const MAX_URLS: usize = 500;

/// The settings shared with DocumentLoader's web pages.
pub struct ScrapeSettings {
    pub urls: Vec<String>,
    pub fetch: FetchSettings,
    pub remove_selectors: String,
    pub min_length: usize,
    pub concurrency: usize,
}

impl ScrapeSettings {
    pub fn parse(config: &Value, url_fields: &[&str]) -> Result<Self, ConfigError> {
        let urls = match fields::field(config, url_fields) {
            Some(Value::String(text)) => urls_in(text),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(urls_in)
                .collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(ConfigError::new(
                    url_fields[0],
                    "must be text or a list of URLs",
                ));
            }
        };
        let remove_selectors = fields::text(config, &["remove_selectors"])?
            .unwrap_or(DEFAULT_REMOVE_SELECTORS)
            .to_owned();
        html::selectors(&remove_selectors)
            .map_err(|message| ConfigError::new("remove_selectors", message))?;
        Ok(Self {
            urls,
            fetch: FetchSettings {
                user_agent: fields::text(config, &["user_agent"])?
                    .unwrap_or(DEFAULT_USER_AGENT)
                    .to_owned(),
                timeout: Duration::from_secs_f64(
                    fields::number(config, &["timeout", "timeout_seconds"], 1.0, 300.0)?
                        .unwrap_or(DEFAULT_TIMEOUT_SECS),
                ),
                retries: fields::integer(config, &["retries", "retry_attempts"], 0, 10)?
                    .unwrap_or(DEFAULT_RETRIES) as u32,
                respect_robots: fields::boolean(config, &["respect_robots", "respect_robots_txt"])?
                    .unwrap_or(true),
                backoff: Duration::from_millis(500),
            },
            remove_selectors,
            min_length: fields::integer(config, &["min_content_length"], 0, 10_000_000)?
                .unwrap_or(DEFAULT_MIN_LENGTH) as usize,
            concurrency: fields::integer(config, &["max_concurrent", "concurrency"], 1, 50)?
                .unwrap_or(DEFAULT_CONCURRENCY) as usize,
        })
    }
}

/// Scrapes `urls` (in order, de-duplicated): the documents read and the failures.
pub async fn scrape(
    ctx: &NodeContext<'_>,
    settings: &ScrapeSettings,
    urls: Vec<String>,
) -> (Vec<Document>, Vec<Value>) {
    let mut seen = std::collections::HashSet::new();
    let urls: Vec<String> = urls
        .into_iter()
        .filter(|u| seen.insert(u.clone()))
        .take(MAX_URLS)
        .collect();
    let fetcher = Fetcher::new(ctx.services.outbound.clone(), settings.fetch.clone());
    let remove = html::selectors(&settings.remove_selectors).ok().flatten();
    let results: Vec<(String, Result<Document, String>)> = futures::stream::iter(urls)
        .map(|url| {
            let (fetcher, remove) = (&fetcher, remove.as_ref());
            async move {
                let loaded = load_url(
                    fetcher,
                    &url,
                    remove,
                    settings.min_length,
                    &ctx.services.compute,
                )
                .await;
                (url, loaded)
            }
        })
        .buffered(settings.concurrency)
        .collect()
        .await;
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (url, loaded) in results {
        match loaded {
            Ok(document) => documents.push(document),
            Err(error) => errors.push(failure(&url, &error)),
        }
    }
    (documents, errors)
}

/// The node's answer, or its failure when nothing could be read.
pub fn answer(
    node_id: &str,
    documents: Vec<Document>,
    errors: Vec<Value>,
) -> Result<NodeOutput, NodeError> {
    let asked = documents.len() + errors.len();
    if documents.is_empty() {
        let reasons: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["url"].as_str().unwrap_or(""),
                    e["error"].as_str().unwrap_or("")
                )
            })
            .collect();
        return Err(NodeError::Configuration(format!(
            "node {node_id}: none of the {asked} URL(s) could be read: {}",
            reasons.join("; ")
        )));
    }
    let total: usize = documents
        .iter()
        .map(|d| d.page_content.chars().count())
        .sum();
    let count = documents.len();
    let documents: Vec<Value> = documents.iter().map(Document::to_value).collect();
    Ok(NodeOutput::all(json!({
        "documents": documents,
        "errors": errors,
        "stats": {"requested": asked, "scraped": count, "failed": asked - count, "total_characters": total},
    })))
}

impl NodeDefinition for WebScraper {
    fn type_name(&self) -> &str {
        "WebScraper"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "documents"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "input_urls", "urls"]
    }
    fn description(&self) -> &str {
        "Fetches web pages (robots.txt honoured, two requests per host) and hands on their readable text."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "urls": {"type": ["string", "array"], "description": "URLs, one per line or comma-separated; the input's URLs are added."},
                "user_agent": {"type": "string", "default": DEFAULT_USER_AGENT},
                "remove_selectors": {"type": "string", "default": DEFAULT_REMOVE_SELECTORS},
                "min_content_length": {"type": "integer", "minimum": 0, "default": DEFAULT_MIN_LENGTH},
                "timeout": {"type": "number", "minimum": 1, "maximum": 300, "default": DEFAULT_TIMEOUT_SECS},
                "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": DEFAULT_RETRIES},
                "respect_robots": {"type": "boolean", "default": true},
                "max_concurrent": {"type": "integer", "minimum": 1, "maximum": 50, "default": DEFAULT_CONCURRENCY}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        ScrapeSettings::parse(config, &["urls"]).map(drop)
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let settings = ScrapeSettings::parse(ctx.config, &["urls"])
                .map_err(|e| NodeError::Configuration(e.to_string()))?;
            let mut urls = settings.urls.clone();
            urls.extend(urls_from_input(ctx.input));
            if urls.is_empty() {
                return Err(NodeError::Configuration(format!(
                    "node {}: no URLs to scrape (set `urls` or connect `input_urls`)",
                    ctx.node_id
                )));
            }
            let (documents, errors) = scrape(&ctx, &settings, urls).await;
            answer(ctx.node_id, documents, errors)
        }
        .boxed()
    }
}
