//! The node configuration API: a workflow's nodes one at a time. `GET/POST
//! /api/v1/workflows/{id}/nodes`, `PUT/DELETE /api/v1/workflows/{id}/nodes/{node_id}`. Each
//! change is validated as a whole save would be and saved as a new version of the workflow;
//! `node_configurations` mirrors the current version.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::workflow::FlowData;
use kai_common::workflow::flow::{Edge, Node};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use super::workflows::validate_flow;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::saving;
use crate::state::AppState;

pub struct WorkflowNodesApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeConfigurationOut {
    pub node_id: String,
    /// The canonical node type.
    pub node_type: String,
    /// The node's `data` (its configuration, flat or under `inputs`).
    pub configuration: Value,
    pub position: Option<Value>,
    /// The workflow version this configuration belongs to (the current one).
    pub workflow_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeConfigurationIn {
    /// POST only: the new node's id (generated when left out).
    pub node_id: Option<String>,
    /// Required by POST; a built-in type (or legacy name) or one of your custom types.
    pub node_type: Option<String>,
    /// The node's `data`; PUT replaces it when given.
    pub configuration: Option<Value>,
    pub position: Option<Value>,
    /// POST only: edges to add with the node (`{source, target, sourceHandle?, targetHandle?}`).
    pub edges: Option<Vec<Value>>,
}

#[derive(ApiResponse)]
pub enum CreatedNode {
    /// Added, in a new version of the workflow.
    #[oai(status = 201)]
    Created(Json<NodeConfigurationOut>),
}

#[derive(ApiResponse)]
pub enum UpdatedNode {
    /// Changed, in a new version of the workflow.
    #[oai(status = 200)]
    Ok(Json<NodeConfigurationOut>),
}

#[derive(ApiResponse)]
pub enum DeletedNode {
    /// Removed with its edges, in a new version of the workflow.
    #[oai(status = 204)]
    NoContent,
}

pub(crate) const MAX_NODE_ID_LEN: usize = 255;

fn check_node_id(id: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() || id.chars().count() > MAX_NODE_ID_LEN || id.contains('\0') {
        return Err(ApiError::unprocessable(format!(
            "node_id: must be 1 to {MAX_NODE_ID_LEN} characters, without NUL"
        )));
    }
    Ok(())
}

fn check_json(field: &str, value: Option<&Value>) -> Result<(), ApiError> {
    if value.is_some_and(kai_common::json::contains_nul) {
        return Err(ApiError::unprocessable(format!(
            "{field}: must not contain a NUL character (\\u0000)"
        )));
    }
    Ok(())
}

#[OpenApi(tag = "ApiTags::Workflows")]
impl WorkflowNodesApi {
    /// The nodes of the workflow's current version with their configurations.
    #[oai(
        path = "/api/v1/workflows/:id/nodes",
        method = "get",
        operation_id = "list_workflow_nodes"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<NodeConfigurationOut>>, ApiError> {
        self.owned(auth.0.id, id.0).await?;
        Ok(Json(self.fetch(id.0, None).await?))
    }

