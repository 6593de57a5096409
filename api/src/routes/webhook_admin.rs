//! Managing webhook endpoints: `GET /api/v1/webhooks` (the list) and `POST` (an endpoint for a
//! workflow's webhook node) in one `OpenApi` impl, so the document keeps both methods of the path;
//! `GET`, `PUT` (configuration, `is_active`) and `DELETE /api/v1/webhooks/{webhook_id}`.
//! Saving a workflow also creates endpoints for its webhook nodes; a node's own settings win
//! for the keys it sets, the keys set here survive saves that do not set them.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiTags;
use super::webhooks::{self, Filter, WebhookOut, fetch};
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::node_lookup;
use crate::state::AppState;
use crate::webhooks::config::WebhookConfig;
use crate::webhooks::{endpoint, registry};

pub struct WebhookAdminApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateWebhook {
    pub workflow_id: Uuid,
    /// A webhook node (`WebhookStartNode` / `WebhookTrigger`) of the workflow's current version.
    pub node_id: String,
    /// Configuration keys to set over the node's own settings and the defaults.
    pub config: Option<Value>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// Configuration keys to change; keys left out keep their value.
    pub config: Option<Value>,
    /// An inactive webhook answers 410.
    pub is_active: Option<bool>,
}

#[derive(ApiResponse)]
enum Created {
    /// The endpoint, with its URL and token.
    #[oai(status = 201)]
    Created(Json<WebhookOut>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// The endpoint is gone; its URL answers 404.
    #[oai(status = 204)]
    Deleted,
}

/// The keys of a config patch, or 422.
fn patch_of(config: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match config {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(keys)) => Ok(keys.clone()),
        Some(other) => Err(ApiError::unprocessable(format!(
            "config must be an object of configuration keys, not {other}"
        ))),
    }
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhookAdminApi {
    /// The caller's webhook endpoints, optionally of one workflow and by state.
    #[oai(
        path = "/api/v1/webhooks",
        method = "get",
        operation_id = "list_webhooks"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        workflow_id: Query<Option<Uuid>>,
        active: Query<Option<bool>>,
    ) -> Result<Json<Vec<WebhookOut>>, ApiError> {
        Ok(Json(
            webhooks::list(&self.state, auth.0.id, workflow_id.0, active.0).await?,
        ))
    }

    /// Create the endpoint of a webhook node that has none (e.g. after `DELETE`): 409 when it
    /// has one, 422 when the node is not a webhook node of the workflow.
    #[oai(
        path = "/api/v1/webhooks",
        method = "post",
        operation_id = "create_webhook"
    )]
    async fn create(&self, auth: UserAuth, body: Json<CreateWebhook>) -> Result<Created, ApiError> {
        let body = body.0;
        let patch = patch_of(body.config.as_ref())?;
        let data = node_lookup::node_of_type(
            &self.state.db,
            auth.0.id,
            body.workflow_id,
            &body.node_id,
            registry::WEBHOOK_NODE_TYPE,
            "a webhook node",
        )
        .await?;
        let config = WebhookConfig::from_node_data(&WebhookConfig::default(), &data)
            .and_then(|config| config.patched(&patch))
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        let webhook_id = registry::new_webhook_id();
        let inserted = sqlx::query(
            "INSERT INTO webhook_endpoints (webhook_id, workflow_id, node_id, endpoint_path, \
                secret_token, config) \
             VALUES ($1, $2, $3, '/api/webhooks/' || $1, $4, $5) \
             ON CONFLICT (workflow_id, node_id) DO NOTHING",
        )
        .bind(&webhook_id)
        .bind(body.workflow_id)
        .bind(&body.node_id)
        .bind(registry::new_secret_token())
        .bind(serde_json::to_value(&config).map_err(ApiError::internal)?)
        .execute(&self.state.db)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::conflict(format!(
                "node `{}` already has a webhook endpoint",
                body.node_id
            )));
        }
        Ok(Created::Created(Json(self.one(&auth, &webhook_id).await?)))
    }

    /// One of the caller's webhook endpoints.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id",
        method = "get",
        operation_id = "get_webhook"
    )]
    async fn get(
        &self,
        auth: UserAuth,
        webhook_id: Path<String>,
    ) -> Result<Json<WebhookOut>, ApiError> {
        Ok(Json(self.one(&auth, &webhook_id.0).await?))
    }

    /// Change a webhook's configuration (only the keys given) or switch it on or off. Every
    /// API replica applies it within 2 seconds.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id",
        method = "put",
        operation_id = "update_webhook"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        webhook_id: Path<String>,
        body: Json<UpdateWebhook>,
    ) -> Result<Json<WebhookOut>, ApiError> {
        let patch = patch_of(body.0.config.as_ref())?;
        if !endpoint::is_well_formed(&webhook_id.0) {
            return Err(ApiError::not_found("webhook"));
        }
        // Read, patch and write under the row's lock, so two concurrent changes of different
        // keys both land.
        let mut tx = self.state.db.begin().await?;
        let stored: Option<(Value,)> = sqlx::query_as(
            "SELECT e.config FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
             WHERE e.webhook_id = $1 AND w.user_id = $2 FOR UPDATE OF e",
        )
        .bind(&webhook_id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let (stored,) = stored.ok_or_else(|| ApiError::not_found("webhook"))?;
        let stored: WebhookConfig = serde_json::from_value(stored).unwrap_or_default();
        let config = stored
            .patched(&patch)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        sqlx::query(
            "UPDATE webhook_endpoints SET config = $2, is_active = COALESCE($3, is_active) \
             WHERE webhook_id = $1",
        )
        .bind(&webhook_id.0)
        .bind(serde_json::to_value(&config).map_err(ApiError::internal)?)
        .bind(body.0.is_active)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.state
            .forget_endpoints(std::slice::from_ref(&webhook_id.0));
        Ok(Json(self.one(&auth, &webhook_id.0).await?))
    }

    /// Remove a webhook endpoint: its URL answers 404 from then on. Its node stays in the
    /// workflow; the next save of the workflow gives the node a new endpoint (new URL and
    /// token), or `POST /api/v1/webhooks` does.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id",
        method = "delete",
        operation_id = "delete_webhook"
    )]
    async fn delete(&self, auth: UserAuth, webhook_id: Path<String>) -> Result<Deleted, ApiError> {
        if !endpoint::is_well_formed(&webhook_id.0) {
            return Err(ApiError::not_found("webhook"));
        }
        let deleted = sqlx::query(
            "DELETE FROM webhook_endpoints e USING workflows w \
             WHERE w.id = e.workflow_id AND e.webhook_id = $1 AND w.user_id = $2",
        )
        .bind(&webhook_id.0)
        .bind(auth.0.id)
        .execute(&self.state.db)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(ApiError::not_found("webhook"));
        }
        self.state
            .forget_endpoints(std::slice::from_ref(&webhook_id.0));
        Ok(Deleted::Deleted)
    }
}

impl WebhookAdminApi {
    async fn one(&self, auth: &UserAuth, webhook_id: &str) -> Result<WebhookOut, ApiError> {
        if !endpoint::is_well_formed(webhook_id) {
            return Err(ApiError::not_found("webhook"));
        }
        let filter = Filter {
            webhook_id: Some(webhook_id),
            ..Filter::default()
        };
        fetch(&self.state, auth.0.id, filter)
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found("webhook"))
    }
}
