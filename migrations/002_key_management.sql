-- Key management: the lifecycle of every key version of a tenant keyset,
-- online re-encryption jobs held through leases, and tenant shredding.

-- One row per Tink key id of a tenant keyset. The keyset itself (in
-- tenant_keysets) is the truth for what can encrypt and decrypt; this table
-- adds what Tink does not keep: when each version was made, promoted,
-- disabled and destroyed, and how many encryptions it has done (random-nonce
-- AES-GCM must stay well under 2^32 per key).
CREATE TABLE tenant_key_versions (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose      text        NOT NULL CHECK (purpose IN ('data', 'fingerprint')),
    key_id       bigint      NOT NULL,
    state        text        NOT NULL CHECK (state IN ('primary', 'active', 'disabled', 'destroyed')),
    created_at   timestamptz NOT NULL,
    promoted_at  timestamptz,
    disabled_at  timestamptz,
    destroyed_at timestamptz,
    encryptions  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, purpose, key_id)
);

ALTER TABLE tenants ADD COLUMN destroyed_at timestamptz;

-- Re-encryption jobs. A job is held by one worker at a time through a lease
-- that the worker renews with every batch; a lease that runs out lets
-- another worker resume the job where it stood.
CREATE TABLE key_jobs (
    id               uuid        PRIMARY KEY,
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             text        NOT NULL CHECK (kind IN ('reencrypt')),
    status           text        NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    total            bigint      NOT NULL DEFAULT 0,
    done             bigint      NOT NULL DEFAULT 0,
    error            text        NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX key_jobs_one_active ON key_jobs (tenant_id) WHERE status IN ('pending', 'running');
CREATE INDEX key_jobs_claimable ON key_jobs (lease_expires_at) WHERE status IN ('pending', 'running');
