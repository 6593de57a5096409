-- Idempotency-Key as draft-ietf-httpapi-idempotency-key-header describes it: the first call with
-- a key claims it with a fingerprint of its payload; a retry with the same payload is answered
-- like the first call (the stored answer once the run has finished), one with a different
-- payload is refused. Keys are remembered for 24 hours (the scheduler's housekeeping deletes
-- older ones).

CREATE TABLE webhook_idempotency_keys (
    -- The execution id derived from the webhook and the key.
    execution_id UUID PRIMARY KEY,
    webhook_id VARCHAR(64) NOT NULL,
    -- SHA-256 of the call's method and payload.
    fingerprint BYTEA NOT NULL,
    -- The answer a synchronous caller was given, once there was one.
    answer JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_webhook_idempotency_keys_created ON webhook_idempotency_keys (created_at);
