//! Splitting documents into chunks for embedding, with `text-splitter` doing the splitting: each
//! chunk keeps its document's metadata and says where it came from (`source`, `chunk_index`,
//! and its `start_index`/`end_index` in characters of the document's text; for HTML, of the
//! page's extracted text), plus the section headings for the header strategies.

use std::sync::LazyLock;

use scraper::{Html, Node};
use serde_json::{Value, json};
use text_splitter::{ChunkConfig, ChunkSizer, CodeSplitter, MarkdownSplitter, TextSplitter};

use super::Document;

pub const DEFAULT_CHUNK_SIZE: usize = 1000;
pub const DEFAULT_CHUNK_OVERLAP: usize = 200;
pub const MAX_CHUNK_SIZE: usize = 100_000;

/// How text is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Paragraphs, then sentences, then words, then characters, as large as fit.
    RecursiveCharacter,
    /// On one separator, pieces packed up to the size.
    Character { separator: String },
    /// Sized in tokens of OpenAI's `cl100k_base`.
    Tokens,
    /// Sections under Markdown headings, each split by Markdown structure.
    MarkdownHeaders,
    /// Sections under HTML headings (`h1`..`h6` as chosen), of the page's text.
    HtmlHeaders { levels: Vec<u8> },
    /// Python source split along its syntax tree.
    PythonCode,
    /// LaTeX split before sectioning commands and environments.
    Latex,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::RecursiveCharacter => "recursive_character",
            Strategy::Character { .. } => "character",
            Strategy::Tokens => "tokens",
            Strategy::MarkdownHeaders => "markdown_headers",
            Strategy::HtmlHeaders { .. } => "html_headers",
            Strategy::PythonCode => "python_code",
            Strategy::Latex => "latex",
        }
    }

    /// KAI-Fusion's names (and a few obvious others); `None` for an unknown one.
    pub fn parse(name: &str, separator: Option<&str>, header_levels: Option<&str>) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "recursive_character" | "recursive" => Strategy::RecursiveCharacter,
            "character" => Strategy::Character {
                separator: separator.map_or("\n\n", |s| s).replace("\\n", "\n"),
            },
            "tokens" | "token" => Strategy::Tokens,
            "markdown_headers" | "markdown" => Strategy::MarkdownHeaders,
            "html_headers" | "html" => Strategy::HtmlHeaders {
                levels: header_levels
                    .unwrap_or("h1,h2,h3")
                    .split(',')
                    .filter_map(|h| h.trim().trim_start_matches(['h', 'H']).parse().ok())
                    .filter(|level| (1..=6).contains(level))
                    .collect(),
            },
            "python_code" | "code" | "python" => Strategy::PythonCode,
            "latex" => Strategy::Latex,
            _ => return None,
        })
    }

    pub const NAMES: &'static [&'static str] = &[
        "recursive_character",
        "character",
        "tokens",
        "markdown_headers",
        "html_headers",
        "python_code",
        "latex",
    ];
}

/// How to split, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSettings {
    pub strategy: Strategy,
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    pub strip_whitespace: bool,
}

impl SplitSettings {
    /// Checks sizes: 1 ≤ size ≤ 100,000 and overlap < size, naming both.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(format!(
                "chunk_size must be between 1 and {MAX_CHUNK_SIZE} (got {})",
                self.chunk_size
            ));
        }
        if self.chunk_overlap >= self.chunk_size {
            return Err(format!(
                "chunk_overlap ({}) must be smaller than chunk_size ({})",
                self.chunk_overlap, self.chunk_size
            ));
        }
        if let Strategy::HtmlHeaders { levels } = &self.strategy
            && levels.is_empty()
        {
            return Err("header_levels must name at least one of h1..h6".into());
        }
        if let Strategy::Character { separator } = &self.strategy
            && separator.is_empty()
        {
            return Err("separator must not be empty".into());
        }
        Ok(())
    }

    fn config<S: ChunkSizer>(&self, sizer: S) -> ChunkConfig<S> {
        ChunkConfig::new(self.chunk_size)
            .with_overlap(self.chunk_overlap)
            .expect("checked: overlap < size")
            .with_trim(self.strip_whitespace)
            .with_sizer(sizer)
    }
}

