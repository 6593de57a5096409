//! One outbound HTTP call as HttpRequest nodes and the HTTP test API make it: the request built
//! from its parts and its authentication, sent through the guarded client (TLS verified unless
//! the author turned it off), the answer read up to a size limit.

use std::time::{Duration, Instant};

pub use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::auth::Auth;
use super::{GuardError, GuardedClient, OutboundConfig, Refused, refusal_of};

/// The guarded clients of a process and the response size limit.
#[derive(Debug, Clone)]
pub struct Outbound {
    verified: GuardedClient,
    /// For calls whose author set `verify_ssl: false`: the guard still applies.
    unverified: GuardedClient,
    pub max_response_bytes: usize,
}

impl Outbound {
    pub fn new(config: &OutboundConfig, user_agent: &str) -> reqwest::Result<Self> {
        crate::tls::install_crypto_provider();
        let builder = || {
            config.http_ca_file.0.iter().fold(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .user_agent(user_agent),
                |builder, certificate| builder.add_root_certificate(certificate.clone()),
            )
        };
        let allowed = config.http_allowed_hosts.clone();
        let overrides = config.resolve_overrides.clone();
        Ok(Self {
            verified: GuardedClient::with_overrides(allowed.clone(), overrides.clone(), builder())?,
            unverified: GuardedClient::with_overrides(
                allowed,
                overrides,
                builder().tls_danger_accept_invalid_certs(true),
            )?,
            max_response_bytes: config.http_max_response_bytes,
        })
    }

    /// The client for a call that does (`true`) or does not verify TLS certificates.
    pub fn client(&self, verify_tls: bool) -> &GuardedClient {
        if verify_tls {
            &self.verified
        } else {
            &self.unverified
        }
    }
}

impl Default for Outbound {
    /// Nothing internal allowed.
    fn default() -> Self {
        Self::new(&OutboundConfig::default(), "kai-fusion").expect("the default HTTP clients build")
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub auth: Auth,
    pub timeout: Duration,
    pub verify_tls: bool,
}

/// What to do with an answer larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Fail the call (a node must not carry on with half an answer).
    Fail,
    /// Keep the first part and say so (the HTTP test API shows it).
    Truncate,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was cut at the limit.
    pub truncated: bool,
    /// The URL that answered (after redirects).
    pub url: Url,
    pub duration: Duration,
    pub request_bytes: usize,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a call produced no answer. Messages never quote the URL (it may carry credentials).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Guard(#[from] GuardError),
    #[error("{0}")]
    Refused(Refused),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than {0} bytes (KAI_HTTP_MAX_RESPONSE_BYTES)")]
    TooLarge(usize),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Network(String),
}

impl CallError {
    /// Whether the SSRF guard stopped it (never retried).
    pub fn is_refusal(&self) -> bool {
        matches!(self, CallError::Guard(_) | CallError::Refused(_))
    }

    fn of(error: reqwest::Error, timeout: Duration) -> Self {
        if let Some(refused) = refusal_of(&error) {
            return CallError::Refused(refused.clone());
        }
        if error.is_timeout() {
            return CallError::Timeout(timeout);
        }
        if error.is_builder() {
            return CallError::Invalid(error.without_url().to_string());
        }
        CallError::Network(describe(&error.without_url()))
    }
}

/// An error with its causes, which say what actually went wrong (refused, reset, TLS...).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Sends `call`, reading at most `limit` bytes of the answer.
pub async fn send(
    outbound: &Outbound,
    call: &HttpCall,
    limit: usize,
    oversize: Oversize,
) -> Result<HttpAnswer, CallError> {
    let client = outbound.client(call.verify_tls);
    client.check_url(&call.url)?;
    let mut headers = HeaderMap::new();
    for (name, value) in &call.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| CallError::Invalid(format!("header `{name}` is not a valid name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| CallError::Invalid(format!("header `{name}` has an invalid value")))?;
        headers.append(name, value);
    }
    if let Some(content_type) = &call.content_type
        && call.body.is_some()
        && !headers.contains_key(CONTENT_TYPE)
    {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| CallError::Invalid("content_type is not a valid media type".into()))?;
        headers.insert(CONTENT_TYPE, value);
    }
    let mut url = call.url.clone();
    if !call.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&call.query);
    }
    call.auth.apply_to_url(&mut url);
    let mut request = client
        .client()
        .request(call.method.clone(), url)
        .headers(headers)
        .timeout(call.timeout);
    let request_bytes = call.body.as_ref().map_or(0, Vec::len);
    if let Some(body) = &call.body {
        request = request.body(body.clone());
    }
    request = call.auth.apply(request);

    let started = Instant::now();
    let deadline = started + call.timeout;
    let mut response = request
        .send()
        .await
        .map_err(|e| CallError::of(e, call.timeout))?;
    let status = response.status().as_u16();
    let url = response.url().clone();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        // The client's timeout covers the whole exchange; this bounds an endless body too.
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .map_err(|_| CallError::Timeout(call.timeout))?
            .map_err(|e| CallError::of(e, call.timeout))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > limit {
            match oversize {
                Oversize::Fail => return Err(CallError::TooLarge(limit)),
                Oversize::Truncate => {
                    body.extend_from_slice(&chunk[..limit - body.len()]);
                    truncated = true;
                    break;
                }
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpAnswer {
        status,
        headers,
        body,
        truncated,
        url,
        duration: started.elapsed(),
        request_bytes,
    })
}
