//! `POST /api/v1/webhooks/{webhook_id}/rotate-token`: a new security token, with the old one
//! still accepted for a grace period the caller chooses (default 0: refused at once), so callers
//! can switch without a gap.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::audit::Actor;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::endpoint;
use crate::webhooks::token_rotation::{self, MAX_GRACE_SECS};

pub struct WebhookTokensApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RotateTokenIn {
    /// Seconds the previous token stays valid (0 to 604800, default 0).
    pub grace_period_seconds: Option<u64>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RotatedToken {
    pub webhook_id: String,
    /// The new token: send it as `Authorization: Bearer <security_token>`.
    pub security_token: String,
    /// Until when the previous token is still accepted (none with no grace period).
    pub previous_token_valid_until: Option<DateTime<Utc>>,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhookTokensApi {
    /// Replace a webhook's token; the old one can stay valid for a grace period. Other API
    /// replicas see the change within 2 seconds (their endpoint cache).
    #[oai(
        path = "/api/v1/webhooks/:webhook_id/rotate-token",
        method = "post",
        operation_id = "rotate_webhook_token"
    )]
    async fn rotate(
        &self,
        auth: UserAuth,
        webhook_id: Path<String>,
        body: Json<RotateTokenIn>,
    ) -> Result<Json<RotatedToken>, ApiError> {
        let grace = body.0.grace_period_seconds.unwrap_or(0);
        if grace > MAX_GRACE_SECS {
            return Err(ApiError::unprocessable(format!(
                "grace_period_seconds: must be between 0 and {MAX_GRACE_SECS}"
            )));
        }
        if !endpoint::is_well_formed(&webhook_id.0) {
            return Err(ApiError::not_found("webhook"));
        }
        let rotated = token_rotation::rotate(
            &self.state.db,
            std::slice::from_ref(&webhook_id.0),
            Some(auth.0.id),
            grace,
            &Actor::of(&auth.0),
        )
        .await?;
        let rotated = rotated
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("webhook"))?;
        self.state
            .forget_endpoints(std::slice::from_ref(&webhook_id.0));
        Ok(Json(RotatedToken {
            webhook_id: rotated.webhook_id,
            security_token: rotated.token,
            previous_token_valid_until: rotated.previous_valid_until,
        }))
    }
}
