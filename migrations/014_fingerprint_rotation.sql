-- Rotating a tenant's fingerprint keyset: a refingerprint job recomputes
-- every token's fingerprint under the new primary PRF key. A token keeps
-- the fingerprint it had before (previous_fingerprint), so that a lookup by
-- a fingerprint taken before or during the job keeps finding it. A tenant
-- may run one job of each kind at a time.
ALTER TABLE key_jobs DROP CONSTRAINT key_jobs_kind_check;
ALTER TABLE key_jobs ADD CONSTRAINT key_jobs_kind_check CHECK (kind IN ('reencrypt', 'refingerprint'));
DROP INDEX key_jobs_one_active;
CREATE UNIQUE INDEX key_jobs_one_active ON key_jobs (tenant_id, kind) WHERE status IN ('pending', 'running');

ALTER TABLE tokens ADD COLUMN previous_fingerprint bytea;
CREATE INDEX tokens_previous_fingerprint ON tokens (tenant_id, previous_fingerprint) WHERE previous_fingerprint IS NOT NULL;
CREATE INDEX tokens_fingerprint_key ON tokens (tenant_id, fingerprint_key_id);
