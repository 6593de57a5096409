//! Reading a webhook body into the event's `data`: an empty body is `{}`, anything else must be
//! JSON that PostgreSQL can store (no NUL character). Separate from the handler so that the hot
//! path can be benchmarked on its own.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("the body contains a NUL character (\\u0000), which cannot be stored")]
    Nul,
}

/// The event data of a webhook body.
pub fn parse(bytes: &[u8]) -> Result<Value, PayloadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let data: Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    if kai_common::json::contains_nul(&data) {
        return Err(PayloadError::Nul);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_become_event_data_or_a_named_error() {
        assert_eq!(parse(b"  ").unwrap(), json!({}));
        assert_eq!(parse(br#"{"a":[1,2]}"#).unwrap(), json!({"a": [1, 2]}));
        assert!(matches!(parse(b"{nope"), Err(PayloadError::Malformed(_))));
        assert_eq!(parse(br#"{"a":"x\u0000y"}"#), Err(PayloadError::Nul));
    }
}
