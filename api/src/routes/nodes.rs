//! The node registry: `GET /api/v1/nodes/registry[/{node_type}]` lists built-in types (written
//! to `node_registry` at start-up by `register_builtins`) and the caller's custom ones;
//! `POST /api/v1/nodes/registry` and `PUT /api/v1/nodes/registry/{node_type}` register and update
//! custom node types backed by an HTTP endpoint (see `kai_common::nodes::custom_http`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::nodes::custom_http::{HttpEndpoint, HttpNodeType};
use kai_common::nodes::{self, NodeDefinition};
use kai_common::workflow::catalogue;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct NodesApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeTypeOut {
    pub node_type: String,
    /// `builtin` for the types this engine ships, `http` for custom types.
    pub node_class: String,
    /// `entry`, `processor` or `end`.
    pub category: String,
    pub version: String,
    /// `{config (JSON Schema), inputs, outputs, category}`.
    pub schema_definition: Value,
    /// `{display_name, description}`.
    pub ui_schema: Value,
    pub is_active: bool,
    /// For a custom type: `{url, timeout_ms, max_attempts, backoff_ms}`.
    pub endpoint: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A custom node type: the worker POSTs `{node_id, node_type, config, inputs}` to `endpoint_url`
/// and uses the JSON answer as the node's output. 429, 5xx, 408 and connection failures are
/// retried; other 4xx answers fail the run.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CustomNodeIn {
    /// Letters, digits and `_`, starting with a letter; at most 100 characters. Required by
    /// POST; with PUT, when given, it must match the path.
    pub node_type: Option<String>,
    /// Required by POST.
    pub endpoint_url: Option<String>,
    /// Time one attempt may take (default 30000).
    pub timeout_ms: Option<u64>,
    /// Attempts for a retryable failure (default 3).
    pub max_attempts: Option<u32>,
    /// Delay before the second attempt, doubling after each (default 500).
    pub backoff_ms: Option<u64>,
    /// JSON Schema of the node's configuration (default: any object).
    pub config_schema: Option<Value>,
    pub description: Option<String>,
    /// Default `1.0.0`.
    pub version: Option<String>,
    /// An inactive type can no longer be saved in workflows, nor run.
    pub is_active: Option<bool>,
}

#[derive(ApiResponse)]
pub enum OneNodeType {
    #[oai(status = 200)]
    Ok(Json<NodeTypeOut>),
}

#[derive(ApiResponse)]
pub enum CreatedNodeType {
    #[oai(status = 201)]
    Created(Json<NodeTypeOut>),
}

/// The registry columns; a macro so that the queries built from it stay string literals.
macro_rules! select_node_type {
    () => {
        "SELECT node_type, node_class, category, version, schema_definition, ui_schema, \
            is_active, endpoint, created_at, updated_at FROM node_registry "
    };
}

/// Writes (or refreshes) every built-in node type in `node_registry`.
pub async fn register_builtins(db: &PgPool) -> Result<(), sqlx::Error> {
    for node in nodes::registry() {
        register(db, &**node).await?;
    }
    Ok(())
}

async fn register(db: &PgPool, node: &dyn NodeDefinition) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO node_registry (node_type, node_class, category, version, schema_definition, \
            ui_schema, is_active) \
         VALUES ($1, 'builtin', $2, $3, $4, $5, true) \
         ON CONFLICT (node_type) DO UPDATE SET node_class = EXCLUDED.node_class, \
            category = EXCLUDED.category, version = EXCLUDED.version, \
            schema_definition = EXCLUDED.schema_definition, ui_schema = EXCLUDED.ui_schema, \
            is_active = true, owner_id = NULL, endpoint = NULL, updated_at = now()",
    )
    .bind(node.type_name())
    .bind(node.category().as_str())
    .bind(env!("CARGO_PKG_VERSION"))
    .bind(nodes::schema_definition(node))
    .bind(json!({"display_name": node.type_name(), "description": node.description()}))
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) const MAX_TYPE_NAME_LEN: usize = 100;
pub(crate) const MAX_DESCRIPTION_LEN: usize = 2000;
pub(crate) const MAX_VERSION_LEN: usize = 20;

