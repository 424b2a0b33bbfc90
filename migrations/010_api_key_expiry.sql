-- API keys may expire: a key past expires_at no longer authenticates (401,
-- audited as expired_key). NULL means the key never expires.
-- last_used_at (from 001) is written at most once a minute per key.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_expiry_after_creation CHECK (expires_at > created_at);
