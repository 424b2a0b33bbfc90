-- A forward whose pending record committed but whose process stopped before
-- its outcome was written is finished by the pending-record sweeper: once
-- the record is older than its destination's timeout and the grace
-- (VAULT_FORWARD_PENDING_GRACE), it is marked failed with
-- forwarding_api_upstream_connection_error and outcome_unknown: the
-- destination may or may not have received the request. A late outcome of
-- a process still running replaces it.
--
-- No index on status: the outcome UPDATE of every forward changes it, and
-- an index naming it would keep that UPDATE from being a HOT update. The
-- sweeper walks created_at (forwarding_requests_expiry) from where its last
-- pass ended.
ALTER TABLE forwarding_requests ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false;
ALTER TABLE forwarding_requests ADD CONSTRAINT forwarding_requests_unknown_failed
    CHECK (NOT outcome_unknown OR status = 'failed');

-- Every forward inserts its record pending and updates it once with the
-- outcome. With room left in each page (fillfactor 50) the new version of
-- the row goes into the same page and, since the UPDATE changes no indexed
-- column, no index gets a new entry (a HOT update); full pages would move
-- every outcome to another page with a new entry in all four indexes.
-- Applies to pages filled from now on.
ALTER TABLE forwarding_requests SET (fillfactor = 50);
