//! Templating of string config with minijinja: `{{ expr }}` and KAI-Fusion's `${{ expr }}`. In
//! scope: `input` (the node's input), `webhook_data` (the whole webhook event), `webhook_trigger`
//! (its payload) and every executed node's output by node id and by its `data.name`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Serde};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::json::SharedValue;

/// Names a template may refer to (besides `input`), each a view of a run's value (see
/// `JsonView`), so that neither setting a name nor copying a scope copies any JSON.
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

    pub fn set(&mut self, name: &str, value: &SharedValue) {
        self.set_names(std::iter::once(name), value);
    }

    /// Binds `name` to the part of `root` at JSON pointer `pointer` (null when it has none),
    /// without copying it.
    pub fn set_part(&mut self, name: &str, root: &SharedValue, pointer: &str) {
        let view = match root.pointer(pointer) {
            Some(_) => JsonView::of(root.clone(), pointer.to_owned()),
            None => minijinja::Value::from(()),
        };
        Arc::make_mut(&mut self.values).insert(name.to_owned(), view);
    }

    /// Binds one value to several names (a node's id and its `data.name`).
    pub fn set_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, value: &SharedValue) {
        let view = JsonView::of(value.clone(), String::new());
        let values = Arc::make_mut(&mut self.values);
        for name in names {
            values.insert(name.to_owned(), view.clone());
        }
    }
}

/// Where a node's value is, as KAI-Fusion templates name it: its `output`, else its `content`,
/// else the one field of a single-field object, else the whole value.
fn primary_pointer(value: &Value) -> Option<String> {
    let fields = value.as_object()?;
    for name in ["output", "content"] {
        if fields.contains_key(name) {
            return Some(format!("/{name}"));
        }
    }
    match fields.keys().next() {
        Some(only) if fields.len() == 1 => {
            Some(format!("/{}", only.replace('~', "~0").replace('/', "~1")))
        }
        _ => None,
    }
}

impl TemplateScope {
    /// Binds a node's output to its names as KAI-Fusion templates read it: the name alone is
    /// the node's primary value (`output`, `content`, or its single field: `{{ agent_1 }}` is
    /// the agent's answer), while its other fields stay reachable (`{{ lookup.status_code }}`).
    pub fn set_node<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, value: &SharedValue) {
        let Some(primary) = primary_pointer(value) else {
            return self.set_names(names, value);
        };
        let view = NodeView {
            primary: JsonView::of(value.clone(), primary.clone()),
            primary_pointer: primary,
            whole: JsonView {
                root: value.clone(),
                pointer: String::new(),
            },
        };
        // A text answer renders as itself; a list or an object as the collection it is.
        let view = if view.primary.as_object().is_some() {
            minijinja::Value::from_object(view)
        } else {
            minijinja::Value::from_object(TextNodeView(view))
        };
        let values = Arc::make_mut(&mut self.values);
        for name in names {
            values.insert(name.to_owned(), view.clone());
        }
    }
}

/// A node's value seen through its primary value (a list or an object), falling back to its
/// other fields. Written out as JSON (`{"values": {{ code_node }}}` makes a JSON body, where
/// the template engine's own rendering would write a Python-like list).
#[derive(Debug)]
struct NodeView {
    primary: minijinja::Value,
    primary_pointer: String,
    whole: JsonView,
}

impl NodeView {
    fn get(&self, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.primary
            .get_item(key)
            .ok()
            .filter(|value| !value.is_undefined())
            .or_else(|| {
                let name = key.as_str()?;
                self.whole.node().get(name).map(|_| self.whole.child(name))
            })
    }
}

impl Object for NodeView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        self.primary
            .as_object()
            .map_or(ObjectRepr::Plain, |object| object.repr())
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.primary
            .as_object()
            .map_or(Enumerator::NonEnumerable, |object| object.enumerate())
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let primary = self.whole.root.pointer(&self.primary_pointer);
        let json =
            serde_json::to_string(primary.unwrap_or(&Value::Null)).map_err(|_| std::fmt::Error)?;
        f.write_str(&json)
    }
}

