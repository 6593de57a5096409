//! Turning a fetched page or given content into a document: HTML to its readable text (without
//! what `remove_selectors` matches), PDF to its text, text and Markdown as they are; metadata in
//! KAI-Fusion's shape (`source`, `domain`, `doc_id`, `content_length`, `title`, `content_type`).

use scraper::Selector;
use serde_json::{Map, Value, json};
use url::Url;

use super::fetch::{FetchError, Fetcher, display_url};
use super::{Document, html, pdf};
use crate::compute::ComputePool;

/// What kind of content a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Html,
    Pdf,
    Markdown,
    Text,
}

impl ContentKind {
    pub fn name(self) -> &'static str {
        match self {
            ContentKind::Html => "html",
            ContentKind::Pdf => "pdf",
            ContentKind::Markdown => "markdown",
            ContentKind::Text => "text",
        }
    }

    /// From a `Content-Type`, the URL's extension and the bytes themselves.
    pub fn detect(content_type: Option<&str>, url: &str, body: &[u8]) -> Self {
        let media = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let path = url
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if pdf::is_pdf(body) || media == "application/pdf" {
            ContentKind::Pdf
        } else if media.contains("markdown") || path.ends_with(".md") || path.ends_with(".markdown")
        {
            ContentKind::Markdown
        } else if media.contains("html") || media.contains("xml") {
            ContentKind::Html
        } else if media.starts_with("text/") {
            ContentKind::Text
        } else {
            let head = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
            if head.contains("<html") || head.contains("<!doctype html") {
                ContentKind::Html
            } else {
                ContentKind::Text
            }
        }
    }
}

/// The document a body makes.
pub async fn document_of(
    body: Vec<u8>,
    kind: ContentKind,
    source: &str,
    remove: Option<&Selector>,
    compute: &ComputePool,
) -> Result<Document, String> {
    let (text, title) = match kind {
        ContentKind::Pdf => (pdf::text(compute, body).await?, None),
        ContentKind::Html => {
            let html_text = String::from_utf8_lossy(&body).into_owned();
            let remove = remove.cloned();
            let page = compute
                .run(move || html::page_text(&html_text, remove.as_ref()))
                .await;
            (page.text, page.title)
        }
        ContentKind::Markdown | ContentKind::Text => {
            (String::from_utf8_lossy(&body).into_owned(), None)
        }
    };
    let mut metadata = Map::new();
    metadata.insert("source".into(), json!(source));
    if let Some(domain) = Url::parse(source)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        metadata.insert("domain".into(), json!(domain));
    }
    metadata.insert("doc_id".into(), json!(source));
    metadata.insert("content_type".into(), json!(kind.name()));
    metadata.insert("content_length".into(), json!(text.chars().count()));
    if let Some(title) = title {
        metadata.insert("title".into(), Value::String(title));
    }
    Ok(Document::new(text, metadata))
}

/// Fetches `url` and makes its document; a text shorter than `min_length` is an error.
pub async fn load_url(
    fetcher: &Fetcher,
    url: &str,
    remove: Option<&Selector>,
    min_length: usize,
    compute: &ComputePool,
) -> Result<Document, String> {
    let answer = fetcher.fetch(url).await.map_err(|e| match e {
        FetchError::Robots(reason) => format!("robots.txt: {reason}"),
        other => other.to_string(),
    })?;
    let source = source_of(answer.url.as_str());
    let kind = ContentKind::detect(answer.header("content-type"), &source, &answer.body);
    let document = document_of(answer.body, kind, &source, remove, compute).await?;
    let length = document.page_content.trim().chars().count();
    if length < min_length {
        return Err(format!(
            "its text is {length} characters, shorter than min_content_length ({min_length})"
        ));
    }
    Ok(document)
}

/// A URL as a document's source: without user and password.
pub fn source_of(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        Err(_) => display_url(url),
    }
}

/// One URL's failure, for a node's `errors`.
pub fn failure(url: &str, error: &str) -> Value {
    json!({"url": display_url(url), "error": error})
}
