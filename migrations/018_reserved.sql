-- Intentionally empty: this number is taken by a migration of another
-- change; it keeps the numbering contiguous until the two are merged.
SELECT 1;
