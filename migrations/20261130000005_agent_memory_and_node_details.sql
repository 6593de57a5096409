-- Issue 18: what model nodes record beside their output (token usage, an agent's steps), and
-- conversation memory kept per owner and session.

ALTER TABLE node_executions ADD COLUMN details JSONB;

-- One row per finished turn of a conversation. A run redelivered after its turn was saved
-- finds its own row (unique per execution and memory node) instead of adding a second one,
-- and never reads it back as history.
CREATE TABLE conversation_turns (
    id BIGSERIAL PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id VARCHAR(255) NOT NULL,
    workflow_id UUID,
    execution_id UUID NOT NULL,
    node_id VARCHAR(255) NOT NULL,
    user_message TEXT NOT NULL,
    assistant_message TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT conversation_turns_once UNIQUE (user_id, session_id, execution_id, node_id)
);
CREATE INDEX idx_conversation_turns_session ON conversation_turns (user_id, session_id, id DESC);
