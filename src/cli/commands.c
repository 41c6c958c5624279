/* commands.c - the table of sub-commands; each command lives in its own cmd_*.c file. */
#include "cli/cli.h"

#include <stddef.h>

const clmr_cli_command_t clmr_cli_commands[] = {
    {NULL, NULL, NULL},
};
