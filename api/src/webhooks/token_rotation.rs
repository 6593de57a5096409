//! Replacing webhook tokens: one webhook's (`POST .../rotate-token`) or, in bulk, every webhook
//! of the deployment or of one owner (`kai-api rotate-webhook-tokens`), the previous token kept
//! valid for a grace period so callers can switch without a gap. New tokens are read where they
//! always are (`GET /api/v1/webhooks`); the command prints none.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::registry;
use crate::audit::Actor;

/// Longest grace period: a week.
pub const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;

/// One webhook's new token and until when its previous one is still accepted.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub webhook_id: String,
    pub token: String,
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// Replaces the tokens of `webhook_ids` owned by `owner` (any owner when `None`), each with a
/// fresh random one; with `grace_secs` > 0 the previous token stays valid that long. Answers the
/// webhooks rotated (those not found, or another owner's, are left out).
pub async fn rotate(
    db: &PgPool,
    webhook_ids: &[String],
    owner: Option<Uuid>,
    grace_secs: u64,
    actor: &Actor,
) -> Result<Vec<Rotated>, sqlx::Error> {
    let tokens: Vec<String> = webhook_ids
        .iter()
        .map(|_| registry::new_secret_token())
        .collect();
    // Each rotation's audit entry is written by the same statement: none without the other.
    let rows: Vec<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "WITH rotated AS ( \
            UPDATE webhook_endpoints e SET \
                previous_token = CASE WHEN $3 > 0 THEN e.secret_token END, \
                previous_token_expires_at = CASE WHEN $3 > 0 \
                    THEN now() + make_interval(secs => $3) END, \
                secret_token = fresh.token \
             FROM workflows w, unnest($1::text[], $4::text[]) AS fresh(webhook_id, token) \
             WHERE w.id = e.workflow_id AND e.webhook_id = fresh.webhook_id \
               AND ($2::uuid IS NULL OR w.user_id = $2) \
             RETURNING e.webhook_id, e.secret_token, e.previous_token_expires_at, w.user_id), \
         audited AS ( \
            INSERT INTO audit_log (user_id, actor_type, actor_api_key_id, action, target_type, \
                target_id, client_ip, details) \
            SELECT user_id, $5, $6, 'webhook_token_rotated', 'webhook', webhook_id, $7::inet, \
                jsonb_build_object('grace_seconds', $3::bigint) FROM rotated) \
         SELECT webhook_id, secret_token, previous_token_expires_at FROM rotated",
    )
    .bind(webhook_ids)
    .bind(owner)
    .bind(grace_secs as f64)
    .bind(&tokens)
    .bind(actor.kind())
    .bind(actor.api_key_id())
    .bind(actor.client_ip_text())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(webhook_id, token, previous_valid_until)| Rotated {
            webhook_id,
            token,
            previous_valid_until,
        })
        .collect())
}

/// Rotates every webhook (of `owner` when given), `batch` per transaction in webhook id order,
/// calling `progress(done)` after each batch; answers how many were rotated. A webhook created
/// while it runs may be passed over: run again to include it.
pub async fn rotate_all(
    db: &PgPool,
    owner: Option<Uuid>,
    grace_secs: u64,
    batch: i64,
    mut progress: impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    let mut after = String::new();
    let mut done = 0u64;
    loop {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT e.webhook_id FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
             WHERE e.webhook_id > $1 AND ($2::uuid IS NULL OR w.user_id = $2) \
             ORDER BY e.webhook_id LIMIT $3",
        )
        .bind(&after)
        .bind(owner)
        .bind(batch)
        .fetch_all(db)
        .await?;
        let Some(last) = ids.last() else {
            return Ok(done);
        };
        after = last.clone();
        done += rotate(db, &ids, owner, grace_secs, &Actor::operator())
            .await?
            .len() as u64;
        progress(done);
    }
}
