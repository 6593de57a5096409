//! How a request authenticates with a stored credential: the `auth_type` a workflow chose
//! (KAI-Fusion's none/bearer/basic/api_key, plus header) applied with the credential's fields.

use secrecy::{ExposeSecret, SecretString};

use crate::credentials::Credential;

/// Authentication added to a request. Secrets stay wrapped until the request is built.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
    /// A header carrying the secret (`X-API-Key` for `api_key`, any name for `header_auth`).
    Header {
        name: String,
        value: SecretString,
    },
    /// A query parameter carrying the secret.
    Query {
        name: String,
        value: SecretString,
    },
}

/// The `auth_type` values workflows use.
pub const AUTH_TYPES: &[&str] = &["none", "bearer", "basic", "api_key", "header"];

impl Auth {
    /// `auth_type` applied with `credential`; `auth_type` empty or `none` with a credential
    /// means the credential's natural use (its type decides). The error says what is missing,
    /// never a secret.
    pub fn from_credential(auth_type: &str, credential: &Credential) -> Result<Self, String> {
        let secret = |field: &str| {
            credential
                .field(field)
                .map(|v| SecretString::from(v.to_owned()))
        };
        let first = |fields: &[&str]| fields.iter().find_map(|f| secret(f));
        let kind = credential.kind.name;
        let wanted = match auth_type {
            "" | "none" => match kind {
                "basic_auth" => "basic",
                "header_auth" => "header",
                "api_key" => "api_key",
                _ => "bearer",
            },
            other => other,
        };
        let missing = |what: &str| {
            format!(
                "auth_type `{wanted}` needs {what}, which the `{kind}` credential {} does not have",
                credential.id
            )
        };
        match wanted {
            "bearer" => first(&["token", "api_key"])
                .map(Auth::Bearer)
                .ok_or_else(|| missing("a token or api_key")),
            "basic" => match (credential.field("username"), secret("password")) {
                (Some(username), Some(password)) => Ok(Auth::Basic {
                    username: username.to_owned(),
                    password,
                }),
                _ => Err(missing("a username and password")),
            },
            "api_key" => {
                let value = first(&["api_key", "token", "header_value"])
                    .ok_or_else(|| missing("an api_key"))?;
                match credential.field("query_param") {
                    Some(name) => Ok(Auth::Query {
                        name: name.to_owned(),
                        value,
                    }),
                    None => Ok(Auth::Header {
                        name: credential
                            .field("header_name")
                            .unwrap_or("X-API-Key")
                            .to_owned(),
                        value,
                    }),
                }
            }
            "header" => match (credential.field("header_name"), secret("header_value")) {
                (Some(name), Some(value)) => Ok(Auth::Header {
                    name: name.to_owned(),
                    value,
                }),
                _ => Err(missing("a header_name and header_value")),
            },
            other => Err(format!(
                "auth_type `{other}` is not one of {}",
                AUTH_TYPES.join(", ")
            )),
        }
    }

    /// Adds itself to `request` (a query parameter goes on the URL: see [`Self::apply_to_url`]).
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Auth::Header { name, value } => request.header(name.as_str(), value.expose_secret()),
            Auth::Query { .. } => request,
        }
    }

    /// Adds itself to `url` when it is a query parameter.
    pub fn apply_to_url(&self, url: &mut url::Url) {
        if let Auth::Query { name, value } = self {
            url.query_pairs_mut()
                .append_pair(name, value.expose_secret());
        }
    }

    /// The secret values it carries, for redaction: basic auth's password, and also its
    /// `user:password` pair as the `Authorization` header encodes it (a server that echoes the
    /// header must not put the credential into a record in base64).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Auth::None => Vec::new(),
            Auth::Bearer(token) => vec![token.expose_secret().to_owned()],
            Auth::Basic { username, password } => {
                use base64::Engine;
                let pair = format!("{username}:{}", password.expose_secret());
                vec![
                    password.expose_secret().to_owned(),
                    base64::engine::general_purpose::STANDARD.encode(pair),
                ]
            }
            Auth::Header { value, .. } | Auth::Query { value, .. } => {
                vec![value.expose_secret().to_owned()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::credentials::service_type;

    fn credential(kind: &str, fields: serde_json::Value) -> Credential {
        Credential::from_fields(
            Uuid::nil(),
            "c",
            service_type(kind).unwrap(),
            fields.as_object().unwrap().clone(),
        )
    }

    #[test]
    fn each_auth_type_takes_the_fields_it_needs() {
        let bearer = credential("bearer", json!({"token": "tok-123"}));
        assert!(matches!(
            Auth::from_credential("bearer", &bearer),
            Ok(Auth::Bearer(_))
        ));
        assert!(matches!(
            Auth::from_credential("", &bearer),
            Ok(Auth::Bearer(_))
        ));
        let basic = credential("basic_auth", json!({"username": "ada", "password": "pw"}));
        assert!(matches!(
            Auth::from_credential("basic", &basic),
            Ok(Auth::Basic { .. })
        ));
        let error = Auth::from_credential("basic", &bearer).unwrap_err();
        assert!(error.contains("username and password") && !error.contains("tok-123"));
        let key = credential("api_key", json!({"api_key": "k", "query_param": "key"}));
        assert!(matches!(
            Auth::from_credential("api_key", &key),
            Ok(Auth::Query { .. })
        ));
        let openai = credential("openai", json!({"api_key": "sk-1"}));
        match Auth::from_credential("api_key", &openai).unwrap() {
            Auth::Header { name, .. } => assert_eq!(name, "X-API-Key"),
            other => panic!("{other:?}"),
        }
        assert!(Auth::from_credential("digest", &openai).is_err());
    }
}
