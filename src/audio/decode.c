/* decode.c - untrusted audio bytes -> 22,050 Hz mono float32 (include/clmr/audio.h).
 *
 * DESIGN: the bytes stay in memory and FFmpeg reads them through a custom AVIOContext, so no
 * protocol is ever used; io_open is replaced by a function that refuses every nested open and
 * protocol_whitelist is "none" as a second lock. Before FFmpeg parses anything we probe the
 * bytes ourselves and classify the detected container (formats.c): playlists are refused,
 * non-audio is named as such, and only whitelisted demuxers are opened (the probed format is
 * passed explicitly, so FFmpeg does not probe again). RIFF/WAVE headers are sniffed first so a
 * lying header is reported by field rather than as "invalid data".
 *
 * Decoding counts output samples and stops the moment the duration limit is passed, so a
 * decompression bomb costs at most `max_duration_s` of decoding. Sample rate and channel count
 * are checked on every frame. When they (or the sample format) change mid-stream - chained Ogg
 * files, some broadcast MP3/AAC - the resampler is drained and re-initialised for the new
 * parameters, so the output stays one continuous 22,050 Hz mono signal; the limits apply to
 * each new set of parameters. Downmixing is the mean of all channels (librosa/torchaudio
 * convention: a sine on one channel of two comes out at half amplitude). 22,050 Hz mono float
 * input bypasses the resampler entirely and is copied bit for bit.
 *
 * Truncated files: whatever decodes before the cut is returned (like every media player); a
 * file is an error only when nothing decodes (CLMR_EAUDIO_CORRUPT when the demuxer or decoder
 * reported damage, CLMR_EAUDIO_NO_SAMPLES when the stream is simply empty) or when the header
 * or index needed to start is missing (e.g. an MP4 cut before its trailing moov atom).
 *
 * The wall-clock deadline is enforced in the read callback, in FFmpeg's interrupt callback and
 * once per packet. FFmpeg's log goes to a callback that prints nothing and keeps the last error
 * line per thread, so our messages can quote it.
 */
#include "clmr/audio.h"
#include "clmr/error.h"
#include "audio/audio_internal.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    PROBE_BYTES = 1000000,    /* probesize: bytes looked at to detect the container */
    IO_BUF_BYTES = 64 * 1024, /* AVIOContext buffer */
    MAX_STREAMS = 16,         /* audio + cover art + a few; more is not a song */
    MAX_PARAM_CHANGES = 1000, /* resampler re-inits allowed in one stream */
    MIN_BAD_PACKETS = 100,    /* undecodable packets tolerated before judging the ratio */
    INITIAL_CAPACITY_S = 30,  /* first output allocation, seconds (grows x2) */
};

clmr_audio_params_t clmr_audio_default_params(void)
{
    return (clmr_audio_params_t){
        .max_input_bytes = (size_t)200 << 20,
        .max_duration_s = 900.0,
        .min_sample_rate = 8000,
        .max_sample_rate = 192000,
        .max_channels = 8,
        .deadline_s = 60.0,
    };
}

void clmr_audio_free(clmr_audio_t *a)
{
    if (!a) return;
    free(a->samples);
    clmr__audio_meta_clear(&a->meta);
    memset(a, 0, sizeof(*a));
}

/* ---- FFmpeg logging: silent, last error line kept per thread ---- */

static _Thread_local char t_last_log[200];
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;

static void log_cb(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_ERROR) return;
    vsnprintf(t_last_log, sizeof(t_last_log), fmt, vl);
    size_t n = strlen(t_last_log);
    while (n > 0 && (t_last_log[n - 1] == '\n' || t_last_log[n - 1] == '\r'))
        t_last_log[--n] = '\0';
}

static void log_init(void)
{
    av_log_set_callback(log_cb);
    /* FFmpeg allocates what a file's size fields ask for, up to INT_MAX by default: a lying
     * header could make each decode ask for ~2 GiB. No single buffer a decode of an accepted
     * upload needs comes near this bound (the largest are packets, at most the upload itself:
     * a cover image, a long uncompressed frame), and the bad-audio corpus passes with it. */
    av_max_alloc(CLMR_AUDIO_FFMPEG_MAX_ALLOC);
}

/* FFmpeg's last error line (or its text for `err`) to quote in a message. */
static const char *ff_detail(int err, char *buf, size_t n)
{
    if (t_last_log[0]) return t_last_log;
    av_strerror(err, buf, n);
    return buf;
}

