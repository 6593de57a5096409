//! Keeping a workflow's scheduled jobs in line with its timer nodes when it is saved: a job per
//! `TimerStartNode` with a schedule, none for removed or manual ones. As with webhooks, the
//! node's settings win for the keys it sets and changes made through the API survive for the
//! keys it does not.

use std::collections::HashMap;

use kai_common::workflow::Graph;
use serde_json::{Map, Value};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::store::{self, TIMER_NODE_TYPE, WriteError};
use crate::error::ApiError;

pub async fn sync(
    tx: &mut Transaction<'_, Postgres>,
    workflow_id: Uuid,
    graph: &Graph,
) -> Result<(), ApiError> {
    let flow = graph.flow();
    let timer_nodes: Vec<&str> = graph.nodes_of_type(TIMER_NODE_TYPE).collect();
    sqlx::query("DELETE FROM scheduled_jobs WHERE workflow_id = $1 AND NOT (node_id = ANY($2))")
        .bind(workflow_id)
        .bind(&timer_nodes)
        .execute(&mut **tx)
        .await?;
    let stored: HashMap<String, Value> =
        sqlx::query_as("SELECT node_id, timer_config FROM scheduled_jobs WHERE workflow_id = $1")
            .bind(workflow_id)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();

    for node_id in timer_nodes {
        let data = flow
            .node(node_id)
            .map(|n| n.data.clone())
            .unwrap_or_default();
        let empty = Map::new();
        let base = stored
            .get(node_id)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let config = store::merged(base, data.as_object().unwrap_or(&empty));
        let name = store::job_name(node_id, &data);
        match store::write(tx, workflow_id, node_id, &name, config).await {
            Ok(_) => {}
            Err(WriteError::Manual) => {
                sqlx::query("DELETE FROM scheduled_jobs WHERE workflow_id = $1 AND node_id = $2")
                    .bind(workflow_id)
                    .bind(node_id)
                    .execute(&mut **tx)
                    .await?;
            }
            Err(WriteError::Invalid(e)) => {
                return Err(ApiError::invalid_node(e.to_string(), Some(node_id)));
            }
            Err(WriteError::Database(e)) => return Err(e.into()),
        }
    }
    Ok(())
}
