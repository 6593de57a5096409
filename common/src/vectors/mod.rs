//! Vector collections on pgvector: the catalogue of collections, one table per collection, writes
//! that replace a document's chunks, searches (similarity, MMR, metadata filters, thresholds),
//! the index built after the first large load, and cached statistics. Shared by the API's
//! collection endpoints and the vector store and retriever nodes.

pub mod catalogue;
pub mod embedding;
pub mod index;
pub mod retrieve;
pub mod search;
pub mod spec;
pub mod stats;
pub mod table;
pub mod write;

pub use catalogue::{Collection, IndexStatus};
pub use spec::{CollectionSpec, Distance, EmbedderSpec, IndexKind, IndexParams};

/// Why a vector operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The request cannot work as given (names the field).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "documents[{position}].embedding has {got} dimensions; the collection expects {expected}"
    )]
    Dimension {
        position: usize,
        expected: usize,
        got: usize,
    },
    #[error("the query embedding has {got} dimensions; the collection expects {expected}")]
    QueryDimension { expected: usize, got: usize },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl VectorError {
    /// The error a node reports: the store's refusal, or the database unreachable (retryable).
    pub fn into_node_error(self, node_id: &str) -> crate::nodes::NodeError {
        use crate::nodes::NodeError;
        match self {
            VectorError::Database(error) => NodeError::Network(format!("node {node_id}: {error}")),
            other => NodeError::VectorStore(format!("node {node_id}: {other}")),
        }
    }
}
