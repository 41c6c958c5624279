/* formats.c - which containers and codecs the decoder accepts, and a WAVE header sniffer.
 *
 * DESIGN: the accept lists are deliberately short: the audio formats people upload (wav, flac,
 * mp3, ogg vorbis/opus, aac/m4a, aiff) plus a few simple, widely fuzzed ones (matroska/webm, w64,
 * caf, au, wavpack). Everything else is refused by name before FFmpeg parses it, in three
 * groups so the user learns what went wrong: playlists and other indirection formats (they
 * can make FFmpeg open other files or URLs: the historical SSRF / local-file leaks), things that
 * are plainly not audio (images, text, raw video), and other media containers we simply do not
 * accept. The same lists are also given to FFmpeg (format_whitelist / codec_whitelist) so a
 * nested open could not escape them either.
 */
#include "audio/audio_internal.h"

#include <stdint.h>
#include <string.h>

/* Demuxer names (FFmpeg 5.1 short names; "mov" covers mp4/m4a, "matroska" covers webm). */
static const char k_formats[] = "wav,w64,flac,mp3,ogg,mov,aac,aiff,matroska,caf,au,wv";

/* Decoder names (AVCodec.name). */
static const char k_codecs[] =
    "pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_s32le,pcm_s32be,pcm_f32le,pcm_f32be,"
    "pcm_f64le,pcm_f64be,pcm_u8,pcm_s8,pcm_u16le,pcm_u16be,pcm_u24le,pcm_u24be,pcm_u32le,"
    "pcm_u32be,pcm_alaw,pcm_mulaw,pcm_s16le_planar,pcm_s24le_planar,pcm_s32le_planar,"
    "flac,mp3float,mp3,mp2float,mp2,mp1float,mp1,vorbis,opus,libopus,aac,aac_fixed,aac_latm,"
    "alac,wavpack,adpcm_ima_wav,adpcm_ms,adpcm_ima_qt";

/* Formats that reference other files, URLs or network sessions. */
static const char k_playlists[] = "hls,applehttp,concat,sbg,sdp,rtsp,rtp,dash,imf,"
                                  "webm_dash_manifest,vobsub,mpjpeg,smoothstreaming,hds,tee";

/* Formats that are not audio at all: images, raw video, text and subtitles. */
static const char k_not_audio[] =
    "image2,image2pipe,tty,ffmetadata,apng,gif,mjpeg,h264,hevc,vvc,m4v,rawvideo,yuv4mpegpipe,"
    "ivf,av1,obu,vc1,cavsvideo,dirac,dnxhd,mpegvideo,srt,ass,webvtt,subviewer,subviewer1,"
    "microdvd,mpl2,mpsub,jacosub,pjs,realtext,sami,stl,vplayer,aqtitle,lrc,scc,sup,"
    "jpegls,jpeg_pipe,svg_pipe,bin,xbin,adf,idf";

int clmr__audio_in_list(const char *name, const char *list)
{
    /* Both sides may be comma-separated (FFmpeg names like "mov,mp4,m4a"): any token matches. */
    for (const char *p = name; p && *p;) {
        size_t plen = strcspn(p, ",");
        for (const char *q = list; q && *q;) {
            size_t qlen = strcspn(q, ",");
            if (plen == qlen && plen > 0 && memcmp(p, q, plen) == 0) return 1;
            q += qlen;
            if (*q == ',') q++;
        }
        p += plen;
        if (*p == ',') p++;
    }
    return 0;
}

clmr__fmt_class_t clmr__audio_classify_format(const char *name)
{
    if (!name || !*name) return CLMR__FMT_NOT_AUDIO;
    /* Check playlists first so a name that is in two lists is treated as the more dangerous. */
    if (clmr__audio_in_list(name, k_playlists)) return CLMR__FMT_PLAYLIST;
    if (clmr__audio_in_list(name, k_formats)) return CLMR__FMT_ACCEPT;
    if (clmr__audio_in_list(name, k_not_audio)) return CLMR__FMT_NOT_AUDIO;
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, "_pipe") == 0) return CLMR__FMT_NOT_AUDIO; /* png_pipe.. */
    return CLMR__FMT_REFUSED;
}

const char *clmr__audio_format_whitelist(void)
{
    return k_formats;
}

const char *clmr__audio_codec_whitelist(void)
{
    return k_codecs;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned rd16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

int clmr__audio_wav_sniff(const unsigned char *data, size_t size, clmr__wav_fmt_t *fmt)
{
    if (size < 12 || memcmp(data + 8, "WAVE", 4) != 0) return 0;
    if (memcmp(data, "RIFF", 4) != 0 && memcmp(data, "RF64", 4) != 0) return 0;
    /* Walk at most 64 chunks within the first 1 MiB: real files put "fmt " first or after a
     * small JUNK/bext chunk; anything further is FFmpeg's business. */
    size_t pos = 12, limit = size < (1u << 20) ? size : (1u << 20);
    for (int i = 0; i < 64 && pos + 8 <= limit; i++) {
        uint32_t len = rd32(data + pos + 4);
        if (memcmp(data + pos, "fmt ", 4) == 0) {
            if (len < 16 || pos + 8 + 16 > size) return 0;
            const unsigned char *f = data + pos + 8;
            fmt->format_tag = rd16(f);
            fmt->channels = rd16(f + 2);
            fmt->sample_rate = rd32(f + 4);
            fmt->block_align = rd16(f + 12);
            fmt->bits = rd16(f + 14);
            return 1;
        }
        if (memcmp(data + pos, "data", 4) == 0) return 0; /* data before fmt: let FFmpeg judge */
        pos += 8 + (size_t)len + (len & 1u);
    }
    return 0;
}
