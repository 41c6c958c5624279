/* descriptors.c - tempo / onsets (libaubio) and loudness (libebur128); see descriptors.h.
 *
 * DESIGN: a rhythm pass over the signal in hops of HOP samples feeds aubio's tempo tracker and
 * onset detector, reusing one input vector; a loudness pass feeds libebur128. The tempo comes from
 * the beat times aubio reports after the first WARMUP_S seconds (its tracker converges over a few
 * seconds): the mean of the inter-beat intervals within 8% of their median. aubio's own BPM
 * estimate is quantised to its autocorrelation lag (about 1.5% high at 140 BPM here), while beat
 * times average out their hop quantisation over many beats. Window sizes are aubio's defaults
 * scaled to the decoder's 22,050 Hz. Cost: aubio's tempo and onset trackers are the expensive part
 * (each an FFT per hop), so they read at most RHYTHM_S seconds from the middle of the track (a
 * song's tempo and onset density are properties of its body, not its intro); loudness and true
 * peak always cover the whole track (bench/bench_features.c measures the cost against inference).
 * The rhythm and loudness passes run on two threads (they cost about the same).
 * Note: aubio drops an onset when the hop after it is below its -70 dB silence gate, so clicks in
 * digital silence are not counted (recordings have a floor).
 */
#include "audio/descriptors.h"

#include "clmr/error.h"

#include <aubio/aubio.h>
#include <ebur128.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WIN 512       /* aubio analysis window at 22,050 Hz (23 ms, as aubio's 1024 at 44.1 kHz) */
#define HOP 256       /* 11.6 ms between analyses */
#define WARMUP_S 3.0  /* beats before this are ignored for the median */
#define RHYTHM_S 90.0 /* tempo and onsets: at most this much audio, from the middle */
#define PARALLEL_MIN_S 10 /* below this a second thread costs more than it saves */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Loudness pass (libebur128 over the whole track); runs on its own thread beside the rhythm pass.
 * Writes only the loudness fields of out. */
typedef struct {
    const float *x;
    size_t n;
    int rate;
    clmr_descriptors_t *out;
    int rc;
} loudness_job_t;

static void *loudness_pass(void *arg)
{
    loudness_job_t *j = arg;
    j->rc = CLMR_ENOMEM;
    ebur128_state *st = ebur128_init(1, (unsigned long)j->rate,
                                     EBUR128_MODE_I | EBUR128_MODE_LRA | EBUR128_MODE_TRUE_PEAK);
    if (!st) return NULL;
    if (ebur128_set_channel(st, 0, EBUR128_DUAL_MONO) != EBUR128_SUCCESS ||
        ebur128_add_frames_float(st, j->x, j->n) != EBUR128_SUCCESS)
        goto out;
    double v;
    if (ebur128_loudness_global(st, &v) == EBUR128_SUCCESS && isfinite(v))
        j->out->loudness_lufs = v;
    if (isfinite(j->out->loudness_lufs) && ebur128_loudness_range(st, &v) == EBUR128_SUCCESS &&
        isfinite(v))
        j->out->loudness_range_lu = v;
    if (ebur128_true_peak(st, 0, &v) == EBUR128_SUCCESS && v > 0)
        j->out->true_peak_dbtp = 20 * log10(v);
    j->rc = 0;
out:
    ebur128_destroy(&st);
    return NULL;
}

/* Rhythm pass (aubio tempo + onsets over at most the middle RHYTHM_S seconds). Writes only the
 * rhythm fields of out. */
