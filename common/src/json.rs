//! JSON values as runs share them, and JSON that PostgreSQL can store: `jsonb` refuses the NUL
//! character (`\u0000`) in any string or key, so a value carrying one must be refused where it
//! enters, not fail later in a worker.

use serde_json::Value;

/// A JSON value passed along a run without being copied: a webhook's payload is the trigger's
/// output, the next node's input, the end node's output and the run's result, all one value.
pub type SharedValue = std::sync::Arc<Value>;

/// Whether any string or key in `value` contains a NUL character.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, v)| key.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nul_in_strings_and_keys_at_any_depth() {
        assert!(!contains_nul(&json!({"a": ["b", {"c": 1}]})));
        assert!(contains_nul(&json!({"a": ["b", {"c": "x\u{0}y"}]})));
        assert!(contains_nul(
            &serde_json::from_str::<Value>(r#"{"k\u0000": 1}"#).unwrap()
        ));
        assert!(!contains_nul(
            &serde_json::from_str::<Value>(r#"{"k": "\\u0000"}"#).unwrap()
        ));
    }
}
