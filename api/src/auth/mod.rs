//! Users' authentication: password hashing, access tokens, API keys, and the security schemes
//! every protected endpoint declares (a bearer token, which may be an access token or an API key,
//! or an API key in `X-API-Key`).

pub mod api_key;
pub mod login_limit;
pub mod password;
pub mod password_rules;
pub mod scope;
pub mod session;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;

use poem::{Request, RequestBody};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::client_ip;

/// The authenticated caller of a protected endpoint.
pub struct UserAuth(pub AuthUser);

#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub via: Via,
    /// The caller's address (through trusted proxies), for the audit log.
    pub client_ip: Option<IpAddr>,
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An access token from login.
    Session,
    /// An API key; `write` when it has the write scope.
    ApiKey { id: Uuid, write: bool },
}

impl AuthUser {
    /// Refuses API keys: managing keys, logging out and changing the password are for the
    /// person signed in, so a leaked key cannot mint more keys or lock its owner out.
    pub fn require_session(&self, what: &str) -> Result<(), ApiError> {
        match self.via {
            Via::Session => Ok(()),
            Via::ApiKey { .. } => Err(ApiError::forbidden(format!(
                "{what} needs an access token from login, not an API key"
            ))),
        }
    }
}

/// The document's description of `Authorization: Bearer`.
#[derive(SecurityScheme)]
#[oai(
    rename = "UserAuth",
    ty = "bearer",
    bearer_format = "JWT or kai_ API key",
    checker = "unused_checker"
)]
#[allow(dead_code)]
struct BearerScheme(Uuid);

/// The document's description of `X-API-Key`.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKeyAuth",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "unused_checker"
)]
#[allow(dead_code)]
struct ApiKeyHeaderScheme(Uuid);

/// The schemes above only describe; `UserAuth` does the checking, with one answer whichever
/// header carries the credential. Never called.
async fn unused_checker<T>(_: &Request, _: T) -> Option<Uuid> {
    None
}

const API_KEY_HEADER: &str = "x-api-key";

/// A credential as presented: which header, and whether it is a key or an access token.
enum Presented<'a> {
    AccessToken(&'a str),
    Key(&'a str),
}

fn presented(request: &Request) -> Result<Presented<'_>, ApiError> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::unauthorized(format!("{name}: not text")))
            })
            .transpose()
    };
    let authorization = header("authorization")?;
    let api_key = header(API_KEY_HEADER)?;
    // With both headers, `Authorization` is the credential: a client sending a session and a
    // key (or a generated client filling every declared scheme) is judged by one, always the same.
    match (authorization, api_key) {
        (None, Some(key)) => Ok(Presented::Key(key.trim())),
        (Some(value), _) => {
            let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
                return Err(ApiError::unauthorized(
                    "Authorization: expected `Bearer <access token or API key>`",
                ));
            }
            let credential = credential.trim();
            Ok(if credential.starts_with(api_key::KEY_PREFIX) {
                Presented::Key(credential)
            } else {
                Presented::AccessToken(credential)
            })
        }
        (None, None) => Err(ApiError::unauthorized(
            "missing credentials: send `Authorization: Bearer <access token or API key>` or \
             `X-API-Key: <API key>`",
        )),
    }
}

async fn authenticate(request: &Request) -> Result<AuthUser, ApiError> {
    let state = request
        .data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let mut user = match presented(request)? {
        Presented::AccessToken(token) => session::authenticate(state, token).await?,
        Presented::Key(key) => api_key::authenticate(state, key).await?,
    };
    user.client_ip = client_ip::of_request(request, &state.trusted_proxies);
    if let Via::ApiKey { write: false, .. } = user.via {
        let needed = scope::required(request.method(), request.uri().path());
        if needed == scope::Scope::Write {
            return Err(ApiError::forbidden(format!(
                "this API key has only the read scope; {} {} needs the {} scope",
                request.method(),
                request.uri().path(),
                needed.name()
            )));
        }
    }
    Ok(user)
}

impl<'a> ApiExtractor<'a> for UserAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerScheme::register(registry);
        ApiKeyHeaderScheme::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = BearerScheme::security_schemes();
        schemes.extend(ApiKeyHeaderScheme::security_schemes());
        schemes
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(UserAuth(authenticate(request).await?))
    }
}