/* ---- memory source, deadline ---- */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    struct timespec deadline;
    int timed_out;
    int nested_opens; /* io_open attempts (all refused) */
} mem_src_t;

static int deadline_passed(mem_src_t *s)
{
    if (s->timed_out) return 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > s->deadline.tv_sec ||
        (now.tv_sec == s->deadline.tv_sec && now.tv_nsec >= s->deadline.tv_nsec))
        s->timed_out = 1;
    return s->timed_out;
}

static int read_cb(void *opaque, uint8_t *buf, int n)
{
    mem_src_t *s = opaque;
    if (deadline_passed(s)) return AVERROR_EXIT;
    if (s->pos >= s->size) return AVERROR_EOF;
    size_t left = s->size - s->pos, k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static int64_t seek_cb(void *opaque, int64_t off, int whence)
{
    mem_src_t *s = opaque;
    if (whence & AVSEEK_SIZE) return (int64_t)s->size;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = (int64_t)s->pos;
        break;
    case SEEK_END:
        base = (int64_t)s->size;
        break;
    default:
        return AVERROR(EINVAL);
    }
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0 || base + off > (int64_t)s->size)
        return AVERROR(EINVAL);
    s->pos = (size_t)(base + off);
    return (int64_t)s->pos;
}

static int interrupt_cb(void *opaque)
{
    return deadline_passed(opaque);
}

/* Replaces AVFormatContext.io_open: no demuxer may open another file or URL, ever. */
static int refuse_io_open(AVFormatContext *ctx, AVIOContext **pb, const char *url, int flags,
                          AVDictionary **options)
{
    mem_src_t *s = ctx->opaque;
    if (s) s->nested_opens++;
    *pb = NULL;
    return AVERROR(EPERM);
}

/* A short, familiar name for a demuxer: its first token, and "mp4" for FFmpeg's
 * "mov,mp4,m4a,3gp,3g2,mj2" (what people call an .m4a/.mp4 file). */
static void display_name(const char *ff, char *buf, size_t n)
{
    size_t k = strcspn(ff, ",");
    if (k == 3 && strncmp(ff, "mov", 3) == 0) ff = "mp4", k = 3;
    snprintf(buf, n, "%.*s", (int)k, ff);
}

/* ---- probing ---- */

static size_t id3v2_len(const uint8_t *p, size_t n)
{
    if (n < 10 || memcmp(p, "ID3", 3) != 0 || p[3] == 0xff || p[4] == 0xff) return 0;
    if ((p[6] | p[7] | p[8] | p[9]) & 0x80) return 0;
    size_t len = ((size_t)p[6] << 21 | (size_t)p[7] << 14 | (size_t)p[8] << 7 | p[9]) + 10;
    if (p[5] & 0x10) len += 10; /* footer */
    return len;
}

/* Probes growing prefixes (2 KiB, doubling, up to PROBE_BYTES) and stops at the first confident
 * answer, as av_probe_input_buffer2 does: running every demuxer's probe over a full megabyte
 * costs ~20 ms, over 2 KiB almost nothing. At the largest size any positive score counts. */
static const AVInputFormat *probe_at(const uint8_t *data, size_t size, int *score)
{
    size_t max = size < PROBE_BYTES ? size : PROBE_BYTES;
    uint8_t *buf = av_malloc(max + AVPROBE_PADDING_SIZE);
    const AVInputFormat *f = NULL;
    *score = 0;
    if (!buf) return NULL;
    for (size_t n = max < 2048 ? max : 2048;; n = n * 2 < max ? n * 2 : max) {
        memcpy(buf, data, n);
        memset(buf + n, 0, AVPROBE_PADDING_SIZE);
        AVProbeData pd = {.filename = "", .buf = buf, .buf_size = (int)n, .mime_type = NULL};
        int sc = 0;
        f = av_probe_input_format3(&pd, 1, &sc);
        *score = f ? sc : 0;
        if ((f && sc > AVPROBE_SCORE_RETRY) || n == max) break;
    }
    av_free(buf);
    return f;
}

/* Detects the container like av_probe_input_buffer2 does at its largest size; an ID3v2 tag
 * larger than the window (a big cover image) would hide the audio, and since we have all the
 * bytes we can simply probe again after it. */
