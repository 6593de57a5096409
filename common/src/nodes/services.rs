//! What nodes get at run time from the worker process that runs them, built once per process and
//! handed to every node through its `NodeContext`: a node never reaches a global.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use super::NodeError;
use super::breaker::{BreakerSettings, Breakers};
use crate::compute::ComputePool;
use crate::credentials::{Credential, CredentialError, CredentialStore, KeyRing};
use crate::llm::servers::{ModelServers, ModelServersConfig};
use crate::outbound::OutboundConfig;
use crate::outbound::call::Outbound;
use crate::outbound::request_log::{HttpLogSink, HttpLogWriter};
use crate::vectors::index::{IndexBuilder, IndexSettings};

/// The run-time services of a worker process.
#[derive(Debug, Clone)]
pub struct NodeServices {
    /// The HTTP clients for URLs workflow authors control, behind the SSRF guard, and the
    /// response size limit.
    pub outbound: Outbound,
    /// One circuit breaker per external host.
    pub breakers: Arc<Breakers>,
    /// Opens the credential a node references, for the run's owner only (`None` without a
    /// database: unit tests).
    pub credentials: Option<CredentialStore>,
    /// Where HTTP calls are logged (`http_request_logs`).
    pub http_logs: HttpLogSink,
    /// The database, for nodes that store (memories, vector stores).
    pub db: Option<PgPool>,
    /// Where CPU-heavy node work runs, bounded, off the async runtime.
    pub compute: ComputePool,
    /// The operator's model servers (defaults for model nodes without a credential).
    pub models: ModelServers,
    /// Builds a vector collection's index once a write leaves it large and quiet (`None`
    /// without a database).
    pub vector_index: Option<IndexBuilder>,
}

impl NodeServices {
    /// Services without a database: HTTP only, nothing logged, no credentials.
    pub fn new(outbound: &OutboundConfig, breakers: BreakerSettings) -> reqwest::Result<Self> {
        let user_agent = concat!("kai-fusion-worker/", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            outbound: Outbound::new(outbound, user_agent)?,
            breakers: Arc::new(Breakers::new(breakers)),
            credentials: None,
            http_logs: HttpLogSink::discard(),
            db: None,
            compute: ComputePool::default(),
            models: ModelServers::default(),
            vector_index: None,
        })
    }

    /// The same services with the operator's model servers.
    pub fn with_models(mut self, config: &ModelServersConfig) -> reqwest::Result<Self> {
        let user_agent = concat!("kai-fusion-worker/", env!("CARGO_PKG_VERSION"));
        self.models = ModelServers::new(config, user_agent)?;
        Ok(self)
    }

    /// The same services with `db`: credentials opened with `keys`, HTTP calls logged by the
    /// returned writer (finish it at shutdown).
    pub fn with_database(mut self, db: PgPool, keys: Arc<KeyRing>) -> (Self, HttpLogWriter) {
        let (sink, writer) = HttpLogSink::start(db.clone());
        self.credentials = Some(CredentialStore::new(db.clone(), keys));
        self.http_logs = sink;
        self.db = Some(db);
        (self, writer)
    }

    /// The same services building vector indexes by `settings` (needs the database first).
    pub fn with_vector_index(mut self, settings: IndexSettings) -> Self {
        self.vector_index = self
            .db
            .as_ref()
            .map(|db| IndexBuilder::new(db.clone(), settings));
        self
    }

    /// Notes a write to a vector collection (its index may be due).
    pub fn vector_written(&self, collection: Uuid) {
        if let Some(builder) = &self.vector_index {
            builder.touch(collection);
        }
    }

    /// The database, for a node that stores; its absence (a process without one) is named.
    pub fn database(&self, node_id: &str) -> Result<&PgPool, NodeError> {
        self.db.as_ref().ok_or_else(|| {
            NodeError::Configuration(format!("node {node_id}: no database in this process"))
        })
    }

    /// Credential `id` of the run's owner, opened; a missing or foreign one is a credential
    /// error naming the node, never the secret.
    pub async fn credential(
        &self,
        run: &RunIds,
        node_id: &str,
        id: &str,
    ) -> Result<Credential, NodeError> {
        let store = self.credentials.as_ref().ok_or_else(|| {
            NodeError::Credential(format!(
                "node {node_id}: no credential store in this process"
            ))
        })?;
        store.open(run.owner, id).await.map_err(|e| match e {
            CredentialError::Database(..) => NodeError::Network(format!("node {node_id}: {e}")),
            other => NodeError::Credential(format!("node {node_id}: {other}")),
        })
    }
}

impl Default for NodeServices {
    /// Nothing internal allowed, no database.
    fn default() -> Self {
        Self::new(&OutboundConfig::default(), BreakerSettings::default())
            .expect("the default HTTP client builds")
    }
}

/// Whose run this is: what a node's records and credential lookups are scoped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunIds {
    pub owner: Uuid,
    pub workflow: Uuid,
    pub execution: Uuid,
}
