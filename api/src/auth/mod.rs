//! Users' authentication: password hashing, access tokens, and the bearer security scheme every
//! protected endpoint declares.

pub mod login_limit;
pub mod password;
pub mod token;

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a protected endpoint.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_access_token")]
pub struct UserAuth(pub AuthUser);

#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
}

async fn check_access_token(request: &Request, bearer: Bearer) -> poem::Result<AuthUser> {
    let state = request
        .data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let claims = state
        .tokens
        .verify(&bearer.token)
        .map_err(|reason| ApiError::unauthorized(reason.message()))?;
    Ok(AuthUser { id: claims.sub })
}