static const AVInputFormat *probe(const uint8_t *data, size_t size, int *score)
{
    const AVInputFormat *f = probe_at(data, size, score);
    size_t id3 = id3v2_len(data, size);
    if ((!f || *score <= AVPROBE_SCORE_RETRY) && id3 > 0 && id3 < size) {
        int s2 = 0;
        const AVInputFormat *f2 = probe_at(data + id3, size - id3, &s2);
        if (f2 && s2 > *score) {
            f = f2;
            *score = s2;
        }
    }
    return f;
}

/* ---- the decoder state ---- */

typedef struct {
    clmr_audio_params_t p;
    char **errmsg;
    mem_src_t src;
    AVFormatContext *fmt;
    AVIOContext *pb;
    AVCodecContext *dec;
    const AVCodec *codec;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    int probe_score;
    char fmt_name[32]; /* display_name of the demuxer */

    /* current conversion: bypass (copy) or swr */
    int conv_valid, bypass;
    SwrContext *swr;
    int cur_rate, cur_fmt;
    AVChannelLayout cur_layout;
    int param_changes;

    float *out;
    size_t n, cap, max_out;
    int first_rate, first_channels;
    long good_packets, bad_packets;
    int read_err;
} dec_t;

static int fail_ff(dec_t *d, int ffret, const char *what)
{
    char buf[128];
    if (d->src.timed_out || ffret == AVERROR_EXIT)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_TIMEOUT,
                            "decoding took longer than the %g s deadline", d->p.deadline_s);
    /* FFmpeg allocates what the file's size fields ask for (capped at 2 GiB); on untrusted input a
     * failed allocation there almost always means a corrupt size, not a full machine. Our own
     * allocations report CLMR_ENOMEM directly. */
    if (ffret == AVERROR(ENOMEM))
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "the audio data is invalid: FFmpeg could not allocate memory while %s "
                            "(a size field is probably corrupt)",
                            what);
    return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                        "corrupt or truncated audio: %s failed (%s)", what,
                        ff_detail(ffret, buf, sizeof(buf)));
}

/* Makes room for `extra` more output samples without ever allocating much beyond the limit. */
static int reserve(dec_t *d, size_t extra)
{
    if (d->n + extra <= d->cap) return 0;
    size_t want = d->cap ? d->cap * 2 : (size_t)INITIAL_CAPACITY_S * CLMR_SAMPLE_RATE;
    if (want > d->max_out + 1) want = d->max_out + 1;
    if (want < d->n + extra) want = d->n + extra;
    float *q = realloc(d->out, want * sizeof(float));
    if (!q) return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory for %zu samples", want);
    d->out = q;
    d->cap = want;
    return 0;
}

/* Accounts for `k` new samples at d->out + d->n: finiteness and the duration limit. */
static int commit(dec_t *d, size_t k)
{
    const float *s = d->out + d->n;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(s[i]))
            return clmr_set_err(d->errmsg, CLMR_EAUDIO_NONFINITE,
                                "the audio contains NaN or infinite samples (at %.3f s)",
                                (double)(d->n + i) / CLMR_SAMPLE_RATE);
    }
    d->n += k;
    if (d->n > d->max_out)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_TOO_LONG,
                            "the audio is longer than the %g s limit (decoding stopped there)",
                            d->p.max_duration_s);
    return 0;
}

/* Drains what the resampler still holds (its filter delay) into the output. */
static int drain_swr(dec_t *d)
{
    if (!d->swr) return 0;
    int need = swr_get_out_samples(d->swr, 0);
    if (need <= 0) return 0;
    int rc = reserve(d, (size_t)need);
    if (rc) return rc;
    uint8_t *o = (uint8_t *)(d->out + d->n);
    int got = swr_convert(d->swr, &o, need, NULL, 0);
    if (got < 0) return fail_ff(d, got, "resampling");
    return commit(d, (size_t)got);
}

