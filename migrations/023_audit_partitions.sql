-- The audit trail partitioned by time: one partition per calendar month
-- (UTC) of occurred_at, created ahead by the vault, plus a DEFAULT
-- partition as a safety net. Retention drops whole months (DETACH and
-- DROP) behind a verified checkpoint instead of deleting rows.
--
-- PostgreSQL requires a unique index of a partitioned table to hold the
-- partition key, so:
--   * the primary key is (id, occurred_at); id still comes from the one
--     identity sequence, so it stays unique by construction;
--   * a lane's sequence numbers are no longer enforced unique by an index:
--     the vault assigns them only while holding the lane's head row
--     (audit_lanes, SELECT ... FOR UPDATE) and advances the head in the same
--     transaction, and `audit verify` reports a duplicate or a gap. The walk
--     index stays, without UNIQUE.

-- audit_events_month_partition creates the partition of the month holding
-- at (UTC) unless it exists, and returns its name.
CREATE FUNCTION audit_events_month_partition(at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text        := 'audit_events_' || to_char(at AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    END IF;
    RETURN name;
END $$;

-- audit_events_ensure_partitions creates the partitions of the month of
-- at and the months_ahead months after it; it returns how many it created.
-- A month the DEFAULT partition already holds rows of is skipped.
CREATE FUNCTION audit_events_ensure_partitions(at timestamptz, months_ahead int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    made int := 0;
    m    timestamptz;
BEGIN
    FOR i IN 0..months_ahead LOOP
        m := (date_trunc('month', at AT TIME ZONE 'UTC') + make_interval(months => i)) AT TIME ZONE 'UTC';
        IF to_regclass('audit_events_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM')) IS NULL THEN
            BEGIN
                PERFORM audit_events_month_partition(m);
                made := made + 1;
            EXCEPTION WHEN check_violation THEN
                -- The DEFAULT partition already holds rows of that month:
                -- they stay there (pruned row by row) and the month has no
                -- partition of its own.
                RAISE WARNING 'audit partition of % not created: the default partition holds rows of that month', m;
            END;
        END IF;
    END LOOP;
    RETURN made;
END $$;

ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unpartitioned_pkey;
ALTER SEQUENCE audit_events_id_seq RENAME TO audit_events_unpartitioned_id_seq;
DROP TRIGGER audit_events_written_once ON audit_events_unpartitioned;

CREATE TABLE audit_events (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    occurred_at  timestamptz NOT NULL,
    tenant_id    uuid,
    api_key_id   uuid,
    action       text        NOT NULL,
    token_id     uuid,
    request_id   text        NOT NULL DEFAULT '',
    client_addr  text        NOT NULL DEFAULT '',
    outcome      text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail       jsonb       NOT NULL DEFAULT '{}',
    chain_seq    bigint,
    prev_hash    bytea,
    row_hash     bytea,
    chain_lane   smallint,
    PRIMARY KEY (id, occurred_at),
    CONSTRAINT audit_events_chained CHECK (
        (chain_seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL) OR
        (chain_seq >= 1 AND length(prev_hash) = 32 AND length(row_hash) = 32)),
    CONSTRAINT audit_events_lane_chained CHECK (chain_lane IS NULL OR (chain_lane >= 0 AND chain_seq IS NOT NULL))
) PARTITION BY RANGE (occurred_at);

CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- A partition for every month that holds rows, and the current month and
-- the next two.
SELECT audit_events_month_partition(m)
    FROM (SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
          FROM audit_events_unpartitioned) months;
SELECT audit_events_ensure_partitions(now(), 2);

INSERT INTO audit_events (id, occurred_at, tenant_id, api_key_id, action, token_id, request_id, client_addr,
        outcome, detail, chain_seq, prev_hash, row_hash, chain_lane)
    OVERRIDING SYSTEM VALUE
    SELECT id, occurred_at, tenant_id, api_key_id, action, token_id, request_id, client_addr,
        outcome, detail, chain_seq, prev_hash, row_hash, chain_lane
    FROM audit_events_unpartitioned;
SELECT setval(pg_get_serial_sequence('audit_events', 'id'),
    greatest((SELECT max(id) FROM audit_events_unpartitioned),
             (SELECT last_value FROM audit_events_unpartitioned_id_seq), 1));
DROP TABLE audit_events_unpartitioned;

CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id DESC);
CREATE INDEX audit_events_token ON audit_events (token_id) WHERE token_id IS NOT NULL;
-- v1 rows: walk a chain in order (unique per partition is all PostgreSQL
-- allows; the former chainer assigned them under the chain head's lock).
CREATE INDEX audit_events_chain ON audit_events
    ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_seq)
    WHERE chain_seq IS NOT NULL AND chain_lane IS NULL;
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE chain_seq IS NULL;
-- v2 rows: walk a lane in order.
CREATE INDEX audit_events_lane ON audit_events
    ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_lane, chain_seq)
    WHERE chain_lane IS NOT NULL;

-- The vault never changes a written v2 row, in any partition.
CREATE TRIGGER audit_events_written_once BEFORE UPDATE ON audit_events
    FOR EACH ROW WHEN (OLD.chain_lane IS NOT NULL) EXECUTE FUNCTION audit_events_written_once();
-- The console's error view.
CREATE INDEX audit_events_tenant_errors ON audit_events (tenant_id, occurred_at) WHERE outcome <> 'success';
