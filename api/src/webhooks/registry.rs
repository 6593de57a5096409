//! Keeps a workflow's webhook endpoints in step with its webhook nodes when it is saved: a new
//! node gets an endpoint, a kept node keeps its endpoint (id and token), a removed node's
//! endpoint is removed.

use std::collections::HashMap;

use kai_common::workflow::Graph;
use rand::RngCore;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::config::WebhookConfig;
use crate::error::ApiError;

/// The node type that has a webhook endpoint (legacy `WebhookTrigger` resolves to it).
pub const WEBHOOK_NODE_TYPE: &str = "WebhookStartNode";

/// `wh_` + 24 hex characters.
pub fn new_webhook_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("wh_{}", hex::encode(bytes))
}

/// `wht_` + 64 hex characters: 32 random bytes.
pub fn new_secret_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("wht_{}", hex::encode(bytes))
}

/// Brings the endpoints of `workflow_id` in line with `graph`. Returns the ids of the webhooks
/// that changed or disappeared, so caches can drop them. A node's webhook settings are applied
/// over the endpoint's stored configuration; invalid settings are refused naming the node.
pub async fn sync(
    tx: &mut Transaction<'_, Postgres>,
    workflow_id: Uuid,
    graph: &Graph,
) -> Result<Vec<String>, ApiError> {
    let flow = graph.flow();
    let webhook_nodes: Vec<&str> = graph.nodes_of_type(WEBHOOK_NODE_TYPE).collect();

    let removed: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM webhook_endpoints WHERE workflow_id = $1 AND NOT (node_id = ANY($2)) \
         RETURNING webhook_id",
    )
    .bind(workflow_id)
    .bind(&webhook_nodes)
    .fetch_all(&mut **tx)
    .await?;
    let mut touched: Vec<String> = removed.into_iter().map(|(id,)| id).collect();
    let stored: HashMap<String, serde_json::Value> =
        // Locked: a concurrent `PUT /api/v1/webhooks/{id}` is not overwritten by this save.
        sqlx::query_as(
            "SELECT node_id, config FROM webhook_endpoints WHERE workflow_id = $1 FOR UPDATE",
        )
            .bind(workflow_id)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();

    for node_id in webhook_nodes {
        let data = flow
            .node(node_id)
            .map(|n| &n.data)
            .cloned()
            .unwrap_or_default();
        let base: WebhookConfig = stored
            .get(node_id)
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let config = WebhookConfig::from_node_data(&base, &data)
            .map_err(|e| ApiError::invalid_node(e.to_string(), Some(node_id)))?;
        let config = serde_json::to_value(config).expect("webhook config serialises");
        let webhook_id = new_webhook_id();
        // Kept nodes keep their id and token; their config follows the node.
        let (id,): (String,) = sqlx::query_as(
            "INSERT INTO webhook_endpoints (webhook_id, workflow_id, node_id, endpoint_path, \
                secret_token, config) \
             VALUES ($1, $2, $3, '/api/webhooks/' || $1, $4, $5) \
             ON CONFLICT (workflow_id, node_id) DO UPDATE SET config = EXCLUDED.config \
             RETURNING webhook_id",
        )
        .bind(&webhook_id)
        .bind(workflow_id)
        .bind(node_id)
        .bind(new_secret_token())
        .bind(config)
        .fetch_one(&mut **tx)
        .await?;
        touched.push(id);
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_have_their_documented_shape() {
        let id = new_webhook_id();
        assert_eq!(id.len(), 3 + 24);
        assert!(super::super::endpoint::is_well_formed(&id));
        let token = new_secret_token();
        assert_eq!(token.len(), 4 + 64);
        assert_ne!(new_secret_token(), token);
    }
}
