-- 0005_cache_precision: the arithmetic (fp32 or bf16, configuration key precision) that produced
-- each cached POST /v1/tag result. Rows from before this migration were all computed in fp32.
-- A daemon answers from the cache only with results of its own precision (issue 14).

ALTER TABLE tag_cache ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32'
    CHECK (precision IN ('fp32', 'bf16'));
