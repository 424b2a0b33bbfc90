-- Tokens are found by card through a hash index of their fingerprint.
--
-- Before: tokens_fingerprint was a B-tree on (tenant_id, fingerprint). A
-- fingerprint is a keyed hash of the card, so every new token's entry went
-- to a random leaf page; after each checkpoint the first change of a page
-- writes all 8 KB of it to the WAL. At 10,000,000 tokens the index had
-- ~123,000 leaf pages and a new token logged 0.91 full-page images (5.3 kB of
-- WAL against 2.1 kB at 100,000 tokens), the longer commits slowing tokenize
-- to 0.74 x its rate at 100,000.
--
-- After: a hash index of the fingerprint alone. Its entries are the 4-byte
-- hash codes, so it has fewer than half the pages (2,000,000 keys: 64 MB
-- against 148 MB) and an insert logs about half the WAL (3.1-3.5 kB against
-- 6.0-6.4 kB a row, measured right after a checkpoint). Lookups by card
-- are by equality only and always also filter the tenant (a fingerprint is
-- keyed per tenant, so another tenant's equal fingerprint does not occur);
-- the B-tree's ordering was never used.

CREATE INDEX tokens_fingerprint_hash ON tokens USING hash (fingerprint);
DROP INDEX tokens_fingerprint;
