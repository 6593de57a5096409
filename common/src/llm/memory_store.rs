//! Conversation memory in PostgreSQL (`conversation_turns`), per owner and session: the last
//! `window` turns are shown to the model, a finished turn is kept once per execution (a
//! redelivered run neither saves it twice nor reads its own turn back as history), and one
//! owner's session is never read for another.

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::PgPool;

use super::openai::ChatMessage;
use crate::nodes::NodeError;
use crate::nodes::capability::Memory;
use crate::nodes::services::RunIds;

/// Sessions are named by whoever triggers the run: longer names are refused, not cut.
pub const MAX_SESSION_ID_LEN: usize = 255;

pub struct ConversationStore {
    pub db: PgPool,
    pub run: RunIds,
    /// The memory node, so two memories of one run keep separate turns.
    pub node_id: String,
    /// Turns shown to the model.
    pub window: usize,
}

fn database(error: sqlx::Error) -> NodeError {
    NodeError::Network(format!("conversation memory: {error}"))
}

fn check_session(session: &str) -> Result<(), NodeError> {
    if session.len() > MAX_SESSION_ID_LEN {
        return Err(NodeError::Configuration(format!(
            "session_id is {} bytes; at most {MAX_SESSION_ID_LEN}",
            session.len()
        )));
    }
    Ok(())
}

impl Memory for ConversationStore {
    fn load<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<Vec<ChatMessage>, NodeError>> {
        async move {
            check_session(session)?;
            let turns: Vec<(String, String)> = sqlx::query_as(
                "SELECT user_message, assistant_message FROM (
                     SELECT id, user_message, assistant_message FROM conversation_turns
                     WHERE user_id = $1 AND session_id = $2 AND execution_id <> $3
                     ORDER BY id DESC LIMIT $4) recent
                 ORDER BY id",
            )
            .bind(self.run.owner)
            .bind(session)
            .bind(self.run.execution)
            .bind(i64::try_from(self.window).unwrap_or(i64::MAX))
            .fetch_all(&self.db)
            .await
            .map_err(database)?;
            Ok(turns
                .into_iter()
                .flat_map(|(user, assistant)| {
                    [
                        ChatMessage::new("user", user),
                        ChatMessage::new("assistant", assistant),
                    ]
                })
                .collect())
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        session: &'a str,
        user: &'a str,
        assistant: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        async move {
            check_session(session)?;
            sqlx::query(
                "INSERT INTO conversation_turns (user_id, session_id, workflow_id, execution_id,
                     node_id, user_message, assistant_message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT ON CONSTRAINT conversation_turns_once DO NOTHING",
            )
            .bind(self.run.owner)
            .bind(session)
            .bind(self.run.workflow)
            .bind(self.run.execution)
            .bind(&self.node_id)
            .bind(user)
            .bind(assistant)
            .execute(&self.db)
            .await
            .map_err(database)?;
            Ok(())
        }
        .boxed()
    }
}

/// What a memory node provides: the run owner's conversations, `window` turns at a time.
pub fn provide(
    ctx: &crate::nodes::ProviderContext<'_>,
    window: usize,
) -> Result<crate::nodes::Provided, NodeError> {
    let db = ctx.services.db.clone().ok_or_else(|| {
        NodeError::Configuration(format!(
            "node {}: conversation memory needs the database, and this process has none",
            ctx.node_id
        ))
    })?;
    Ok(crate::nodes::Provided::Memory(std::sync::Arc::new(
        ConversationStore {
            db,
            run: *ctx.run,
            node_id: ctx.node_id.to_owned(),
            window,
        },
    )))
}

/// Why a memory node never runs on its own.
pub fn not_a_step() -> NodeError {
    NodeError::Configuration(
        "a memory is not a step: connect it to an agent's `memory` input".to_owned(),
    )
}
