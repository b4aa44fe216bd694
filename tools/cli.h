/* Shared pieces of the petl CLI. Each subcommand is one file tools/cmd_NAME.c exporting
 * cmd_NAME(argc, argv) with argv[0] = "NAME"; it returns the process exit status
 * (0 ok, 1 failure of the work, 2 bad usage). */
#ifndef PETL_CLI_H
#define PETL_CLI_H

#include "petl.h"

int cmd_tokenize(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

/* Default model folder: $PETL_MODEL, else models/all-MiniLM-L6-v2 beside the binary's
 * repository (the folder scripts/fetch-model fills), else that path relative to the cwd. */
const char *cli_default_model(void);

/* One input line of `petl tokenize` / `petl embed`: {"text": ...} or
 * {"text_a": ..., "text_b": ...}. The strings point into `root` (a parsed JSON value). */
typedef struct {
    void *root;
    const char *a;
    size_t len_a;
    const char *b; /* NULL when absent */
    size_t len_b;
} cli_text;

/* Reads and parses the next line of `in` (*line / *cap as for getline). Returns 1 with *out
 * filled (free with cli_text_free), 0 at end of input, -1 with a message in errbuf that names
 * the line number. JSON with invalid UTF-8 is refused by the JSON parser. */
#include <stdio.h>
int cli_read_text_line(FILE *in, long lineno, char **line, size_t *cap, cli_text *out,
                       char *errbuf, size_t errlen);
void cli_text_free(cli_text *t);

#endif
