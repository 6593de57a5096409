//! CORS for webhook ingress: which origins a browser may call a webhook from, the preflight
//! answer, and the headers added to every answer to an allowed origin.

use poem::Response;
use poem::http::{HeaderValue, StatusCode};

use super::config::WebhookConfig;

/// Headers a browser may send to a webhook.
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, prefer, \
    x-event-type, webhook-id, webhook-timestamp, webhook-signature";
/// Headers of our answers a browser script may read.
const EXPOSED_HEADERS: &str = "x-kai-execution-id, retry-after, idempotent-replayed";
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// The `Access-Control-Allow-Origin` value for `origin`, when the webhook accepts it.
pub fn allowed_origin(config: &WebhookConfig, origin: &str) -> Option<HeaderValue> {
    if !config.enable_cors {
        return None;
    }
    let listed = config.allowed_origins.is_empty()
        || config
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin));
    // The origin is echoed (not `*`) so that answers to different origins are never mixed up
    // by a cache; `Vary: Origin` says so.
    listed.then(|| HeaderValue::from_str(origin).ok()).flatten()
}

/// Adds the CORS headers of an allowed origin to an answer.
pub fn decorate(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", origin);
    headers.append("vary", HeaderValue::from_static("Origin"));
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

/// The answer to a preflight from an allowed origin.
pub fn preflight(config: &WebhookConfig, origin: HeaderValue) -> Response {
    let methods = config.allowed_methods.join(", ");
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("access-control-allow-methods", methods)
        .header("access-control-allow-headers", ALLOWED_HEADERS)
        .header("access-control-max-age", PREFLIGHT_MAX_AGE_SECS)
        .finish();
    decorate(&mut response, origin);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_allowed_by_list_or_by_default() {
        let mut config = WebhookConfig::default();
        assert!(allowed_origin(&config, "https://any.example").is_some());
        config.allowed_origins = vec!["https://app.example.com".into()];
        assert!(allowed_origin(&config, "https://app.example.com").is_some());
        assert!(allowed_origin(&config, "https://evil.example").is_none());
        config.enable_cors = false;
        assert!(allowed_origin(&config, "https://app.example.com").is_none());
    }
}
