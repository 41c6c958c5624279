/* main.c - clmrd: dispatches to the sub-commands in src/cli/. */
#include "cli/cli.h"
#include "clmrd_build_config.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "clmrd %s - music tagging with CLMR SampleCNN\n\n"
            "Usage: clmrd COMMAND [OPTIONS]\n\nCommands:\n",
            CLMRD_VERSION);
    for (const clmr_cli_command_t *c = clmr_cli_commands; c->name; c++)
        fprintf(f, "  %-14s %s\n", c->name, c->summary);
    fprintf(f, "\nRun 'clmrd COMMAND --help' for the options of a command.\n\n"
               "Exit status: the command's (see its --help); 2 for an unknown command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("clmrd %s\n", CLMRD_VERSION);
        return 0;
    }
    for (const clmr_cli_command_t *c = clmr_cli_commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "clmrd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
