//! Checking a credential against its service, as `POST /api/v1/credentials/{id}/test` does: an
//! OpenAI-compatible `GET /models`, a Tavily search, a Cohere rerank of one document, or an HTTP
//! `HEAD` of a URL the caller names for the generic types. Every URL goes through the SSRF
//! guard; the verdict never quotes the secret.

use std::time::Duration;

use kai_common::credentials::Credential;
use kai_common::outbound::auth::Auth;
use kai_common::outbound::call::{self, CallError, HttpCall, Method, Outbound, Oversize};
use kai_common::outbound::redact::Redactor;
use serde::{Deserialize, Serialize};
use serde_json::json;

const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Enough of an answer to judge it.
const PROBE_BODY_BYTES: usize = 64 * 1024;
const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const TAVILY_BASE_URL: &str = "https://api.tavily.com";
const COHERE_BASE_URL: &str = "https://api.cohere.com";

/// What the service said about the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The service accepted it.
    Valid,
    /// The service refused it (401 or 403).
    Invalid,
    /// The service answered something else, or could not be reached: nothing is known.
    Unknown,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub verdict: Verdict,
    /// What was called and what it answered, without secrets.
    pub message: String,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
}

/// Why a check could not be made at all (the caller's input is at fault).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Unusable(String),
}

/// The request that checks `credential`; `url` is the address a generic credential is tried on.
fn request_for(credential: &Credential, url: Option<&str>) -> Result<HttpCall, ProbeError> {
    let base = |default: &str| {
        credential
            .field("base_url")
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    };
    let parse = |text: &str, field: &str| {
        url::Url::parse(text)
            .map_err(|e| ProbeError::Unusable(format!("{field}: not a valid URL: {e}")))
    };
    let auth = Auth::from_credential("", credential).map_err(ProbeError::Unusable)?;
    let mut call = HttpCall {
        method: Method::GET,
        url: parse(
            &format!("{}/models", base(OPENAI_BASE_URL)),
            "data.base_url",
        )?,
        headers: Vec::new(),
        query: Vec::new(),
        body: None,
        content_type: None,
        auth,
        timeout: PROBE_TIMEOUT,
        verify_tls: true,
    };
    match credential.kind.name {
        "openai" | "openai_compatible" => {
            if credential.field("api_key").is_none() {
                call.auth = Auth::None;
            }
            if let Some(organization) = credential.field("organization") {
                call.headers
                    .push(("OpenAI-Organization".to_owned(), organization.to_owned()));
            }
        }
        "tavily" => {
            call.method = Method::POST;
            call.url = parse(
                &format!("{}/search", base(TAVILY_BASE_URL)),
                "data.base_url",
            )?;
            call.content_type = Some("application/json".to_owned());
            call.body = Some(
                json!({"query": "credential check", "max_results": 1})
                    .to_string()
                    .into_bytes(),
            );
        }
        "cohere" => {
            call.method = Method::POST;
            call.url = parse(
                &format!("{}/v1/rerank", base(COHERE_BASE_URL)),
                "data.base_url",
            )?;
            call.content_type = Some("application/json".to_owned());
            call.body = Some(
                json!({"model": "rerank-english-v3.0", "query": "credential check",
                       "documents": ["credential check"], "top_n": 1})
                .to_string()
                .into_bytes(),
            );
        }
        kind => {
            let url = url.ok_or_else(|| {
                ProbeError::Unusable(format!(
                    "url: required to test a `{kind}` credential (it is tried with a HEAD request)"
                ))
            })?;
            call.method = Method::HEAD;
            call.url = parse(url, "url")?;
        }
    }
    Ok(call)
}

/// Checks `credential` against its service.
pub async fn probe(
    outbound: &Outbound,
    credential: &Credential,
    url: Option<&str>,
) -> Result<Probe, ProbeError> {
    let call = request_for(credential, url)?;
    let redactor = Redactor::new(credential.secret_values());
    let target = format!("{} {}", call.method, redactor.url(&call.url));
    let started = std::time::Instant::now();
    let answer = call::send(outbound, &call, PROBE_BODY_BYTES, Oversize::Truncate).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (verdict, message, status_code) = match answer {
        Ok(answer) => {
            let status = answer.status;
            let (verdict, meaning) = match status {
                200..=299 => (Verdict::Valid, "accepted the credential"),
                401 | 403 => (Verdict::Invalid, "refused the credential"),
                _ => (
                    Verdict::Unknown,
                    "gave an answer that says nothing about it",
                ),
            };
            (
                verdict,
                format!("{target} answered {status}: the service {meaning}"),
                Some(status),
            )
        }
        Err(error @ (CallError::Guard(_) | CallError::Refused(_) | CallError::Invalid(_))) => {
            return Err(ProbeError::Unusable(redactor.text(&error.to_string())));
        }
        Err(error) => (
            Verdict::Unknown,
            format!("{target} failed: {}", redactor.text(&error.to_string())),
            None,
        ),
    };
    Ok(Probe {
        verdict,
        message,
        status_code,
        duration_ms,
    })
}