static int setup_conversion(dec_t *d, const AVFrame *f)
{
    int rc = drain_swr(d);
    if (rc) return rc;
    swr_free(&d->swr);
    av_channel_layout_uninit(&d->cur_layout);
    d->conv_valid = 0;
    if (++d->param_changes > MAX_PARAM_CHANGES)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "the audio parameters change more than %d times", MAX_PARAM_CHANGES);

    int nch = f->ch_layout.nb_channels;
    if (av_channel_layout_copy(&d->cur_layout, &f->ch_layout) < 0)
        return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (channel layout)");
    d->cur_rate = f->sample_rate;
    d->cur_fmt = f->format;
    d->bypass = f->sample_rate == CLMR_SAMPLE_RATE && nch == 1 &&
                (f->format == AV_SAMPLE_FMT_FLT || f->format == AV_SAMPLE_FMT_FLTP);
    if (!d->bypass) {
        /* swr needs a layout it understands; the downmix matrix is ours, so any order works. */
        AVChannelLayout in_layout;
        if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
            av_channel_layout_default(&in_layout, nch);
        else if (av_channel_layout_copy(&in_layout, &f->ch_layout) < 0)
            return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (channel layout)");
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        int ret = swr_alloc_set_opts2(&d->swr, &mono, AV_SAMPLE_FMT_FLT, CLMR_SAMPLE_RATE,
                                      &in_layout, f->format, f->sample_rate, 0, NULL);
        av_channel_layout_uninit(&in_layout);
        if (ret < 0) return fail_ff(d, ret, "setting up the resampler");
        if (nch > 1) {
            double mean[64];
            for (int i = 0; i < nch; i++)
                mean[i] = 1.0 / nch;
            ret = swr_set_matrix(d->swr, mean, nch);
            if (ret < 0) return fail_ff(d, ret, "setting the downmix matrix");
        }
        ret = swr_init(d->swr);
        if (ret < 0) return fail_ff(d, ret, "setting up the resampler");
    }
    d->conv_valid = 1;
    return 0;
}

static int process_frame(dec_t *d, const AVFrame *f)
{
    if (f->nb_samples <= 0) return 0;
    int rate = f->sample_rate, nch = f->ch_layout.nb_channels;
    if (rate < d->p.min_sample_rate || rate > d->p.max_sample_rate)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_RATE,
                            "the sample rate %d Hz is outside the accepted %d-%d Hz", rate,
                            d->p.min_sample_rate, d->p.max_sample_rate);
    if (nch < 1 || nch > d->p.max_channels || nch > 64)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CHANNELS,
                            "%d channels is outside the accepted 1-%d channels", nch,
                            d->p.max_channels);
    if (!d->first_rate) {
        d->first_rate = rate;
        d->first_channels = nch;
    }
    if (!d->conv_valid || rate != d->cur_rate || f->format != d->cur_fmt ||
        av_channel_layout_compare(&f->ch_layout, &d->cur_layout) != 0) {
        int rc = setup_conversion(d, f);
        if (rc) return rc;
    }
    if (d->bypass) {
        int rc = reserve(d, (size_t)f->nb_samples);
        if (rc) return rc;
        memcpy(d->out + d->n, f->extended_data[0], (size_t)f->nb_samples * sizeof(float));
        return commit(d, (size_t)f->nb_samples);
    }
    int need = swr_get_out_samples(d->swr, f->nb_samples);
    if (need < 0) return fail_ff(d, need, "resampling");
    int rc = reserve(d, (size_t)need);
    if (rc) return rc;
    uint8_t *o = (uint8_t *)(d->out + d->n);
    int got = swr_convert(d->swr, &o, need, (const uint8_t **)f->extended_data, f->nb_samples);
    if (got < 0) return fail_ff(d, got, "resampling");
    return commit(d, (size_t)got);
}

/* Errors that end the decode instead of skipping one damaged packet. */
static int is_fatal(int ffret)
{
    return ffret == AVERROR(ENOMEM) || ffret == AVERROR_EXIT;
}

/* Feeds one packet (NULL = flush) and converts every frame it yields. */
static int decode_packet(dec_t *d, const AVPacket *pkt)
{
    int ret = avcodec_send_packet(d->dec, pkt);
    if (ret < 0 && ret != AVERROR_EOF) {
        if (is_fatal(ret) || d->src.timed_out) return fail_ff(d, ret, "decoding");
        d->bad_packets++; /* a damaged packet: skip it, like players do */
    } else if (pkt) {
        d->good_packets++;
    }
    for (;;) {
        ret = avcodec_receive_frame(d->dec, d->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) break;
        if (ret < 0) {
            if (is_fatal(ret) || d->src.timed_out) return fail_ff(d, ret, "decoding");
            d->bad_packets++;
            break;
        }
        int rc = process_frame(d, d->frame);
        av_frame_unref(d->frame);
        if (rc) return rc;
    }
    if (d->bad_packets > MIN_BAD_PACKETS && d->bad_packets > d->good_packets) {
        char buf[128];
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "the %s audio is mostly undecodable (%ld damaged packets; %s)",
                            d->codec->name, d->bad_packets,
                            ff_detail(AVERROR_INVALIDDATA, buf, sizeof(buf)));
    }
    return 0;
}