/// What a split produced, for the node's `stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitStats {
    pub documents: usize,
    pub chunks: usize,
    pub total_characters: usize,
    pub min_chunk: usize,
    pub max_chunk: usize,
}

impl SplitStats {
    pub fn to_value(&self, settings: &SplitSettings) -> Value {
        json!({
            "total_documents": self.documents,
            "total_chunks": self.chunks,
            "total_characters": self.total_characters,
            "avg_chunk_size": self.total_characters.checked_div(self.chunks).unwrap_or(0),
            "min_chunk_size": self.min_chunk,
            "max_chunk_size": self.max_chunk,
            "split_strategy": settings.strategy.name(),
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
        })
    }
}

/// OpenAI's tokenizer, built once (parsing its table takes tens of milliseconds).
static CL100K: LazyLock<tiktoken_rs::CoreBPE> =
    LazyLock::new(|| tiktoken_rs::cl100k_base().expect("the bundled cl100k_base table loads"));

/// Splits every document; CPU-bound, so callers run it off the async runtime.
pub fn split(documents: &[Document], settings: &SplitSettings) -> (Vec<Document>, SplitStats) {
    let mut chunks = Vec::new();
    for document in documents {
        let pieces = pieces(&document.page_content, settings);
        let document_id = document_id(document);
        for (index, piece) in pieces.into_iter().enumerate() {
            let mut metadata = document.metadata.clone();
            metadata.insert("doc_id".into(), json!(document_id));
            metadata.insert("chunk_index".into(), json!(index));
            metadata.insert("start_index".into(), json!(piece.start));
            metadata.insert(
                "end_index".into(),
                json!(piece.start + piece.text.chars().count()),
            );
            metadata.insert("chunk_size".into(), json!(piece.text.chars().count()));
            for (key, value) in piece.headers {
                metadata.insert(key, json!(value));
            }
            chunks.push(Document::new(piece.text, metadata));
        }
    }
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| c.page_content.chars().count())
        .collect();
    let stats = SplitStats {
        documents: documents.len(),
        chunks: chunks.len(),
        total_characters: sizes.iter().sum(),
        min_chunk: sizes.iter().copied().min().unwrap_or(0),
        max_chunk: sizes.iter().copied().max().unwrap_or(0),
    };
    (chunks, stats)
}

/// A document's id: its `doc_id`, else its source, else its content's hash, so that the chunks
/// of the same page or file stored again replace the earlier ones.
pub fn document_id(document: &Document) -> String {
    document
        .metadata
        .get("doc_id")
        .and_then(Value::as_str)
        .or_else(|| document.source())
        .map(str::to_owned)
        .unwrap_or_else(|| crate::vectors::write::content_id(&document.page_content))
}

/// A piece of a document: its text, where it starts (characters) and the headings above it.
struct Piece {
    text: String,
    start: usize,
    headers: Vec<(String, String)>,
}

