//! Workflow versions by (workflow id, version). Versions are immutable, so a validated graph is
//! cached for as long as memory allows and never invalidated.

use std::sync::Arc;

use kai_common::workflow::{FlowData, Graph, GraphError};
use moka::sync::Cache;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("workflow {workflow_id} version {version} does not exist (the workflow was deleted)")]
    Missing { workflow_id: Uuid, version: i32 },
    #[error("stored workflow version is invalid: {0}")]
    Invalid(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Versions {
    db: PgPool,
    cache: Cache<(Uuid, i32), Arc<Graph>>,
}

impl Versions {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            cache: Cache::new(10_000),
        }
    }

    pub async fn get(&self, workflow_id: Uuid, version: i32) -> Result<Arc<Graph>, VersionError> {
        if let Some(graph) = self.cache.get(&(workflow_id, version)) {
            return Ok(graph);
        }
        let row: Option<(serde_json::Value,)> = sqlx::query_as(
            "SELECT flow_data FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
        )
        .bind(workflow_id)
        .bind(version)
        .fetch_optional(&self.db)
        .await?;
        let (flow,) = row.ok_or(VersionError::Missing {
            workflow_id,
            version,
        })?;
        let flow = FlowData::from_body(&flow).map_err(|e| VersionError::Invalid(e.to_string()))?;
        let graph = Arc::new(
            Graph::new(flow).map_err(|e: GraphError| VersionError::Invalid(e.to_string()))?,
        );
        self.cache.insert((workflow_id, version), graph.clone());
        Ok(graph)
    }
}