static int check_wav_header(dec_t *d, const uint8_t *data, size_t size)
{
    clmr__wav_fmt_t w;
    if (!clmr__audio_wav_sniff(data, size, &w)) return 0;
    if (w.sample_rate < (unsigned)d->p.min_sample_rate ||
        w.sample_rate > (unsigned)d->p.max_sample_rate)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_RATE,
                            "the WAV header declares %u Hz, outside the accepted %d-%d Hz",
                            w.sample_rate, d->p.min_sample_rate, d->p.max_sample_rate);
    if (w.channels < 1 || w.channels > (unsigned)d->p.max_channels)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CHANNELS,
                            "the WAV header declares %u channels, outside the accepted 1-%d",
                            w.channels, d->p.max_channels);
    int pcm = w.format_tag == 1 || w.format_tag == 3 || w.format_tag == 0xfffe;
    if (pcm && (w.bits == 0 || w.bits > 64))
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "the WAV header declares %u bits per sample", w.bits);
    return 0;
}

static int open_input(dec_t *d, const AVInputFormat *ifmt)
{
    int rc;
    AVDictionary *opts = NULL;
    uint8_t *iobuf = av_malloc(IO_BUF_BYTES);
    if (!iobuf) return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (I/O buffer)");
    d->pb = avio_alloc_context(iobuf, IO_BUF_BYTES, 0, &d->src, read_cb, NULL, seek_cb);
    if (!d->pb) {
        av_free(iobuf);
        return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (I/O context)");
    }
    d->fmt = avformat_alloc_context();
    if (!d->fmt) return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (format context)");
    d->fmt->pb = d->pb;
    d->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    d->fmt->opaque = &d->src;
    d->fmt->io_open = refuse_io_open;
    d->fmt->interrupt_callback.callback = interrupt_cb;
    d->fmt->interrupt_callback.opaque = &d->src;

    char num[32];
    av_dict_set(&opts, "format_whitelist", clmr__audio_format_whitelist(), 0);
    av_dict_set(&opts, "codec_whitelist", clmr__audio_codec_whitelist(), 0);
    av_dict_set(&opts, "protocol_whitelist", "none", 0);
    snprintf(num, sizeof(num), "%d", PROBE_BYTES);
    av_dict_set(&opts, "probesize", num, 0);
    av_dict_set(&opts, "analyzeduration", "2000000", 0);
    snprintf(num, sizeof(num), "%d", MAX_STREAMS);
    av_dict_set(&opts, "max_streams", num, 0);
    av_dict_set(&opts, "skip_estimate_duration_from_pts", "1", 0);

    int ret = avformat_open_input(&d->fmt, NULL, ifmt, &opts);
    av_dict_free(&opts);
    if (ret < 0) { /* d->fmt was freed and set to NULL; the custom pb is still ours */
        if (d->src.timed_out || is_fatal(ret)) return fail_ff(d, ret, "reading the header");
        char buf[128];
        if (d->probe_score <= AVPROBE_SCORE_RETRY)
            return clmr_set_err(d->errmsg, CLMR_EAUDIO_NOT_AUDIO,
                                "not an audio file (weakly looks like %s, but its header does "
                                "not parse: %s)",
                                d->fmt_name, ff_detail(ret, buf, sizeof(buf)));
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "the %s header is invalid or truncated (%s)", d->fmt_name,
                            ff_detail(ret, buf, sizeof(buf)));
    }
    ret = avformat_find_stream_info(d->fmt, NULL);
    /* Failing to complete stream info is not fatal (a cover art stream without a whitelisted
     * decoder is enough to cause it); the decode itself is the real test. */
    if (ret < 0 && (d->src.timed_out || is_fatal(ret)))
        return fail_ff(d, ret, "analysing the streams");

    ret = av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &d->codec, 0);
    if (ret == AVERROR_STREAM_NOT_FOUND) {
        if (d->probe_score <= AVPROBE_SCORE_RETRY)
            return clmr_set_err(d->errmsg, CLMR_EAUDIO_NOT_AUDIO,
                                "not an audio file (weakly looks like %s but has no audio stream)",
                                d->fmt_name);
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_NO_STREAM, "format %s has no audio stream",
                            d->fmt_name);
    }
    if (ret < 0 || !d->codec) {
        int s = -1;
        for (unsigned i = 0; i < d->fmt->nb_streams; i++)
            if (d->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) s = (int)i;
        const char *cn =
            s >= 0 ? avcodec_get_name(d->fmt->streams[s]->codecpar->codec_id) : "unknown";
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CODEC,
                            "the audio codec %s is not supported (no decoder)", cn);
    }
    d->stream = ret;
    if (!clmr__audio_in_list(d->codec->name, clmr__audio_codec_whitelist()))
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CODEC,
                            "the audio codec %s is not supported (accepted: PCM, FLAC, MP3, "
                            "Vorbis, Opus, AAC, ALAC, WavPack)",
                            d->codec->name);
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != d->stream) d->fmt->streams[i]->discard = AVDISCARD_ALL;

    const AVCodecParameters *par = d->fmt->streams[d->stream]->codecpar;
    if (par->sample_rate > 0 &&
        (par->sample_rate < d->p.min_sample_rate || par->sample_rate > d->p.max_sample_rate))
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_RATE,
                            "the sample rate %d Hz is outside the accepted %d-%d Hz",
                            par->sample_rate, d->p.min_sample_rate, d->p.max_sample_rate);
    if (par->ch_layout.nb_channels > d->p.max_channels)
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CHANNELS,
                            "%d channels is outside the accepted 1-%d channels",
                            par->ch_layout.nb_channels, d->p.max_channels);

    d->dec = avcodec_alloc_context3(d->codec);
    if (!d->dec) return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory (decoder)");
    ret = avcodec_parameters_to_context(d->dec, par);
    if (ret < 0) return fail_ff(d, ret, "configuring the decoder");
    d->dec->pkt_timebase = d->fmt->streams[d->stream]->time_base;
    d->dec->thread_count = 1; /* keeps decoding (and the log capture) on this thread */
    av_dict_set(&opts, "codec_whitelist", clmr__audio_codec_whitelist(), 0);
    ret = avcodec_open2(d->dec, d->codec, &opts);
    av_dict_free(&opts);
    if (ret < 0) {
        if (d->src.timed_out || is_fatal(ret)) return fail_ff(d, ret, "opening the decoder");
        char buf[128];
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_CORRUPT,
                            "cannot open the %s decoder: the stream parameters are invalid (%s)",
                            d->codec->name, ff_detail(ret, buf, sizeof(buf)));
    }
    rc = 0;
    return rc;
}

