//! Redaction of what is recorded about an outbound call (`http_request_logs`, errors): header,
//! query and body fields whose names say they hold secrets, user information in URLs, and every
//! occurrence of the credential's own secret values wherever they appear.

use serde_json::{Map, Value};
use url::Url;

pub const REDACTED: &str = "[REDACTED]";

/// Parts of names that mark a field as secret (compared lowercase, `-` and `_` ignored).
const SECRET_NAME_PARTS: &[&str] = &[
    "authorization",
    "auth",
    "cookie",
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "accesskey",
    "privatekey",
    "signature",
    "session",
    "credential",
];

/// Whether a header, parameter or JSON field called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let normal: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    normal == "key" || SECRET_NAME_PARTS.iter().any(|part| normal.contains(part))
}

/// Replaces what must not be recorded.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Secret values (longest first, so one inside another is fully covered).
    secrets: Vec<String>,
}

impl Redactor {
    /// Redacts secret-named fields and every occurrence of `secrets` (empty ones ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// `url` without user information, secret-named query values, or secret values.
    pub fn url(&self, url: &Url) -> String {
        let mut url = url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if url.query().is_some() {
            let pairs = redact_pairs(url.query_pairs());
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.text(url.as_str())
    }

    /// Headers as a JSON object, secret ones replaced.
    pub fn headers<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        let mut object = Map::new();
        for (name, value) in headers {
            let value = if is_secret_name(name) {
                REDACTED.to_owned()
            } else {
                self.text(value)
            };
            object.insert(name.to_ascii_lowercase(), Value::String(value));
        }
        Value::Object(object)
    }

    /// A JSON value with secret-named fields and secret values replaced.
    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(name, value)| {
                        let value = if is_secret_name(name) && !value.is_null() {
                            Value::String(REDACTED.to_owned())
                        } else {
                            self.json(value)
                        };
                        (name.clone(), value)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A JSON value with the secret values replaced wherever they occur, field names left alone
    /// (for data a workflow goes on using, where a field called `token` may be what it needs).
    pub fn json_values(&self, value: &Value) -> Value {
        if self.secrets.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(text) => Value::String(self.text(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.json_values(v)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(name, value)| (self.text(name), self.json_values(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A body for the record: JSON redacted as JSON, form fields by name, other text by value;
    /// at most `max_chars` characters of it.
    pub fn body(&self, body: &[u8], max_chars: usize) -> Value {
        if body.is_empty() {
            return Value::Null;
        }
        if let Ok(json) = serde_json::from_slice::<Value>(body) {
            let redacted = self.json(&json);
            let text = redacted.to_string();
            if text.chars().count() <= max_chars {
                return redacted;
            }
            return Value::String(truncate(&text, max_chars));
        }
        let text = String::from_utf8_lossy(body);
        let looks_like_form = !text.contains(char::is_whitespace)
            && text.contains('=')
            && url::form_urlencoded::parse(text.as_bytes()).count() > 0;
        let text = if looks_like_form {
            let pairs = redact_pairs(url::form_urlencoded::parse(text.as_bytes()));
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        } else {
            text.into_owned()
        };
        Value::String(truncate(&self.text(&text), max_chars))
    }
}

/// Name/value pairs with the values of secret-named ones replaced.
fn redact_pairs<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Vec<(String, String)> {
    pairs
        .map(|(name, value)| {
            let value = if is_secret_name(&name) {
                REDACTED.to_owned()
            } else {
                value.into_owned()
            };
            (name.into_owned(), value)
        })
        .collect()
}

/// The first `max_chars` characters of `text`, marked when cut.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "Authorization",
            "X-API-Key",
            "api_key",
            "access_token",
            "Cookie",
            "key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["content-type", "accept", "monkey_count", "user"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_user_information_and_secret_parameters() {
        let redactor = Redactor::new(["s3cr3t-value"]);
        let url = Url::parse(
            "https://ada:pw@example.com/p/s3cr3t-value?api_key=abc&q=rust&x=s3cr3t-value",
        )
        .unwrap();
        let text = redactor.url(&url);
        assert!(!text.contains("ada") && !text.contains("pw@"), "{text}");
        assert!(!text.contains("abc") && !text.contains("s3cr3t"), "{text}");
        assert!(text.contains("q=rust"), "{text}");
    }

    #[test]
    fn headers_and_bodies_keep_no_secret() {
        let redactor = Redactor::new(["tok-999"]);
        let headers = redactor.headers([
            ("Authorization", "Bearer tok-999"),
            ("X-Trace", "has tok-999 inside"),
            ("Accept", "application/json"),
        ]);
        assert_eq!(headers["authorization"], REDACTED);
        assert_eq!(headers["x-trace"], "has [REDACTED] inside");
        assert_eq!(headers["accept"], "application/json");
        let body = redactor.body(
            br#"{"password": "hunter2", "nested": {"note": "tok-999"}, "n": 1}"#,
            1000,
        );
        assert_eq!(
            body,
            json!({"password": REDACTED, "nested": {"note": REDACTED}, "n": 1})
        );
        let form = redactor.body(b"user=ada&password=hunter2", 1000);
        assert_eq!(form, json!("user=ada&password=%5BREDACTED%5D"));
        let text = redactor.body(b"plain tok-999 text", 1000);
        assert_eq!(text, json!("plain [REDACTED] text"));
        assert_eq!(redactor.body("ééé".as_bytes(), 2), json!("éé…"));
    }
}
