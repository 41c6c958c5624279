/* cli.h - the clmrd sub-commands. Each returns the process exit status. */
#ifndef CLMR_CLI_H
#define CLMR_CLI_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} clmr_cli_command_t;

/* The command table, terminated by a {NULL} entry (src/cli/commands.c). */
extern const clmr_cli_command_t clmr_cli_commands[];

#endif
