//! Templating of string config with minijinja: `{{ expr }}` and KAI-Fusion's `${{ expr }}`. In
//! scope: `input` (the node's input), `webhook_data` (the whole webhook event), `webhook_trigger`
//! (its payload) and every executed node's output by node id and by its `data.name`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Names a template may refer to (besides `input`), with their values converted once, so that
/// copying a scope costs reference counts, not deep copies of JSON.
#[derive(Debug, Clone, Default)]
pub struct TemplateScope {
    /// Shared with the contexts of renders in progress, so a render never copies the map.
    values: Arc<BTreeMap<String, minijinja::Value>>,
}

impl TemplateScope {
    /// A scope with nothing in it, for nodes whose configuration has no template.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: &str, value: &Value) {
        self.set_names(std::iter::once(name), value);
    }

    /// Binds one value to several names (a node's id and its `data.name`), converting it once.
    pub fn set_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, value: &Value) {
        let converted = minijinja::Value::from(Serde(value));
        let values = Arc::make_mut(&mut self.values);
        for name in names {
            values.insert(name.to_owned(), converted.clone());
        }
    }
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A misspelt name is an error the user sees, not an empty string that hides it.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

/// Whether any string in `value` (at any depth) contains a template expression.
pub fn any_template(value: &Value) -> bool {
    match value {
        Value::String(text) => is_template(text),
        Value::Array(items) => items.iter().any(any_template),
        Value::Object(fields) => fields.values().any(any_template),
        _ => false,
    }
}

/// Whether `text` contains a template expression.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Renders `text` in `scope` with `input` bound. Text without template syntax is returned as is.
pub fn render(text: &str, scope: &TemplateScope, input: &Value) -> Result<String, String> {
    if !is_template(text) {
        return Ok(text.to_owned());
    }
    // KAI-Fusion writes `${{ x }}`; minijinja's own syntax is `{{ x }}`.
    let source = text.replace("${{", "{{");
    let context = minijinja::Value::from_object(RenderContext {
        values: Arc::clone(&scope.values),
        input: minijinja::Value::from(Serde(input)),
    });
    environment()
        .render_str(&source, context)
        .map_err(|e| e.to_string())
}

/// What a template sees: `input`, then the scope's names; looked up, never copied.
#[derive(Debug)]
struct RenderContext {
    values: Arc<BTreeMap<String, minijinja::Value>>,
    input: minijinja::Value,
}

impl minijinja::value::Object for RenderContext {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        match key.as_str()? {
            "input" => Some(self.input.clone()),
            name => self.values.get(name).cloned(),
        }
    }
}

/// Checks that `text` is a well-formed template (names are only known when it runs).
pub fn check(text: &str) -> Result<(), String> {
    if !is_template(text) {
        return Ok(());
    }
    let source = text.replace("${{", "{{");
    environment()
        .template_from_str(&source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_both_syntaxes_and_refuses_unknown_names() {
        let mut scope = TemplateScope::default();
        scope.set("webhook_trigger", &json!({"input_text": "hi", "n": 2}));
        let input = json!("the input");
        assert_eq!(
            render("${{ webhook_trigger.input_text }}!", &scope, &input).unwrap(),
            "hi!"
        );
        assert_eq!(
            render("{{ webhook_trigger.n * 2 }}", &scope, &input).unwrap(),
            "4"
        );
        assert_eq!(render("{{ input }}", &scope, &input).unwrap(), "the input");
        let json = render("{{ webhook_trigger | tojson }}", &scope, &input).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            json!({"input_text": "hi", "n": 2})
        );
        assert_eq!(render("plain", &scope, &input).unwrap(), "plain");
        assert!(render("{{ nothing.here }}", &scope, &input).is_err());
        assert!(check("{{ unclosed").is_err());
        assert!(check("${{ fine }}").is_ok());
    }
}
