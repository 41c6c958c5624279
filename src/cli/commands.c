/* commands.c - the table of sub-commands; each command lives in its own cmd_*.c file. */
#include "cli/cli.h"

#include <stddef.h>

int clmr_cli_inspect(int argc, char **argv);

const clmr_cli_command_t clmr_cli_commands[] = {
    {"inspect", clmr_cli_inspect, "validate a model file and print its shapes, tags and metadata"},
    {NULL, NULL, NULL},
};
