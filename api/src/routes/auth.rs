//! `POST /api/v1/auth/signup` and `POST /api/v1/auth/login`.

use std::net::IpAddr;
use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::audit::{self, Action, Actor, Entry};
use crate::auth::{password, password_rules};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::client_ip;

pub struct AuthApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
}

#[derive(Debug, Object)]
pub struct TokenOut {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

impl TokenOut {
    /// A fresh access token for `user_id` in its current token `generation`.
    pub fn issue(state: &AppState, user_id: Uuid, generation: i32) -> Result<Self, ApiError> {
        Ok(TokenOut {
            access_token: state
                .tokens
                .issue(user_id, generation)
                .map_err(ApiError::internal)?,
            token_type: "bearer".to_owned(),
            expires_in: state.tokens.ttl.as_secs(),
        })
    }
}

#[derive(ApiResponse)]
pub enum SignupResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserOut>),
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// An access token for the account.
    #[oai(status = 200)]
    Ok(Json<TokenOut>),
}

/// A plausible address: one `@`, something before it, a dotted domain after it, no spaces.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && email.len() <= 320
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl AuthApi {
    /// A login, or a failed one: on the account's log when the email names one (its owner sees
    /// attempts on it), unattributed otherwise. The email tried is not kept.
    async fn audit_login(&self, user_id: Option<Uuid>, address: Option<IpAddr>, succeeded: bool) {
        let action = if succeeded {
            Action::Login
        } else {
            Action::LoginFailed
        };
        let entry = Entry {
            user_id,
            actor: Actor::anonymous(address),
            action,
            target: user_id.map(|id| ("user", id.to_string())),
            details: serde_json::json!({}),
        };
        audit::record(&self.state.db, entry).await;
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account. The password: 8 to 1,024 characters, not the email address nor its
    /// part before the `@` (ignoring case).
    #[oai(path = "/api/v1/auth/signup", method = "post", operation_id = "signup")]
    async fn signup(
        &self,
        request: &Request,
        body: Json<Credentials>,
    ) -> Result<SignupResponse, ApiError> {
        let email = body.email.trim().to_owned();
        if !valid_email(&email) {
            return Err(ApiError::unprocessable("email: not a valid email address"));
        }
        password_rules::check(&body.password, &email).map_err(ApiError::unprocessable)?;
        let hash = password::hash(body.password.clone())
            .await
            .map_err(ApiError::internal)?;
        let inserted: Result<(Uuid,), sqlx::Error> =
            sqlx::query_as("INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id")
                .bind(&email)
                .bind(hash)
                .fetch_one(&self.state.db)
                .await;
        match inserted {
            Ok((id,)) => {
                let address = client_ip::of_request(request, &self.state.trusted_proxies);
                audit::record(
                    &self.state.db,
                    Entry {
                        user_id: Some(id),
                        actor: Actor::anonymous(address),
                        action: Action::Signup,
                        target: Some(("user", id.to_string())),
                        details: serde_json::json!({}),
                    },
                )
                .await;
                Ok(SignupResponse::Created(Json(UserOut { id, email })))
            }
            Err(e) if kai_common::db::is_unique_violation(&e, "users_email_key") => Err(
                ApiError::conflict("an account with this email already exists"),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Exchange an email and password for an access token. Failed logins are limited per
    /// account and per client address: at a limit, 429 with `Retry-After` (the same answer
    /// whether or not the account exists, and even with the right password).
    #[oai(path = "/api/v1/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        request: &Request,
        body: Json<Credentials>,
    ) -> Result<LoginResponse, ApiError> {
        let address = client_ip::of_request(request, &self.state.trusted_proxies);
        let limiter = &self.state.login_limiter;
        if let Some(retry_after) = limiter.refused(&body.email, address).await {
            return Err(ApiError::too_many_requests(
                "too many failed logins for this account or from this address; try again later",
                retry_after,
            ));
        }
        // No stored email has a NUL (signup refuses it) and PostgreSQL cannot compare one.
        if body.email.contains('\0') || body.password.chars().count() > password_rules::MAX_LEN {
            limiter.failed(&body.email, address).await;
            self.audit_login(None, address, false).await;
            return Err(ApiError::unauthorized("wrong email or password"));
        }
        let row: Option<(Uuid, String, bool, i32)> = sqlx::query_as(
            "SELECT id, password_hash, is_active, token_generation FROM users \
             WHERE lower(email) = lower($1)",
        )
        .bind(body.email.trim())
        .fetch_optional(&self.state.db)
        .await?;
        // Unknown emails are verified against a dummy hash so both failures take as long.
        let (user_id, stored, active, generation) = match row {
            Some(row) => (Some(row.0), row.1, row.2, row.3),
            None => (None, password::DUMMY_HASH.to_owned(), false, 0),
        };
        let matches = password::verify(body.password.clone(), stored).await;
        match user_id {
            Some(id) if matches && active => {
                limiter.succeeded(&body.email).await;
                self.audit_login(Some(id), address, true).await;
                Ok(LoginResponse::Ok(Json(TokenOut::issue(
                    &self.state,
                    id,
                    generation,
                )?)))
            }
            _ => {
                limiter.failed(&body.email, address).await;
                self.audit_login(user_id, address, false).await;
                Err(ApiError::unauthorized("wrong email or password"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn email_shapes() {
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.co"));
        assert!(!valid_email("a@b@c.co"));
    }
}
