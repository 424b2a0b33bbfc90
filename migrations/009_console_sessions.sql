-- Operator console sign-ins (/console). The browser's cookie holds a random
-- secret; only its SHA-256 is kept here, with the SHA-256 of the CSRF token
-- derived from it. A session ends at expires_at, or idle_timeout after
-- last_seen_at, or when its API key is revoked; ended rows are pruned.
CREATE TABLE console_sessions (
    id_hash      bytea       PRIMARY KEY,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    api_key_id   uuid        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    scopes       text[]      NOT NULL,
    csrf_hash    bytea       NOT NULL,
    client_addr  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    idle_timeout interval    NOT NULL CHECK (idle_timeout > interval '0'),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_api_key ON console_sessions (api_key_id);

-- The console's errors-over-time chart counts a tenant's failed and refused
-- actions by day. Only those rows enter this index, so the writes of
-- successful actions (nearly all) do not pay for it.
CREATE INDEX audit_events_tenant_errors ON audit_events (tenant_id, occurred_at) WHERE outcome <> 'success';
