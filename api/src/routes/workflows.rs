//! Workflows: create, list, read, update (a new immutable version per saved graph), delete.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::nodes::custom_store;
use kai_common::workflow::{FlowData, Graph};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::ApiTags;
use crate::audit::{self, Action, Entry};
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::saving;
use crate::state::AppState;

pub struct WorkflowsApi {
    pub state: Arc<AppState>,
}

/// A workflow as sent by clients: `nodes`/`edges` at the top level, or KAI-Fusion's
/// `flow_data: {nodes, edges}`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkflowIn {
    /// When creating without one (bare `{nodes, edges}` exports have none), the workflow is
    /// named `Untitled workflow` and the time; an empty name is refused.
    pub name: Option<String>,
    pub description: Option<String>,
    pub nodes: Option<Vec<Value>>,
    pub edges: Option<Vec<Value>>,
    /// The workflow's retry policy `{max_attempts (1–10), backoff_ms (≤ 60000, default 1000)}`,
    /// for nodes whose own allows fewer attempts (also read inside `flow_data`).
    pub retry: Option<Value>,
    pub flow_data: Option<Value>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkflowOut {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The latest saved version; each save of the graph adds one.
    pub version: i32,
    pub is_active: bool,
    pub nodes: Vec<Value>,
    pub edges: Vec<Value>,
    /// The workflow's retry policy, when it has one.
    pub retry: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: Uuid,
    name: String,
    description: String,
    current_version: i32,
    is_active: bool,
    flow_data: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<WorkflowRow> for WorkflowOut {
    fn from(row: WorkflowRow) -> Self {
        let list = |key: &str| match row.flow_data.get(key) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        WorkflowOut {
            id: row.id,
            nodes: list("nodes"),
            edges: list("edges"),
            retry: row.flow_data.get("retry").cloned(),
            name: row.name,
            description: row.description,
            version: row.current_version,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The workflow columns with the graph of its current version; a macro so that the queries
/// built from it stay string literals.
macro_rules! select_workflow {
    () => {
        "SELECT w.id, w.name, w.description, w.current_version, w.is_active, \
        v.flow_data, w.created_at, w.updated_at \
     FROM workflows w \
     JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version"
    };
}

#[derive(ApiResponse)]
pub enum CreatedWorkflow {
    /// Created, with version 1.
    #[oai(status = 201)]
    Created(Json<WorkflowOut>),
}

#[derive(ApiResponse)]
pub enum OneWorkflow {
    #[oai(status = 200)]
    Ok(Json<WorkflowOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted, with its versions, executions and webhooks.
    #[oai(status = 204)]
    NoContent,
}

pub(crate) const MAX_NAME_LEN: usize = 255;

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.contains('\0') {
        return Err(ApiError::unprocessable(
            "name: must not contain a NUL character",
        ));
    }
    if name.is_empty() {
        return Err(ApiError::unprocessable("name: must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::unprocessable(format!(
            "name: must be at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(name.to_owned())
}

/// PostgreSQL text cannot hold NUL: refused here rather than failing the insert.
fn validate_description(description: Option<&str>) -> Result<(), ApiError> {
    if description.is_some_and(|d| d.contains('\0')) {
        return Err(ApiError::unprocessable(
            "description: must not contain a NUL character",
        ));
    }
    Ok(())
}

/// The graph in `body`, validated against the catalogue and `owner`'s custom node types;
/// `None` when the body carries no graph.
async fn graph_of(db: &PgPool, owner: Uuid, body: &WorkflowIn) -> Result<Option<Graph>, ApiError> {
    let source = match (&body.flow_data, &body.nodes) {
        (Some(flow), _) => json!({ "flow_data": flow }),
        (None, Some(nodes)) => json!({
            "nodes": nodes,
            "edges": body.edges.clone().unwrap_or_default(),
            "retry": body.retry,
        }),
        (None, None) => return Ok(None),
    };
    if kai_common::json::contains_nul(&source) {
        return Err(ApiError::unprocessable(
            "the workflow contains a NUL character (\\u0000), which cannot be stored",
        ));
    }
    let flow = FlowData::from_body(&source).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    validate_flow(db, owner, flow).await.map(Some)
}

/// Validates `flow` as a graph `owner` may save: built-in node types and their own custom ones.
pub(crate) async fn validate_flow(
    db: &PgPool,
    owner: Uuid,
    flow: FlowData,
) -> Result<Graph, ApiError> {
    let custom = custom_store::load_for_flow(db, owner, &flow)
        .await
        .map_err(|e| match e {
            custom_store::LoadError::Database(e) => ApiError::from(e),
            invalid => ApiError::unprocessable(invalid.to_string()),
        })?;
    Graph::with_custom_types(flow, &custom)
        .map_err(|e| ApiError::invalid_node(e.to_string(), e.node_id()))
}

#[OpenApi(tag = "ApiTags::Workflows")]
impl WorkflowsApi {
    /// Create a workflow; a `WebhookStartNode` gets its webhook endpoint.
    #[oai(
        path = "/api/v1/workflows",
        method = "post",
        operation_id = "create_workflow"
    )]
    async fn create(
        &self,
        auth: UserAuth,
        body: Json<WorkflowIn>,
    ) -> Result<CreatedWorkflow, ApiError> {
        let name = match body.name.as_deref() {
            Some(name) => validate_name(name)?,
            None => format!(
                "Untitled workflow {}",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
            ),
        };
        validate_description(body.description.as_deref())?;
        let graph = graph_of(&self.state.db, auth.0.id, &body)
            .await?
            .ok_or_else(|| {
                ApiError::unprocessable("nodes: a workflow needs `nodes` (or `flow_data`)")
            })?;
        let id = Uuid::now_v7();
        let mut tx = self.state.db.begin().await?;
        sqlx::query(
            "INSERT INTO workflows (id, user_id, name, description) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(auth.0.id)
        .bind(&name)
        .bind(body.description.as_deref().unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        let touched = saving::save_version(&mut tx, id, 1, &graph).await?;
        tx.commit().await?;
        self.forget_endpoints(&touched);
        let workflow = self.fetch(auth.0.id, id).await?;
        Ok(CreatedWorkflow::Created(Json(workflow)))
    }

    /// The caller's workflows, newest first.
    #[oai(
        path = "/api/v1/workflows",
        method = "get",
        operation_id = "list_workflows"
    )]
    async fn list(&self, auth: UserAuth) -> Result<Json<Vec<WorkflowOut>>, ApiError> {
        let rows: Vec<WorkflowRow> = sqlx::query_as(concat!(
            select_workflow!(),
            " WHERE w.user_id = $1 ORDER BY w.created_at DESC"
        ))
        .bind(auth.0.id)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// One workflow with its current graph.
    #[oai(
        path = "/api/v1/workflows/:id",
        method = "get",
        operation_id = "get_workflow"
    )]
    async fn get(&self, auth: UserAuth, id: Path<Uuid>) -> Result<OneWorkflow, ApiError> {
        Ok(OneWorkflow::Ok(Json(self.fetch(auth.0.id, id.0).await?)))
    }

    /// Update name, description or graph. A new graph is saved as a new version; executions
    /// already queued still run the version they were queued with.
    #[oai(
        path = "/api/v1/workflows/:id",
        method = "put",
        operation_id = "update_workflow"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<WorkflowIn>,
    ) -> Result<OneWorkflow, ApiError> {
        let name = body.name.as_deref().map(validate_name).transpose()?;
        validate_description(body.description.as_deref())?;
        let graph = graph_of(&self.state.db, auth.0.id, &body).await?;
        let mut tx = self.state.db.begin().await?;
        let current: Option<(i32,)> = sqlx::query_as(
            "SELECT current_version FROM workflows WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let (current_version,) = current.ok_or_else(|| ApiError::not_found("workflow"))?;
        let mut version = current_version;
        let mut touched = Vec::new();
        if let Some(graph) = &graph {
            version += 1;
            touched = saving::save_version(&mut tx, id.0, version, graph).await?;
        }
        sqlx::query(
            "UPDATE workflows SET name = COALESCE($2, name), description = COALESCE($3, description), \
                current_version = $4, updated_at = now() WHERE id = $1",
        )
        .bind(id.0)
        .bind(name)
        .bind(body.description.as_deref())
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.forget_endpoints(&touched);
        Ok(OneWorkflow::Ok(Json(self.fetch(auth.0.id, id.0).await?)))
    }

    /// Delete a workflow with its versions, executions and webhooks.
    #[oai(
        path = "/api/v1/workflows/:id",
        method = "delete",
        operation_id = "delete_workflow"
    )]
    async fn delete(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let mut tx = self.state.db.begin().await?;
        let hooks: Vec<(String,)> = sqlx::query_as(
            "SELECT e.webhook_id FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
             WHERE w.id = $1 AND w.user_id = $2",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_all(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM workflows WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(auth.0.id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(ApiError::not_found("workflow"));
        }
        let entry = Entry::by(&auth.0, Action::WorkflowDeleted)
            .target("workflow", id.0)
            .details(serde_json::json!({"webhooks": hooks.len()}));
        audit::write(&mut *tx, &entry).await?;
        tx.commit().await?;
        self.forget_endpoints(&hooks.into_iter().map(|(h,)| h).collect::<Vec<_>>());
        Ok(Deleted::NoContent)
    }
}

impl WorkflowsApi {
    async fn fetch(&self, user_id: Uuid, id: Uuid) -> Result<WorkflowOut, ApiError> {
        let row: Option<WorkflowRow> = sqlx::query_as(concat!(
            select_workflow!(),
            " WHERE w.id = $1 AND w.user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.state.db)
        .await?;
        row.map(Into::into)
            .ok_or_else(|| ApiError::not_found("workflow"))
    }

    fn forget_endpoints(&self, webhook_ids: &[String]) {
        self.state.forget_endpoints(webhook_ids);
    }
}
