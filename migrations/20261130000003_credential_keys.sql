-- Credentials (issue 17): each sealed secret names the key that sealed it, so keys can be
-- rotated (`kai-api rotate-credentials`); the non-secret fields of a credential (a username, a
-- header name, a base URL) are kept in clear beside it, with a masked hint of the secret, so
-- listing credentials never decrypts anything. No credential could be stored before this.
ALTER TABLE user_credentials
    ADD COLUMN key_id VARCHAR(32) NOT NULL DEFAULT '',
    ADD COLUMN public_data JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN secret_hint VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE user_credentials ALTER COLUMN key_id DROP DEFAULT;
-- Rotation walks the rows not yet under the current key.
CREATE INDEX idx_user_credentials_key ON user_credentials (key_id, id);
