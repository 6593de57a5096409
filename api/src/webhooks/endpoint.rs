//! The facts ingress needs about a webhook, looked up once and cached briefly.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::config::WebhookConfig;
use super::signature;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub webhook_id: String,
    pub workflow_id: Uuid,
    pub node_id: String,
    pub user_id: Uuid,
    pub workflow_version: i32,
    pub secret_token: String,
    /// The token before the last rotation and until when it is still accepted.
    pub previous_token: Option<(String, DateTime<Utc>)>,
    pub config: WebhookConfig,
    /// `config.allowed_ips`, parsed once.
    pub networks: Vec<IpNet>,
    /// Both the endpoint and its workflow are active.
    pub active: bool,
}

impl Endpoint {
    /// Whether `token` is the current token, or the previous one within its grace period.
    /// Both comparisons are made every time, in constant time.
    pub fn accepts_token(&self, token: &str, now: DateTime<Utc>) -> bool {
        let current = token.as_bytes().ct_eq(self.secret_token.as_bytes());
        let previous = match &self.previous_token {
            Some((previous, until)) => {
                previous.as_bytes().ct_eq(token.as_bytes())
                    & subtle::Choice::from(u8::from(now < *until))
            }
            None => subtle::Choice::from(0),
        };
        bool::from(current | previous)
    }

    /// The HMAC keys a signature may be made with at `now`: the current token's, and the
    /// previous one's within its grace period.
    pub fn signing_keys(&self, now: DateTime<Utc>) -> Vec<Vec<u8>> {
        let previous = self
            .previous_token
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(token, _)| token.as_str());
        std::iter::once(self.secret_token.as_str())
            .chain(previous)
            .filter_map(signature::key_of)
            .collect()
    }
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    webhook_id: String,
    workflow_id: Uuid,
    node_id: String,
    user_id: Uuid,
    current_version: i32,
    secret_token: String,
    previous_token: Option<String>,
    previous_token_expires_at: Option<DateTime<Utc>>,
    config: serde_json::Value,
    endpoint_active: bool,
    workflow_active: bool,
}

/// Whether `id` has the shape of a webhook id (`wh_` and at least 8 letters or digits); other
/// ids are unknown without asking the database.
pub fn is_well_formed(id: &str) -> bool {
    id.strip_prefix("wh_").is_some_and(|rest| {
        rest.len() >= 8 && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The endpoint from the short-lived cache, or loaded (and cached); 404 when there is none.
pub async fn cached(state: &AppState, webhook_id: &str) -> Result<Arc<Endpoint>, ApiError> {
    if !is_well_formed(webhook_id) {
        return Err(ApiError::not_found("webhook"));
    }
    if let Some(found) = state.endpoints.get(webhook_id) {
        return Ok(found);
    }
    let found = load(&state.db, webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    state.endpoints.insert(webhook_id.to_owned(), found.clone());
    Ok(found)
}

pub async fn load(db: &PgPool, webhook_id: &str) -> Result<Option<Arc<Endpoint>>, sqlx::Error> {
    let row: Option<EndpointRow> = sqlx::query_as(
        "SELECT e.webhook_id, e.workflow_id, e.node_id, w.user_id, w.current_version, \
                e.secret_token, e.previous_token, e.previous_token_expires_at, e.config, \
                e.is_active AS endpoint_active, \
                w.is_active AS workflow_active \
         FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
         WHERE e.webhook_id = $1",
    )
    .bind(webhook_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| {
        // The stored config was validated when written; a key missing from an older row takes
        // its default.
        let config: WebhookConfig = serde_json::from_value(row.config).unwrap_or_default();
        Arc::new(Endpoint {
            webhook_id: row.webhook_id,
            workflow_id: row.workflow_id,
            node_id: row.node_id,
            user_id: row.user_id,
            workflow_version: row.current_version,
            secret_token: row.secret_token,
            previous_token: row.previous_token.zip(row.previous_token_expires_at),
            networks: config.networks(),
            config,
            active: row.endpoint_active && row.workflow_active,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_token_is_accepted_only_within_its_grace_period() {
        let now = Utc::now();
        let mut endpoint = Endpoint {
            webhook_id: "wh_0123456789".into(),
            workflow_id: Uuid::nil(),
            node_id: "hook".into(),
            user_id: Uuid::nil(),
            workflow_version: 1,
            secret_token: "wht_new".into(),
            previous_token: Some(("wht_old".into(), now + chrono::Duration::seconds(60))),
            config: WebhookConfig::default(),
            networks: Vec::new(),
            active: true,
        };
        assert!(endpoint.accepts_token("wht_new", now));
        assert!(endpoint.accepts_token("wht_old", now));
        assert!(!endpoint.accepts_token("wht_old", now + chrono::Duration::seconds(61)));
        assert!(!endpoint.accepts_token("wht_other", now));
        endpoint.previous_token = None;
        assert!(!endpoint.accepts_token("wht_old", now));
    }

    #[test]
    fn recognises_webhook_ids() {
        assert!(is_well_formed("wh_0123456789abcdef01234567"));
        assert!(is_well_formed("wh_abcdEFGH"));
        assert!(!is_well_formed("wh_short"));
        assert!(!is_well_formed("xx_0123456789"));
        assert!(!is_well_formed("wh_0123-456789"));
    }
}
