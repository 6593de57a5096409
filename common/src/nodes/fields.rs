//! Reading KAI-Fusion node configuration fields: values may sit under the current name or a
//! legacy one, numbers may be saved as text by the editor, and an empty string means unset.
//! Each reader names the field in its error.

use serde_json::Value;

use super::ConfigError;

/// The first of `names` that is set (not null).
pub fn field<'a>(config: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|name| config.get(*name).filter(|v| !v.is_null()))
}

/// A text field, trimmed; `None` when unset or empty.
pub fn text<'a>(config: &'a Value, names: &[&str]) -> Result<Option<&'a str>, ConfigError> {
    match field(config, names) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim()).filter(|t| !t.is_empty())),
        Some(_) => Err(ConfigError::new(names[0], "must be text")),
    }
}

/// A number from `min` to `max` (a number or its text); `None` when unset or empty.
pub fn number(
    config: &Value,
    names: &[&str],
    min: f64,
    max: f64,
) -> Result<Option<f64>, ConfigError> {
    let value = match field(config, names) {
        None => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(ConfigError::new(
            names[0],
            format!("must be a number from {min} to {max}"),
        )),
    }
}

/// A whole number from `min` to `max`; `None` when unset or empty.
pub fn integer(
    config: &Value,
    names: &[&str],
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    match number(config, names, min as f64, max as f64) {
        Ok(Some(v)) if v.fract() == 0.0 => Ok(Some(v as u64)),
        Ok(Some(_)) | Err(_) => Err(ConfigError::new(
            names[0],
            format!("must be a whole number from {min} to {max}"),
        )),
        Ok(None) => Ok(None),
    }
}

/// A boolean (or `"true"` / `"false"`); `None` when unset.
pub fn boolean(config: &Value, names: &[&str]) -> Result<Option<bool>, ConfigError> {
    match field(config, names) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(_) => Err(ConfigError::new(names[0], "must be true or false")),
    }
}

/// The credential a node names (`credential_id`, or `credential` in older exports).
pub fn credential_id(config: &Value) -> Option<&str> {
    field(config, &["credential_id", "credential"])
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

/// A value as the text a model or a search reads: strings as they are, the usual text fields
/// of an object (`input`, `message`, `text`, `query`, `question`, `prompt`, `content`,
/// `output`), else its JSON.
pub fn as_prompt(value: &Value) -> String {
    const TEXT_FIELDS: &[&str] = &[
        "input", "message", "text", "query", "question", "prompt", "content", "output",
    ];
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Object(object) => TEXT_FIELDS
            .iter()
            .find_map(|name| object.get(*name).and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string()),
        other => other.to_string(),
    }
}

/// The collection a vector node works on: its own `collection_name`, else the run's.
pub fn collection_name(
    configured: Option<&str>,
    trigger: &Value,
    node_id: &str,
) -> Result<String, super::NodeError> {
    configured
        .map(str::to_owned)
        .or_else(|| from_run(trigger, &["collection_name"]))
        .ok_or_else(|| {
            super::NodeError::Configuration(format!(
                "node {node_id}: collection_name is not set (in the node, or as the run's \
                 `collection_name` input)"
            ))
        })
}

/// A text setting the run supplies when the node leaves it unset (KAI-Fusion looked in the
/// execution's inputs): the trigger's `name`, or its payload's (`data.name`).
pub fn from_run(trigger: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        [&trigger[*name], &trigger["data"][*name]]
            .into_iter()
            .find_map(|v| v.as_str().map(str::trim).filter(|t| !t.is_empty()))
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_read_as_the_editor_saves_them() {
        let config = json!({"temperature": "0.5", "max_tokens": 100, "empty": "",
                            "streaming": "true", "bad": [1]});
        assert_eq!(number(&config, &["temperature"], 0.0, 2.0), Ok(Some(0.5)));
        assert_eq!(integer(&config, &["max_tokens"], 1, 1000), Ok(Some(100)));
        assert_eq!(integer(&config, &["empty"], 1, 10), Ok(None));
        assert_eq!(boolean(&config, &["streaming"]), Ok(Some(true)));
        assert!(number(&config, &["bad"], 0.0, 1.0).is_err());
        assert_eq!(
            integer(&config, &["temperature"], 0, 2)
                .unwrap_err()
                .to_string(),
            "field `temperature`: must be a whole number from 0 to 2"
        );
    }

    #[test]
    fn prompts_come_from_the_usual_text_fields() {
        assert_eq!(as_prompt(&json!("hi")), "hi");
        assert_eq!(as_prompt(&json!({"message": "hello", "x": 1})), "hello");
        assert_eq!(as_prompt(&json!({"x": 1})), r#"{"x":1}"#);
    }
}
