/* Shared pieces of the petl CLI. Each subcommand is one file tools/cmd_NAME.c exporting
 * cmd_NAME(argc, argv) with argv[0] = "NAME"; it returns the process exit status
 * (0 ok, 1 failure of the work, 2 bad usage). */
#ifndef PETL_CLI_H
#define PETL_CLI_H

#include "petl.h"

int cmd_tokenize(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_plot(int argc, char **argv);

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

/* ---- shared by train / eval / predict (tools/cli_adapter.c) ---- */

/* Option values: print "petl CMD: OPT needs ..." and return -1 when s is not a number in
 * [lo, hi]; 0 with *out set otherwise. */
int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);
/* OpenMP and OpenBLAS threads (n <= 0: leave the defaults). Call before creating contexts. */
void cli_set_threads(int n);

#include "adapter_io.h"

/* A base model with one adapter loaded on it. */
typedef struct {
    petl_tokenizer *tok;
    petl_model *base;
    petl_adapter_info info;
    petl_task_model *tm;
} cli_adapter;

/* Loads model_dir and adapter_dir; prints "petl CMD: <why>" and returns 1 on failure. */
int cli_load_adapter(const char *cmd, const char *model_dir, const char *adapter_dir,
                     cli_adapter *out);
void cli_adapter_free(cli_adapter *a);

/* JSON output helpers: a number with 9 significant digits (null when not finite), and a string
 * with the escapes JSON needs (the input is valid UTF-8). */
void cli_json_number(FILE *f, double x);
void cli_json_string(FILE *f, const char *s);

/* ---- plots (tools/cmd_plot.c, gnuplot) ---- */

/* "svg" or "png" from the file name's extension; NULL for anything else. */
const char *cli_plot_format(const char *out);
/* Draws the JSON at `in` into `out`: an ablation matrix (a "matrix" key) as a heatmap, or sweep
 * results (a "runs" array) as y against x, one line per value of `series` (NULL: one line).
 * Prints "petl plot: <why>" and returns 1 on failure. */
int cli_plot_run(const char *in, const char *out, const char *x, const char *y,
                 const char *series);

#endif
