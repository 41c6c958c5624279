/* clmr_import.h - official CLMR PyTorch checkpoints -> a clmrd model, in C (`clmrd import`).
 *
 * DESIGN: torch_ckpt.h turns each file into a tree of values without running any of it; this
 * module finds the state dict inside (a plain dict, or Lightning's "state_dict"), the encoder
 * under whichever prefix the published layouts use ("", "encoder.", "model.encoder.", "module."
 * ...), with `sequential.<i>.<j>.*` or the 1.0-era `conv<N>.<j>.*` names (convN = sequential
 * N-1), and the tag head: CLMR's MLP head (`<p>0.*` [H, D] -> ReLU -> `<p>2.*` [T, H]; the
 * presence of the second layer decides, so a two-layer head is never read as a linear head with
 * H tags) or a linear head (`model.0.*`, `0.*`, `fc.*`). The SimCLR projector is recognised,
 * its width read from its shape and reported, and left out of the model (inference does not use
 * it). Every tensor's shape is checked against the one the layout implies and converted to fp32
 * (float16/bfloat16/float64 accepted). A checkpoint whose pickle references code (os.system,
 * subprocess, eval, ...) is refused, naming what it references; nothing in it was ever run.
 */
#ifndef CLMR_NN_CLMR_IMPORT_H
#define CLMR_NN_CLMR_IMPORT_H

#include "clmr/model.h"

typedef struct {
    const char *encoder_path; /* required */
    const char *head_path;    /* NULL: the head in the encoder checkpoint, if any */
    const char *const *tags;  /* NULL: the 50 MagnaTagATune tags in CLMR's order */
    int n_tags;
    const char *name; /* NULL: "clmr-imported" */
} clmr_import_params_t;

/* The published MagnaTagATune-50 tags in the order of CLMR's head outputs (static storage). */
extern const char *const clmr_import_mtt50_tags[50];

/* Builds a model from the checkpoints. On success *out is owned by the caller (BatchNorm folded,
 * name, tags and provenance metadata set; save it with clmr_model_save) and *report (malloc'd,
 * caller frees, may be NULL) describes what was found, one fact per line. Returns 0,
 * CLMR_ECHECKPOINT (unreadable file, unknown layout, missing or misshapen tensor, tag count
 * mismatch, non-finite values), CLMR_ECHECKPOINT_UNSAFE (the pickle references code), CLMR_EIO
 * or CLMR_ENOMEM, with *errmsg naming the file and key. Thread-safe (no shared state). */
int clmr_import_checkpoint(clmr_model_t **out, const clmr_import_params_t *p, char **report,
                           char **errmsg);

#endif