fn pieces(text: &str, settings: &SplitSettings) -> Vec<Piece> {
    let plain = |splits: Vec<(usize, &str)>, offset: usize, headers: &[(String, String)]| {
        splits
            .into_iter()
            .map(|(start, chunk)| Piece {
                text: chunk.to_owned(),
                start: offset + start,
                headers: headers.to_vec(),
            })
            .collect::<Vec<_>>()
    };
    match &settings.strategy {
        Strategy::RecursiveCharacter => {
            let splitter = TextSplitter::new(settings.config(text_splitter::Characters));
            plain(char_chunks(splitter.chunk_char_indices(text)), 0, &[])
        }
        Strategy::Tokens => {
            let splitter = TextSplitter::new(settings.config(&*CL100K));
            plain(char_chunks(splitter.chunk_char_indices(text)), 0, &[])
        }
        Strategy::PythonCode => {
            match CodeSplitter::new(
                tree_sitter_python::LANGUAGE,
                settings.config(text_splitter::Characters),
            ) {
                Ok(splitter) => plain(char_chunks(splitter.chunk_char_indices(text)), 0, &[]),
                Err(_) => {
                    let splitter = TextSplitter::new(settings.config(text_splitter::Characters));
                    plain(char_chunks(splitter.chunk_char_indices(text)), 0, &[])
                }
            }
        }
        Strategy::MarkdownHeaders => {
            let splitter = MarkdownSplitter::new(settings.config(text_splitter::Characters));
            markdown_sections(text)
                .into_iter()
                .flat_map(|section| {
                    let body = &text[section.bytes.clone()];
                    let offset = text[..section.bytes.start].chars().count();
                    plain(
                        char_chunks(splitter.chunk_char_indices(body)),
                        offset,
                        &section.headers,
                    )
                })
                .collect()
        }
        Strategy::HtmlHeaders { levels } => {
            let splitter = TextSplitter::new(settings.config(text_splitter::Characters));
            let mut offset = 0;
            html_sections(text, levels)
                .into_iter()
                .flat_map(|(headers, body)| {
                    let start = offset;
                    offset += body.chars().count() + 1;
                    plain(
                        char_chunks(splitter.chunk_char_indices(&body)),
                        start,
                        &headers,
                    )
                })
                .collect()
        }
        Strategy::Character { separator } => packed(text, &[separator.as_str()], settings),
        Strategy::Latex => packed(
            text,
            &[
                "\n\\chapter",
                "\n\\section",
                "\n\\subsection",
                "\n\\subsubsection",
                "\n\\begin{",
                "\n\n",
                "\n",
            ],
            settings,
        ),
    }
}

fn char_chunks<'t>(
    chunks: impl Iterator<Item = text_splitter::ChunkCharIndex<'t>>,
) -> Vec<(usize, &'t str)> {
    chunks.map(|c| (c.char_offset, c.chunk)).collect()
}

struct Section {
    headers: Vec<(String, String)>,
    bytes: std::ops::Range<usize>,
}

/// Markdown split at ATX headings (outside code fences); each section starts with its heading
/// and carries the headings above it (`h1`, `h2`, ...).
fn markdown_sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut start = 0;
    let mut in_fence = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let is_heading =
            !in_fence && (1..=6).contains(&level) && trimmed[level..].starts_with([' ', '\t']);
        if is_heading {
            if offset > start {
                sections.push(Section {
                    headers: headers_of(&path),
                    bytes: start..offset,
                });
            }
            path.retain(|(l, _)| *l < level);
            path.push((level, trimmed[level..].trim().to_owned()));
            start = offset;
        }
        offset += line.len();
    }
    if text.len() > start {
        sections.push(Section {
            headers: headers_of(&path),
            bytes: start..text.len(),
        });
    }
    sections
}

fn headers_of(path: &[(usize, String)]) -> Vec<(String, String)> {
    path.iter()
        .map(|(level, title)| (format!("h{level}"), title.clone()))
        .collect()
}

/// The text of an HTML page by sections under the chosen heading levels, with their headings.
fn html_sections(html: &str, levels: &[u8]) -> Vec<(Vec<(String, String)>, String)> {
    let document = Html::parse_document(html);
    let mut sections: Vec<(Vec<(String, String)>, String)> = vec![(Vec::new(), String::new())];
    let mut path: Vec<(u8, String)> = Vec::new();
    for node in document.root_element().descendants() {
        match node.value() {
            Node::Element(element) => {
                let name = element.name();
                let level = name
                    .strip_prefix('h')
                    .and_then(|l| l.parse::<u8>().ok())
                    .filter(|l| levels.contains(l));
                if let Some(level) = level {
                    let title: String = scraper::ElementRef::wrap(node)
                        .map(|e| e.text().collect::<Vec<_>>().join(" "))
                        .unwrap_or_default();
                    let title = super::html::collapse_whitespace(&title);
                    path.retain(|(l, _)| *l < level);
                    path.push((level, title.clone()));
                    let headers = path
                        .iter()
                        .map(|(l, t)| (format!("h{l}"), t.clone()))
                        .collect();
                    sections.push((headers, format!("{title}\n")));
                } else if super::html::is_block(name) {
                    // Blocks are separate words even when the markup runs them together.
                    sections.last_mut().expect("a section").1.push('\n');
                }
            }
            Node::Text(text) => {
                let skip = node.ancestors().any(|a| {
                    a.value().as_element().is_some_and(|e| {
                        matches!(e.name(), "script" | "style" | "noscript" | "head")
                            || e.name()
                                .strip_prefix('h')
                                .and_then(|l| l.parse::<u8>().ok())
                                .is_some_and(|l| levels.contains(&l))
                    })
                });
                if !skip {
                    sections.last_mut().expect("a section").1.push_str(text);
                }
            }
            _ => {}
        }
    }
    sections
        .into_iter()
        .map(|(headers, body)| (headers, super::html::collapse_whitespace(&body)))
        .filter(|(_, body)| !body.is_empty())
        .collect()
}