static int run(dec_t *d)
{
    int rc;
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->pkt || !d->frame) return clmr_set_err(d->errmsg, CLMR_ENOMEM, "out of memory");
    for (;;) {
        if (deadline_passed(&d->src)) return fail_ff(d, AVERROR_EXIT, "decoding");
        int ret = av_read_frame(d->fmt, d->pkt);
        if (ret == AVERROR_EOF) break;
        if (ret < 0) {
            if (d->src.timed_out || is_fatal(ret)) return fail_ff(d, ret, "reading");
            d->read_err = ret; /* truncated or damaged container: keep what we have */
            break;
        }
        if (d->pkt->stream_index == d->stream) {
            rc = decode_packet(d, d->pkt);
            av_packet_unref(d->pkt);
            if (rc) return rc;
        } else {
            av_packet_unref(d->pkt);
        }
    }
    rc = decode_packet(d, NULL);
    if (rc) return rc;
    rc = drain_swr(d);
    if (rc) return rc;
    if (d->n == 0) {
        char buf[128];
        if (d->probe_score <= AVPROBE_SCORE_RETRY)
            return clmr_set_err(d->errmsg, CLMR_EAUDIO_NOT_AUDIO,
                                "not an audio file (weakly looks like %s, but nothing decodes)",
                                d->fmt_name);
        if (d->read_err || d->bad_packets)
            return clmr_set_err(
                d->errmsg, CLMR_EAUDIO_CORRUPT,
                "the %s audio is corrupt or truncated: nothing decodes (%s)", d->codec->name,
                ff_detail(d->read_err ? d->read_err : AVERROR_INVALIDDATA, buf, sizeof(buf)));
        return clmr_set_err(d->errmsg, CLMR_EAUDIO_NO_SAMPLES,
                            "the %s stream contains no audio samples", d->codec->name);
    }
    return 0;
}

