/* fuzz_audio.c - libFuzzer target for clmr_audio_decode_memory (built by tests/audio/fuzz.sh).
 *
 * DESIGN: any input must end in success or one of the audio error codes, within the deadline,
 * with no sanitizer report and no leak. Only our code is coverage-instrumented (Debian's FFmpeg
 * is not), so this is a robustness harness for the glue - probing, limits, resampler changes,
 * error paths - driven by mutated real files; FFmpeg's own parsers are fuzzed by OSS-Fuzz.
 */
#include "clmr/audio.h"
#include "clmr/error.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clmr_audio_params_t p = clmr_audio_default_params();
    p.max_input_bytes = 1 << 20;
    p.max_duration_s = 60;
    p.deadline_s = 10;
    clmr_audio_t a;
    char *err = NULL;
    int rc = clmr_audio_decode_memory(&a, data, size, &p, &err);
    int audio_code = rc <= CLMR_EAUDIO_EMPTY && rc >= CLMR_EAUDIO_TIMEOUT;
    if (rc != 0 && (!audio_code || !err)) __builtin_trap();
    if (rc == 0 && (a.n_samples == 0 || !a.samples)) __builtin_trap();
    free(err);
    clmr_audio_free(&a);
    return 0;
}