    /// Add a node (and edges to or from it) as a new version of the workflow.
    #[oai(
        path = "/api/v1/workflows/:id/nodes",
        method = "post",
        operation_id = "add_workflow_node"
    )]
    async fn create(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<NodeConfigurationIn>,
    ) -> Result<CreatedNode, ApiError> {
        let body = body.0;
        let node_id = body
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", Uuid::now_v7().simple()));
        check_node_id(&node_id)?;
        let node_type = body
            .node_type
            .clone()
            .ok_or_else(|| ApiError::unprocessable("node_type: required"))?;
        check_json("configuration", body.configuration.as_ref())?;
        check_json("position", body.position.as_ref())?;
        let edges: Vec<Edge> = body
            .edges
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, edge)| {
                check_json("edges", Some(&edge))?;
                serde_json::from_value(edge)
                    .map_err(|e| ApiError::unprocessable(format!("edges[{i}]: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let node = Node {
            id: node_id.clone(),
            node_type,
            data: body
                .configuration
                .unwrap_or_else(|| Value::Object(Default::default())),
            position: body.position,
        };
        self.change(auth.0.id, id.0, |flow| {
            if flow.node(&node.id).is_some() {
                return Err(ApiError::conflict(format!(
                    "node_id: the workflow already has a node `{}`",
                    node.id
                )));
            }
            flow.nodes.push(node);
            flow.edges.extend(edges);
            Ok(())
        })
        .await?;
        let node = self.fetch(id.0, Some(&node_id)).await?.pop();
        node.map(|node| CreatedNode::Created(Json(node)))
            .ok_or_else(|| ApiError::internal("the node just added is missing"))
    }

    /// Change a node's type, configuration or position as a new version of the workflow.
    #[oai(
        path = "/api/v1/workflows/:id/nodes/:node_id",
        method = "put",
        operation_id = "update_workflow_node"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        node_id: Path<String>,
        body: Json<NodeConfigurationIn>,
    ) -> Result<UpdatedNode, ApiError> {
        let body = body.0;
        if body
            .node_id
            .as_deref()
            .is_some_and(|given| given != node_id.0)
        {
            return Err(ApiError::unprocessable(
                "node_id: cannot be changed (it must match the path)",
            ));
        }
        if body.edges.is_some() {
            return Err(ApiError::unprocessable(
                "edges: change edges by saving the workflow (PUT /api/v1/workflows/{id})",
            ));
        }
        check_json("configuration", body.configuration.as_ref())?;
        check_json("position", body.position.as_ref())?;
        self.change(auth.0.id, id.0, |flow| {
            let node = flow
                .nodes
                .iter_mut()
                .find(|n| n.id == node_id.0)
                .ok_or_else(|| ApiError::not_found("node"))?;
            if let Some(node_type) = body.node_type {
                node.node_type = node_type;
            }
            if let Some(configuration) = body.configuration {
                node.data = configuration;
            }
            if body.position.is_some() {
                node.position = body.position;
            }
            Ok(())
        })
        .await?;
        let node = self.fetch(id.0, Some(&node_id.0)).await?.pop();
        node.map(|node| UpdatedNode::Ok(Json(node)))
            .ok_or_else(|| ApiError::internal("the node just updated is missing"))
    }

    /// Remove a node and its edges as a new version of the workflow.
    #[oai(
        path = "/api/v1/workflows/:id/nodes/:node_id",
        method = "delete",
        operation_id = "delete_workflow_node"
    )]
    async fn delete(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        node_id: Path<String>,
    ) -> Result<DeletedNode, ApiError> {
        self.change(auth.0.id, id.0, |flow| {
            let before = flow.nodes.len();
            flow.nodes.retain(|n| n.id != node_id.0);
            if flow.nodes.len() == before {
                return Err(ApiError::not_found("node"));
            }
            flow.edges
                .retain(|e| e.source != node_id.0 && e.target != node_id.0);
            Ok(())
        })
        .await?;
        Ok(DeletedNode::NoContent)
    }
}

impl WorkflowNodesApi {
    async fn owned(&self, owner: Uuid, workflow_id: Uuid) -> Result<(), ApiError> {
        let found: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(workflow_id)
                .bind(owner)
                .fetch_optional(&self.state.db)
                .await?;
        found
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found("workflow"))
    }

    /// The workflow's node configurations (or the one with `node_id`), in the graph's order.
    async fn fetch(
        &self,
        workflow_id: Uuid,
        node_id: Option<&str>,
    ) -> Result<Vec<NodeConfigurationOut>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT c.node_id, c.node_type, c.configuration, c.position, \
                w.current_version AS workflow_version, c.created_at, c.updated_at \
             FROM node_configurations c JOIN workflows w ON w.id = c.workflow_id \
             JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version \
             LEFT JOIN LATERAL ( \
                SELECT ordinality FROM jsonb_array_elements(v.flow_data->'nodes') \
                WITH ORDINALITY AS n(node, ordinality) WHERE n.node->>'id' = c.node_id \
             ) AS placed ON true \
             WHERE c.workflow_id = $1 AND ($2::text IS NULL OR c.node_id = $2) \
             ORDER BY placed.ordinality NULLS LAST, c.node_id",
        )
        .bind(workflow_id)
        .bind(node_id)
        .fetch_all(&self.state.db)
        .await?)
    }

    /// Applies `edit` to the current graph, validates the result as a whole save would, and
    /// saves it as a new version. Nothing is stored when `edit` or validation fails.
    async fn change(
        &self,
        owner: Uuid,
        workflow_id: Uuid,
        edit: impl FnOnce(&mut FlowData) -> Result<(), ApiError>,
    ) -> Result<i32, ApiError> {
        let mut tx = self.state.db.begin().await?;
        // Locks the workflow: concurrent node changes apply one after the other, none lost.
        let current: Option<(i32, Value)> = sqlx::query_as(
            "SELECT w.current_version, v.flow_data FROM workflows w \
             JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version \
             WHERE w.id = $1 AND w.user_id = $2 FOR UPDATE OF w",
        )
        .bind(workflow_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let (version, flow) = current.ok_or_else(|| ApiError::not_found("workflow"))?;
        let mut flow = FlowData::from_body(&flow).map_err(ApiError::internal)?;
        edit(&mut flow)?;
        let graph = validate_flow(&self.state.db, owner, flow).await?;
        let version = version + 1;
        let touched = saving::save_version(&mut tx, workflow_id, version, &graph).await?;
        sqlx::query("UPDATE workflows SET current_version = $2, updated_at = now() WHERE id = $1")
            .bind(workflow_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.state.forget_endpoints(&touched);
        Ok(version)
    }
}
