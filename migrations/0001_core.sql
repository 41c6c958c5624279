-- 0001_core: tracks, models, per-model embeddings and tag scores, the tag-result cache.
-- Times are Unix milliseconds; float vectors are little-endian float32 BLOBs. Tables holding
-- kilobyte BLOBs keep a rowid (WITHOUT ROWID suits only small rows).

CREATE TABLE models (
    id          TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    parent_id   TEXT REFERENCES models(id) ON DELETE SET NULL,
    status      TEXT NOT NULL DEFAULT 'candidate'
                CHECK (status IN ('candidate', 'active', 'retired')),
    metadata    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
);
-- At most one active model.
CREATE UNIQUE INDEX models_one_active ON models(status) WHERE status = 'active';

-- seq (AUTOINCREMENT: never reused) gives a stable insertion order for cursor pagination.
CREATE TABLE tracks (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE CHECK (length(id) = 64),
    title       TEXT,
    artist      TEXT,
    external_id TEXT,
    duration_s  REAL NOT NULL CHECK (duration_s >= 0),
    created_at  INTEGER NOT NULL,
    audio_path  TEXT
);

CREATE TABLE embeddings (
    track_id  TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    model_id  TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    dim       INTEGER NOT NULL CHECK (dim > 0),
    vec       BLOB NOT NULL CHECK (length(vec) = 4 * dim),
    UNIQUE (track_id, model_id)
);

CREATE TABLE tag_scores (
    track_id  TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    model_id  TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    n         INTEGER NOT NULL CHECK (n > 0),
    scores    BLOB NOT NULL CHECK (length(scores) = 4 * n),
    UNIQUE (track_id, model_id)
);

-- Results of POST /v1/tag keyed by (sha256 of the uploaded bytes, model): a repeat upload is
-- answered from here without decoding.
CREATE TABLE tag_cache (
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    model_id    TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    duration_s  REAL NOT NULL,
    chunks      INTEGER NOT NULL,
    n_scores    INTEGER NOT NULL,
    scores      BLOB NOT NULL CHECK (length(scores) = 4 * n_scores),
    dim         INTEGER NOT NULL DEFAULT 0,
    embedding   BLOB CHECK (embedding IS NULL OR length(embedding) = 4 * dim),
    created_at  INTEGER NOT NULL,
    UNIQUE (sha256, model_id)
);
