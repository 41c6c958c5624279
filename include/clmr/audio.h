/* audio.h - decode untrusted audio bytes to 22,050 Hz mono float32.
 *
 * DESIGN: FFmpeg reads only from memory through a custom AVIOContext; no file or network
 * protocol is ever opened, containers are restricted to a whitelist, and playlist or
 * indirection formats (HLS, ffconcat, SBG, SDP, DASH) are refused. Every limit (input bytes,
 * decoded duration counted from decoded samples, sample rate, channels, wall-clock deadline) is a
 * parameter with a safe default. Each failure has its own error code and a message a user can
 * act on.
 */
#ifndef CLMR_AUDIO_H
#define CLMR_AUDIO_H

#include <stddef.h>

#define CLMR_SAMPLE_RATE 22050

typedef struct {
    size_t max_input_bytes; /* default 200 MiB */
    double max_duration_s;  /* default 900 s; counted from decoded samples */
    int min_sample_rate;    /* default 8000 */
    int max_sample_rate;    /* default 192000 */
    int max_channels;       /* default 8 */
    double deadline_s;      /* wall-clock limit for one decode, default 60 s */
} clmr_audio_params_t;

/* Returns the default limits. */
clmr_audio_params_t clmr_audio_default_params(void);

/* Tags read from the file itself (ID3, Vorbis comments, MP4 atoms, RIFF INFO...) through FFmpeg's
 * metadata API: the container's tags, then the audio stream's (Ogg keeps them there). Strings are
 * malloc'd valid UTF-8 of at most CLMR_AUDIO_META_MAX bytes (longer ones cut at a character
 * boundary; invalid UTF-8 is dropped), NULL when absent. */
#define CLMR_AUDIO_META_MAX 1024
typedef struct {
    char *title, *artist, *album, *genre;
    int year;         /* leading digits of "date"/"year" (1..9999), 0 when unknown */
    int track_number; /* from "track" ("3/12" -> 3), 0 when unknown */
} clmr_audio_meta_t;

typedef struct {
    float *samples;    /* (n_samples) mono, CLMR_SAMPLE_RATE Hz; owned, free with clmr_audio_free */
    size_t n_samples;  /* > 0 on success; no padding is applied here */
    double duration_s; /* n_samples / CLMR_SAMPLE_RATE */
    char format[32];   /* demuxer short name, e.g. "mp3", "ogg"; "mp4" for m4a/mp4/mov */
    char codec[32];    /* decoder name, e.g. "mp3float", "vorbis" */
    int source_rate;   /* sample rate of the first decoded frame */
    int source_channels;    /* channel count of the first decoded frame */
    clmr_audio_meta_t meta; /* the file's own tags (freed by clmr_audio_free) */
    /* What a caller needs to warn about a damaged or truncated file that still decoded: */
    double declared_duration_s; /* the container's own duration (header), 0 when it has none */
    long skipped_packets;       /* packets that failed to decode and were skipped */
    int read_error;             /* 1 when reading stopped early on a damaged container */
} clmr_audio_t;

/* Decodes `size` bytes at `data` (remains owned by the caller) into *out. Returns 0 or a
 * CLMR_EAUDIO_* / CLMR_ENOMEM code; on failure *out is zeroed and, when errmsg is not NULL,
 * *errmsg receives a malloc'd message naming the problem. params may be NULL for defaults.
 * Thread-safe: uses no global state beyond FFmpeg's (which is thread-safe since 4.0); the first
 * call installs, once for the whole process, an av_log callback that prints nothing (FFmpeg's
 * last error line is quoted in *errmsg instead) and caps every FFmpeg allocation at
 * CLMR_AUDIO_FFMPEG_MAX_ALLOC bytes (av_max_alloc). Formats, codecs, limits and error codes are
 * listed in docs/audio.md. */
#define CLMR_AUDIO_FFMPEG_MAX_ALLOC ((size_t)256 << 20)
int clmr_audio_decode_memory(clmr_audio_t *out, const void *data, size_t size,
                             const clmr_audio_params_t *params, char **errmsg);

/* Reads the file at path into memory (refusing more than params->max_input_bytes) and decodes it
 * as clmr_audio_decode_memory does. CLMR_EIO when the file cannot be read. */
int clmr_audio_decode_file(clmr_audio_t *out, const char *path, const clmr_audio_params_t *params,
                           char **errmsg);

/* A warning about a file that decoded but is probably damaged (src/audio/damage.c). */
typedef struct {
    const char *code;  /* "truncated" or "decode_errors" (static storage) */
    char message[192]; /* e.g. "decoded 2.3 s of the 17.4 s the container declares" */
} clmr_audio_warning_t;

/* Fills up to max warnings about a: "truncated" when the decoded duration falls short of the
 * container's declared duration by more than 0.5 s and 2 %, or reading stopped early on a
 * damaged container; "decode_errors" when packets were skipped. Returns how many were written.
 * Thread-safe. */
int clmr_audio_warnings(const clmr_audio_t *a, clmr_audio_warning_t *out, int max);

/* Frees the samples and metadata of a; accepts NULL and zeroed structs. */
void clmr_audio_free(clmr_audio_t *a);

#endif
