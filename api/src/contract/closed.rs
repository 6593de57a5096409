//! The request bodies that refuse unknown fields (`deny_unknown_fields`) say so with
//! `additionalProperties: false`, which poem-openapi's derive does not emit. A test keeps the
//! list below equal to the types that refuse unknown fields in the source.

use serde_json::Value;

/// The schemas whose unknown fields the server refuses.
pub const CLOSED_SCHEMAS: &[&str] = &[
    "ApiKeyIn",
    "CollectionIn",
    "CreateScheduledJob",
    "CreateWebhook",
    "CredentialIn",
    "CredentialTestIn",
    "CredentialUpdate",
    "DocumentIn",
    "DocumentsIn",
    "EmbedderIn",
    "HttpTestIn",
    "IndexParamsIn",
    "InlineAuth",
    "PasswordChange",
    "PreviewIn",
    "SearchIn",
    "SourceIn",
    "UpdateScheduledJob",
    "UpdateWebhook",
];

/// Marks the closed schemas of `document`.
pub fn close(document: &mut Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for name in CLOSED_SCHEMAS {
            if let Some(Value::Object(schema)) = schemas.get_mut(*name) {
                schema.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Names of the structs marked `deny_unknown_fields` in `dir`'s Rust files.
    fn closed_structs(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                closed_structs(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    if !line.trim_start().starts_with("#[") || !line.contains("deny_unknown_fields")
                    {
                        continue;
                    }
                    let name = lines[i + 1..]
                        .iter()
                        .take(4)
                        .find_map(|l| l.trim_start().strip_prefix("pub struct "))
                        .or_else(|| {
                            lines[i + 1..]
                                .iter()
                                .take(4)
                                .find_map(|l| l.trim_start().strip_prefix("struct "))
                        });
                    if let Some(name) = name {
                        let name: String = name
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                    }
                }
            }
        }
    }

    #[test]
    fn the_closed_schemas_are_the_types_that_refuse_unknown_fields() {
        let mut found = BTreeSet::new();
        closed_structs(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        let listed: BTreeSet<String> = CLOSED_SCHEMAS.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed, found);
    }

    #[test]
    fn closed_schemas_say_so_and_others_are_left_alone() {
        let mut finished: Value = serde_json::from_str(
            r#"{"components":{"schemas":{"ApiKeyIn":{"type":"object"},"Other":{"type":"object"}}}}"#,
        )
        .unwrap();
        close(&mut finished);
        assert_eq!(
            finished["components"]["schemas"]["ApiKeyIn"]["additionalProperties"],
            false
        );
        assert!(
            finished["components"]["schemas"]["Other"]
                .get("additionalProperties")
                .is_none()
        );
    }
}
