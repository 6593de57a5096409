//! API keys for programs: `kai_` followed by 32 random bytes (base64url), shown once at
//! creation and stored only as a SHA-256 digest. A key's 256 random bits make a slow hash
//! unnecessary: nobody can guess one, and the digest lets a request find its key through the
//! unique index in one lookup. Keys are looked up on every request, so a deleted key is refused
//! at once by every replica.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AuthUser, Via};
use crate::error::ApiError;
use crate::state::AppState;

/// What every key starts with, so scanners and people recognise one.
pub const KEY_PREFIX: &str = "kai_";
/// Characters of a key kept in the clear to tell keys apart in a list (`kai_` and 8 more).
const SHOWN_PREFIX_LEN: usize = 12;
/// base64url of 32 bytes, unpadded.
const RANDOM_PART_LEN: usize = 43;
/// How stale `last_used_at` may get before a request refreshes it: a write per request would
/// turn every read into a write.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// A freshly made key: the whole key (shown once), the prefix kept in the clear, the digest
/// stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub digest: String,
}

pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey {
        prefix: key[..SHOWN_PREFIX_LEN].to_owned(),
        digest: digest(&key),
        key,
    }
}

pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `text` has a key's shape; anything else is refused without asking the database.
pub fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == RANDOM_PART_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    user_id: Uuid,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    user_active: bool,
}

/// The user a presented key acts for, or 401 saying why not (unknown or revoked, expired, the
/// account disabled).
pub async fn authenticate(state: &Arc<AppState>, key: &str) -> Result<AuthUser, ApiError> {
    const REFUSED: &str = "the API key is invalid or has been revoked";
    if !looks_like_key(key) {
        return Err(ApiError::unauthorized(REFUSED));
    }
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.id, k.user_id, k.scopes, k.expires_at, k.last_used_at, \
                u.is_active AS user_active \
         FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = $1",
    )
    .bind(digest(key))
    .fetch_optional(&state.db)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::unauthorized(REFUSED));
    };
    let now = Utc::now();
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::unauthorized("the API key has expired"));
    }
    if !row.user_active {
        return Err(ApiError::unauthorized("the account is disabled"));
    }
    let stale = row
        .last_used_at
        .is_none_or(|at| (now - at).num_seconds() >= LAST_USED_RESOLUTION_SECS);
    if stale {
        let db = state.db.clone();
        tokio::spawn(async move {
            let updated = sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
                .bind(row.id)
                .execute(&db)
                .await;
            if let Err(e) = updated {
                tracing::warn!(error = %e, "recording an API key's last use failed");
            }
        });
    }
    Ok(AuthUser {
        id: row.user_id,
        via: Via::ApiKey {
            id: row.id,
            write: row.scopes.iter().any(|s| s == "write"),
        },
        client_ip: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_shape_and_differ() {
        let a = generate();
        let b = generate();
        assert!(looks_like_key(&a.key), "{}", a.key);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), SHOWN_PREFIX_LEN);
        assert_eq!(a.digest, digest(&a.key));
        assert!(!a.digest.contains(&a.key[KEY_PREFIX.len()..]));
    }

    #[test]
    fn other_shapes_are_not_keys() {
        let key = generate().key;
        assert!(!looks_like_key(&key[..key.len() - 1]));
        assert!(!looks_like_key(&format!("{key}A")));
        assert!(!looks_like_key(&key.replacen("kai_", "kai-", 1)));
        assert!(looks_like_key(&format!("kai_{}", "a".repeat(43))));
        assert!(!looks_like_key(&format!("kai_{}+", "a".repeat(42))));
        assert!(!looks_like_key(&format!("kai_{}é", "a".repeat(41))));
        assert!(!looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(!looks_like_key(""));
    }
}
