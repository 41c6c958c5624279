/* metadata.c - the file's own tags (title, artist, ...) from FFmpeg's metadata dictionaries.
 *
 * DESIGN: FFmpeg already converts ID3v2, Vorbis comments, MP4 atoms and RIFF INFO to common
 * keys ("title", "artist", "album", "genre", "date", "track"); av_dict_get matches keys without
 * regard to case. Values are untrusted: they are length-limited, must be valid UTF-8 (they end up
 * in JSON), and numbers are parsed with bounds.
 */
#include "audio/audio_internal.h"

#include <libavutil/dict.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int clmr__utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xE0) == 0xC0 ? 2
                     : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4
                                          : 0;
        if (c == 0 || len == 0 || i + len > n) return 0;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* overlong forms, surrogates and values past U+10FFFF are invalid */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += len;
    }
    return 1;
}

static const char *lookup(const AVDictionary *a, const AVDictionary *b, const char *key)
{
    const AVDictionaryEntry *e = a ? av_dict_get(a, key, NULL, 0) : NULL;
    if ((!e || !e->value || !*e->value) && b) e = av_dict_get(b, key, NULL, 0);
    return e && e->value && *e->value ? e->value : NULL;
}

/* A copy cut to CLMR_AUDIO_META_MAX bytes at a character boundary, spaces trimmed; NULL when
 * empty or not UTF-8. */
static char *text(const char *v)
{
    if (!v) return NULL;
    while (*v == ' ')
        v++;
    size_t n = strlen(v);
    if (n > CLMR_AUDIO_META_MAX) {
        n = CLMR_AUDIO_META_MAX;
        while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
            n--; /* not mid-character */
    }
    while (n > 0 && v[n - 1] == ' ')
        n--;
    if (n == 0 || !clmr__utf8_valid(v, n)) return NULL;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, v, n);
        s[n] = 0;
    }
    return s;
}

/* Leading decimal digits as an int within [lo, hi], else 0. */
static int leading_int(const char *v, int lo, int hi)
{
    if (!v) return 0;
    while (*v == ' ')
        v++;
    long x = 0;
    int digits = 0;
    for (; isdigit((unsigned char)*v) && digits < 9; v++, digits++)
        x = x * 10 + (*v - '0');
    return digits && x >= lo && x <= hi ? (int)x : 0;
}

void clmr__audio_meta_read(clmr_audio_meta_t *m, const void *fmt_md, const void *stream_md)
{
    const AVDictionary *a = fmt_md, *b = stream_md;
    memset(m, 0, sizeof *m);
    m->title = text(lookup(a, b, "title"));
    m->artist = text(lookup(a, b, "artist"));
    if (!m->artist) m->artist = text(lookup(a, b, "album_artist"));
    m->album = text(lookup(a, b, "album"));
    m->genre = text(lookup(a, b, "genre"));
    const char *date = lookup(a, b, "date");
    if (!date) date = lookup(a, b, "year");
    m->year = leading_int(date, 1, 9999);
    const char *track = lookup(a, b, "track");
    if (!track) track = lookup(a, b, "tracknumber");
    m->track_number = leading_int(track, 1, 99999);
}

void clmr__audio_meta_clear(clmr_audio_meta_t *m)
{
    if (!m) return;
    free(m->title);
    free(m->artist);
    free(m->album);
    free(m->genre);
    memset(m, 0, sizeof *m);
}
