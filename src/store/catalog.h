/* catalog.h - the catalogue's richer rows (issue 17): file metadata, descriptors, acoustic
 * duplicates, filtered and sorted queries with full-text search, and metadata corrections.
 *
 * DESIGN: these live beside store.h (same conventions: 0 or a negative clmr_error_t, optional
 * errmsg, thread-safe, caller-owned inputs) so clmr_track_record_t and its users stay unchanged;
 * a track's extra columns come in a clmr_track_extra_t. Duplicate links always point at a root
 * (a track that is not itself a duplicate): ingest resolves a match to its root, PATCH re-links,
 * and deleting a root promotes its oldest duplicate (a trigger of migration 0004). Fingerprint
 * matching runs inside the ingest's write transaction, so two uploads of one recording arriving
 * together cannot both become roots. The store does not know how fingerprints compare: the
 * caller passes the similarity function (src/audio/fingerprint.h).
 */
#ifndef CLMR_STORE_CATALOG_H
#define CLMR_STORE_CATALOG_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *album, *genre;    /* NULL when unknown */
    int year, track_number; /* 0 when unknown */
    char duplicate_of[65];  /* root track id, "" when this track is not a duplicate */
    double bpm, bpm_confidence, onset_rate;                  /* NAN when unknown */
    double loudness_lufs, loudness_range_lu, true_peak_dbtp; /* NAN when unknown */
} clmr_track_extra_t;

/* Empty strings, zero numbers, NAN descriptors. */
void clmr_track_extra_init(clmr_track_extra_t *x);
/* Frees the strings and re-initialises (accepts NULL). */
void clmr_track_extra_clear(clmr_track_extra_t *x);

/* Reads the extra columns of track id (caller clears *out). CLMR_ENOT_FOUND when absent. */
int clmr_store_track_extra_get(clmr_store_t *s, const char *id, clmr_track_extra_t *out,
                               char **errmsg);

/* Similarity of two fingerprints in [0, 1] (pure; e.g. clmr_fingerprint_similarity). */
typedef double (*clmr_store_fp_similarity_fn)(const uint32_t *a, int na, const uint32_t *b, int nb);

typedef struct {
    const clmr_track_record_t *track; /* as for clmr_store_track_ingest */
    const clmr_track_extra_t *extra;  /* metadata + descriptors; its duplicate_of is ignored */
    const char *model_id;             /* embedding / scores as for clmr_store_track_ingest */
    const float *emb;
    int dim;
    const float *scores;
    int n_scores;
    const uint32_t *fp; /* raw fingerprint (fp_n words), NULL when none */
    int fp_n;
    clmr_store_fp_similarity_fn similarity; /* required when fp is given */
    double match_threshold;                 /* similarity at or above which it is a duplicate */
    double duration_tolerance_s;            /* candidates: |duration difference| <= this */
} clmr_catalog_ingest_t;

/* clmr_store_track_ingest plus the extra columns and the fingerprint, in ONE transaction. A NEW
 * track whose fingerprint matches a stored one (best similarity >= match_threshold among tracks
 * within the duration tolerance) is linked to that track's root: duplicate_of (optional, 65
 * bytes) receives the root id and *similarity (optional) the best similarity ("" / 0 when none).
 * An existing track keeps its metadata and link; its descriptors and fingerprint are refreshed
 * (filling them in for tracks ingested before migration 0004). */
int clmr_store_catalog_ingest(clmr_store_t *s, const clmr_catalog_ingest_t *in, int *created,
                              char *duplicate_of, double *similarity, char **errmsg);

/* Fingerprint of a track: malloc'd *fp (free()) of *n words. CLMR_ENOT_FOUND when none. */
int clmr_store_fingerprint_get(clmr_store_t *s, const char *id, uint32_t **fp, int *n,
                               char **errmsg);

/* --- Corrections (PATCH) --------------------------------------------------------------------- */

enum {
    CLMR_PATCH_TITLE = 1 << 0,
    CLMR_PATCH_ARTIST = 1 << 1,
    CLMR_PATCH_ALBUM = 1 << 2,
    CLMR_PATCH_GENRE = 1 << 3,
    CLMR_PATCH_EXTERNAL_ID = 1 << 4,
    CLMR_PATCH_YEAR = 1 << 5,
    CLMR_PATCH_TRACK_NUMBER = 1 << 6,
    CLMR_PATCH_DUPLICATE_OF = 1 << 7,
};

