//! Readable text out of an HTML page with `scraper`: the elements matching `remove_selectors`
//! (navigation, footers, scripts... by default) are left out, block elements end lines, runs of
//! whitespace collapse; the title comes along for the document's metadata.

use scraper::{ElementRef, Html, Node, Selector};

/// KAI-Fusion's default: what is not the page's content.
pub const DEFAULT_REMOVE_SELECTORS: &str = "nav,footer,header,script,style,aside,noscript,form";

/// The page's text and title.
#[derive(Debug, Clone, PartialEq)]
pub struct PageText {
    pub title: Option<String>,
    pub text: String,
}

/// Parses `remove_selectors` (a CSS selector list), naming it when it is not valid CSS.
pub fn selectors(list: &str) -> Result<Option<Selector>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(None);
    }
    Selector::parse(list)
        .map(Some)
        .map_err(|e| format!("remove_selectors is not a CSS selector list: {e}"))
}

/// The readable text of `html` without what `remove` matches.
pub fn page_text(html: &str, remove: Option<&Selector>) -> PageText {
    let document = Html::parse_document(html);
    let title = Selector::parse("title").ok().and_then(|s| {
        document
            .select(&s)
            .next()
            .map(|t| collapse_whitespace(&t.text().collect::<String>()))
            .filter(|t| !t.is_empty())
    });
    let removed: Vec<ElementRef<'_>> = match remove {
        Some(selector) => document.select(selector).collect(),
        None => Vec::new(),
    };
    let root = Selector::parse("body")
        .ok()
        .and_then(|s| document.select(&s).next())
        .unwrap_or_else(|| document.root_element());
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    walk(root, &removed, &mut line, &mut lines);
    finish_line(&mut line, &mut lines);
    PageText {
        title,
        text: lines.join("\n"),
    }
}

fn walk(
    element: ElementRef<'_>,
    removed: &[ElementRef<'_>],
    line: &mut String,
    lines: &mut Vec<String>,
) {
    if removed.contains(&element)
        || matches!(
            element.value().name(),
            "script" | "style" | "noscript" | "template" | "head"
        )
    {
        return;
    }
    let block = is_block(element.value().name());
    if block {
        finish_line(line, lines);
    }
    for child in element.children() {
        match child.value() {
            Node::Text(text) => {
                let words = collapse_whitespace(text);
                if !words.is_empty() {
                    // Spaces only where the source has them: `<b>x</b>.` stays `x.`.
                    if !line.is_empty()
                        && !line.ends_with(' ')
                        && text.starts_with(char::is_whitespace)
                    {
                        line.push(' ');
                    }
                    line.push_str(&words);
                    if text.ends_with(char::is_whitespace) {
                        line.push(' ');
                    }
                }
            }
            Node::Element(_) => {
                if let Some(child) = ElementRef::wrap(child) {
                    if child.value().name() == "br" {
                        finish_line(line, lines);
                    } else {
                        walk(child, removed, line, lines);
                    }
                }
            }
            _ => {}
        }
    }
    if block {
        finish_line(line, lines);
    }
}

fn finish_line(line: &mut String, lines: &mut Vec<String>) {
    let text = line.trim();
    if !text.is_empty() {
        lines.push(text.to_owned());
    }
    line.clear();
}

/// Elements that end a line of text.
pub(crate) fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "section"
            | "article"
            | "main"
            | "li"
            | "ul"
            | "ol"
            | "table"
            | "tr"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "pre"
            | "blockquote"
            | "dd"
            | "dt"
            | "figcaption"
            | "body"
            | "td"
            | "th"
            | "nav"
            | "header"
            | "footer"
            | "aside"
            | "form"
            | "address"
            | "figure"
            | "dl"
            | "hr"
            | "fieldset"
            | "details"
            | "summary"
    )
}

/// Runs of whitespace as one space, trimmed.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_and_scripts_are_left_out_and_blocks_end_lines() {
        let html = "<html><head><title> The  Page </title></head><body>\
            <nav>Home | About</nav><header>Site</header>\
            <main><h1>Heading</h1><p>First   paragraph with <a href='#'>a link</a>.</p>\
            <p>Second<br>line</p><script>alert(1)</script></main>\
            <footer>© 2026</footer></body></html>";
        let remove = selectors(DEFAULT_REMOVE_SELECTORS).unwrap();
        let page = page_text(html, remove.as_ref());
        assert_eq!(page.title.as_deref(), Some("The Page"));
        assert_eq!(
            page.text,
            "Heading\nFirst paragraph with a link.\nSecond\nline"
        );
        // Without selectors to remove, navigation is text too (scripts never are).
        let all = page_text(html, None);
        assert!(all.text.starts_with("Home | About\nSite"), "{}", all.text);
        assert!(!all.text.contains("alert"));
        assert!(selectors("nav,,").is_err());
    }
}
