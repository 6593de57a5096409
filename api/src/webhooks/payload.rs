//! Reading a webhook body into the event's `data`: an empty body is `{}`, anything else must be
//! JSON that PostgreSQL can store (no NUL character). Separate from the handler so that the hot
//! path can be benchmarked on its own.

use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("the body contains a NUL character (\\u0000), which cannot be stored")]
    Nul,
}

/// The event data of a webhook body, as the caller sent it: checked to be JSON PostgreSQL can
/// store, but not parsed into a tree (the worker does that once). `None` for an empty body,
/// which stands for `{}`.
pub fn parse(bytes: &[u8]) -> Result<Option<&RawValue>, PayloadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let data: &RawValue =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    if has_nul_escape(data.get()) {
        return Err(PayloadError::Nul);
    }
    Ok(Some(data))
}

/// Whether valid JSON text holds a NUL character. JSON cannot hold one raw (control characters
/// must be escaped), so it can only be the escape `\u0000`, told apart from an escaped
/// backslash followed by the text `u0000`.
fn has_nul_escape(json: &str) -> bool {
    holds_nul_escape(json.as_bytes())
}

/// As [`has_nul_escape`], over bytes: whether they hold the JSON escape `\u0000`.
pub fn holds_nul_escape(bytes: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'\\') {
        let escape = at + offset;
        match bytes.get(escape + 1) {
            Some(b'u') => {
                if bytes.get(escape + 2..escape + 6) == Some(b"0000") {
                    return true;
                }
                at = escape + 6;
            }
            // Any other escape is two characters (`\\`, `\"`, `\n`...).
            _ => at = escape + 2,
        }
        if at >= bytes.len() {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(bytes: &[u8]) -> Result<Option<serde_json::Value>, PayloadError> {
        parse(bytes).map(|raw| raw.map(|raw| serde_json::from_str(raw.get()).unwrap()))
    }

    #[test]
    fn bodies_become_event_data_or_a_named_error() {
        assert_eq!(parsed(b"  ").unwrap(), None);
        assert_eq!(
            parsed(br#"{"a":[1,2]}"#).unwrap(),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(parse(b" [1] ").unwrap().unwrap().get(), "[1]");
        assert!(matches!(parse(b"{nope"), Err(PayloadError::Malformed(_))));
        assert!(matches!(
            parse(b"{} trailing"),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(parsed(br#"{"a":"x\u0000y"}"#), Err(PayloadError::Nul));
        assert_eq!(parsed(br#"{"x\u0000": 1}"#), Err(PayloadError::Nul));
    }

    #[test]
    fn only_a_real_nul_escape_counts() {
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert!(parse(br#"{"a":"x\\u0000y"}"#).unwrap().is_some());
        assert!(
            parse(br#"{"a":"\\\u0000"}"#).is_err(),
            "backslash, then a NUL"
        );
        assert!(parse(br#"{"a":"\u00001"}"#).is_err());
        assert!(parse(br#"{"a":"\u0001 \n \" \u00e9"}"#).unwrap().is_some());
        assert!(parse(br#""\\""#).unwrap().is_some());
    }
}
