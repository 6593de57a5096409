//! Which scope an operation needs from an API key: reading (`GET`, `HEAD` and the few `POST`s
//! that only ask a question) needs `read`; anything else changes something and needs `write`.
//! Deciding by method keeps a new endpoint safe by default: it needs `write` unless it reads.

use poem::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// `POST` operations that change nothing (their question does not fit in a query string);
/// `*` stands for one path segment.
const READING_POSTS: &[&str] = &[
    "/api/v1/executions/lookup",
    "/api/v1/jobs/scheduled/preview",
    "/api/v1/vectors/collections/*/search",
];

pub fn required(method: &Method, path: &str) -> Scope {
    let reads = *method == Method::GET
        || *method == Method::HEAD
        || (*method == Method::POST && READING_POSTS.iter().any(|p| matches(p, path)));
    if reads { Scope::Read } else { Scope::Write }
}

fn matches(pattern: &str, path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/');
    pattern.split('/').all(|want| {
        segments
            .next()
            .is_some_and(|got| want == "*" && !got.is_empty() || want == got)
    }) && segments.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_read_and_everything_else_write() {
        assert_eq!(required(&Method::GET, "/api/v1/workflows"), Scope::Read);
        assert_eq!(required(&Method::HEAD, "/api/v1/workflows"), Scope::Read);
        assert_eq!(required(&Method::POST, "/api/v1/workflows"), Scope::Write);
        assert_eq!(
            required(&Method::DELETE, "/api/v1/workflows/x"),
            Scope::Write
        );
        assert_eq!(required(&Method::PUT, "/api/v1/workflows/x"), Scope::Write);
        assert_eq!(
            required(&Method::POST, "/api/v1/vectors/collections/abc/search"),
            Scope::Read
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/vectors/collections/abc/search/"),
            Scope::Read
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/vectors/collections//search"),
            Scope::Write
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/vectors/collections/abc/documents"),
            Scope::Write
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/vectors/collections/a/b/search"),
            Scope::Write
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/executions/lookup"),
            Scope::Read
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/executions/lookup/x"),
            Scope::Write
        );
    }
}
