//! The OpenAPI document as served, finished where poem-openapi leaves it short of what the
//! server enforces: bodies that refuse unknown fields say `additionalProperties: false`
//! ([`closed`]), the bounds, enumerations and patterns the handlers check are declared next to
//! the parameters and fields they concern ([`declared`]), unsigned and single-precision numbers
//! carry their machine range, optional request fields say they may be `null` (the server reads
//! `null` as absent), and every free-text string says it cannot hold NUL, which PostgreSQL
//! cannot store and the server refuses everywhere.
//!
//! The handlers stay the place where input is checked (with their 422 messages naming the
//! field); the declarations here use the handlers' own constants, and the schemathesis run of
//! the test command (`scripts/api-contract.sh`) checks both directions: a request the document
//! allows is not refused for a declared reason, and one it forbids is refused.

pub mod closed;
pub mod declared;
pub mod text_patterns;

use serde_json::{Map, Value};

use declared::{Place, Rule};

/// The document poem-openapi generated (`spec`), finished.
pub fn finish(spec: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    closed::close(&mut document);
    for rule in declared::rules() {
        apply(&mut document, &rule);
    }
    nullable_optional_request_fields(&mut document);
    walk_schemas(&mut document, &mut |schema| {
        drop_description_only_members(schema);
        machine_range(schema);
        no_nul(schema);
    });
    serde_json::to_string(&document).unwrap_or_else(|_| spec.to_owned())
}

/// The schemas a rule's place names in `document` (several for a path parameter of every
/// operation); empty when the place does not exist (a test checks that every rule finds its
/// place).
pub fn place_mut<'a>(document: &'a mut Value, place: &Place) -> Vec<&'a mut Map<String, Value>> {
    match place {
        Place::Query(operation, name) | Place::Path(operation, name) => {
            let location = if matches!(place, Place::Query(..)) {
                "query"
            } else {
                "path"
            };
            let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
                return Vec::new();
            };
            paths
                .values_mut()
                .filter_map(Value::as_object_mut)
                .flat_map(|methods| methods.values_mut())
                .filter(|op| {
                    *operation == "*"
                        || op.get("operationId").and_then(Value::as_str) == Some(operation)
                })
                .filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
                .flat_map(|parameters| parameters.iter_mut())
                .filter(|p| p["in"] == location && p["name"] == *name)
                .filter_map(|p| p.get_mut("schema").and_then(Value::as_object_mut))
                .collect()
        }
        Place::Field(schema, field) => document
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(Value::as_object_mut)
            .into_iter()
            .collect(),
        Place::Schema(schema) => document
            .pointer_mut(&format!("/components/schemas/{schema}"))
            .and_then(Value::as_object_mut)
            .into_iter()
            .collect(),
    }
}

fn apply(document: &mut Value, rule: &Rule) {
    for target in place_mut(document, &rule.place) {
        if let Value::Object(keywords) = &rule.keywords {
            for (key, value) in keywords {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Calls `visit` on every schema object of the document (components and parameters, nested
/// properties and items included).
fn walk_schemas(document: &mut Value, visit: &mut impl FnMut(&mut Map<String, Value>)) {
    fn walk(node: &mut Value, visit: &mut impl FnMut(&mut Map<String, Value>)) {
        let Value::Object(schema) = node else { return };
        visit(schema);
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            for property in properties.values_mut() {
                walk(property, visit);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = schema.get_mut(key) {
                walk(child, visit);
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(children)) = schema.get_mut(key) {
                for child in children {
                    walk(child, visit);
                }
            }
        }
    }
    if let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") {
        for schema in schemas.values_mut() {
            walk(schema, visit);
        }
    }
    if let Some(Value::Object(paths)) = document.get_mut("paths") {
        for methods in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in methods.values_mut() {
                if let Some(Value::Array(parameters)) = op.get_mut("parameters") {
                    for parameter in parameters {
                        if let Some(schema) = parameter.get_mut("schema") {
                            walk(schema, visit);
                        }
                    }
                }
            }
        }
    }
}

/// poem-openapi describes a referenced field as `allOf: [{$ref}, {description}]` and repeats
/// the description beside it; the description-only member adds nothing, and client generators
/// (openapi-python-client) refuse a nullable `allOf` holding it, dropping the whole operation.
fn drop_description_only_members(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(members)) = schema.get_mut("allOf") {
        members.retain(|member| {
            !member
                .as_object()
                .is_some_and(|m| m.keys().all(|key| key == "description"))
        });
    }
}

/// Unsigned integers cannot be negative, and `float` numbers are single precision: the server
/// refuses what does not fit, so the document says so.
fn machine_range(schema: &mut Map<String, Value>) {
    let (low, high): (Value, Value) = match schema.get("format").and_then(Value::as_str) {
        Some("uint32") => (0.into(), u32::MAX.into()),
        Some("uint64") => (0.into(), u64::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        Some("float") => (f64::from(-f32::MAX).into(), f64::from(f32::MAX).into()),
        _ => return,
    };
    schema.entry("minimum").or_insert(low);
    schema.entry("maximum").or_insert(high);
}

/// Free-text strings (no format, enumeration or pattern of their own) cannot hold NUL.
fn no_nul(schema: &mut Map<String, Value>) {
    let free_text = schema.get("type").and_then(Value::as_str) == Some("string")
        && !["format", "enum", "pattern"]
            .iter()
            .any(|key| schema.contains_key(*key));
    if free_text {
        schema.insert("pattern".into(), text_patterns::no_nul().into());
    }
}

/// The schemas request bodies use, directly or through references.
fn request_schemas(document: &Value) -> Vec<String> {
    fn references(node: &Value, found: &mut Vec<String>, schemas: &Value) {
        match node {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    && !found.iter().any(|f| f == name)
                {
                    found.push(name.to_owned());
                    references(&schemas[name], found, schemas);
                }
                for value in map.values() {
                    references(value, found, schemas);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found, schemas)),
            _ => {}
        }
    }
    let schemas = document
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    let mut found = Vec::new();
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        for op in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|m| m.values())
        {
            if let Some(body) = op.get("requestBody") {
                references(body, &mut found, &schemas);
            }
        }
    }
    found
}

