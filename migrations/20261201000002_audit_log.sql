-- The audit log: security-relevant actions (sign-up, logins, API keys, credentials, webhook
-- token rotation, workflow deletion, dead-letter replay) with who did them, from where and when.
-- Partitioned by month like the other logs; the scheduler's housekeeping prepares months ahead
-- and drops whole months past KAI_AUDIT_RETENTION_DAYS.

CREATE TABLE audit_log (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    -- The account the entry belongs to (its owner reads it); NULL for a failed login naming no
    -- account.
    user_id UUID,
    -- `session` (an access token), `api_key`, `anonymous` (sign-up, login) or `operator` (the
    -- kai-api command line).
    actor_type VARCHAR(16) NOT NULL,
    actor_api_key_id UUID,
    action VARCHAR(64) NOT NULL,
    target_type VARCHAR(32),
    target_id TEXT,
    client_ip INET,
    details JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at),
    CONSTRAINT audit_log_actor_type_check
        CHECK (actor_type IN ('session', 'api_key', 'anonymous', 'operator'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_audit_log_user ON audit_log (user_id, created_at DESC, id DESC);

CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
SELECT kai_ensure_monthly_partitions('audit_log', 3);