/// Refuses names that are malformed (422) or taken by the catalogue, built-in or future (409).
fn check_type_name(name: &str) -> Result<(), ApiError> {
    let well_formed = name.len() <= MAX_TYPE_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(ApiError::unprocessable(format!(
            "node_type: must be letters, digits and `_`, start with a letter, and be at most \
             {MAX_TYPE_NAME_LEN} characters"
        )));
    }
    if let Some(canonical) = catalogue::canonical_name(name) {
        return Err(ApiError::conflict(format!(
            "node_type: `{name}` is the built-in node type {canonical}, which cannot be overwritten"
        )));
    }
    Ok(())
}

fn check_text(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(text) if text.contains('\0') => Err(ApiError::unprocessable(format!(
            "{field}: must not contain a NUL character"
        ))),
        Some(text) if text.chars().count() > max => Err(ApiError::unprocessable(format!(
            "{field}: must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

/// A custom type's columns, checked: the endpoint, the schema definition and the UI schema.
fn custom_columns(
    name: &str,
    description: &str,
    endpoint: &HttpEndpoint,
    config_schema: Value,
) -> Result<(Value, Value, Value), ApiError> {
    if kai_common::json::contains_nul(&config_schema) {
        return Err(ApiError::unprocessable(
            "config_schema: must not contain a NUL character",
        ));
    }
    let node = HttpNodeType::new(name, description, endpoint, config_schema)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let endpoint = serde_json::to_value(endpoint).map_err(ApiError::internal)?;
    Ok((
        endpoint,
        nodes::schema_definition(&node),
        json!({"display_name": name, "description": description}),
    ))
}

#[OpenApi(tag = "ApiTags::Nodes")]
impl NodesApi {
    /// Every built-in node type and the caller's custom ones, with their schemas.
    #[oai(
        path = "/api/v1/nodes/registry",
        method = "get",
        operation_id = "list_node_types"
    )]
    async fn list(&self, auth: UserAuth) -> Result<Json<Vec<NodeTypeOut>>, ApiError> {
        let rows: Vec<NodeTypeOut> = sqlx::query_as(concat!(
            select_node_type!(),
            "WHERE owner_id IS NULL OR owner_id = $1 ORDER BY node_type"
        ))
        .bind(auth.0.id)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(rows))
    }

    /// One node type, by its name or a KAI-Fusion legacy name.
    #[oai(
        path = "/api/v1/nodes/registry/:node_type",
        method = "get",
        operation_id = "get_node_type"
    )]
    async fn get(&self, auth: UserAuth, node_type: Path<String>) -> Result<OneNodeType, ApiError> {
        if node_type.0.contains('\0') {
            return Err(ApiError::not_found("node type"));
        }
        let name = catalogue::canonical_name(&node_type.0).unwrap_or(node_type.0.as_str());
        self.fetch(auth.0.id, name)
            .await
            .map(|row| OneNodeType::Ok(Json(row)))
    }

    /// Register a custom node type backed by an HTTP endpoint. Built-in names answer 409.
    #[oai(
        path = "/api/v1/nodes/registry",
        method = "post",
        operation_id = "register_node_type"
    )]
    async fn create(
        &self,
        auth: UserAuth,
        body: Json<CustomNodeIn>,
    ) -> Result<CreatedNodeType, ApiError> {
        let name = body
            .node_type
            .as_deref()
            .ok_or_else(|| ApiError::unprocessable("node_type: required"))?;
        check_type_name(name)?;
        check_text(
            "description",
            body.description.as_deref(),
            MAX_DESCRIPTION_LEN,
        )?;
        check_text("version", body.version.as_deref(), MAX_VERSION_LEN)?;
        let url = body
            .endpoint_url
            .clone()
            .ok_or_else(|| ApiError::unprocessable("endpoint_url: required"))?;
        let endpoint = HttpEndpoint {
            url,
            timeout_ms: body
                .timeout_ms
                .unwrap_or_else(HttpEndpoint::default_timeout_ms),
            max_attempts: body
                .max_attempts
                .unwrap_or_else(HttpEndpoint::default_max_attempts),
            backoff_ms: body
                .backoff_ms
                .unwrap_or_else(HttpEndpoint::default_backoff_ms),
        };
        let description = body.description.clone().unwrap_or_default();
        let schema = body
            .config_schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        let (endpoint, schema_definition, ui_schema) =
            custom_columns(name, &description, &endpoint, schema)?;
        let inserted = sqlx::query(
            "INSERT INTO node_registry (node_type, node_class, category, version, \
                schema_definition, ui_schema, is_active, owner_id, endpoint) \
             VALUES ($1, 'http', 'processor', $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_type) DO NOTHING",
        )
        .bind(name)
        .bind(body.version.as_deref().unwrap_or("1.0.0"))
        .bind(schema_definition)
        .bind(ui_schema)
        .bind(body.is_active.unwrap_or(true))
        .bind(auth.0.id)
        .bind(endpoint)
        .execute(&self.state.db)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::conflict(format!(
                "node_type: `{name}` is already registered; update it with PUT"
            )));
        }
        let row = self.fetch(auth.0.id, name).await?;
        Ok(CreatedNodeType::Created(Json(row)))
    }

    /// Update a custom node type (fields left out keep their values). Built-in types answer
    /// 409. Workflows pick the change up within seconds.
    #[oai(
        path = "/api/v1/nodes/registry/:node_type",
        method = "put",
        operation_id = "update_node_type"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        node_type: Path<String>,
        body: Json<CustomNodeIn>,
    ) -> Result<OneNodeType, ApiError> {
        let name = node_type.0.as_str();
        if let Some(canonical) = catalogue::canonical_name(name) {
            return Err(ApiError::conflict(format!(
                "`{name}` is the built-in node type {canonical}, which cannot be overwritten"
            )));
        }
        if body.node_type.as_deref().is_some_and(|given| given != name) {
            return Err(ApiError::unprocessable(
                "node_type: cannot be changed (it must match the path)",
            ));
        }
        check_text(
            "description",
            body.description.as_deref(),
            MAX_DESCRIPTION_LEN,
        )?;
        check_text("version", body.version.as_deref(), MAX_VERSION_LEN)?;
        let mut tx = self.state.db.begin().await?;
        let current: Option<(Value, Value, Value)> = sqlx::query_as(
            "SELECT endpoint, schema_definition->'config', ui_schema FROM node_registry \
             WHERE node_type = $1 AND owner_id = $2 AND node_class = 'http' FOR UPDATE",
        )
        .bind(name)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let (endpoint, schema, ui_schema) =
            current.ok_or_else(|| ApiError::not_found("custom node type"))?;
        let mut endpoint: HttpEndpoint =
            serde_json::from_value(endpoint).map_err(ApiError::internal)?;
        if let Some(url) = &body.endpoint_url {
            endpoint.url = url.clone();
        }
        endpoint.timeout_ms = body.timeout_ms.unwrap_or(endpoint.timeout_ms);
        endpoint.max_attempts = body.max_attempts.unwrap_or(endpoint.max_attempts);
        endpoint.backoff_ms = body.backoff_ms.unwrap_or(endpoint.backoff_ms);
        let description = match &body.description {
            Some(text) => text.clone(),
            None => ui_schema["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let schema = body.config_schema.clone().unwrap_or(schema);
        let (endpoint, schema_definition, ui_schema) =
            custom_columns(name, &description, &endpoint, schema)?;
        sqlx::query(
            "UPDATE node_registry SET endpoint = $2, schema_definition = $3, ui_schema = $4, \
                version = COALESCE($5, version), is_active = COALESCE($6, is_active), \
                updated_at = now() \
             WHERE node_type = $1",
        )
        .bind(name)
        .bind(endpoint)
        .bind(schema_definition)
        .bind(ui_schema)
        .bind(body.version.as_deref())
        .bind(body.is_active)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.fetch(auth.0.id, name)
            .await
            .map(|row| OneNodeType::Ok(Json(row)))
    }
}

impl NodesApi {
    /// A built-in node type, or one of `owner`'s custom ones.
    async fn fetch(&self, owner: Uuid, name: &str) -> Result<NodeTypeOut, ApiError> {
        let row: Option<NodeTypeOut> = sqlx::query_as(concat!(
            select_node_type!(),
            "WHERE node_type = $1 AND (owner_id IS NULL OR owner_id = $2)"
        ))
        .bind(name)
        .bind(owner)
        .fetch_optional(&self.state.db)
        .await?;
        row.ok_or_else(|| ApiError::not_found("node type"))
    }
}
