//! What the handlers enforce on parameters and fields, as JSON Schema keywords for the
//! document, built from the handlers' own constants so the two cannot drift apart silently.
//! Rules the schema language cannot state (a cron expression that parses, a graph whose edges
//! name its nodes, a time in the future...) are described in the operations' text and listed,
//! operation by operation, in `scripts/schemathesis.toml`.

use kai_common::credentials::services::SERVICE_TYPES;
use kai_common::documents::sources::SOURCE_TYPES;
use kai_common::jobs::ExecutionStatus;
use kai_common::vectors::search::MAX_K;
use kai_common::vectors::spec::MAX_DIMENSIONS;
use serde_json::{Value, json};

use super::text_patterns::{comma_list_with_an_item, not_blank, one_of_any_case, trimmed_name};
use crate::audit::Action;
use crate::auth::password_rules;
use crate::routes::{
    audit, credentials, dead_letters, executions, http_tools, nodes, runs, schedule_preview,
    scheduled_job_runs, vector_documents, webhook_logs, workflow_nodes, workflows,
};
use crate::webhooks::token_rotation::MAX_GRACE_SECS;

/// Where keywords go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A query parameter of an operation (by `operationId`).
    Query(&'static str, &'static str),
    /// A path parameter of an operation (`"*"`: of every operation that has it).
    Path(&'static str, &'static str),
    /// A property of a component schema.
    Field(&'static str, &'static str),
    /// A component schema itself.
    Schema(&'static str),
}

/// Keywords (a JSON object) merged into the schema at `place`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub place: Place,
    pub keywords: Value,
}

fn rule(place: Place, keywords: Value) -> Rule {
    Rule { place, keywords }
}

fn page((default, max): (i64, i64)) -> Value {
    json!({"minimum": 1, "maximum": max, "default": default})
}

fn not_negative() -> Value {
    json!({"minimum": 0, "default": 0})
}

fn range(low: impl Into<Value>, high: impl Into<Value>) -> Value {
    json!({"minimum": low.into(), "maximum": high.into()})
}

fn one_of(names: impl IntoIterator<Item = &'static str>) -> Value {
    json!({"enum": names.into_iter().collect::<Vec<_>>()})
}

/// 1 to `max` characters once trimmed, no control characters.
fn name(max: usize) -> Value {
    json!({"maxLength": max, "pattern": trimmed_name()})
}

/// A JSON object (any keys).
fn object() -> Value {
    json!({"type": "object"})
}

