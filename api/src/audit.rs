//! The audit log: security-relevant actions recorded with who did them (an access token, an API
//! key, nobody yet, or the operator's command line), on what, from which address and when. An
//! entry never holds a secret: targets are ids, details are counts and settings.
//!
//! Entries are written in the action's own transaction where it has one (password change, key
//! creation, token rotation); otherwise right after the action succeeds, and a failure to write
//! is logged and counted (`kai_api_audit_write_failures_total`) rather than undoing the action.

use std::net::IpAddr;

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::auth::{AuthUser, Via};

/// What happened. The names are the API's `action` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Signup,
    Login,
    LoginFailed,
    Logout,
    PasswordChanged,
    ApiKeyCreated,
    ApiKeyRevoked,
    CredentialCreated,
    CredentialUpdated,
    CredentialDeleted,
    CredentialTested,
    WebhookTokenRotated,
    WorkflowDeleted,
    DeadLetterReplayed,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::Signup,
        Action::Login,
        Action::LoginFailed,
        Action::Logout,
        Action::PasswordChanged,
        Action::ApiKeyCreated,
        Action::ApiKeyRevoked,
        Action::CredentialCreated,
        Action::CredentialUpdated,
        Action::CredentialDeleted,
        Action::CredentialTested,
        Action::WebhookTokenRotated,
        Action::WorkflowDeleted,
        Action::DeadLetterReplayed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::PasswordChanged => "password_changed",
            Action::ApiKeyCreated => "api_key_created",
            Action::ApiKeyRevoked => "api_key_revoked",
            Action::CredentialCreated => "credential_created",
            Action::CredentialUpdated => "credential_updated",
            Action::CredentialDeleted => "credential_deleted",
            Action::CredentialTested => "credential_tested",
            Action::WebhookTokenRotated => "webhook_token_rotated",
            Action::WorkflowDeleted => "workflow_deleted",
            Action::DeadLetterReplayed => "dead_letter_replayed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }
}

/// Who acted, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    kind: &'static str,
    api_key_id: Option<Uuid>,
    client_ip: Option<IpAddr>,
}

impl Actor {
    /// An authenticated caller.
    pub fn of(user: &AuthUser) -> Self {
        let (kind, api_key_id) = match user.via {
            Via::Session => ("session", None),
            Via::ApiKey { id, .. } => ("api_key", Some(id)),
        };
        Self {
            kind,
            api_key_id,
            client_ip: user.client_ip,
        }
    }

    /// A caller not signed in (sign-up, login).
    pub fn anonymous(client_ip: Option<IpAddr>) -> Self {
        Self {
            kind: "anonymous",
            api_key_id: None,
            client_ip,
        }
    }

    /// The operator, through `kai-api`'s command line.
    pub fn operator() -> Self {
        Self {
            kind: "operator",
            api_key_id: None,
            client_ip: None,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn api_key_id(&self) -> Option<Uuid> {
        self.api_key_id
    }

    /// The address as text for an `inet` parameter.
    pub fn client_ip_text(&self) -> Option<String> {
        self.client_ip.map(|ip| ip.to_string())
    }
}

/// One entry to write.
pub struct Entry {
    pub user_id: Option<Uuid>,
    pub actor: Actor,
    pub action: Action,
    pub target: Option<(&'static str, String)>,
    pub details: Value,
}

impl Entry {
    /// `user` did `action` on their own account's resources.
    pub fn by(user: &AuthUser, action: Action) -> Self {
        Self {
            user_id: Some(user.id),
            actor: Actor::of(user),
            action,
            target: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target = Some((kind, id.to_string()));
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Writes `entry` through `db` (a pool or the action's transaction).
pub async fn write<'e>(db: impl PgExecutor<'e>, entry: &Entry) -> Result<(), sqlx::Error> {
    let (target_type, target_id) = match &entry.target {
        Some((kind, id)) => (Some(*kind), Some(id.as_str())),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO audit_log \
            (user_id, actor_type, actor_api_key_id, action, target_type, target_id, client_ip, \
             details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7::inet, $8)",
    )
    .bind(entry.user_id)
    .bind(entry.actor.kind)
    .bind(entry.actor.api_key_id)
    .bind(entry.action.name())
    .bind(target_type)
    .bind(target_id)
    .bind(entry.actor.client_ip_text())
    .bind(&entry.details)
    .execute(db)
    .await?;
    Ok(())
}

/// Writes `entry` after its action succeeded; a failure is logged and counted, not returned.
pub async fn record<'e>(db: impl PgExecutor<'e>, entry: Entry) {
    if let Err(e) = write(db, &entry).await {
        metrics::counter!("kai_api_audit_write_failures_total").increment(1);
        tracing::error!(action = entry.action.name(), error = %e, "could not write an audit entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_read_back_and_are_unique() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(*action));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(Action::parse("drop_tables"), None);
    }
}
