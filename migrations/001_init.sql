-- cardvault initial schema. No column ever holds a plaintext PAN or CVC:
-- card fields are Tink ciphertexts sealed with the tenant data keyset, and
-- the PAN is searchable only through a keyed fingerprint (PCI DSS 3.5.1.1).

CREATE TABLE tenants (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL
);

-- Tenant keysets, each wrapped by the root KEK with associated data binding
-- the tenant id and purpose. version grows on every change so replicas can
-- notice a rotation.
CREATE TABLE tenant_keysets (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('data', 'fingerprint')),
    wrapped     bytea       NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, purpose)
);

-- API keys: the secret is shown once; only its SHA-256 is stored, found by a
-- non-secret prefix.
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix      text        NOT NULL UNIQUE,
    secret_hash bytea       NOT NULL,
    scopes      text[]      NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at DESC);

CREATE TABLE tokens (
    id                 uuid        PRIMARY KEY,
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    business_key       text,
    fingerprint        bytea       NOT NULL,
    fingerprint_key_id bigint      NOT NULL,
    key_id             bigint      NOT NULL,  -- Tink key id that sealed the fields below
    pan_ct             bytea       NOT NULL,
    name_ct            bytea,
    cvc_ct             bytea,
    cvc_expires_at     timestamptz,
    iin                text        NOT NULL CHECK (iin ~ '^[0-9]{6}$'),
    last_four          text        NOT NULL CHECK (last_four ~ '^[0-9]{4}$'),
    pan_length         smallint    NOT NULL CHECK (pan_length BETWEEN 12 AND 19),
    scheme             text        NOT NULL,
    exp_month          smallint    NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year           smallint    NOT NULL CHECK (exp_year BETWEEN 2000 AND 2099),
    metadata           jsonb       NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CHECK ((cvc_ct IS NULL) = (cvc_expires_at IS NULL))
);
CREATE UNIQUE INDEX tokens_business_key ON tokens (tenant_id, business_key) WHERE business_key IS NOT NULL;
CREATE INDEX tokens_tenant_created ON tokens (tenant_id, created_at DESC, id DESC);
CREATE INDEX tokens_fingerprint ON tokens (tenant_id, fingerprint);
CREATE INDEX tokens_key_id ON tokens (tenant_id, key_id);
CREATE INDEX tokens_cvc_expiry ON tokens (cvc_expires_at) WHERE cvc_expires_at IS NOT NULL;

-- The audit trail outlives the tokens and keys it names, so it has no
-- foreign keys. It never holds card data.
CREATE TABLE audit_events (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    tenant_id    uuid,
    api_key_id   uuid,
    action       text        NOT NULL,
    token_id     uuid,
    request_id   text        NOT NULL DEFAULT '',
    client_addr  text        NOT NULL DEFAULT '',
    outcome      text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id DESC);
CREATE INDEX audit_events_token ON audit_events (token_id) WHERE token_id IS NOT NULL;
