/* fuzz_decode.c - libFuzzer target: clmr_audio_decode_memory as the daemon calls it.
 *
 * DESIGN: the service (src/http/analysis.c) starts from clmr_audio_default_params() and sets
 * max_input_bytes, max_duration_s and a deadline; we do the same with small values so one input
 * costs milliseconds (1 MiB in, 60 s of audio out, 10 s deadline; libFuzzer's -timeout is above
 * it, so a hang the deadline cannot stop is reported as a timeout). The contract checked beyond
 * "no sanitizer report, no leak": failure is an audio error code with a message and zeroed
 * output; success has samples, all finite, no more than the duration limit allows. The same
 * function is replayed by fuzz/replay_main.c in the normal (gcc) test run.
 */
#include "clmr/audio.h"
#include "clmr/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clmr_audio_params_t p = clmr_audio_default_params();
    p.max_input_bytes = (size_t)1 << 20;
    p.max_duration_s = 60;
    p.deadline_s = 10;
    clmr_audio_t a;
    char *err = NULL;
    int rc = clmr_audio_decode_memory(&a, data, size, &p, &err);
    if (rc != 0) {
        int audio_code = rc <= CLMR_EAUDIO_EMPTY && rc >= CLMR_EAUDIO_TIMEOUT;
        if (!(audio_code || rc == CLMR_ENOMEM) || !err || a.samples || a.n_samples)
            __builtin_trap();
    } else {
        if (!a.samples || a.n_samples == 0 || err) __builtin_trap();
        if (a.n_samples > (size_t)(p.max_duration_s * CLMR_SAMPLE_RATE) + CLMR_SAMPLE_RATE)
            __builtin_trap();
        for (size_t i = 0; i < a.n_samples; i++)
            if (!isfinite(a.samples[i])) __builtin_trap();
    }
    free(err);
    clmr_audio_free(&a);
    return 0;
}
