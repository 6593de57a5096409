//! Opening one stored credential for its owner: what a node does at run time (only the
//! credential it references, only when the run's owner owns it) and what `test` does in the API.

use std::sync::Arc;

use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::{KeyRing, ServiceType, service_type};

/// A credential opened for use: its type and every field, secret ones included. Its `Debug`
/// shows neither the secret nor the fields, so it cannot leak into a log by accident.
#[derive(Clone)]
pub struct Credential {
    pub id: Uuid,
    pub name: String,
    pub kind: &'static ServiceType,
    fields: Map<String, Value>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("service_type", &self.kind.name)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A field, secret or not (`api_key`, `base_url`, `username`...).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The values of its secret fields: what must never appear in logs or records.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.kind
            .secrets
            .iter()
            .chain(self.kind.optional_secrets)
            .filter_map(|name| self.field(name))
    }

    /// Built from its fields (tests, and a credential given inline).
    pub fn from_fields(
        id: Uuid,
        name: &str,
        kind: &'static ServiceType,
        fields: Map<String, Value>,
    ) -> Self {
        Self {
            id,
            name: name.to_owned(),
            kind,
            fields,
        }
    }
}

/// Why a credential could not be used. The messages name the credential by id, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Not an id, no such credential, or another user's: the same answer, so a run cannot probe
    /// for other users' credentials.
    #[error("credential {0} does not exist or is not yours")]
    NotFound(String),
    #[error("credential {id} cannot be opened: {reason}")]
    Unreadable { id: Uuid, reason: String },
    #[error("credential {id} is a `{found}` credential; this needs {wanted}")]
    WrongType {
        id: Uuid,
        found: &'static str,
        wanted: String,
    },
    #[error("reading credential {0}: {1}")]
    Database(Uuid, sqlx::Error),
}

/// Opens credentials from the database with the key ring.
#[derive(Clone)]
pub struct CredentialStore {
    db: PgPool,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore").finish_non_exhaustive()
    }
}

impl CredentialStore {
    pub fn new(db: PgPool, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    /// Credential `id` of `owner`, opened. `id` is as a workflow holds it (text).
    pub async fn open(&self, owner: Uuid, id: &str) -> Result<Credential, CredentialError> {
        let parsed: Uuid = id
            .trim()
            .parse()
            .map_err(|_| CredentialError::NotFound(id.to_owned()))?;
        let row: Option<(String, String, String, Vec<u8>, Value)> = sqlx::query_as(
            "SELECT name, service_type, key_id, encrypted_secret, public_data \
             FROM user_credentials WHERE id = $1 AND user_id = $2",
        )
        .bind(parsed)
        .bind(owner)
        .fetch_optional(&self.db)
        .await
        .map_err(|e| CredentialError::Database(parsed, e))?;
        let Some((name, kind, key_id, sealed, public)) = row else {
            return Err(CredentialError::NotFound(parsed.to_string()));
        };
        let unreadable = |reason: String| CredentialError::Unreadable { id: parsed, reason };
        let kind = service_type(&kind)
            .ok_or_else(|| unreadable(format!("its type `{kind}` is unknown")))?;
        let secret = self
            .keys
            .open(parsed, owner, &key_id, &sealed)
            .map_err(|e| unreadable(e.to_string()))?;
        let mut fields: Map<String, Value> = serde_json::from_slice(&secret)
            .map_err(|_| unreadable("its secret is not a JSON object".to_owned()))?;
        if let Value::Object(public) = public {
            fields.extend(public);
        }
        Ok(Credential {
            id: parsed,
            name,
            kind,
            fields,
        })
    }
}
