/* commands.c - the table of sub-commands; each command lives in its own cmd_*.c file. */
#include "cli/cli.h"

#include <stddef.h>

int clmr_cli_inspect(int argc, char **argv);
int clmr_cli_serve(int argc, char **argv);
int clmr_cli_tag(int argc, char **argv);
int clmr_cli_fit_head(int argc, char **argv);
int clmr_cli_eval(int argc, char **argv);
int clmr_cli_pretrain(int argc, char **argv);
int clmr_cli_fit_supervised(int argc, char **argv);
int clmr_cli_keys(int argc, char **argv);
int clmr_cli_ingest(int argc, char **argv);
int clmr_cli_import(int argc, char **argv);

const clmr_cli_command_t clmr_cli_commands[] = {
    {"tag", clmr_cli_tag, "tag audio files with the model (prints tags or JSON lines)"},
    {"ingest", clmr_cli_ingest,
     "add folders of audio files to a running clmrd's catalogue (resumable, parallel)"},
    {"serve", clmr_cli_serve, "run the HTTP tagging service (see serve --help)"},
    {"inspect", clmr_cli_inspect, "validate a model file and print its shapes, tags and metadata"},
    {"import", clmr_cli_import,
     "convert official CLMR PyTorch checkpoints to a model file (no Python, nothing executed)"},
    {"pretrain", clmr_cli_pretrain,
     "self-supervised CLMR pretraining of the encoder on unlabelled audio"},
    {"fit-head", clmr_cli_fit_head, "train a new tag head on a frozen encoder from labelled audio"},
    {"fit-supervised", clmr_cli_fit_supervised,
     "train the whole encoder and a tag head from labelled audio (supervised baseline)"},
    {"eval", clmr_cli_eval, "macro ROC-AUC / PR-AUC of a model's tags on labelled audio"},
    {"keys", clmr_cli_keys, "create, list and revoke API keys of a data directory"},
    {NULL, NULL, NULL},
};
