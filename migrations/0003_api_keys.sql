-- 0003_api_keys: API keys with scopes (issue 12), the audio pool's byte count per track and the
-- index the tag-cache eviction walks.

-- A key is shown once when it is made; only its sha256 (hex) is kept. prefix (the first
-- characters of the key) lets an operator tell keys apart in `clmrd keys list`.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Bytes of each track's pool file, for the pool budget (max-pool-bytes). Rows from before this
-- migration are filled in from the files at the next start-up (clmr_store_pool_sweep).
ALTER TABLE tracks ADD COLUMN audio_bytes INTEGER NOT NULL DEFAULT 0;

-- Age-based eviction of cached results.
CREATE INDEX tag_cache_by_created ON tag_cache(created_at);