/// Optional fields of request bodies accept `null` as "absent" (poem-openapi reads it so, and
/// takes the default when there is one; the bodies serde reads have no optional field of
/// another kind). References cannot carry the keyword in OpenAPI 3.0.
fn nullable_optional_request_fields(document: &mut Value) {
    for name in request_schemas(document) {
        let Some(Value::Object(schema)) =
            document.pointer_mut(&format!("/components/schemas/{name}"))
        else {
            continue;
        };
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            continue;
        };
        for (field, property) in properties.iter_mut() {
            let Value::Object(property) = property else {
                continue;
            };
            if required.contains(field) || property.contains_key("$ref") {
                continue;
            }
            property.insert("nullable".into(), Value::Bool(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn machine_ranges_and_nul_patterns_are_added_without_overriding_declarations() {
        let spec = json!({"components": {"schemas": {"In": {"type": "object", "properties": {
            "k": {"type": "integer", "format": "uint32"},
            "bounded": {"type": "integer", "format": "uint32", "minimum": 1},
            "text": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "enum": ["a"]},
            "v": {"type": "array", "items": {"type": "number", "format": "float"}},
            "kind_of": {"allOf": [{"$ref": "#/components/schemas/K"}, {"description": "d"}],
                "description": "d"}
        }}}}});
        let finished: Value = serde_json::from_str(&finish(&spec.to_string())).unwrap();
        let properties = &finished["components"]["schemas"]["In"]["properties"];
        assert_eq!(properties["k"]["minimum"], 0);
        assert_eq!(properties["k"]["maximum"], u32::MAX);
        assert_eq!(properties["bounded"]["minimum"], 1);
        assert_eq!(properties["text"]["pattern"], text_patterns::no_nul());
        assert!(properties["when"].get("pattern").is_none());
        assert!(properties["kind"].get("pattern").is_none());
        assert_eq!(properties["v"]["items"]["maximum"], f64::from(f32::MAX));
        assert_eq!(
            properties["kind_of"],
            json!({"allOf": [{"$ref": "#/components/schemas/K"}], "description": "d"})
        );
    }

    #[test]
    fn only_optional_request_fields_become_nullable() {
        let spec = json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/In"}}}}}}},
            "components": {"schemas": {
                "In": {"type": "object", "required": ["a"], "properties": {
                    "a": {"type": "string"}, "b": {"type": "string"},
                    "c": {"type": "boolean", "default": false}}},
                "Out": {"type": "object", "properties": {"b": {"type": "string"}}}
            }}
        });
        let finished: Value = serde_json::from_str(&finish(&spec.to_string())).unwrap();
        let schemas = &finished["components"]["schemas"];
        assert!(schemas["In"]["properties"]["a"].get("nullable").is_none());
        assert_eq!(schemas["In"]["properties"]["b"]["nullable"], true);
        assert_eq!(schemas["In"]["properties"]["c"]["nullable"], true);
        assert!(schemas["Out"]["properties"]["b"].get("nullable").is_none());
    }
}