typedef struct {
    unsigned set; /* CLMR_PATCH_* bits of fields to change */
    const char *title, *artist, *album, *genre, *external_id; /* NULL clears the field */
    int year, track_number;                                   /* 0 clears the field */
    const char *duplicate_of; /* NULL: not a duplicate; else a track id (linked to its root) */
} clmr_track_patch_t;

/* Applies p to track id in one transaction. CLMR_ENOT_FOUND when id is absent; CLMR_EINVAL (with
 * errmsg naming the field) for a duplicate_of that does not exist or whose root is id itself.
 * Linking a root to another track re-links its own duplicates to the new root. Values are
 * validated by the caller (lengths, UTF-8, ranges); the schema checks ranges again. */
int clmr_store_track_patch(clmr_store_t *s, const char *id, const clmr_track_patch_t *p,
                           char **errmsg);

/* --- Queries ------------------------------------------------------------------------------- */

typedef enum {
    CLMR_SORT_CREATED = 0, /* insertion order (the default; stable keyset pages) */
    CLMR_SORT_TITLE,
    CLMR_SORT_ARTIST,
    CLMR_SORT_ALBUM,
    CLMR_SORT_YEAR,
    CLMR_SORT_DURATION,
    CLMR_SORT_BPM,
    CLMR_SORT_LOUDNESS,
    CLMR_SORT_TAG_SCORE, /* needs tag >= 0 */
    CLMR_SORT_RELEVANCE, /* FTS5 rank; needs a text search */
} clmr_track_sort_t;

typedef struct {
    const char *model_id; /* model whose tag scores filter, sort and come back; required */
    int tag;              /* tag index in the model's vocabulary, -1 for none */
    double tag_min;       /* with tag: keep tracks whose score >= tag_min */
    const char *artist;   /* exact match ignoring ASCII case, NULL for any */
    const char *text;     /* words searched in title, artist and album (FTS5), NULL for any */
    const char *title_text, *album_text; /* words searched in that column only, NULL for any */
    double bpm_min, bpm_max, lufs_min, lufs_max, duration_min, duration_max; /* NAN: unbounded */
    int64_t created_since;                                                   /* ms, 0 for any */
    int duplicates; /* -1 any, 0 only tracks that are not duplicates, 1 only duplicates */
    clmr_track_sort_t sort;
    int descending;
    const char *cursor; /* NULL/"" first page, else a next_cursor from the same query */
    int limit;          /* 1..1000 */
    int with_embedding; /* also read each row's embedding for model_id */
} clmr_track_query_t;

/* Defaults: no filters (NAN bounds, tag -1, duplicates -1), sort CREATED ascending, limit 50. */
clmr_track_query_t clmr_track_query_default(void);

typedef struct {
    clmr_track_record_t t;
    clmr_track_extra_t x;
    float *scores; /* n_scores tag scores for model_id, NULL when none stored */
    int n_scores;
    float *emb; /* dim floats with with_embedding, NULL otherwise or when none stored */
    int dim;
} clmr_track_row_t;

void clmr_track_rows_free(clmr_track_row_t *rows, size_t n);

/* One page of tracks matching q: malloc'd *rows (*n of them; free with clmr_track_rows_free),
 * *total (optional; NULL skips the count) the number of matches, *next_cursor a malloc'd cursor or
 * NULL on the last page. Sorted by q->sort then insertion order; tracks without a value (NULL)
 * come last in either direction. With the default sort, pages are stable under inserts and deletes
 * (keyset); with any other sort the cursor is an offset. CLMR_EINVAL for a malformed cursor, a
 * limit out of range, a tag/relevance sort without its filter, or a text search without a
 * searchable word (words need a letter or digit).
 */
int clmr_store_track_query(clmr_store_t *s, const clmr_track_query_t *q, clmr_track_row_t **rows,
                           size_t *n, int64_t *total, char **next_cursor, char **errmsg);

#endif
