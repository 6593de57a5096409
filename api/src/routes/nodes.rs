//! The node registry: `GET /api/v1/nodes/registry` and `GET /api/v1/nodes/registry/{node_type}`.
//! Built-in types are written to `node_registry` when the API starts (`register_builtins`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::nodes::{self, NodeDefinition};
use kai_common::workflow::catalogue;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct NodesApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
pub struct NodeTypeOut {
    pub node_type: String,
    /// `builtin` for the types this engine ships.
    pub node_class: String,
    /// `entry`, `processor` or `end`.
    pub category: String,
    pub version: String,
    /// `{config (JSON Schema), inputs, outputs, category}`.
    pub schema_definition: Value,
    /// `{display_name, description}`.
    pub ui_schema: Value,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum OneNodeType {
    #[oai(status = 200)]
    Ok(Json<NodeTypeOut>),
}

/// Writes (or refreshes) every built-in node type in `node_registry`.
pub async fn register_builtins(db: &PgPool) -> Result<(), sqlx::Error> {
    for node in nodes::registry() {
        register(db, *node).await?;
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
            is_active = true",
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

#[OpenApi(tag = "ApiTags::Nodes")]
impl NodesApi {
    /// Every registered node type with its schema.
    #[oai(
        path = "/api/v1/nodes/registry",
        method = "get",
        operation_id = "list_node_types"
    )]
    async fn list(&self, _auth: UserAuth) -> Result<Json<Vec<NodeTypeOut>>, ApiError> {
        let rows: Vec<NodeTypeOut> = sqlx::query_as(concat!(
            "SELECT node_type, node_class, category, version, schema_definition, ui_schema, ",
            "is_active, created_at FROM node_registry ORDER BY node_type"
        ))
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
    async fn get(&self, _auth: UserAuth, node_type: Path<String>) -> Result<OneNodeType, ApiError> {
        if node_type.0.contains('\0') {
            return Err(ApiError::not_found("node type"));
        }
        let name = catalogue::canonical_name(&node_type.0).unwrap_or(node_type.0.as_str());
        let row: Option<NodeTypeOut> = sqlx::query_as(concat!(
            "SELECT node_type, node_class, category, version, schema_definition, ui_schema, ",
            "is_active, created_at FROM node_registry WHERE node_type = $1"
        ))
        .bind(name)
        .fetch_optional(&self.state.db)
        .await?;
        row.map(|row| OneNodeType::Ok(Json(row)))
            .ok_or_else(|| ApiError::not_found("node type"))
    }
}
