//! Credentials, `/api/v1/credentials`: a user's secrets for the services workflows call. The
//! secret fields are sealed (AES-256-GCM, bound to the row and its owner) and never shown again;
//! answers carry the name, the type, the non-secret fields and a masked hint. Owner-scoped: another
//! user's credential is a 404. A credential the current version of a workflow references cannot
//! be deleted (409 naming the workflows).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::credentials::{ServiceType, service_type, service_type_names};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ApiTags;
use crate::audit::{self, Action, Entry};
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct CredentialsApi {
    pub state: Arc<AppState>,
}

pub(crate) const MAX_NAME_CHARS: usize = 255;

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CredentialIn {
    /// Unique among your credentials, 1 to 255 characters.
    pub name: String,
    /// `openai`, `openai_compatible`, `tavily`, `cohere`, `bearer`, `basic_auth`,
    /// `header_auth` or `api_key`.
    pub service_type: String,
    /// The secret and its non-secret fields, e.g. `{api_key}`, `{token}`,
    /// `{username, password}`, `{header_name, header_value}`, `{base_url, api_key?}`.
    pub data: Value,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CredentialUpdate {
    pub name: Option<String>,
    /// A new type needs its `data` in full.
    pub service_type: Option<String>,
    /// Fields to change; secret fields left out keep their stored value.
    pub data: Option<Value>,
}

#[derive(Debug, Object)]
pub struct CredentialOut {
    pub id: Uuid,
    pub name: String,
    pub service_type: String,
    /// The non-secret fields only.
    pub data: Value,
    /// Enough of the secret to recognise it (e.g. `sk-…9f2a`), never to use it.
    pub secret_hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: Uuid,
    name: String,
    service_type: String,
    public_data: Value,
    secret_hint: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CredentialRow> for CredentialOut {
    fn from(row: CredentialRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            service_type: row.service_type,
            data: row.public_data,
            secret_hint: row.secret_hint,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Columns of `CredentialRow`; a macro so that the queries built from it stay string literals.
macro_rules! columns {
    () => {
        "id, name, service_type, public_data, secret_hint, created_at, updated_at"
    };
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<CredentialOut>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Credentials")]
impl CredentialsApi {
    /// Store a credential: 422 naming a missing or unknown field, 409 when the name is taken.
    #[oai(
        path = "/api/v1/credentials",
        method = "post",
        operation_id = "create_credential"
    )]
    async fn create(&self, auth: UserAuth, body: Json<CredentialIn>) -> Result<Created, ApiError> {
        let CredentialIn {
            name,
            service_type: kind,
            data,
        } = body.0;
        let name = checked_name(&name)?;
        let kind = checked_type(&kind)?;
        let split = kind
            .split(&checked_data(data)?)
            .map_err(ApiError::unprocessable)?;
        let id = Uuid::new_v4();
        let sealed = self
            .state
            .credential_keys
            .seal(id, auth.0.id, &secret_json(&split.secret));
        let inserted = sqlx::query_as::<_, CredentialRow>(concat!(
            "INSERT INTO user_credentials (id, user_id, name, service_type, encrypted_secret, \
                key_id, public_data, secret_hint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(auth.0.id)
        .bind(&name)
        .bind(kind.name)
        .bind(&sealed.bytes)
        .bind(&sealed.key_id)
        .bind(Value::Object(split.public))
        .bind(&split.hint)
        .fetch_one(&self.state.db)
        .await;
        match inserted {
            Ok(row) => {
                let entry = Entry::by(&auth.0, Action::CredentialCreated)
                    .target("credential", row.id)
                    .details(json!({"name": row.name, "service_type": row.service_type}));
                audit::record(&self.state.db, entry).await;
                Ok(Created::Created(Json(row.into())))
            }
            Err(e) if kai_common::db::is_unique_violation(&e, "user_credentials_user_name_key") => {
                Err(name_taken(&name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Your credentials, by name, without their secrets.
    #[oai(
        path = "/api/v1/credentials",
        method = "get",
        operation_id = "list_credentials"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        /// Only credentials of this type.
        service_type: Query<Option<String>>,
    ) -> Result<Json<Vec<CredentialOut>>, ApiError> {
        if let Some(kind) = service_type.0.as_deref() {
            checked_type(kind)?;
        }
        let rows: Vec<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM user_credentials WHERE user_id = $1 \
             AND ($2::text IS NULL OR service_type = $2) ORDER BY name"
        ))
        .bind(auth.0.id)
        .bind(service_type.0)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// One credential, without its secret.
    #[oai(
        path = "/api/v1/credentials/:id",
        method = "get",
        operation_id = "get_credential"
    )]
    async fn get(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Json<CredentialOut>, ApiError> {
        let row: Option<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM user_credentials WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        row.map(|row| Json(row.into()))
            .ok_or_else(|| ApiError::not_found("credential"))
    }

    /// Change a credential's name, type or fields. Secret fields left out of `data` keep their
    /// stored value; the result is checked as a whole (422 naming the field).
    #[oai(
        path = "/api/v1/credentials/:id",
        method = "put",
        operation_id = "update_credential"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<CredentialUpdate>,
    ) -> Result<Json<CredentialOut>, ApiError> {
        let CredentialUpdate {
            name,
            service_type: new_kind,
            data,
        } = body.0;
        let name = name.as_deref().map(checked_name).transpose()?;
        let new_kind = new_kind.as_deref().map(checked_type).transpose()?;
        let data = data.map(checked_data).transpose()?;
        if new_kind.is_some() && data.is_none() {
            return Err(ApiError::unprocessable(
                "data: required when service_type changes",
            ));
        }
        let mut tx = self.state.db.begin().await?;
        let stored: Option<(String, String, Vec<u8>, Value)> = sqlx::query_as(
            "SELECT service_type, key_id, encrypted_secret, public_data FROM user_credentials \
             WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((kind, key_id, sealed, public)) = stored else {
            return Err(ApiError::not_found("credential"));
        };
        // The new sealing, type, fields and hint, when `data` changes.
        let resealed = match data {
            None => None,
            Some(changes) => {
                let kind = match new_kind {
                    Some(kind) => kind,
                    None => checked_type(&kind)?,
                };
                // A changed type starts afresh; otherwise the changes apply to what is stored.
                let mut merged = match new_kind {
                    Some(_) => Map::new(),
                    None => self.stored_data(id.0, auth.0.id, &key_id, &sealed, public)?,
                };
                merged.extend(changes);
                let split = kind.split(&merged).map_err(ApiError::unprocessable)?;
                let sealed =
                    self.state
                        .credential_keys
                        .seal(id.0, auth.0.id, &secret_json(&split.secret));
                Some((kind.name, sealed, Value::Object(split.public), split.hint))
            }
        };
        let kind = resealed.as_ref().map(|r| r.0);
        let sealed = resealed.as_ref().map(|r| &r.1);
        let public = resealed.as_ref().map(|r| r.2.clone());
        let hint = resealed.as_ref().map(|r| r.3.clone());
        let updated = sqlx::query_as::<_, CredentialRow>(concat!(
            "UPDATE user_credentials SET name = COALESCE($3, name), \
                service_type = COALESCE($4, service_type), \
                encrypted_secret = COALESCE($5, encrypted_secret), key_id = COALESCE($6, key_id), \
                public_data = COALESCE($7, public_data), secret_hint = COALESCE($8, secret_hint), \
                updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING ",
            columns!()
        ))
        .bind(id.0)
        .bind(auth.0.id)
        .bind(&name)
        .bind(kind)
        .bind(sealed.as_ref().map(|s| s.bytes.clone()))
        .bind(sealed.as_ref().map(|s| s.key_id.clone()))
        .bind(public)
        .bind(hint)
        .fetch_one(&mut *tx)
        .await;
        let row = match updated {
            Ok(row) => row,
            Err(e) if kai_common::db::is_unique_violation(&e, "user_credentials_user_name_key") => {
                return Err(name_taken(name.as_deref().unwrap_or_default()));
            }
            Err(e) => return Err(e.into()),
        };
        let entry = Entry::by(&auth.0, Action::CredentialUpdated)
            .target("credential", row.id)
            .details(json!({"name": row.name, "service_type": row.service_type}));
        audit::write(&mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(Json(row.into()))
    }

    /// Delete a credential: 409 naming the workflows whose current version references it.
    #[oai(
        path = "/api/v1/credentials/:id",
        method = "delete",
        operation_id = "delete_credential"
    )]
    async fn delete(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let mut tx = self.state.db.begin().await?;
        let exists: Option<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM user_credentials WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(ApiError::not_found("credential"));
        }
        // A credential is referenced by its id anywhere in a node's configuration.
        let users: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT w.id, w.name FROM workflows w JOIN workflow_versions v \
                ON v.workflow_id = w.id AND v.version = w.current_version \
             WHERE w.user_id = $1 AND strpos(v.flow_data::text, $2) > 0 ORDER BY w.name",
        )
        .bind(auth.0.id)
        .bind(id.0.to_string())
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            let named: Vec<String> = users
                .iter()
                .map(|(id, name)| format!("{name} ({id})"))
                .collect();
            return Err(ApiError::conflict(format!(
                "the credential is used by workflows: {}; remove it from them first",
                named.join(", ")
            )));
        }
        sqlx::query("DELETE FROM user_credentials WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let entry = Entry::by(&auth.0, Action::CredentialDeleted).target("credential", id.0);
        audit::write(&mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }
}

impl CredentialsApi {
    /// A stored credential's whole `data`: its opened secret fields and its public ones.
    fn stored_data(
        &self,
        id: Uuid,
        owner: Uuid,
        key_id: &str,
        sealed: &[u8],
        public: Value,
    ) -> Result<Map<String, Value>, ApiError> {
        let secret = self
            .state
            .credential_keys
            .open(id, owner, key_id, sealed)
            .map_err(|e| ApiError::internal(format!("credential {id}: {e}")))?;
        let mut data: Map<String, Value> =
            serde_json::from_slice(&secret).map_err(ApiError::internal)?;
        if let Value::Object(public) = public {
            data.extend(public);
        }
        Ok(data)
    }
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::unprocessable(format!(
            "name: must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "name: must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn checked_type(name: &str) -> Result<&'static ServiceType, ApiError> {
    service_type(name).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "service_type: `{name}` is not one of {}",
            service_type_names()
        ))
    })
}

fn checked_data(data: Value) -> Result<Map<String, Value>, ApiError> {
    match data {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::unprocessable(
            "data: must be an object of the credential's fields",
        )),
    }
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(format!("you already have a credential named `{name}`"))
}

fn secret_json(secret: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(secret).expect("a JSON object serialises")
}