static void dec_close(dec_t *d)
{
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    swr_free(&d->swr);
    av_channel_layout_uninit(&d->cur_layout);
    avcodec_free_context(&d->dec);
    avformat_close_input(&d->fmt);       /* leaves a custom pb alone */
    if (d->pb) av_freep(&d->pb->buffer); /* avio may have replaced our buffer */
    avio_context_free(&d->pb);
    free(d->out);
    d->out = NULL;
}

static int check_params(const clmr_audio_params_t *p, char **errmsg)
{
    if (p->max_input_bytes == 0 || !(p->max_duration_s > 0 && p->max_duration_s <= 1e7) ||
        p->min_sample_rate < 1 || p->max_sample_rate < p->min_sample_rate || p->max_channels < 1 ||
        p->max_channels > 64 || !(p->deadline_s > 0 && p->deadline_s < 1e9))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "invalid audio limits (need max_input_bytes > 0, 0 < max_duration_s "
                            "<= 1e7, 1 <= min_sample_rate <= max_sample_rate, 1 <= max_channels "
                            "<= 64, deadline_s > 0)");
    return 0;
}

int clmr_audio_decode_memory(clmr_audio_t *out, const void *data, size_t size,
                             const clmr_audio_params_t *params, char **errmsg)
{
    if (!out) return clmr_set_err(errmsg, CLMR_EINVAL, "no output given");
    memset(out, 0, sizeof(*out));
    pthread_once(&g_log_once, log_init);
    t_last_log[0] = '\0';

    dec_t d = {.p = params ? *params : clmr_audio_default_params(), .errmsg = errmsg};
    int rc = check_params(&d.p, errmsg);
    if (rc) return rc;
    if (!data && size) return clmr_set_err(errmsg, CLMR_EINVAL, "no input data given");
    if (size == 0) return clmr_set_err(errmsg, CLMR_EAUDIO_EMPTY, "the input is empty (0 bytes)");
    if (size > d.p.max_input_bytes)
        return clmr_set_err(errmsg, CLMR_EAUDIO_TOO_LARGE,
                            "the input is %zu bytes, over the %zu byte limit", size,
                            d.p.max_input_bytes);
    d.max_out = (size_t)floor(d.p.max_duration_s * CLMR_SAMPLE_RATE);
    d.src.data = data;
    d.src.size = size;
    clock_gettime(CLOCK_MONOTONIC, &d.src.deadline);
    double whole = floor(d.p.deadline_s);
    d.src.deadline.tv_sec += (time_t)whole;
    d.src.deadline.tv_nsec += (long)((d.p.deadline_s - whole) * 1e9);
    if (d.src.deadline.tv_nsec >= 1000000000L) {
        d.src.deadline.tv_sec++;
        d.src.deadline.tv_nsec -= 1000000000L;
    }

    const AVInputFormat *ifmt = probe(data, size, &d.probe_score);
    if (!ifmt || d.probe_score <= 0)
        return clmr_set_err(errmsg, CLMR_EAUDIO_NOT_AUDIO,
                            "not an audio file (no known audio format detected)");
    display_name(ifmt->name, d.fmt_name, sizeof(d.fmt_name));
    switch (clmr__audio_classify_format(ifmt->name)) {
    case CLMR__FMT_ACCEPT:
        break;
    case CLMR__FMT_PLAYLIST:
        return clmr_set_err(errmsg, CLMR_EAUDIO_FORMAT_REFUSED,
                            "container format '%s' is refused: playlists may reference other "
                            "files",
                            ifmt->name);
    case CLMR__FMT_NOT_AUDIO:
        return clmr_set_err(errmsg, CLMR_EAUDIO_NOT_AUDIO, "not an audio file (looks like %s: %s)",
                            ifmt->name, ifmt->long_name ? ifmt->long_name : "");
    case CLMR__FMT_REFUSED:
        return clmr_set_err(errmsg, CLMR_EAUDIO_FORMAT_REFUSED,
                            "container format '%s' (%s) is not accepted (accepted: %s)", ifmt->name,
                            ifmt->long_name ? ifmt->long_name : "?",
                            clmr__audio_format_whitelist());
    }
    rc = check_wav_header(&d, data, size);
    if (!rc) rc = open_input(&d, ifmt);
    if (!rc) rc = run(&d);
    /* A demuxer may swallow the read callback's AVERROR_EXIT and report "end of file" or "no
     * stream" instead; whatever happened after the deadline passed is a timeout. */
    if (d.src.timed_out && rc != CLMR_ENOMEM)
        rc = clmr_set_err(errmsg, CLMR_EAUDIO_TIMEOUT,
                          "decoding took longer than the %g s deadline", d.p.deadline_s);
    if (!rc) {
        float *shrunk = realloc(d.out, d.n * sizeof(float));
        out->samples = shrunk ? shrunk : d.out;
        d.out = NULL;
        out->n_samples = d.n;
        out->duration_s = (double)d.n / CLMR_SAMPLE_RATE;
        snprintf(out->format, sizeof(out->format), "%s", d.fmt_name);
        snprintf(out->codec, sizeof(out->codec), "%s", d.codec->name);
        out->source_rate = d.first_rate;
        out->source_channels = d.first_channels;
        clmr__audio_meta_read(&out->meta, d.fmt->metadata, d.fmt->streams[d.stream]->metadata);
        /* The stream's duration, else the container's (both from headers, never estimated from
         * timestamps: skip_estimate_duration_from_pts is set). */
        const AVStream *st = d.fmt->streams[d.stream];
        if (st->duration > 0 && st->duration != AV_NOPTS_VALUE && st->time_base.den > 0)
            out->declared_duration_s = (double)st->duration * av_q2d(st->time_base);
        else if (d.fmt->duration > 0 && d.fmt->duration != AV_NOPTS_VALUE)
            out->declared_duration_s = (double)d.fmt->duration / AV_TIME_BASE;
        out->skipped_packets = d.bad_packets;
        out->read_error = d.read_err != 0;
    }
    dec_close(&d);
    return rc;
}

