//! Security headers on every response: `X-Content-Type-Options: nosniff` (a JSON answer is never
//! sniffed into HTML), `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`; and on the
//! `/docs` page a Content Security Policy that lets only its own inline scripts run (by their
//! SHA-256, computed from the page as rendered) and loads nothing from elsewhere.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use poem::http::HeaderValue;
use poem::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

/// The path of the interactive documentation page.
pub const DOCS_PATH: &str = "/docs";

/// The CSP of a page whose only scripts are the inline `<script>` elements of `html`: those run
/// (each allowed by its hash), nothing is fetched from another origin, the page cannot be framed.
/// Styles stay `'unsafe-inline'`: Swagger UI sets element styles from its script.
pub fn docs_policy(html: &str) -> String {
    let hashes: Vec<String> = inline_scripts(html)
        .into_iter()
        .map(|script| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(script))))
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        hashes.join(" ")
    )
}

/// The text of each `<script ...>...</script>` element without a `src`, read as a browser does:
/// a script ends at the first `</script>` after its opening tag (its text may itself contain
/// `<script`, as Swagger UI's bundle does).
pub fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(open) = rest.find("<script") {
        let after_open = &rest[open..];
        let Some(tag_end) = after_open.find('>') else {
            break;
        };
        let body = &after_open[tag_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !after_open[..tag_end].contains("src=") {
            scripts.push(&body[..close]);
        }
        rest = &body[close + "</script>".len()..];
    }
    scripts
}

/// Middleware: the headers on every response, the docs page's policy on it.
pub async fn add_security_headers<E: Endpoint>(
    next: E,
    request: Request,
    docs_policy: HeaderValue,
) -> poem::Result<Response> {
    let is_docs = request.uri().path() == DOCS_PATH;
    let mut response = match next.call(request).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if is_docs {
        headers.insert(CONTENT_SECURITY_POLICY, docs_policy);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_policy_allows_exactly_the_pages_inline_scripts() {
        let html = r#"<html><script charset="UTF-8">one("<script")</script>
            <script src="https://elsewhere/x.js"></script><script>two()</script></html>"#;
        let policy = docs_policy(html);
        let hash = |s: &str| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s)));
        assert!(policy.contains(&format!(
            "script-src {} {};",
            hash(r#"one("<script")"#),
            hash("two()")
        )));
        assert!(policy.starts_with("default-src 'none';"));
        assert!(!policy.contains("unsafe-eval"));
        assert!(!policy.contains("https:"));
    }
}