static int rhythm_pass(clmr_descriptors_t *out, const float *x, size_t n, int rate)
{
    int rc = CLMR_ENOMEM;
    aubio_tempo_t *tempo = new_aubio_tempo("default", WIN, HOP, (uint_t)rate);
    aubio_onset_t *onset = new_aubio_onset("default", WIN, HOP, (uint_t)rate);
    fvec_t *in = new_fvec(HOP), *tout = new_fvec(2), *oout = new_fvec(2);
    size_t cap = n / (size_t)(rate / 4) + 16; /* beats: at most 240 BPM (more are ignored) */
    double *beats = malloc(cap * sizeof *beats);
    if (!tempo || !onset || !in || !tout || !oout || !beats) goto out;
    size_t nb = 0, onsets = 0;
    size_t warm = (size_t)(WARMUP_S * rate), span = (size_t)(RHYTHM_S * rate);
    size_t r0 = n > span ? (n - span) / 2 : 0, r1 = n > span ? r0 + span : n;
    for (size_t pos = r0; pos < r1; pos += HOP) {
        size_t m = r1 - pos < HOP ? r1 - pos : HOP;
        memcpy(in->data, x + pos, m * sizeof *x);
        if (m < HOP) memset(in->data + m, 0, (HOP - m) * sizeof *x); /* zero-pad the tail */
        aubio_tempo_do(tempo, in, tout);
        if (tout->data[0] != 0 && pos - r0 >= warm && nb < cap)
            beats[nb++] = (double)aubio_tempo_get_last(tempo);
        aubio_onset_do(onset, in, oout);
        if (oout->data[0] != 0) onsets++;
    }
    double bpm = NAN;
    if (nb >= 4) { /* intervals in place, then a robust mean around their median */
        size_t ni = nb - 1;
        for (size_t i = 0; i < ni; i++)
            beats[i] = beats[i + 1] - beats[i];
        qsort(beats, ni, sizeof *beats, cmp_double);
        double med = ni % 2 ? beats[ni / 2] : 0.5 * (beats[ni / 2 - 1] + beats[ni / 2]);
        double sum = 0;
        size_t k = 0;
        for (size_t i = 0; i < ni; i++)
            if (fabs(beats[i] - med) <= 0.08 * med) sum += beats[i], k++;
        if (k && sum > 0) bpm = 60.0 * rate * (double)k / sum;
    }
    out->bpm = bpm;
    out->bpm_confidence = isnan(bpm) ? 0.0 : (double)aubio_tempo_get_confidence(tempo);
    out->onset_rate = (double)onsets / ((double)(r1 - r0) / rate);
    rc = 0;
out:
    free(beats);
    if (oout) del_fvec(oout);
    if (tout) del_fvec(tout);
    if (in) del_fvec(in);
    if (onset) del_aubio_onset(onset);
    if (tempo) del_aubio_tempo(tempo);
    return rc;
}

int clmr_descriptors_compute(clmr_descriptors_t *out, const float *x, size_t n, int rate,
                             char **errmsg)
{
    out->bpm = out->bpm_confidence = out->onset_rate = NAN;
    out->loudness_lufs = out->loudness_range_lu = out->true_peak_dbtp = NAN;
    if (!x || n == 0) return clmr_set_err(errmsg, CLMR_EINVAL, "descriptors: no samples");
    if (rate < 8000 || rate > 192000)
        return clmr_set_err(errmsg, CLMR_EINVAL, "descriptors: sample rate %d out of range", rate);
    /* The two passes share nothing but the read-only signal and write disjoint fields, so the
     * loudness pass runs on a second thread: the wall time becomes the longer pass instead of the
     * sum (they cost about the same). A short signal, or a thread that cannot be started, runs
     * both passes here. */
    loudness_job_t lj = {x, n, rate, out, 0};
    pthread_t th;
    int threaded =
        n >= (size_t)rate * PARALLEL_MIN_S && pthread_create(&th, NULL, loudness_pass, &lj) == 0;
    int rc = rhythm_pass(out, x, n, rate);
    if (threaded)
        pthread_join(th, NULL);
    else
        loudness_pass(&lj);
    if (!rc) rc = lj.rc;
    if (rc) return clmr_set_err(errmsg, rc, "descriptors: out of memory");
    return 0;
}