int clmr_audio_decode_file(clmr_audio_t *out, const char *path, const clmr_audio_params_t *params,
                           char **errmsg)
{
    if (!out || !path) return clmr_set_err(errmsg, CLMR_EINVAL, "no file given");
    memset(out, 0, sizeof(*out));
    clmr_audio_params_t p = params ? *params : clmr_audio_default_params();
    int rc = check_params(&p, errmsg);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return clmr_set_err(errmsg, CLMR_EIO, "cannot open %s: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    struct stat st;
    int is_reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!is_reg && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot read %s: it is a directory", path);
        goto done;
    }
    if (is_reg && (uintmax_t)st.st_size > p.max_input_bytes) {
        rc = clmr_set_err(errmsg, CLMR_EAUDIO_TOO_LARGE, "%s is %jd bytes, over the %zu byte limit",
                          path, (intmax_t)st.st_size, p.max_input_bytes);
        goto done;
    }
    /* Size hint from fstat, but read until EOF: the file may be a pipe or may grow. */
    cap = is_reg && st.st_size > 0 ? (size_t)st.st_size + 1 : (size_t)1 << 16;
    if (cap > p.max_input_bytes + 1) cap = p.max_input_bytes + 1;
    buf = malloc(cap);
    if (!buf) {
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap * 2 > p.max_input_bytes + 1 ? p.max_input_bytes + 1 : cap * 2;
            unsigned char *q = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!q) {
                rc = n > p.max_input_bytes
                         ? clmr_set_err(errmsg, CLMR_EAUDIO_TOO_LARGE,
                                        "%s is over the %zu byte limit", path, p.max_input_bytes)
                         : clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading %s", path);
                goto done;
            }
            buf = q;
            cap = ncap;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = clmr_set_err(errmsg, CLMR_EIO, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n > p.max_input_bytes) {
            rc = clmr_set_err(errmsg, CLMR_EAUDIO_TOO_LARGE, "%s is over the %zu byte limit", path,
                              p.max_input_bytes);
            goto done;
        }
    }
    rc = clmr_audio_decode_memory(out, buf, n, &p, errmsg);
done:
    free(buf);
    close(fd);
    return rc;
}
