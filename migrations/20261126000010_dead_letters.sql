-- Dead letters (issue 7): every job the worker gave up on, beside its copy in the KAI_DLQ
-- stream, so owners can list, replay and delete theirs through the API.
CREATE TABLE dead_letters (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- From the job message; NULL when it could not be decoded (visible to operators only).
    execution_id UUID,
    user_id UUID REFERENCES users(id) ON DELETE CASCADE,
    -- No foreign key: a deleted workflow is one reason a job dies.
    workflow_id UUID,
    subject VARCHAR(255) NOT NULL,
    reason TEXT NOT NULL,
    payload BYTEA NOT NULL,
    deliveries INTEGER NOT NULL,
    -- The copy in the KAI_DLQ stream.
    stream_sequence BIGINT,
    -- The execution a replay started.
    replayed_execution_id UUID,
    replayed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A job dead-lettered twice (its acknowledgement lost) is listed once.
CREATE UNIQUE INDEX dead_letters_execution_key ON dead_letters (execution_id)
    WHERE execution_id IS NOT NULL;
CREATE INDEX idx_dead_letters_user ON dead_letters (user_id, created_at DESC);
