//! Finding a node of the caller's workflow that must be of one type, as the endpoints that
//! attach something to a node (a webhook endpoint, a scheduled job) need.

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

/// The saved settings of `node_id` in the current version of the caller's workflow: 404 when
/// the workflow is not the caller's, 422 naming the node when it is missing or not a
/// `node_type` (`described` says what was expected, e.g. "a webhook node").
pub async fn node_of_type(
    db: &PgPool,
    user_id: Uuid,
    workflow_id: Uuid,
    node_id: &str,
    node_type: &str,
    described: &str,
) -> Result<Value, ApiError> {
    let node: Option<(Option<String>, Option<Value>)> = sqlx::query_as(
        "SELECT n.node_type, n.configuration FROM workflows w \
         LEFT JOIN node_configurations n ON n.workflow_id = w.id AND n.node_id = $3 \
         WHERE w.id = $1 AND w.user_id = $2",
    )
    .bind(workflow_id)
    .bind(user_id)
    .bind(node_id)
    .fetch_optional(db)
    .await?;
    let Some((found_type, data)) = node else {
        return Err(ApiError::not_found("workflow"));
    };
    match found_type.as_deref() {
        Some(found) if found == node_type => Ok(data.unwrap_or_default()),
        None => Err(ApiError::invalid_node(
            format!("the workflow has no node `{node_id}`"),
            Some(node_id),
        )),
        Some(other) => Err(ApiError::invalid_node(
            format!("node `{node_id}` is a {other}, not {described}"),
            Some(node_id),
        )),
    }
}
