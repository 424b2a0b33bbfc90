-- A keyed digest of each token's card: the PRF (HMAC-SHA256) of the
-- tenant's primary fingerprint key over the PAN, expiry, cardholder name
-- and CVC, never a plain hash. A repeated import of the card a business key
-- already holds is recognised by one indexed read, without decrypting and
-- without rewriting the row. NULL for tokens written before it (they take
-- the slower path, which fills it).
ALTER TABLE tokens ADD COLUMN card_digest bytea;

-- Retention: the prune finds finished webhook events and finished jobs by
-- age without reading the ones still in flight.
CREATE INDEX webhook_events_done ON webhook_events (created_at)
    WHERE delivered_at IS NOT NULL OR given_up_at IS NOT NULL;
CREATE INDEX import_jobs_done ON import_jobs (updated_at)
    WHERE status IN ('finished', 'aborted', 'failed');
CREATE INDEX key_jobs_done ON key_jobs (updated_at)
    WHERE status IN ('finished', 'failed');
