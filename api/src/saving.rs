//! Saving a workflow graph: each save is a new immutable version, and what is derived from the
//! current version (webhook endpoints, scheduled jobs, `node_configurations`) is brought in line with it in the
//! same transaction.

use kai_common::workflow::Graph;
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::error::ApiError;
use crate::schedules;
use crate::webhooks::registry;

/// Stores `graph` as version `version` of the workflow and syncs what derives from it. Returns
/// the webhook ids whose endpoints changed or disappeared, so caches can drop them.
pub async fn save_version(
    tx: &mut Transaction<'_, Postgres>,
    workflow_id: Uuid,
    version: i32,
    graph: &Graph,
) -> Result<Vec<String>, ApiError> {
    let flow = serde_json::to_value(graph.flow()).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO workflow_versions (workflow_id, version, flow_data) VALUES ($1, $2, $3)",
    )
    .bind(workflow_id)
    .bind(version)
    .bind(flow)
    .execute(&mut **tx)
    .await?;
    sync_node_configurations(tx, workflow_id, graph).await?;
    schedules::registry::sync(tx, workflow_id, graph).await?;
    registry::sync(tx, workflow_id, graph).await
}

/// One `node_configurations` row per node of the current version: removed nodes' rows go,
/// changed ones are updated (with `updated_at` moving only when something changed).
async fn sync_node_configurations(
    tx: &mut Transaction<'_, Postgres>,
    workflow_id: Uuid,
    graph: &Graph,
) -> Result<(), sqlx::Error> {
    let nodes = &graph.flow().nodes;
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let types: Vec<&str> = (0..graph.len())
        .map(|i| graph.type_name(i).as_ref())
        .collect();
    let data: Vec<&Value> = nodes.iter().map(|n| &n.data).collect();
    let positions: Vec<Option<&Value>> = nodes.iter().map(|n| n.position.as_ref()).collect();
    sqlx::query(
        "DELETE FROM node_configurations WHERE workflow_id = $1 AND NOT (node_id = ANY($2))",
    )
    .bind(workflow_id)
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO node_configurations (workflow_id, node_id, node_type, configuration, position) \
         SELECT $1, n.* FROM UNNEST($2::text[], $3::text[], $4::jsonb[], $5::jsonb[]) \
            AS n(node_id, node_type, configuration, position) \
         ON CONFLICT (workflow_id, node_id) DO UPDATE SET node_type = EXCLUDED.node_type, \
            configuration = EXCLUDED.configuration, position = EXCLUDED.position, \
            updated_at = CASE WHEN (node_configurations.node_type, \
                node_configurations.configuration, node_configurations.position) \
                IS DISTINCT FROM (EXCLUDED.node_type, EXCLUDED.configuration, EXCLUDED.position) \
                THEN now() ELSE node_configurations.updated_at END",
    )
    .bind(workflow_id)
    .bind(&ids)
    .bind(&types)
    .bind(&data)
    .bind(&positions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