/// A node's value whose primary value is a scalar (an agent's answer): renders as it.
#[derive(Debug)]
struct TextNodeView(NodeView);

impl Object for TextNodeView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.0.get(key)
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.primary, f)
    }
}

/// A part of a shared JSON value (at a JSON pointer into it) as templates see it: objects and
/// arrays are looked into on demand, so a template reading one field of a megabyte payload
/// converts that field, not the payload.
#[derive(Debug)]
struct JsonView {
    root: SharedValue,
    pointer: String,
}

impl JsonView {
    /// The template value at `pointer` in `root`: a view for an object or an array, the value
    /// itself for a scalar.
    fn of(root: SharedValue, pointer: String) -> minijinja::Value {
        match root.pointer(&pointer) {
            Some(Value::Object(_) | Value::Array(_)) => {
                minijinja::Value::from_object(JsonView { root, pointer })
            }
            Some(scalar) => minijinja::Value::from(Serde(scalar)),
            None => minijinja::Value::UNDEFINED,
        }
    }

    fn node(&self) -> &Value {
        self.root.pointer(&self.pointer).unwrap_or(&Value::Null)
    }

    fn child(&self, step: &str) -> minijinja::Value {
        let escaped = step.replace('~', "~0").replace('/', "~1");
        JsonView::of(self.root.clone(), format!("{}/{escaped}", self.pointer))
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let value = match self.node() {
            Value::Object(fields) => {
                let name = key.as_str()?;
                fields.contains_key(name).then(|| self.child(name))?
            }
            Value::Array(items) => {
                let index = usize::try_from(key.clone()).ok()?;
                (index < items.len()).then(|| self.child(&index.to_string()))?
            }
            _ => return None,
        };
        Some(value)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Value::Object(fields) => Enumerator::Values(
                fields
                    .keys()
                    .map(|key| minijinja::Value::from(key.as_str()))
                    .collect(),
            ),
            Value::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node() {
            Value::Object(fields) => Some(fields.len()),
            Value::Array(items) => Some(items.len()),
            _ => Some(0),
        }
    }
}

/// The work one render may do (minijinja's fuel: about one unit per instruction and per 64 bytes
/// of data it creates), so a template's loops cannot hold a worker: a million units is tens of
/// milliseconds of rendering or about 64 MiB of output, far beyond what real templates use.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// The largest text a render may produce; a larger one fails the node naming the limit (fuel
/// alone would let a render write about 64 MiB).
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// The work a render may do on the async runtime (well under a millisecond): a render that needs
/// more is done again on the compute pool with the full `TEMPLATE_FUEL` (see `render_bounded`).
pub const INLINE_FUEL: u64 = 20_000;

fn environment_with(fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt name is an error the user sees, not an empty string that hides it.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(fuel));
    env
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| environment_with(TEMPLATE_FUEL))
}

fn inline_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| environment_with(INLINE_FUEL))
}

