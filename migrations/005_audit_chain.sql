-- Tamper-evident audit trail. Each audit row is written in the transaction
-- of the action it records, with the chain columns NULL; a background
-- chainer (one at a time across replicas, under an advisory lock) then
-- assigns each chain its next sequence number in order and links the row:
--   row_hash = SHA-256(prev_hash || canonical encoding of the row)
-- One chain per tenant, plus the "system" chain for rows without a tenant
-- (failed authentications), keyed by the nil UUID. A DBA can still edit or
-- delete rows: the chain makes that detectable (`cardvault audit verify`),
-- not impossible.
ALTER TABLE audit_events
    ADD COLUMN chain_seq bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN row_hash  bytea,
    ADD CONSTRAINT audit_events_chained CHECK (
        (chain_seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL) OR
        (chain_seq >= 1 AND length(prev_hash) = 32 AND length(row_hash) = 32));

-- Walk a chain in order; at most one row per sequence number of a chain.
CREATE UNIQUE INDEX audit_events_chain ON audit_events
    ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_seq)
    WHERE chain_seq IS NOT NULL;
-- What the chainer has still to do (small: rows live here for about a second).
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE chain_seq IS NULL;

-- The head of every chain, advanced by the chainer in the transaction that
-- chains the rows, and the retention checkpoint: the sequence number and
-- hash of the newest row pruned, from which verification starts.
CREATE TABLE audit_chain_heads (
    tenant_id   uuid        PRIMARY KEY,  -- the nil UUID for the system chain
    seq         bigint      NOT NULL CHECK (seq >= 1),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    pruned_seq  bigint      NOT NULL DEFAULT 0 CHECK (pruned_seq >= 0 AND pruned_seq <= seq),
    pruned_hash bytea       CHECK (pruned_hash IS NULL OR length(pruned_hash) = 32),
    updated_at  timestamptz NOT NULL,
    CHECK ((pruned_seq = 0) = (pruned_hash IS NULL))
);
