-- Import jobs: copy a provider's (Stripe's) card payment methods into the
-- vault by driving the provider's forward API into /cde-import.
--
-- The provider API key and the job's own vault API key are kept sealed with
-- the tenant data keyset only while the job is active, and wiped (NULL) when
-- it ends. No column holds card data: items record payment-method ids,
-- statuses and error codes.
CREATE TABLE import_jobs (
    id                  uuid        PRIMARY KEY,
    tenant_id           uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider            text        NOT NULL CHECK (provider IN ('stripe')),
    status              text        NOT NULL CHECK (status IN ('preparing', 'running', 'finished', 'aborted', 'failed')),
    failure_reason      text        NOT NULL DEFAULT '',
    provider_key_ct     bytea,
    provider_key_hint   text        NOT NULL DEFAULT '',   -- e.g. sk_test_…4242: last four only
    forward_key_id      uuid,                              -- the tokens:create key the job minted
    forward_key_ct      bytea,
    cursor              text        NOT NULL DEFAULT '',   -- last customer enumerated
    total               bigint      NOT NULL DEFAULT 0,
    attempts            bigint      NOT NULL DEFAULT 0,
    successes           bigint      NOT NULL DEFAULT 0,
    failures            bigint      NOT NULL DEFAULT 0,
    skipped             bigint      NOT NULL DEFAULT 0,
    lease_owner         text,
    lease_until         timestamptz,
    created_at          timestamptz NOT NULL,
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL,
    CHECK (status IN ('preparing', 'running') OR (provider_key_ct IS NULL AND forward_key_ct IS NULL))
);
-- One preparing or running job per tenant.
CREATE UNIQUE INDEX import_jobs_active ON import_jobs (tenant_id) WHERE status IN ('preparing', 'running');
CREATE INDEX import_jobs_tenant ON import_jobs (tenant_id, created_at DESC, id DESC);

-- The per-payment-method ledger: the reconciliation report.
CREATE TABLE import_items (
    job_id          uuid        NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    payment_method  text        NOT NULL,
    customer        text        NOT NULL DEFAULT '',
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped')),
    attempts        integer     NOT NULL DEFAULT 0,
    throttled       integer     NOT NULL DEFAULT 0,        -- attempts Stripe rate-limited (429)
    last_error      text        NOT NULL DEFAULT '',
    token_id        uuid,
    next_attempt_at timestamptz NOT NULL,
    lease_owner     text,
    lease_until     timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (job_id, payment_method)
);
CREATE INDEX import_items_due ON import_items (job_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX import_items_ledger ON import_items (job_id, status, seq);
