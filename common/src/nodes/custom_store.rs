//! Loads the custom node types a workflow uses from `node_registry`: only the owner's, only the
//! active ones, and only when the workflow names a type outside the built-in catalogue.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::NodeType;
use super::custom_http::{HttpEndpoint, HttpNodeType};
use crate::workflow::FlowData;
use crate::workflow::catalogue::canonical_name;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("custom node type `{node_type}` is stored with an invalid definition: {problem}")]
    Invalid { node_type: String, problem: String },
}

/// The custom node types `flow` names that `owner` has registered and not deactivated.
pub async fn load_for_flow(
    db: &PgPool,
    owner: Uuid,
    flow: &FlowData,
) -> Result<HashMap<String, NodeType>, LoadError> {
    let mut names: Vec<&str> = flow
        .nodes
        .iter()
        .map(|node| node.node_type.as_str())
        .filter(|name| canonical_name(name).is_none())
        .collect();
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    names.sort_unstable();
    names.dedup();
    let rows: Vec<(String, Option<String>, Value, Value)> = sqlx::query_as(concat!(
        "SELECT node_type, ui_schema->>'description', schema_definition->'config', endpoint ",
        "FROM node_registry WHERE node_class = 'http' AND is_active AND owner_id = $1 ",
        "AND node_type = ANY($2)"
    ))
    .bind(owner)
    .bind(&names)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(name, description, schema, endpoint)| {
            let invalid = |problem: String| LoadError::Invalid {
                node_type: name.clone(),
                problem,
            };
            let endpoint: HttpEndpoint =
                serde_json::from_value(endpoint).map_err(|e| invalid(e.to_string()))?;
            let node = HttpNodeType::new(
                &name,
                description.as_deref().unwrap_or_default(),
                &endpoint,
                schema,
            )
            .map_err(|e| invalid(e.to_string()))?;
            Ok((name, Arc::new(node) as NodeType))
        })
        .collect()
}
