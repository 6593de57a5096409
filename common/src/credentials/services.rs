//! The credential types users can store, and the shape of each one's `data`: which fields are
//! secret (sealed, never shown again) and which are not (stored and shown as given).

use serde_json::{Map, Value};

/// One kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceType {
    pub name: &'static str,
    /// Secret fields that must be given.
    pub secrets: &'static [&'static str],
    /// Secret fields that may be given.
    pub optional_secrets: &'static [&'static str],
    /// Non-secret fields that must be given.
    pub fields: &'static [&'static str],
    /// Non-secret fields that may be given.
    pub optional_fields: &'static [&'static str],
    /// The secret the masked hint is made from.
    pub hinted: &'static str,
}

/// Every type, as the API documents them.
pub const SERVICE_TYPES: &[ServiceType] = &[
    ServiceType {
        name: "openai",
        secrets: &["api_key"],
        optional_secrets: &[],
        fields: &[],
        optional_fields: &["organization", "base_url"],
        hinted: "api_key",
    },
    ServiceType {
        name: "openai_compatible",
        // Local servers (vLLM, Ollama, llama.cpp) often need no key.
        secrets: &[],
        optional_secrets: &["api_key"],
        fields: &["base_url"],
        optional_fields: &["organization"],
        hinted: "api_key",
    },
    ServiceType {
        name: "tavily",
        secrets: &["api_key"],
        optional_secrets: &[],
        fields: &[],
        optional_fields: &["base_url"],
        hinted: "api_key",
    },
    ServiceType {
        name: "cohere",
        secrets: &["api_key"],
        optional_secrets: &[],
        fields: &[],
        optional_fields: &["base_url"],
        hinted: "api_key",
    },
    ServiceType {
        name: "bearer",
        secrets: &["token"],
        optional_secrets: &[],
        fields: &[],
        optional_fields: &[],
        hinted: "token",
    },
    ServiceType {
        name: "basic_auth",
        secrets: &["password"],
        optional_secrets: &[],
        fields: &["username"],
        optional_fields: &[],
        hinted: "password",
    },
    ServiceType {
        name: "header_auth",
        secrets: &["header_value"],
        optional_secrets: &[],
        fields: &["header_name"],
        optional_fields: &[],
        hinted: "header_value",
    },
    ServiceType {
        name: "api_key",
        secrets: &["api_key"],
        optional_secrets: &[],
        fields: &[],
        // Where the key goes: a header (default `X-API-Key`) or a query parameter.
        optional_fields: &["header_name", "query_param"],
        hinted: "api_key",
    },
];

/// The type called `name`.
pub fn service_type(name: &str) -> Option<&'static ServiceType> {
    SERVICE_TYPES.iter().find(|t| t.name == name)
}

/// The names of every type, for messages.
pub fn service_type_names() -> String {
    SERVICE_TYPES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A credential's `data` split into what is sealed and what is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData {
    pub secret: Map<String, Value>,
    pub public: Map<String, Value>,
    /// E.g. `sk-…9f2a`: enough to recognise the secret, not to use it.
    pub hint: String,
}

impl ServiceType {
    /// Checks `data` against this type (every field a non-empty string, the required ones
    /// present, no others) and splits it. The error names the field.
    pub fn split(&self, data: &Map<String, Value>) -> Result<SplitData, String> {
        for (key, value) in data {
            let known = [
                self.secrets,
                self.optional_secrets,
                self.fields,
                self.optional_fields,
            ]
            .iter()
            .any(|fields| fields.contains(&key.as_str()));
            if !known {
                return Err(format!(
                    "data.{key}: not a field of a `{}` credential (fields: {})",
                    self.name,
                    self.all_fields().join(", ")
                ));
            }
            if value.as_str().is_none_or(|text| text.trim().is_empty()) {
                return Err(format!("data.{key}: must be a non-empty string"));
            }
            // PostgreSQL cannot store NUL in the fields kept in clear.
            if value.as_str().is_some_and(|text| text.contains('\0')) {
                return Err(format!("data.{key}: must not contain a NUL character"));
            }
        }
        for required in self.secrets.iter().chain(self.fields) {
            if !data.contains_key(*required) {
                return Err(format!(
                    "data.{required}: required for a `{}` credential",
                    self.name
                ));
            }
        }
        let pick = |names: &[&[&str]]| -> Map<String, Value> {
            data.iter()
                .filter(|(key, _)| names.iter().any(|n| n.contains(&key.as_str())))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let secret = pick(&[self.secrets, self.optional_secrets]);
        let hint = secret
            .get(self.hinted)
            .and_then(Value::as_str)
            .map(mask)
            .unwrap_or_default();
        Ok(SplitData {
            public: pick(&[self.fields, self.optional_fields]),
            secret,
            hint,
        })
    }

    fn all_fields(&self) -> Vec<&'static str> {
        [
            self.secrets,
            self.optional_secrets,
            self.fields,
            self.optional_fields,
        ]
        .concat()
    }
}

/// The first three and last four characters of a long secret, fewer of a short one, never
/// enough to use it.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    match chars.len() {
        n if n >= 16 => format!(
            "{}…{}",
            chars[..3].iter().collect::<String>(),
            chars[n - 4..].iter().collect::<String>()
        ),
        n if n >= 8 => format!("…{}", chars[n - 2..].iter().collect::<String>()),
        _ => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn secrets_and_fields_are_split_and_the_secret_masked() {
        let basic = service_type("basic_auth").unwrap();
        let split = basic
            .split(&data(
                json!({"username": "ada", "password": "correct-horse-battery"}),
            ))
            .unwrap();
        assert_eq!(split.public, data(json!({"username": "ada"})));
        assert_eq!(
            split.secret,
            data(json!({"password": "correct-horse-battery"}))
        );
        assert_eq!(split.hint, "cor…tery");
        let openai = service_type("openai").unwrap();
        let split = openai
            .split(&data(json!({"api_key": "sk-proj-abcdef0123456789f2a"})))
            .unwrap();
        assert_eq!(split.hint, "sk-…9f2a");
    }

    #[test]
    fn a_missing_unknown_or_empty_field_is_named() {
        let header = service_type("header_auth").unwrap();
        let missing = header
            .split(&data(json!({"header_name": "X-Key"})))
            .unwrap_err();
        assert!(missing.contains("data.header_value"), "{missing}");
        let unknown = header
            .split(&data(
                json!({"header_name": "X", "header_value": "v", "pasword": "x"}),
            ))
            .unwrap_err();
        assert!(unknown.contains("data.pasword"), "{unknown}");
        let empty = service_type("tavily")
            .unwrap()
            .split(&data(json!({"api_key": ""})))
            .unwrap_err();
        assert!(empty.contains("non-empty"), "{empty}");
        assert!(service_type("fernet").is_none());
    }

    #[test]
    fn short_secrets_show_little() {
        assert_eq!(mask("abc"), "…");
        assert_eq!(mask("abcdefgh"), "…gh");
    }
}
