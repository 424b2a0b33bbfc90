-- The audit trail written once. Each audit row is complete when it is
-- inserted: its chain, lane, sequence number, previous hash and row hash are
-- computed by the vault in the transaction that writes the row, never by a
-- later UPDATE. Each chain (a tenant's, or the system chain of rows without a
-- tenant, keyed by the nil UUID) is split into lanes, so that concurrent
-- transactions of one tenant lock different lane heads instead of queueing
-- on one. Row hashes are HMAC-SHA256 under a per-chain key that only the
-- vault can unwrap (wrapped by the root KEK): without the KEK, rows cannot be
-- forged or re-hashed.
--
-- Rows written before this migration keep their v1 columns (chain_lane
-- NULL, plain SHA-256 chain linked by the former chainer) and are verified
-- with the v1 rules.
ALTER TABLE audit_events ADD COLUMN chain_lane smallint,
    ADD CONSTRAINT audit_events_lane_chained CHECK (chain_lane IS NULL OR (chain_lane >= 0 AND chain_seq IS NOT NULL));

DROP INDEX audit_events_chain;
-- v1 rows: at most one row per sequence number of a chain.
CREATE UNIQUE INDEX audit_events_chain ON audit_events
    ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_seq)
    WHERE chain_seq IS NOT NULL AND chain_lane IS NULL;
-- v2 rows: walk a lane in order; at most one row per sequence number of a lane.
CREATE UNIQUE INDEX audit_events_lane ON audit_events
    ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_lane, chain_seq)
    WHERE chain_lane IS NOT NULL;

-- The vault never changes a written v2 row.
CREATE FUNCTION audit_events_written_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are written once' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_written_once BEFORE UPDATE ON audit_events
    FOR EACH ROW WHEN (OLD.chain_lane IS NOT NULL) EXECUTE FUNCTION audit_events_written_once();

-- The HMAC key of each chain, 32 random bytes encrypted by the root KEK
-- (associated data binds the chain id). A tenant's shred keeps it: the
-- trail stays verifiable.
CREATE TABLE audit_chain_keys (
    chain_id   uuid        PRIMARY KEY,  -- the nil UUID for the system chain
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The head of every lane: the sequence number and hash of its newest row
-- (0 and 32 zero bytes before the first), advanced in the transaction that
-- writes the rows, and the retention checkpoint (the newest row pruned).
CREATE TABLE audit_lanes (
    chain_id    uuid        NOT NULL,
    lane        smallint    NOT NULL CHECK (lane >= 0),
    seq         bigint      NOT NULL CHECK (seq >= 0),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    pruned_seq  bigint      NOT NULL DEFAULT 0 CHECK (pruned_seq >= 0 AND pruned_seq <= seq),
    pruned_hash bytea       CHECK (pruned_hash IS NULL OR length(pruned_hash) = 32),
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (chain_id, lane),
    CHECK ((pruned_seq = 0) = (pruned_hash IS NULL))
);

-- Checkpoints: a lane's head at a point in time, MAC'd with the chain key,
-- written on a schedule and on demand and exported out of the database.
-- verify checks that every checkpoint's row is still there with its hash,
-- so rows deleted after a checkpoint (a truncated tail) are reported.
CREATE TABLE audit_checkpoints (
    chain_id   uuid        NOT NULL,
    lane       smallint    NOT NULL,
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL CHECK (length(hash) = 32),
    created_at timestamptz NOT NULL,
    mac        bytea       NOT NULL CHECK (length(mac) = 32),
    PRIMARY KEY (chain_id, lane, seq)
);

-- How far verification got in each lane, so the next run resumes there.
CREATE TABLE audit_verified (
    chain_id    uuid        NOT NULL,
    lane        smallint    NOT NULL,
    seq         bigint      NOT NULL,
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    verified_at timestamptz NOT NULL,
    PRIMARY KEY (chain_id, lane)
);
