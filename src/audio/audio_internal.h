/* audio_internal.h - private helpers shared by the files of src/audio (and its unit tests).
 *
 * DESIGN: the policy (which containers and codecs we accept, which we refuse and why) lives in
 * formats.c as plain tables so it can be read and tested without FFmpeg state; decode.c holds
 * the FFmpeg plumbing. Nothing here is public API.
 */
#ifndef CLMR_AUDIO_INTERNAL_H
#define CLMR_AUDIO_INTERNAL_H

#include "clmr/audio.h"

#include <stddef.h>

/* What we do with a container detected by probing. */
typedef enum {
    CLMR__FMT_ACCEPT = 0,    /* on the whitelist: decode it */
    CLMR__FMT_PLAYLIST = 1,  /* playlist/indirection (hls, concat, ...): refused, may open files */
    CLMR__FMT_NOT_AUDIO = 2, /* images, text, subtitles: "not an audio file" */
    CLMR__FMT_REFUSED = 3,   /* some other (media) container not on the whitelist */
} clmr__fmt_class_t;

/* Classifies an FFmpeg demuxer name ("mov,mp4,m4a,3gp,3g2,mj2" matches on any of its tokens).
 * Thread-safe (pure). */
clmr__fmt_class_t clmr__audio_classify_format(const char *demuxer_name);

/* Comma-separated demuxer whitelist handed to FFmpeg as format_whitelist (static storage). */
const char *clmr__audio_format_whitelist(void);

/* Comma-separated decoder whitelist handed to FFmpeg as codec_whitelist (static storage). */
const char *clmr__audio_codec_whitelist(void);

/* 1 when `name` is one of the comma-separated tokens of `list`. Thread-safe (pure). */
int clmr__audio_in_list(const char *name, const char *list);

/* Fields of a RIFF/WAVE (or RF64) "fmt " chunk found by clmr__audio_wav_sniff. */
typedef struct {
    unsigned format_tag, channels, sample_rate, block_align, bits;
} clmr__wav_fmt_t;

/* Looks for a RIFF/RF64 WAVE header at the start of data and walks its chunks (bounded) to the
 * "fmt " chunk. Returns 1 and fills *fmt when found, 0 when data is not a WAVE file or the chunk
 * is not within the first bytes. FFmpeg rejects some lying headers itself with a generic
 * "invalid data"; this lets us name the bad field instead. Thread-safe (pure). */
int clmr__audio_wav_sniff(const unsigned char *data, size_t size, clmr__wav_fmt_t *fmt);

/* metadata.c: fills *m from a container's and its audio stream's FFmpeg metadata (AVDictionary,
 * passed as void so this header needs no FFmpeg include). Fields it cannot copy stay empty (an
 * out-of-memory only loses tags). */
void clmr__audio_meta_read(clmr_audio_meta_t *m, const void *fmt_md, const void *stream_md);
void clmr__audio_meta_clear(clmr_audio_meta_t *m);

/* 1 when s[0..n) is valid UTF-8 without NUL bytes. Thread-safe (pure). */
int clmr__utf8_valid(const char *s, size_t n);

#endif
