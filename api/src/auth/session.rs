//! Access tokens checked against their user: a valid signature is not enough; the account must
//! still exist, be active, and be in the token generation the token was issued in. Logout and a
//! password change move the generation on, which revokes every earlier token on every replica at
//! once (the check reads the user's row, one primary-key lookup per request).

use std::sync::Arc;

use sqlx::PgExecutor;
use uuid::Uuid;

use super::{AuthUser, Via};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn authenticate(state: &Arc<AppState>, token: &str) -> Result<AuthUser, ApiError> {
    let claims = state
        .tokens
        .verify(token)
        .map_err(|reason| ApiError::unauthorized(reason.message()))?;
    let user: Option<(i32, bool)> =
        sqlx::query_as("SELECT token_generation, is_active FROM users WHERE id = $1")
            .bind(claims.sub)
            .fetch_optional(&state.db)
            .await?;
    match user {
        Some((generation, true)) if generation == claims.generation => Ok(AuthUser {
            id: claims.sub,
            via: Via::Session,
            client_ip: None,
        }),
        Some((_, true)) => Err(ApiError::unauthorized(
            "the access token has been revoked (logout or password change); log in again",
        )),
        Some((_, false)) => Err(ApiError::unauthorized("the account is disabled")),
        None => Err(ApiError::unauthorized("the account no longer exists")),
    }
}

/// Revokes every access token `user_id` holds; returns the new generation for the token the
/// caller may issue next.
pub async fn revoke_all<'e>(db: impl PgExecutor<'e>, user_id: Uuid) -> Result<i32, ApiError> {
    let (generation,): (i32,) = sqlx::query_as(
        "UPDATE users SET token_generation = token_generation + 1, updated_at = now() \
         WHERE id = $1 RETURNING token_generation",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(generation)
}
