//! Workflow versions by (workflow id, version). Versions are immutable, so a validated graph of
//! built-in nodes is cached for as long as memory allows and never invalidated. A graph with a
//! custom node type is kept only briefly: its owner may change the type's endpoint or policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_common::nodes::custom_store::{self, LoadError};
use kai_common::workflow::{FlowData, Graph, GraphError};
use moka::Expiry;
use moka::sync::Cache;
use sqlx::PgPool;
use uuid::Uuid;

/// How long a change to a custom node type may take to reach running workflows.
const CUSTOM_TYPES_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("workflow {workflow_id} version {version} does not exist (the workflow was deleted)")]
    Missing { workflow_id: Uuid, version: i32 },
    #[error("stored workflow version is invalid: {0}")]
    Invalid(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

type Key = (Uuid, i32);

/// Graphs of built-in nodes never expire; those with custom node types after `CUSTOM_TYPES_TTL`.
struct CustomTypesExpire;

impl Expiry<Key, Arc<Graph>> for CustomTypesExpire {
    fn expire_after_create(
        &self,
        _key: &Key,
        graph: &Arc<Graph>,
        _now: Instant,
    ) -> Option<Duration> {
        graph.has_custom_types().then_some(CUSTOM_TYPES_TTL)
    }
}

#[derive(Clone)]
pub struct Versions {
    db: PgPool,
    cache: Cache<Key, Arc<Graph>>,
}

impl Versions {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            cache: Cache::builder()
                .max_capacity(10_000)
                .expire_after(CustomTypesExpire)
                .build(),
        }
    }

    /// The graph of a version, with the custom node types of `owner` (the workflow's owner).
    pub async fn get(
        &self,
        workflow_id: Uuid,
        version: i32,
        owner: Uuid,
    ) -> Result<Arc<Graph>, VersionError> {
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
        let custom = custom_store::load_for_flow(&self.db, owner, &flow)
            .await
            .map_err(|e| match e {
                LoadError::Database(e) => VersionError::Database(e),
                invalid => VersionError::Invalid(invalid.to_string()),
            })?;
        let graph = Arc::new(
            Graph::with_custom_types(flow, &custom)
                .map_err(|e: GraphError| VersionError::Invalid(e.to_string()))?,
        );
        self.cache.insert((workflow_id, version), graph.clone());
        Ok(graph)
    }
}
