//! `POST /api/v1/credentials/{id}/test`: checks a credential against its service (see
//! `credential_probe`). A definite verdict (valid or refused) is cached in Redis for 10 minutes,
//! keyed by the credential's last change, so a changed credential is checked afresh.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiTags;
use crate::audit::{self, Action, Entry};
use crate::auth::UserAuth;
use crate::credential_probe::{self, Probe, ProbeError, Verdict};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a verdict is kept (the seed's rule).
const VERDICT_TTL: Duration = Duration::from_secs(600);
const CACHE_TIMEOUT: Duration = Duration::from_millis(250);
const MAX_URL_CHARS: usize = 2048;

pub struct CredentialTestsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CredentialTestIn {
    /// For `bearer`, `basic_auth`, `header_auth` and `api_key` credentials: the URL they are
    /// tried on with a `HEAD` request.
    pub url: Option<String>,
    /// Check again even when a verdict is cached.
    #[oai(default)]
    pub refresh: bool,
}

#[derive(Debug, Object, Serialize, Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct CredentialTestOut {
    pub credential_id: Uuid,
    /// `valid`, `invalid` (the service refused it) or `unknown` (unreachable, or an answer that
    /// says nothing about the credential).
    pub verdict: String,
    pub valid: bool,
    /// What was called and what it answered, without the secret.
    pub message: String,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub checked_at: DateTime<Utc>,
    /// The verdict came from the cache (checked within the last 10 minutes).
    pub cached: bool,
}

#[OpenApi(tag = "ApiTags::Credentials")]
impl CredentialTestsApi {
    /// Check a credential against its service: OpenAI-compatible `GET /models`, a Tavily search,
    /// a Cohere rerank, or a `HEAD` of `url` for the generic types. 422 when it cannot be
    /// checked (no `url` for a generic type, an address the SSRF guard refuses).
    #[oai(
        path = "/api/v1/credentials/:id/test",
        method = "post",
        operation_id = "test_credential"
    )]
    async fn test(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        body: Json<CredentialTestIn>,
    ) -> Result<Json<CredentialTestOut>, ApiError> {
        let owner = auth.0.id;
        if body
            .url
            .as_ref()
            .is_some_and(|u| u.chars().count() > MAX_URL_CHARS)
        {
            return Err(ApiError::unprocessable(format!(
                "url: at most {MAX_URL_CHARS} characters"
            )));
        }
        let changed: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT updated_at FROM user_credentials WHERE id = $1 AND user_id = $2",
        )
        .bind(id.0)
        .bind(owner)
        .fetch_optional(&self.state.db)
        .await?;
        let Some((changed,)) = changed else {
            return Err(ApiError::not_found("credential"));
        };
        // The URL is hashed: it may carry a secret, and a cache key is no place for one.
        let url_hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                body.url.as_deref().unwrap_or_default(),
            ))
        };
        let key = format!(
            "{}:credential-test:{}:{}:{url_hash}",
            self.state.names.prefix(),
            id.0,
            changed.timestamp_micros(),
        );
        if !body.refresh
            && let Some(text) =
                kai_common::redis::cached(&self.state.redis, &key, CACHE_TIMEOUT).await
            && let Ok(mut cached) = serde_json::from_str::<CredentialTestOut>(&text)
        {
            cached.cached = true;
            return Ok(Json(cached));
        }
        let credential = self
            .state
            .credentials
            .open(owner, &id.0.to_string())
            .await?;
        let probe = credential_probe::probe(&self.state.outbound, &credential, body.url.as_deref())
            .await
            .map_err(|ProbeError::Unusable(why)| ApiError::unprocessable(why))?;
        let answer = answer(id.0, probe);
        let entry = Entry::by(&auth.0, Action::CredentialTested)
            .target("credential", id.0)
            .details(serde_json::json!({"verdict": answer.verdict}));
        audit::record(&self.state.db, entry).await;
        if answer.verdict != "unknown" {
            let text = serde_json::to_string(&answer).map_err(ApiError::internal)?;
            kai_common::redis::cache(&self.state.redis, &key, &text, VERDICT_TTL, CACHE_TIMEOUT)
                .await;
        }
        Ok(Json(answer))
    }
}

fn answer(credential_id: Uuid, probe: Probe) -> CredentialTestOut {
    let verdict = match probe.verdict {
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    };
    CredentialTestOut {
        credential_id,
        verdict: verdict.to_owned(),
        valid: probe.verdict == Verdict::Valid,
        message: probe.message,
        status_code: probe.status_code,
        duration_ms: probe.duration_ms,
        checked_at: Utc::now(),
        cached: false,
    }
}
