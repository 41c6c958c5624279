-- 0002_jobs: fine-tuning jobs (issue 5) and the index that loads one model's embeddings.

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN
                    ('queued', 'running', 'evaluating', 'succeeded', 'failed', 'cancelled')),
    base_model_id   TEXT REFERENCES models(id) ON DELETE SET NULL,
    params          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    step            INTEGER NOT NULL DEFAULT 0,
    steps           INTEGER NOT NULL DEFAULT 0,
    losses          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(losses)),
    result_model_id TEXT REFERENCES models(id) ON DELETE SET NULL,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL
);
-- At most one unfinished job (the store also checks inside its write transaction).
CREATE UNIQUE INDEX jobs_one_unfinished ON jobs(1) WHERE state IN ('queued', 'running', 'evaluating');

-- Loading the similarity index reads every embedding of one model.
CREATE INDEX embeddings_by_model ON embeddings(model_id);
-- "tracks ingested since model X was made" (fine-tuning on new tracks).
CREATE INDEX tracks_by_created ON tracks(created_at);