/// Every rule of the document.
pub fn rules() -> Vec<Rule> {
    use Place::*;
    let execution_statuses = ExecutionStatus::ALL.iter().map(|s| s.as_str());
    let service_types = SERVICE_TYPES.iter().map(|t| t.name);
    vec![
        // Listings: page sizes, offsets, filters.
        rule(
            Query("list_audit_entries", "limit"),
            page(audit::PAGE_LIMITS),
        ),
        rule(
            Query("list_audit_entries", "action"),
            one_of(Action::ALL.iter().map(|a| a.name())),
        ),
        rule(
            Query("list_dead_letters", "limit"),
            page(dead_letters::PAGE_LIMITS),
        ),
        rule(Query("list_dead_letters", "offset"), not_negative()),
        rule(
            Query("list_executions", "limit"),
            page(executions::PAGE_LIMITS),
        ),
        rule(Query("list_executions", "offset"), not_negative()),
        rule(
            Query("list_executions", "status"),
            one_of(execution_statuses.clone()),
        ),
        rule(
            Query("list_execution_summaries", "limit"),
            page(executions::SUMMARY_PAGE_LIMITS),
        ),
        rule(
            Query("list_execution_summaries", "status"),
            one_of(execution_statuses),
        ),
        rule(
            Query("list_scheduled_job_executions", "limit"),
            page(scheduled_job_runs::PAGE_LIMITS),
        ),
        rule(
            Query("list_scheduled_job_executions", "status"),
            one_of(scheduled_job_runs::STATUSES.iter().copied()),
        ),
        rule(
            Query("http_request_logs", "limit"),
            page(http_tools::PAGE_LIMITS),
        ),
        rule(Query("http_request_logs", "offset"), not_negative()),
        rule(
            Query("webhook_logs", "limit"),
            page(webhook_logs::PAGE_LIMITS),
        ),
        rule(Query("webhook_logs", "offset"), not_negative()),
        rule(Query("webhook_logs", "response_status"), range(100, 599)),
        rule(
            Query("list_credentials", "service_type"),
            one_of(service_types.clone()),
        ),
        rule(
            Query("list_document_sources", "type"),
            one_of(SOURCE_TYPES.iter().copied()),
        ),
        // Webhook ids have one shape; anything else is an unknown webhook (404).
        rule(
            Path("*", "webhook_id"),
            json!({"pattern": "^wh_[A-Za-z0-9]{8,64}$"}),
        ),
        // Runs and lookups.
        rule(
            Query("execute_workflow", "timeout"),
            json!({"minimum": 1, "maximum": runs::MAX_WAIT_SECS, "default": 30}),
        ),
        rule(
            Field("ExecutionLookup", "ids"),
            json!({"minItems": 1, "maxItems": executions::MAX_LOOKUP_IDS}),
        ),
        // Accounts.
        rule(
            Field("Credentials", "password"),
            json!({"maxLength": password_rules::MAX_LEN}),
        ),
        rule(Field("ApiKeyIn", "name"), json!({"pattern": not_blank()})),
        // Credentials.
        rule(
            Field("CredentialIn", "name"),
            name(credentials::MAX_NAME_CHARS),
        ),
        rule(
            Field("CredentialUpdate", "name"),
            name(credentials::MAX_NAME_CHARS),
        ),
        rule(
            Field("CredentialIn", "service_type"),
            one_of(service_types.clone()),
        ),
        rule(
            Field("CredentialUpdate", "service_type"),
            one_of(service_types),
        ),
        rule(Field("CredentialIn", "data"), object()),
        rule(Field("CredentialUpdate", "data"), object()),
        // Workflows and their nodes.
        rule(
            Field("WorkflowIn", "name"),
            json!({"maxLength": workflows::MAX_NAME_LEN, "pattern": not_blank()}),
        ),
        rule(
            Field("NodeConfigurationIn", "node_id"),
            json!({"maxLength": workflow_nodes::MAX_NODE_ID_LEN, "pattern": not_blank()}),
        ),
        // Custom node types.
        rule(
            Field("CustomNodeIn", "node_type"),
            json!({"pattern": format!(
                "^[A-Za-z][A-Za-z0-9_]{{0,{}}}$",
                nodes::MAX_TYPE_NAME_LEN - 1
            )}),
        ),
        rule(
            Field("CustomNodeIn", "description"),
            json!({"maxLength": nodes::MAX_DESCRIPTION_LEN}),
        ),
        rule(
            Field("CustomNodeIn", "version"),
            json!({"maxLength": nodes::MAX_VERSION_LEN}),
        ),
        // Webhooks and timers.
        rule(Field("CreateWebhook", "config"), object()),
        rule(Field("UpdateWebhook", "config"), object()),
        rule(
            Field("RotateTokenIn", "grace_period_seconds"),
            json!({"minimum": 0, "maximum": MAX_GRACE_SECS, "default": 0}),
        ),
        rule(Field("CreateScheduledJob", "timer_config"), object()),
        rule(Field("UpdateScheduledJob", "timer_config"), object()),
        rule(Field("PreviewIn", "timer_config"), object()),
        rule(
            Field("PreviewIn", "count"),
            json!({"minimum": 1, "maximum": schedule_preview::MAX_COUNT, "default": 10}),
        ),
        // The HTTP tool.
        rule(
            Field("HttpTestIn", "method"),
            json!({"pattern": one_of_any_case(http_tools::METHODS)}),
        ),
        rule(
            Field("HttpTestIn", "timeout"),
            json!({"minimum": 0, "exclusiveMinimum": true, "maximum": http_tools::MAX_TIMEOUT_SECS}),
        ),
        rule(
            Field("HttpTestIn", "headers"),
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
        ),
        rule(
            Field("InlineAuth", "type"),
            one_of(http_tools::INLINE_AUTH_TYPES.iter().copied()),
        ),
        // Vectors and documents.
        rule(Field("CollectionIn", "collection_name"), name(255)),
        rule(
            Field("CollectionIn", "embedding_dimension"),
            range(1, MAX_DIMENSIONS as u64),
        ),
        rule(Field("IndexParamsIn", "m"), range(2, 100)),
        rule(Field("IndexParamsIn", "ef_construction"), range(4, 1000)),
        rule(Field("IndexParamsIn", "ef_search"), range(1, 1000)),
        rule(Field("IndexParamsIn", "lists"), range(1, 32_768)),
        rule(Field("IndexParamsIn", "probes"), range(1, 32_768)),
        rule(
            Field("DocumentsIn", "documents"),
            json!({"minItems": 1, "maxItems": vector_documents::MAX_DOCUMENTS}),
        ),
        rule(Field("DocumentIn", "metadata"), object()),
        rule(Field("SearchIn", "k"), range(1, MAX_K as u64)),
        rule(Field("SearchIn", "filter"), object()),
        rule(
            Query("search_vector_collection", "k"),
            range(1, MAX_K as u64),
        ),
        rule(
            Query("search_vector_collection", "query"),
            json!({"pattern": not_blank()}),
        ),
        rule(
            Query("delete_vector_documents", "document_ids"),
            json!({"pattern": comma_list_with_an_item()}),
        ),
        rule(Field("SourceIn", "name"), name(255)),
        rule(
            Field("SourceIn", "source_type"),
            one_of(SOURCE_TYPES.iter().copied()),
        ),
        rule(Field("SourceIn", "source_config"), object()),
    ]
}
