-- Export jobs: send a tenant's selected cards, through the forwarding
-- engine, to another vault's import endpoint (a forwarding destination in
-- the own-vault shape), and keep the mapping of each local token to the
-- token the other vault answered with.
--
-- The headers the destination is called with (its API key) are kept sealed
-- with the tenant data keyset only while the job is running, and wiped
-- (NULL) when it ends. No column holds card data: items record token ids,
-- the remote token id (refused when it looks like a card number), statuses
-- and error reasons.
CREATE TABLE export_jobs (
    id                  uuid        PRIMARY KEY,
    tenant_id           uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    destination_id      text        NOT NULL,
    url                 text        NOT NULL,
    business_key_prefix text        NOT NULL DEFAULT '',
    created_after       timestamptz,
    rate_limit          real        NOT NULL CHECK (rate_limit > 0),
    status              text        NOT NULL CHECK (status IN ('running', 'finished', 'aborted', 'failed')),
    failure_reason      text        NOT NULL DEFAULT '',
    headers_ct          bytea,
    total               bigint      NOT NULL DEFAULT 0,
    attempts            bigint      NOT NULL DEFAULT 0,
    successes           bigint      NOT NULL DEFAULT 0,
    failures            bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL,
    CHECK (status = 'running' OR headers_ct IS NULL)
);
CREATE INDEX export_jobs_tenant ON export_jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX export_jobs_running ON export_jobs (created_at) WHERE status = 'running';

-- The per-token ledger: what was sent, what the other vault answered.
CREATE TABLE export_items (
    job_id          uuid        NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
    token_id        uuid        NOT NULL,
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    remote_id       text,
    next_attempt_at timestamptz NOT NULL,
    lease_owner     text,
    lease_until     timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (job_id, token_id)
) WITH (fillfactor = 70);
CREATE INDEX export_items_claim ON export_items (job_id, next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX export_items_ledger ON export_items (job_id, seq);
