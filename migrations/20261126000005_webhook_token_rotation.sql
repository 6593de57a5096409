-- Token rotation with a grace period: after a rotation the previous token is still accepted
-- until previous_token_expires_at (no previous token when the grace period is 0).
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_token VARCHAR(255),
    ADD COLUMN previous_token_expires_at TIMESTAMPTZ;
