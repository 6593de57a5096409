//! Document sources as the API stores them and the worker processes them: what a source's
//! `source_config` holds (checked when it is created, naming the field), the items a job goes
//! through, and the job's message on the queue.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::chunking::{
    DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, SplitSettings, Strategy,
};
use crate::nodes::fields;
use crate::vectors::{Distance, EmbedderSpec};

pub const SOURCE_TYPES: &[&str] = &["web_scraper", "api", "file_upload"];
/// Most items one source holds.
pub const MAX_ITEMS: usize = 1_000;
const MAX_FILE_BYTES: usize = 20 << 20;

/// One thing a job reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Url(String),
    /// A document given inline (`api` sources).
    Inline {
        id: String,
        content: String,
        metadata: Map<String, Value>,
    },
    /// A file given base64-encoded (`file_upload`): PDF, HTML, Markdown or text.
    File {
        name: String,
        bytes: Vec<u8>,
    },
}

impl SourceItem {
    /// How the item is listed (its URL or name).
    pub fn label(&self) -> &str {
        match self {
            SourceItem::Url(url) => url,
            SourceItem::Inline { id, .. } => id,
            SourceItem::File { name, .. } => name,
        }
    }
}

/// A source's configuration, checked.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub items: Vec<SourceItem>,
    pub collection_name: String,
    pub embedder: Option<EmbedderSpec>,
    pub embedding_dimension: Option<usize>,
    pub distance: Distance,
    pub split: SplitSettings,
    /// The scraping settings, as WebScraper's fields.
    pub config: Value,
}

