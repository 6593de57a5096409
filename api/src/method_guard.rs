//! Undeclared methods: a request to one of the API's paths with a method the OpenAPI document
//! does not declare there is answered `405 Method Not Allowed` with `Allow` listing the ones it
//! does, before authentication or routing (the router alone answered some, e.g. `TRACE`, with
//! other statuses and never with `Allow`). The methods come from the document itself, so the
//! answer cannot drift from what clients are told.

use std::sync::Arc;

use poem::http::Method;
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

use crate::error::ApiError;

/// One path of the document: its segments (`None` for a `{parameter}`) and declared methods.
#[derive(Debug, Clone)]
struct PathMethods {
    segments: Vec<Option<String>>,
    methods: Vec<Method>,
}

/// The methods each path of the API accepts.
#[derive(Debug, Clone, Default)]
pub struct AllowedMethods {
    paths: Vec<PathMethods>,
}

impl AllowedMethods {
    /// From an OpenAPI document (JSON): every path with its operations' methods; `HEAD` wherever
    /// `GET` is (the router answers it with the `GET` handler's headers).
    pub fn from_spec(spec: &str) -> Self {
        let document: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut allowed = Self::default();
        if let Some(paths) = document.get("paths").and_then(Value::as_object) {
            for (path, operations) in paths {
                let methods = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|operations| operations.keys())
                    .filter_map(|method| Method::from_bytes(method.to_uppercase().as_bytes()).ok());
                allowed.add(path, methods);
            }
        }
        allowed
    }

    /// Declares `methods` on `path` (`{name}` segments match any one segment).
    pub fn add(&mut self, path: &str, methods: impl IntoIterator<Item = Method>) {
        let mut methods: Vec<Method> = methods.into_iter().collect();
        if methods.contains(&Method::GET) {
            methods.push(Method::HEAD);
        }
        methods.sort_by_key(rank);
        methods.dedup();
        let segments = segments(path)
            .map(|segment| {
                (!(segment.starts_with('{') && segment.ends_with('}'))).then(|| segment.to_owned())
            })
            .collect();
        self.paths.push(PathMethods { segments, methods });
    }

    /// The methods declared on the path `path` matches, or `None` when it matches none. Where
    /// several match, the one whose first difference is a literal segment wins, as in routing
    /// (`/workflows/public` before `/workflows/{id}`).
    pub fn methods_for(&self, path: &str) -> Option<&[Method]> {
        let wanted: Vec<&str> = segments(path).collect();
        self.paths
            .iter()
            .filter(|candidate| {
                candidate.segments.len() == wanted.len()
                    && candidate
                        .segments
                        .iter()
                        .zip(&wanted)
                        .all(|(segment, given)| segment.as_deref().is_none_or(|s| s == *given))
            })
            // Literal segments as bits, the first segment the highest: no allocation per
            // request (this runs before every request, webhook ingress included).
            .max_by_key(|candidate| {
                candidate
                    .segments
                    .iter()
                    .take(64)
                    .fold(0u64, |bits, segment| {
                        (bits << 1) | u64::from(segment.is_some())
                    })
            })
            .map(|candidate| candidate.methods.as_slice())
    }
}

/// `Allow`'s order: the usual reading order of methods, others last.
fn rank(method: &Method) -> usize {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .iter()
    .position(|known| known == method)
    .unwrap_or(usize::MAX)
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

/// Middleware: answers 405 with `Allow` for a known path and an undeclared method.
pub async fn refuse_undeclared_methods<E: Endpoint>(
    next: E,
    request: Request,
    allowed: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    if let Some(methods) = allowed.methods_for(request.uri().path())
        && !methods.contains(request.method())
    {
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "{} is not allowed on {}; allowed: {allow}",
            request.method(),
            request.uri().path()
        );
        return Ok(ApiError::method_not_allowed(message, allow).into_response());
    }
    Ok(next.call(request).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> AllowedMethods {
        AllowedMethods::from_spec(
            r#"{"paths": {
                "/api/v1/workflows/{id}": {"get": {}, "put": {}, "delete": {}},
                "/api/v1/workflows/public": {"get": {}},
                "/api/v1/webhooks": {"get": {}, "post": {}}
            }}"#,
        )
    }

    #[test]
    fn a_path_answers_its_declared_methods_with_head_beside_get() {
        let allowed = allowed();
        let methods: Vec<&str> = allowed
            .methods_for("/api/v1/webhooks")
            .unwrap()
            .iter()
            .map(Method::as_str)
            .collect();
        assert_eq!(methods, ["GET", "HEAD", "POST"]);
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter_and_unknown_paths_match_nothing() {
        let allowed = allowed();
        let public = allowed.methods_for("/api/v1/workflows/public").unwrap();
        assert!(!public.contains(&Method::DELETE));
        let one = allowed.methods_for("/api/v1/workflows/0190").unwrap();
        assert!(one.contains(&Method::DELETE));
        assert!(allowed.methods_for("/api/v1/workflows").is_none());
        assert!(allowed.methods_for("/api/v1/workflows/a/b").is_none());
        assert!(allowed.methods_for("/nowhere").is_none());
    }
}