/// Splits before each occurrence of a separator, then packs adjacent pieces up to the size,
/// each chunk after the first starting with as many trailing pieces of the one before as fit in
/// the overlap; a piece larger than the size alone is split by characters.
fn packed(text: &str, separators: &[&str], settings: &SplitSettings) -> Vec<Piece> {
    let mut cuts: Vec<usize> = vec![0];
    for separator in separators {
        cuts.extend(text.match_indices(separator).map(|(i, _)| i));
    }
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut units: Vec<(usize, &str)> = Vec::new();
    let fallback = TextSplitter::new(settings.config(text_splitter::Characters));
    for window in cuts.windows(2) {
        let (start, end) = (window[0], window[1]);
        let unit = &text[start..end];
        if unit.chars().count() > settings.chunk_size {
            for (offset, chunk) in fallback.chunk_indices(unit) {
                units.push((start + offset, chunk));
            }
        } else if !unit.trim().is_empty() {
            units.push((start, unit));
        }
    }
    let length = |from: usize, to: usize| -> usize {
        units[from..to].iter().map(|(_, u)| u.chars().count()).sum()
    };
    let mut pieces = Vec::new();
    let mut first = 0;
    while first < units.len() {
        let mut last = first + 1;
        while last < units.len() && length(first, last + 1) <= settings.chunk_size {
            last += 1;
        }
        let (start, _) = units[first];
        let (end_start, end_unit) = units[last - 1];
        let raw = &text[start..end_start + end_unit.len()];
        let body = if settings.strip_whitespace {
            raw.trim()
        } else {
            raw
        };
        let lead = raw.len() - raw.trim_start().len();
        let begins = if settings.strip_whitespace {
            start + lead
        } else {
            start
        };
        pieces.push(Piece {
            text: body.to_owned(),
            start: text[..begins].chars().count(),
            headers: Vec::new(),
        });
        if last >= units.len() {
            break;
        }
        // The next chunk begins with the trailing units that fit in the overlap.
        let mut next = last;
        while next > first + 1 && length(next - 1, last) <= settings.chunk_overlap {
            next -= 1;
        }
        first = next;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn settings(strategy: Strategy, size: usize, overlap: usize) -> SplitSettings {
        SplitSettings {
            strategy,
            chunk_size: size,
            chunk_overlap: overlap,
            strip_whitespace: true,
        }
    }

    fn doc(text: &str) -> Vec<Document> {
        let mut metadata = Map::new();
        metadata.insert("source".into(), json!("https://docs.example/page"));
        vec![Document::new(text, metadata)]
    }

    #[test]
    fn overlap_must_be_smaller_than_the_size_and_both_are_named() {
        let error = settings(Strategy::RecursiveCharacter, 100, 200)
            .check()
            .unwrap_err();
        assert_eq!(
            error,
            "chunk_overlap (200) must be smaller than chunk_size (100)"
        );
        assert!(
            settings(Strategy::RecursiveCharacter, 0, 0)
                .check()
                .is_err()
        );
        assert!(
            settings(Strategy::RecursiveCharacter, 100, 99)
                .check()
                .is_ok()
        );
    }

    #[test]
    fn chunks_keep_their_source_and_character_offsets() {
        let text =
            "Ünïcödé first paragraph here.\n\nSecond paragraph follows it.\n\nThird one ends.";
        let (chunks, stats) = split(&doc(text), &settings(Strategy::RecursiveCharacter, 35, 0));
        assert_eq!(stats.chunks, chunks.len());
        assert!(chunks.len() >= 3, "{chunks:?}");
        let chars: Vec<char> = text.chars().collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let m = &chunk.metadata;
            assert_eq!(m["source"], "https://docs.example/page");
            assert_eq!(m["doc_id"], "https://docs.example/page");
            assert_eq!(m["chunk_index"], i);
            let (start, end) = (
                m["start_index"].as_u64().unwrap() as usize,
                m["end_index"].as_u64().unwrap() as usize,
            );
            let original: String = chars[start..end].iter().collect();
            assert_eq!(original, chunk.page_content);
            assert!(chunk.page_content.chars().count() <= 35);
        }
    }

    #[test]
    fn tokens_size_chunks_in_tokens() {
        let text = "word ".repeat(300);
        let (chunks, _) = split(&doc(&text), &settings(Strategy::Tokens, 50, 10));
        for chunk in &chunks {
            assert!(CL100K.encode_ordinary(&chunk.page_content).len() <= 50);
        }
        assert!(chunks.len() >= 6, "{}", chunks.len());
    }

    #[test]
    fn markdown_sections_carry_their_headings() {
        let text =
            "# Guide\nIntro.\n## Install\nRun it.\n```\n# not a heading\n```\n## Use\nCall it.\n";
        let (chunks, _) = split(&doc(text), &settings(Strategy::MarkdownHeaders, 200, 0));
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert_eq!(chunks[1].metadata["h1"], "Guide");
        assert_eq!(chunks[1].metadata["h2"], "Install");
        assert!(chunks[1].page_content.contains("# not a heading"));
        assert_eq!(chunks[2].metadata["h2"], "Use");
        let start = chunks[2].metadata["start_index"].as_u64().unwrap() as usize;
        assert!(
            text.chars()
                .skip(start)
                .collect::<String>()
                .starts_with("## Use")
        );
    }

    #[test]
    fn html_sections_are_the_pages_text_under_its_headings() {
        let html = "<html><head><title>t</title><style>x{}</style></head><body>\
            <h1>Title</h1><p>Lead text.</p><h2>Part A</h2><p>Alpha <b>bold</b>.</p>\
            <script>var x;</script><h2>Part B</h2><p>Beta.</p></body></html>";
        let strategy = Strategy::parse("html_headers", None, Some("h1,h2")).unwrap();
        let (chunks, _) = split(&doc(html), &settings(strategy, 500, 0));
        let texts: Vec<&str> = chunks.iter().map(|c| c.page_content.as_str()).collect();
        assert_eq!(
            texts,
            ["Title Lead text.", "Part A Alpha bold.", "Part B Beta."]
        );
        assert_eq!(chunks[2].metadata["h1"], "Title");
        assert_eq!(chunks[2].metadata["h2"], "Part B");
    }

    #[test]
    fn character_packs_pieces_with_overlap_and_code_follows_syntax() {
        let text = "aaaa|bbbb|cccc|dddd";
        let strategy = Strategy::parse("character", Some("|"), None).unwrap();
        let (chunks, _) = split(&doc(text), &settings(strategy, 10, 5));
        let texts: Vec<&str> = chunks.iter().map(|c| c.page_content.as_str()).collect();
        assert_eq!(texts, ["aaaa|bbbb", "|bbbb|cccc", "|cccc|dddd"]);
        let code = "def a():\n    return 1\n\n\ndef b():\n    return 2\n";
        let (chunks, _) = split(&doc(code), &settings(Strategy::PythonCode, 25, 0));
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert!(chunks[1].page_content.starts_with("def b"));
    }
}
