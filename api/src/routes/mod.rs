//! The HTTP API: one file per resource, assembled into one OpenAPI service.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod credential_tests;
pub mod credentials;
pub mod cursor;
pub mod dead_letters;
pub mod document_sources;
pub mod execution_cancel;
pub mod execution_events;
pub mod executions;
pub mod health;
pub mod http_tools;
pub mod ingress;
pub mod ingress_answer;
pub mod nodes;
pub mod paging;
pub mod runs;
pub mod schedule_preview;
pub mod scheduled_job_runs;
pub mod scheduled_jobs;
pub mod sessions;
pub mod vector_collections;
pub mod vector_documents;
pub mod webhook_admin;
pub mod webhook_info;
pub mod webhook_logs;
pub mod webhook_tokens;
pub mod webhooks;
pub mod workflow_nodes;
pub mod workflows;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Accounts, access tokens and API keys.
    Auth,
    /// Workflow graphs and their versions.
    Workflows,
    /// Runs of workflows.
    Executions,
    /// Secrets for the services workflows call, stored encrypted.
    Credentials,
    /// Trying HTTP requests and reading the calls workflows made.
    Tools,
    /// The node types workflows are built from.
    Nodes,
    /// Webhook endpoints and webhook ingress.
    Webhooks,
    /// Scheduled jobs: timers that start workflows.
    Schedules,
    /// Vector collections: documents, embeddings and similarity search.
    Vectors,
    /// Liveness, readiness and metrics.
    Health,
}

pub type Apis = (
    (
        auth::AuthApi,
        sessions::SessionsApi,
        api_keys::ApiKeysApi,
        audit::AuditApi,
    ),
    (
        credentials::CredentialsApi,
        credential_tests::CredentialTestsApi,
        http_tools::HttpToolsApi,
    ),
    workflows::WorkflowsApi,
    workflow_nodes::WorkflowNodesApi,
    (
        executions::ExecutionsApi,
        dead_letters::DeadLettersApi,
        execution_cancel::ExecutionCancelApi,
    ),
    (execution_events::ExecutionEventsApi, runs::RunsApi),
    nodes::NodesApi,
    webhook_admin::WebhookAdminApi,
    webhook_logs::WebhookLogsApi,
    webhook_info::WebhookInfoApi,
    webhook_tokens::WebhookTokensApi,
    // Nested: poem-openapi implements its trait for tuples of up to 16.
    (
        schedule_preview::SchedulePreviewApi,
        scheduled_jobs::ScheduledJobsApi,
        scheduled_job_runs::ScheduledJobRunsApi,
    ),
    (
        vector_collections::VectorCollectionsApi,
        vector_documents::VectorDocumentsApi,
        document_sources::DocumentSourcesApi,
    ),
    ingress::IngressApi,
    health::HealthApi,
);

pub fn service(state: Arc<AppState>) -> OpenApiService<Apis, ()> {
    let public_url = state.public_url.clone();
    OpenApiService::new(
        (
            (
                auth::AuthApi {
                    state: state.clone(),
                },
                sessions::SessionsApi {
                    state: state.clone(),
                },
                api_keys::ApiKeysApi {
                    state: state.clone(),
                },
                audit::AuditApi {
                    state: state.clone(),
                },
            ),
            (
                credentials::CredentialsApi {
                    state: state.clone(),
                },
                credential_tests::CredentialTestsApi {
                    state: state.clone(),
                },
                http_tools::HttpToolsApi {
                    state: state.clone(),
                },
            ),
            workflows::WorkflowsApi {
                state: state.clone(),
            },
            workflow_nodes::WorkflowNodesApi {
                state: state.clone(),
            },
            (
                executions::ExecutionsApi {
                    state: state.clone(),
                },
                dead_letters::DeadLettersApi {
                    state: state.clone(),
                },
                execution_cancel::ExecutionCancelApi {
                    state: state.clone(),
                },
            ),
            (
                execution_events::ExecutionEventsApi {
                    state: state.clone(),
                },
                runs::RunsApi {
                    state: state.clone(),
                },
            ),
            nodes::NodesApi {
                state: state.clone(),
            },
            webhook_admin::WebhookAdminApi {
                state: state.clone(),
            },
            webhook_logs::WebhookLogsApi {
                state: state.clone(),
            },
            webhook_info::WebhookInfoApi {
                state: state.clone(),
            },
            webhook_tokens::WebhookTokensApi {
                state: state.clone(),
            },
            (
                schedule_preview::SchedulePreviewApi,
                scheduled_jobs::ScheduledJobsApi {
                    state: state.clone(),
                },
                scheduled_job_runs::ScheduledJobRunsApi {
                    state: state.clone(),
                },
            ),
            (
                vector_collections::VectorCollectionsApi {
                    state: state.clone(),
                },
                vector_documents::VectorDocumentsApi {
                    state: state.clone(),
                },
                document_sources::DocumentSourcesApi {
                    state: state.clone(),
                },
            ),
            ingress::IngressApi {
                state: state.clone(),
            },
            health::HealthApi { state },
        ),
        "KAI-Fusion API",
        env!("CARGO_PKG_VERSION"),
    )
    .server(public_url)
}
