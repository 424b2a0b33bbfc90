-- reserved for this change; replaced by it
SELECT 1;
