//! Integration tests of the API against real PostgreSQL, NATS JetStream and Redis, with an
//! in-process worker; each test has its own database and NATS prefix.

mod agents;
mod api_keys;
mod audit;
mod auth;
mod authorization_matrix;
mod code_nodes;
mod connections;
mod credentials;
mod cursor_paging;
mod dead_letters;
mod deployment;
mod document_sources;
mod helpers;
mod http_nodes;
mod http_tools;
mod jobs;
mod openapi;
mod retrieval;
mod runs;
mod scale_from_zero;
mod schedules;
mod site;
mod startup;
mod sync_reads;
mod upstream;
mod vectors;
mod webhook_checks;
mod webhook_faults;
mod webhook_reads;
mod webhook_tokens;
mod webhooks;
mod workflow_nodes;
mod workflows;
