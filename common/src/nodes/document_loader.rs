//! `DocumentLoader` (legacy `DocumentLoaderNode`): documents from web URLs (`web_urls` and URLs
//! in the input) and from content given inline (`content`, or text in the input), as text,
//! Markdown, HTML (its readable text) or PDF (`content_base64`). Web pages are fetched as
//! WebScraper fetches them (SSRF guard, robots.txt, two per host); a PDF or Markdown file at a
//! URL is read as such.

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::fields;
use super::web_scraper::{ScrapeSettings, answer, scrape};
use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::documents::load::{ContentKind, document_of};
use crate::documents::{self, html, urls_in};

pub struct DocumentLoader;

const SOURCE_TYPES: &[&str] = &["mixed", "web", "text", "markdown", "html", "pdf"];
/// Largest inline PDF, decoded.
const MAX_INLINE_PDF: usize = 20 << 20;

struct LoaderConfig {
    source_type: &'static str,
    scrape: ScrapeSettings,
    content: Option<String>,
    pdf: Option<Vec<u8>>,
    name: Option<String>,
}

fn parse(config: &Value) -> Result<LoaderConfig, ConfigError> {
    let source_type = fields::text(config, &["source_type"])?.unwrap_or("mixed");
    let source_type = SOURCE_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(source_type))
        .copied()
        .ok_or_else(|| {
            ConfigError::new(
                "source_type",
                format!("`{source_type}` is not one of {}", SOURCE_TYPES.join(", ")),
            )
        })?;
    let mut scrape = ScrapeSettings::parse(config, &["web_urls", "urls", "file_urls"])?;
    // Files are read whole: no minimum length unless the author sets one.
    if fields::field(config, &["min_content_length"]).is_none() {
        scrape.min_length = 1;
    }
    let pdf = match fields::text(config, &["content_base64", "pdf_base64"])? {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| ConfigError::new("content_base64", format!("not base64: {e}")))?;
            if bytes.len() > MAX_INLINE_PDF {
                return Err(ConfigError::new("content_base64", "larger than 20 MiB"));
            }
            Some(bytes)
        }
        None => None,
    };
    Ok(LoaderConfig {
        source_type,
        scrape,
        content: fields::text(config, &["content", "text_content", "text"])?.map(str::to_owned),
        pdf,
        name: fields::text(config, &["source_name", "file_name"])?.map(str::to_owned),
    })
}

impl NodeDefinition for DocumentLoader {
    fn type_name(&self) -> &str {
        "DocumentLoader"
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
        "Loads documents from web URLs and from text, Markdown, HTML or PDF content."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "source_type": {"type": "string", "enum": SOURCE_TYPES, "default": "mixed",
                    "description": "How inline content is read (text, markdown, html, pdf); web and mixed detect it."},
                "web_urls": {"type": ["string", "array"], "description": "URLs, one per line or comma-separated; the input's URLs are added."},
                "content": {"type": "string", "description": "Inline text, Markdown or HTML."},
                "content_base64": {"type": "string", "description": "An inline PDF, base64."},
                "source_name": {"type": "string", "description": "The inline content's `source`."},
                "remove_selectors": {"type": "string", "default": html::DEFAULT_REMOVE_SELECTORS},
                "respect_robots": {"type": "boolean", "default": true},
                "timeout": {"type": "number", "minimum": 1, "maximum": 300, "default": 30},
                "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        parse(config).map(drop)
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let config = parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
            let mut urls = config.scrape.urls.clone();
            urls.extend(documents::urls_from_input(ctx.input));
            let mut inline: Vec<(Vec<u8>, ContentKind)> = Vec::new();
            if let Some(pdf) = config.pdf.clone() {
                inline.push((pdf, ContentKind::Pdf));
            }
            let kind = match config.source_type {
                "markdown" => ContentKind::Markdown,
                "html" => ContentKind::Html,
                "pdf" => ContentKind::Pdf,
                _ => ContentKind::Text,
            };
            if let Some(content) = &config.content {
                let kind = if config.source_type == "mixed" {
                    ContentKind::detect(None, "", content.as_bytes())
                } else {
                    kind
                };
                inline.push((content.clone().into_bytes(), kind));
            }
            // Text in the input that is not URLs is content too.
            if let Value::String(text) = &**ctx.input
                && urls_in(text).is_empty()
                && !text.trim().is_empty()
            {
                inline.push((
                    text.clone().into_bytes(),
                    ContentKind::detect(None, "", text.as_bytes()),
                ));
            }
            if urls.is_empty() && inline.is_empty() {
                return Err(NodeError::Configuration(format!(
                    "node {}: nothing to load (set `web_urls` or `content`, or give URLs as input)",
                    ctx.node_id
                )));
            }
            let (mut loaded, mut errors) = if urls.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                scrape(&ctx, &config.scrape, urls).await
            };
            let remove = html::selectors(&config.scrape.remove_selectors)
                .ok()
                .flatten();
            for (index, (body, kind)) in inline.into_iter().enumerate() {
                let source = config
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("inline:{}:{index}", ctx.node_id));
                match document_of(body, kind, &source, remove.as_ref(), &ctx.services.compute).await
                {
                    Ok(document) => loaded.push(document),
                    Err(error) => errors.push(json!({"url": source, "error": error})),
                }
            }
            answer(ctx.node_id, loaded, errors)
        }
        .boxed()
    }
}
