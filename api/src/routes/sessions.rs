//! `POST /api/v1/auth/logout` and `POST /api/v1/auth/password`: both revoke every access token
//! the user holds (on every replica: tokens are checked against the user's token generation).

use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::TokenOut;
use crate::audit::{self, Action, Entry};
use crate::auth::{UserAuth, password, password_rules, session};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::client_ip;

pub struct SessionsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use now.
    #[oai(validator(max_length = 1024))]
    pub current_password: String,
    /// 8 to 1,024 characters, not the email address nor its part before the `@`.
    #[oai(validator(min_length = 8, max_length = 1024))]
    pub new_password: String,
}

#[derive(ApiResponse)]
enum LoggedOut {
    /// Every access token of the account is revoked, this one included.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum PasswordChanged {
    /// The password is changed and every earlier access token revoked; here is a new one.
    #[oai(status = 200)]
    Ok(Json<TokenOut>),
}

#[OpenApi(tag = "ApiTags::Auth")]
impl SessionsApi {
    /// Log out everywhere: every access token of the account stops working at once. API keys
    /// are not affected (delete them with `DELETE /api/v1/api-keys/{id}`).
    #[oai(path = "/api/v1/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, auth: UserAuth) -> Result<LoggedOut, ApiError> {
        auth.0.require_session("logging out")?;
        session::revoke_all(&self.state.db, auth.0.id).await?;
        audit::record(&self.state.db, Entry::by(&auth.0, Action::Logout)).await;
        Ok(LoggedOut::Done)
    }

    /// Change the password: needs the current one (wrong attempts count as failed logins),
    /// revokes every earlier access token, and answers with a new one.
    #[oai(
        path = "/api/v1/auth/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        request: &Request,
        auth: UserAuth,
        body: Json<PasswordChange>,
    ) -> Result<PasswordChanged, ApiError> {
        auth.0.require_session("changing the password")?;
        let (email, stored): (String, String) =
            sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1")
                .bind(auth.0.id)
                .fetch_one(&self.state.db)
                .await?;
        let address = client_ip::of_request(request, &self.state.trusted_proxies);
        let limiter = &self.state.login_limiter;
        if let Some(retry_after) = limiter.refused(&email, address).await {
            return Err(ApiError::too_many_requests(
                "too many failed password checks for this account; try again later",
                retry_after,
            ));
        }
        if !password::verify(body.current_password.clone(), stored).await {
            limiter.failed(&email, address).await;
            let entry = Entry::by(&auth.0, Action::LoginFailed)
                .details(serde_json::json!({"during": "password_change"}));
            audit::record(&self.state.db, entry).await;
            return Err(ApiError::forbidden("current_password: wrong password"));
        }
        password_rules::check(&body.new_password, &email)
            .map_err(|e| ApiError::unprocessable(format!("new_{e}")))?;
        let hash = password::hash(body.new_password.clone())
            .await
            .map_err(ApiError::internal)?;
        let mut tx = self.state.db.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(auth.0.id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        let generation = session::revoke_all(&mut *tx, auth.0.id).await?;
        audit::write(&mut *tx, &Entry::by(&auth.0, Action::PasswordChanged)).await?;
        tx.commit().await?;
        limiter.succeeded(&email).await;
        Ok(PasswordChanged::Ok(Json(TokenOut::issue(
            &self.state,
            auth.0.id,
            generation,
        )?)))
    }
}
