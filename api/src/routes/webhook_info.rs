//! `GET /api/webhooks/{webhook_id}/info`: what a caller needs to know to call a webhook, with no
//! authentication and nothing secret (no token, no workflow or owner).

use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::endpoint;

pub struct WebhookInfoApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct WebhookInfo {
    pub webhook_id: String,
    /// An inactive webhook answers 410.
    pub is_active: bool,
    /// Absolute URL to call.
    pub webhook_url: String,
    /// Methods accepted; GET and DELETE send the payload as the query string.
    pub methods: Vec<String>,
    pub content_type: String,
    /// Whether calls need credentials.
    pub authentication_required: bool,
    /// `bearer` (`Authorization: Bearer <token>`), `hmac` (Standard Webhooks signature
    /// headers) or `none`.
    pub auth_mode: String,
    /// `sync` (the caller waits for the result) or `async` (202 at once).
    pub response_mode: String,
    /// Calls per minute accepted (0: unlimited); beyond it 429 with `Retry-After`.
    pub rate_limit_per_minute: u32,
    /// Event types accepted (empty: all).
    pub allowed_event_types: Vec<String>,
    /// Largest body accepted, in KiB.
    pub max_payload_size_kib: u64,
    /// Seconds a caller that waits for the result waits at most before getting 202.
    pub webhook_timeout_secs: u64,
    /// `Prefer: respond-async` answers 202 as soon as the call is stored.
    pub supports_respond_async: bool,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhookInfoApi {
    /// Public facts about a webhook: how to call it, never its token.
    #[oai(
        path = "/api/webhooks/:webhook_id/info",
        method = "get",
        operation_id = "webhook_info"
    )]
    async fn info(&self, webhook_id: Path<String>) -> Result<Json<WebhookInfo>, ApiError> {
        let found = endpoint::cached(&self.state, &webhook_id.0).await?;
        Ok(Json(WebhookInfo {
            webhook_url: format!(
                "{}/api/webhooks/{}",
                self.state.public_url, found.webhook_id
            ),
            webhook_id: found.webhook_id.clone(),
            is_active: found.active,
            methods: found.config.allowed_methods.clone(),
            content_type: "application/json".to_owned(),
            authentication_required: found.config.authentication_required,
            auth_mode: enum_name(&found.config.auth_mode),
            response_mode: enum_name(&found.config.response_mode),
            rate_limit_per_minute: found.config.rate_limit_per_minute,
            allowed_event_types: found.config.allowed_event_types.clone(),
            max_payload_size_kib: found.config.max_payload_size,
            webhook_timeout_secs: found.config.webhook_timeout,
            supports_respond_async: true,
        }))
    }
}

/// The configuration's own spelling of an enum value.
fn enum_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