/// Reads `config` for a source of `source_type`; the error names the field.
pub fn parse(
    source_type: &str,
    config: &Value,
    source_url: Option<&str>,
) -> Result<SourceSpec, String> {
    let field = |e: crate::nodes::ConfigError| format!("source_config.{}: {}", e.field, e.message);
    let object = config
        .as_object()
        .ok_or("source_config must be a JSON object")?;
    let items = match source_type {
        "web_scraper" => {
            let mut urls = match object.get("urls") {
                Some(Value::String(text)) => super::urls_in(text),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|u| {
                        u.as_str()
                            .map(str::to_owned)
                            .ok_or("source_config.urls must hold URLs as text")
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err("source_config.urls must be a list of URLs".into()),
            };
            urls.extend(source_url.map(str::to_owned));
            for url in &urls {
                let parsed = url::Url::parse(url)
                    .map_err(|e| format!("source_config.urls: `{url}` is not a URL: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("source_config.urls: `{url}` is not an http(s) URL"));
                }
            }
            let mut seen = std::collections::HashSet::new();
            urls.retain(|u| seen.insert(u.clone()));
            urls.into_iter().map(SourceItem::Url).collect::<Vec<_>>()
        }
        "api" => {
            let documents = object
                .get("documents")
                .and_then(Value::as_array)
                .ok_or("source_config.documents must be a list of {id?, content, metadata?}")?;
            documents
                .iter()
                .enumerate()
                .map(|(i, document)| {
                    let content = document["content"]
                        .as_str()
                        .filter(|c| !c.trim().is_empty())
                        .ok_or(format!(
                            "source_config.documents[{i}].content must be non-empty text"
                        ))?;
                    let metadata = match &document["metadata"] {
                        Value::Null => Map::new(),
                        Value::Object(m) => m.clone(),
                        _ => {
                            return Err(format!(
                                "source_config.documents[{i}].metadata must be an object"
                            ));
                        }
                    };
                    Ok(SourceItem::Inline {
                        id: document["id"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| crate::vectors::write::content_id(content)),
                        content: content.to_owned(),
                        metadata,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?
        }
        "file_upload" => {
            let name = object
                .get("file_name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .ok_or("source_config.file_name is required")?;
            let encoded = object
                .get("content_base64")
                .and_then(Value::as_str)
                .ok_or("source_config.content_base64 is required (the file, base64)")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("source_config.content_base64 is not base64: {e}"))?;
            if bytes.len() > MAX_FILE_BYTES {
                return Err("source_config.content_base64: the file is larger than 20 MiB".into());
            }
            vec![SourceItem::File {
                name: name.to_owned(),
                bytes,
            }]
        }
        other => {
            return Err(format!(
                "source_type `{other}` is not one of {}",
                SOURCE_TYPES.join(", ")
            ));
        }
    };
    if items.is_empty() {
        return Err(
            "the source holds nothing to process (source_config.urls, documents or content_base64)"
                .into(),
        );
    }
    if items.len() > MAX_ITEMS {
        return Err(format!("a source holds at most {MAX_ITEMS} items"));
    }
    let collection_name = fields::text(config, &["collection_name"])
        .map_err(field)?
        .ok_or("source_config.collection_name is required")?
        .to_owned();
    let embedder = match object.get("embedder") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<EmbedderSpec>(value.clone()).map_err(|e| {
                format!("source_config.embedder must be {{credential_id?, model}}: {e}")
            })?,
        ),
    };
    let embedding_dimension = fields::integer(config, &["embedding_dimension"], 1, 16_000)
        .map_err(field)?
        .map(|d| d as usize);
    let distance_name = fields::text(config, &["distance_strategy"])
        .map_err(field)?
        .unwrap_or("cosine");
    let distance = Distance::parse(distance_name).ok_or(format!(
        "source_config.distance_strategy `{distance_name}` is not cosine, l2 or inner_product"
    ))?;
    let strategy_name = fields::text(config, &["split_strategy"])
        .map_err(field)?
        .unwrap_or("recursive_character");
    let strategy = Strategy::parse(
        strategy_name,
        fields::text(config, &["separator"]).map_err(field)?,
        fields::text(config, &["header_levels"]).map_err(field)?,
    )
    .ok_or(format!(
        "source_config.split_strategy `{strategy_name}` is not one of {}",
        Strategy::NAMES.join(", ")
    ))?;
    let chunk_size = fields::integer(config, &["chunk_size"], 1, MAX_CHUNK_SIZE as u64)
        .map_err(field)?
        .map_or(DEFAULT_CHUNK_SIZE, |s| s as usize);
    let split = SplitSettings {
        strategy,
        chunk_size,
        chunk_overlap: fields::integer(config, &["chunk_overlap"], 0, MAX_CHUNK_SIZE as u64)
            .map_err(field)?
            .map_or(DEFAULT_CHUNK_OVERLAP.min(chunk_size / 5), |o| o as usize),
        strip_whitespace: true,
    };
    split.check().map_err(|e| format!("source_config: {e}"))?;
    crate::nodes::web_scraper::ScrapeSettings::parse(config, &["urls"]).map_err(field)?;
    Ok(SourceSpec {
        items,
        collection_name,
        embedder,
        embedding_dimension,
        distance,
        split,
        config: config.clone(),
    })
}

/// A processing job on the queue (`<prefix>.jobs.documents`). Everything else the worker reads
/// from the job's rows, which are committed before it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DocumentJobMessage {
    DocumentsV1 {
        job_id: Uuid,
        source_id: Uuid,
        user_id: Uuid,
    },
}

impl DocumentJobMessage {
    pub const SUBJECT_KIND: &'static str = "documents";

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job message serialises")
    }

    /// The message, when `bytes` is one (other kinds are execution jobs). Told apart by the
    /// tag this type writes first, without parsing: every execution job goes through here, and
    /// a webhook's payload may be megabytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.starts_with(br#"{"kind":"DocumentsV1""#) {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configurations_are_checked_naming_the_field() {
        let web = parse(
            "web_scraper",
            &json!({"urls": ["https://a.example/x", "https://a.example/x"], "collection_name": "kb"}),
            Some("https://b.example"),
        )
        .unwrap();
        assert_eq!(web.items.len(), 2);
        assert_eq!(web.split.chunk_overlap, 200);
        let error = |t: &str, c: Value| parse(t, &c, None).unwrap_err();
        assert!(
            error("web_scraper", json!({"collection_name": "kb"})).contains("nothing to process")
        );
        assert!(
            error(
                "web_scraper",
                json!({"urls": ["ftp://x"], "collection_name": "kb"})
            )
            .contains("http(s)")
        );
        assert!(
            error("web_scraper", json!({"urls": ["https://x.example"]}))
                .contains("collection_name")
        );
        assert!(
            error("api", json!({"documents": [{"content": "a"}], "collection_name": "kb", "chunk_size": 10, "chunk_overlap": 10}))
                .contains("chunk_overlap (10) must be smaller than chunk_size (10)")
        );
        assert!(error("ftp", json!({})).contains("source_type `ftp`"));
        assert!(
            error(
                "file_upload",
                json!({"file_name": "a.pdf", "content_base64": "%%", "collection_name": "kb"})
            )
            .contains("base64")
        );
        let message = DocumentJobMessage::DocumentsV1 {
            job_id: Uuid::nil(),
            source_id: Uuid::nil(),
            user_id: Uuid::nil(),
        };
        assert!(message.encode().starts_with(br#"{"kind":"DocumentsV1""#));
        assert_eq!(DocumentJobMessage::decode(&message.encode()), Some(message));
        assert_eq!(DocumentJobMessage::decode(br#"{"kind":"ManualV1"}"#), None);
    }
}
