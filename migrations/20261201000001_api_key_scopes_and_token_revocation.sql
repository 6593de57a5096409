-- API keys carry scopes (`read`, `write`: write includes read), and a user's access tokens can be
-- revoked all at once (logout, password change) by moving the user's token generation on: a
-- token names the generation it was issued in and is refused once that is not the current one.

ALTER TABLE api_keys
    ADD COLUMN scopes TEXT[] NOT NULL DEFAULT '{read}',
    ADD CONSTRAINT api_keys_scopes_known
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write']::TEXT[]);

ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
