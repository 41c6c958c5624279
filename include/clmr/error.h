/* error.h - the one list of clmrd error codes.
 *
 * DESIGN: every fallible function returns 0 or one of these negative codes. One X-macro list
 * generates the enum, the stable machine-readable name (used as the "code" of HTTP error bodies)
 * and a default human sentence. Functions that can say more take an optional `char **errmsg`
 * that receives a malloc'd, user-actionable message (free() it).
 */
#ifndef CLMR_ERROR_H
#define CLMR_ERROR_H

/* X(ENUM_SUFFIX, value, "machine_name", "default message") */
#define CLMR_ERROR_LIST(X)                                                                         \
    X(NOMEM, -1, "out_of_memory", "out of memory")                                                 \
    X(INVAL, -2, "invalid_argument", "invalid argument")                                           \
    X(IO, -3, "io_error", "input/output error")                                                    \
    X(AUDIO_EMPTY, -10, "empty_input", "the input is empty")                                       \
    X(AUDIO_TOO_LARGE, -11, "input_too_large", "the input is larger than the configured limit")    \
    X(AUDIO_NOT_AUDIO, -12, "not_audio", "not an audio file")                                      \
    X(AUDIO_FORMAT_REFUSED, -13, "format_refused", "this container format is not accepted")        \
    X(AUDIO_NO_STREAM, -14, "no_audio_stream", "the file has no audio stream")                     \
    X(AUDIO_CODEC, -15, "unsupported_codec", "the audio codec is not supported")                   \
    X(AUDIO_CORRUPT, -16, "corrupt_audio", "the audio data is corrupt or truncated")               \
    X(AUDIO_TOO_LONG, -17, "audio_too_long", "the audio is longer than the configured limit")      \
    X(AUDIO_RATE, -18, "bad_sample_rate", "the sample rate is out of the accepted range")          \
    X(AUDIO_CHANNELS, -19, "bad_channels", "the channel count is out of the accepted range")       \
    X(AUDIO_NONFINITE, -20, "nonfinite_samples", "the audio contains NaN or infinite samples")     \
    X(AUDIO_NO_SAMPLES, -21, "no_samples", "the audio stream decodes to no samples")               \
    X(AUDIO_TIMEOUT, -22, "decode_timeout", "decoding took longer than the deadline")              \
    X(MODEL_IO, -30, "model_io", "cannot read the model file")                                     \
    X(MODEL_FORMAT, -31, "model_format", "the model file is not a valid safetensors file")         \
    X(MODEL_METADATA, -32, "model_metadata", "the model metadata is missing or invalid")           \
    X(MODEL_TENSOR, -33, "model_tensor", "a model tensor is missing or has the wrong shape")       \
    X(MODEL_NONFINITE, -34, "model_nonfinite", "a model tensor contains NaN or infinite values")   \
    X(MODEL_NO_HEAD, -35, "model_no_head", "the model has no tag head (embeddings only)")          \
    X(CHECKPOINT, -38, "bad_checkpoint", "the checkpoint cannot be read or mapped to a model")     \
    X(CHECKPOINT_UNSAFE, -39, "unsafe_checkpoint",                                                 \
      "the checkpoint references code (never run); refusing to import it")                         \
    X(DNNL, -40, "dnnl_error", "oneDNN primitive creation or execution failed")                    \
    X(DB, -50, "database_error", "database error")                                                 \
    X(DB_FULL, -51, "storage_full", "the database or data directory is full")                      \
    X(NOT_FOUND, -52, "not_found", "not found")                                                    \
    X(BUSY, -53, "busy", "the resource is busy")                                                   \
    X(CANCELLED, -54, "cancelled", "the operation was cancelled")

typedef enum {
    CLMR_OK = 0,
#define CLMR__ERR_ENUM(name, val, slug, msg) CLMR_E##name = (val),
    CLMR_ERROR_LIST(CLMR__ERR_ENUM)
#undef CLMR__ERR_ENUM
} clmr_error_t;

/* Default sentence for an error code; never NULL, static storage. Thread-safe. */
const char *clmr_strerror(int err);

/* Stable machine-readable name ("not_audio", ...); "unknown_error" for unknown codes. Thread-safe.
 */
const char *clmr_err_name(int err);

/* Stores a formatted malloc'd message in *errmsg when errmsg is not NULL (frees any previous one)
 * and returns err unchanged, so callers can write `return clmr_set_err(errmsg, CLMR_EIO, "...")`.
 */
int clmr_set_err(char **errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