/// A render error as the user reads it; running out of fuel says which limit.
fn render_error(error: minijinja::Error) -> String {
    if error.kind() == minijinja::ErrorKind::OutOfFuel {
        format!(
            "the template does more work than a template may ({TEMPLATE_FUEL} units of fuel, \
             about as many loop steps or 64 bytes of output each): reduce its loops or output"
        )
    } else {
        error.to_string()
    }
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
pub fn render(text: &str, scope: &TemplateScope, input: &SharedValue) -> Result<String, String> {
    render_in(environment(), text, scope, input).map_err(render_error)
}

/// Renders as [`render`] does, without holding the async runtime for more than a moment: a
/// render runs here with `INLINE_FUEL`, and one that needs more runs again on `pool` (off the
/// runtime) with the full `TEMPLATE_FUEL`. Rendering has no side effects, so the rerun is safe.
pub async fn render_bounded(
    text: &str,
    scope: &TemplateScope,
    input: &SharedValue,
    pool: &crate::compute::ComputePool,
) -> Result<String, String> {
    match render_in(inline_environment(), text, scope, input) {
        Err(error) if error.kind() == minijinja::ErrorKind::OutOfFuel => {
            let (text, scope, input) = (text.to_owned(), scope.clone(), input.clone());
            pool.run(move || render(&text, &scope, &input)).await
        }
        done => done.map_err(render_error),
    }
}

fn render_in(
    environment: &Environment<'static>,
    text: &str,
    scope: &TemplateScope,
    input: &SharedValue,
) -> Result<String, minijinja::Error> {
    if !is_template(text) {
        return Ok(text.to_owned());
    }
    // KAI-Fusion writes `${{ x }}`; minijinja's own syntax is `{{ x }}`.
    let source = text.replace("${{", "{{");
    let context = minijinja::Value::from_object(RenderContext {
        values: Arc::clone(&scope.values),
        input: JsonView::of(input.clone(), String::new()),
    });
    let rendered = environment.render_str(&source, context)?;
    if rendered.len() > MAX_OUTPUT_BYTES {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "the template's output is {} bytes, more than a template may produce ({} MiB)",
                rendered.len(),
                MAX_OUTPUT_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(rendered)
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

    #[tokio::test]
    async fn a_heavy_render_moves_off_the_runtime_with_the_same_result_and_limit() {
        let pool = crate::compute::ComputePool::new(1);
        let scope = TemplateScope::empty();
        let input: SharedValue = serde_json::json!({"n": 3}).into();
        // Far more than the inline budget, well within the full one.
        let heavy = "{% for i in range(20000) %}{{ i }},{% endfor %}";
        assert!(render_in(inline_environment(), heavy, &scope, &input).is_err());
        let bounded = render_bounded(heavy, &scope, &input, &pool).await.unwrap();
        assert_eq!(bounded, render(heavy, &scope, &input).unwrap());
        assert_eq!(
            render_bounded("{{ input.n * 2 }}", &scope, &input, &pool)
                .await
                .unwrap(),
            "6"
        );
        let endless = "{% for i in range(20000) %}{% for j in range(20000) %}{{ j }}\
                       {% endfor %}{% endfor %}";
        let error = render_bounded(endless, &scope, &input, &pool)
            .await
            .unwrap_err();
        assert!(error.contains("fuel"), "{error}");
        let large = "{% for i in range(300) %}{{ 'x' * 30000 }}{% endfor %}";
        let error = render_bounded(large, &scope, &input, &pool)
            .await
            .unwrap_err();
        assert!(
            error.contains("more than a template may produce"),
            "{error}"
        );
        let missing = render_bounded("{{ nothing.here }}", &scope, &input, &pool)
            .await
            .unwrap_err();
        assert!(!missing.contains("fuel"), "{missing}");
    }

    #[test]
    fn a_template_that_would_loop_for_minutes_stops_at_its_fuel_limit() {
        let nested = "{% for i in range(20000) %}{% for j in range(20000) %}{{ j }}{% endfor %}\
                      {% endfor %}";
        let error = render(
            nested,
            &TemplateScope::empty(),
            &serde_json::json!({}).into(),
        )
        .unwrap_err();
        // Stopped by the limit: the loops' 400 million steps never ran.
        assert!(error.contains("fuel"), "{error}");
        // Ordinary templates are far below it.
        let ordinary = "{% for i in range(1000) %}{{ i }},{% endfor %}";
        assert!(
            render(
                ordinary,
                &TemplateScope::empty(),
                &serde_json::json!({}).into()
            )
            .is_ok()
        );
    }
    use serde_json::json;

    #[test]
    fn renders_both_syntaxes_and_refuses_unknown_names() {
        let mut scope = TemplateScope::default();
        scope.set(
            "webhook_trigger",
            &Arc::new(json!({"input_text": "hi", "n": 2, "odd/key~": [10, {"deep": 7}]})),
        );
        let input = Arc::new(json!("the input"));
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
            json!({"input_text": "hi", "n": 2, "odd/key~": [10, {"deep": 7}]})
        );
        assert_eq!(render("plain", &scope, &input).unwrap(), "plain");
        // Views look into objects and arrays on demand, keys with JSON-pointer syntax included.
        let odd =
            "{{ webhook_trigger['odd/key~'][1].deep }} {{ webhook_trigger['odd/key~'] | length }}";
        assert_eq!(render(odd, &scope, &input).unwrap(), "7 2");
        let keys = "{% for k in webhook_trigger %}{{ k }},{% endfor %}";
        assert_eq!(
            render(keys, &scope, &input).unwrap(),
            "input_text,n,odd/key~,"
        );
        assert!(render("{{ webhook_trigger.missing.x }}", &scope, &input).is_err());
        // A part of a value, bound without copying it; a missing part is none.
        let event = Arc::new(json!({"data": {"k": "v"}}));
        scope.set_part("payload", &event, "/data");
        scope.set_part("absent", &event, "/nothing");
        let parts = "{{ payload.k }}{% if absent is none %}-none{% endif %}";
        assert_eq!(render(parts, &scope, &input).unwrap(), "v-none");
        assert!(render("{{ nothing.here }}", &scope, &input).is_err());
        assert!(check("{{ unclosed").is_err());
        assert!(check("${{ fine }}").is_ok());
    }
}

#[cfg(test)]
mod node_view_tests {
    use super::*;
    use serde_json::json;

    fn scope_with(name: &str, value: Value) -> TemplateScope {
        let mut scope = TemplateScope::default();
        scope.set_node([name], &SharedValue::new(value));
        scope
    }

    #[test]
    fn a_node_name_is_its_primary_value_with_its_other_fields_reachable() {
        let none = SharedValue::new(Value::Null);
        let agent = scope_with(
            "agent_1",
            json!({"output": "hi \"there\"", "status": "finished"}),
        );
        assert_eq!(
            render("{{ agent_1 }}", &agent, &none).unwrap(),
            "hi \"there\""
        );
        assert_eq!(
            render("{{ agent_1 | tojson }}", &agent, &none).unwrap(),
            r#""hi \"there\"""#
        );
        assert_eq!(
            render("{{ agent_1.status }}", &agent, &none).unwrap(),
            "finished"
        );

        let code = scope_with("code", json!({"values": [1, 2]}));
        assert_eq!(
            render(r#"{"v":{{ code }}}"#, &code, &none).unwrap(),
            r#"{"v":[1,2]}"#
        );
        let words = scope_with("words", json!({"values": ["a", "b"]}));
        assert_eq!(
            render("{{ words }}", &words, &none).unwrap(),
            r#"["a","b"]"#
        );
        let mut plain_list = TemplateScope::default();
        plain_list.set("list", &SharedValue::new(json!([1, 2])));
        assert_eq!(
            render("{{ code | tojson }}", &code, &none).unwrap(),
            render("{{ list | tojson }}", &plain_list, &none).unwrap()
        );
        assert_eq!(render("{{ code.values[1] }}", &code, &none).unwrap(), "2");

        let http = scope_with(
            "lookup",
            json!({"status_code": 200, "content": {"body": "x"}}),
        );
        assert_eq!(
            render("{{ lookup.status_code }}", &http, &none).unwrap(),
            "200"
        );
        assert_eq!(
            render("{{ lookup.content.body }}", &http, &none).unwrap(),
            "x"
        );
        assert_eq!(render("{{ lookup.body }}", &http, &none).unwrap(), "x");

        let plain = scope_with("n", json!({"a": 1, "b": 2}));
        assert_eq!(render("{{ n.a + n.b }}", &plain, &none).unwrap(), "3");
    }
}
