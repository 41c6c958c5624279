-- 0004_catalog (issue 17): file metadata, descriptors, duplicate links, acoustic fingerprints and
-- full-text search over the catalogue. Old rows keep NULL descriptors (unknown) until re-ingested.

ALTER TABLE tracks ADD COLUMN album TEXT;
ALTER TABLE tracks ADD COLUMN genre TEXT;
ALTER TABLE tracks ADD COLUMN year INTEGER CHECK (year IS NULL OR year BETWEEN 1 AND 9999);
ALTER TABLE tracks ADD COLUMN track_number INTEGER
    CHECK (track_number IS NULL OR track_number BETWEEN 1 AND 99999);
-- The canonical track this one is an acoustic duplicate of (never itself a duplicate: the store
-- keeps every link pointing at a root). No foreign key: the trigger below re-links on delete.
ALTER TABLE tracks ADD COLUMN duplicate_of TEXT CHECK (duplicate_of IS NULL OR length(duplicate_of) = 64);
-- Descriptors (NULL = not measured, or undefined such as the loudness of silence).
ALTER TABLE tracks ADD COLUMN bpm REAL;
ALTER TABLE tracks ADD COLUMN bpm_confidence REAL;
ALTER TABLE tracks ADD COLUMN onset_rate REAL;
ALTER TABLE tracks ADD COLUMN loudness_lufs REAL;
ALTER TABLE tracks ADD COLUMN loudness_range_lu REAL;
ALTER TABLE tracks ADD COLUMN true_peak_dbtp REAL;

CREATE INDEX tracks_by_duplicate ON tracks(duplicate_of) WHERE duplicate_of IS NOT NULL;
CREATE INDEX tracks_by_duration ON tracks(duration_s);
CREATE INDEX tracks_by_artist ON tracks(artist COLLATE NOCASE);
CREATE INDEX tracks_by_bpm ON tracks(bpm) WHERE bpm IS NOT NULL;
CREATE INDEX tracks_by_loudness ON tracks(loudness_lufs) WHERE loudness_lufs IS NOT NULL;

-- Deleting a canonical track promotes its oldest duplicate and re-links the others to it.
CREATE TRIGGER tracks_duplicate_promote AFTER DELETE ON tracks
WHEN EXISTS (SELECT 1 FROM tracks WHERE duplicate_of = old.id)
BEGIN
    UPDATE tracks SET duplicate_of =
        (SELECT id FROM tracks WHERE duplicate_of = old.id ORDER BY seq LIMIT 1)
    WHERE duplicate_of = old.id;
    UPDATE tracks SET duplicate_of = NULL WHERE duplicate_of = id;
END;

-- Raw Chromaprint fingerprints (little-endian uint32 words); duration for the candidate range.
CREATE TABLE fingerprints (
    track_id    TEXT PRIMARY KEY REFERENCES tracks(id) ON DELETE CASCADE,
    duration_s  REAL NOT NULL,
    n           INTEGER NOT NULL CHECK (n > 0),
    fp          BLOB NOT NULL CHECK (length(fp) = 4 * n)
);
CREATE INDEX fingerprints_by_duration ON fingerprints(duration_s);

-- Text search over title, artist and album (external content: the text lives once, in tracks).
CREATE VIRTUAL TABLE tracks_fts USING fts5(title, artist, album, content = 'tracks',
    content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER tracks_fts_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO tracks_fts(rowid, title, artist, album) VALUES (new.seq, new.title, new.artist, new.album);
END;
CREATE TRIGGER tracks_fts_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO tracks_fts(tracks_fts, rowid, title, artist, album)
        VALUES ('delete', old.seq, old.title, old.artist, old.album);
END;
CREATE TRIGGER tracks_fts_update AFTER UPDATE OF title, artist, album ON tracks BEGIN
    INSERT INTO tracks_fts(tracks_fts, rowid, title, artist, album)
        VALUES ('delete', old.seq, old.title, old.artist, old.album);
    INSERT INTO tracks_fts(rowid, title, artist, album) VALUES (new.seq, new.title, new.artist, new.album);
END;
INSERT INTO tracks_fts(tracks_fts) VALUES ('rebuild');
