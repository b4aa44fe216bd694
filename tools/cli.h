/* Shared pieces of the petl CLI. Each subcommand is one file tools/cmd_NAME.c exporting
 * cmd_NAME(argc, argv) with argv[0] = "NAME"; it returns the process exit status
 * (0 ok, 1 failure of the work, 2 bad usage). */
#ifndef PETL_CLI_H
#define PETL_CLI_H

#include "petl.h"

#include <stdio.h>

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
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);

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
int cli_read_text_line(FILE *in, long lineno, char **line, size_t *cap, cli_text *out, char *errbuf,
                       size_t errlen);
void cli_text_free(cli_text *t);

/* Whether everything written to stdout so far reached it: flushes, and on a write error (a
 * full disk, /dev/full, EFBIG over `ulimit -f`) prints "petl CMD: write error on standard
 * output: REASON" (once per process) and returns 1. Commands call it to stop early and to set
 * their status; main() calls it last, for whatever a command left unchecked. */
int cli_check_stdout(const char *cmd);

/* ---- command-line options (tools/cli_options.c) ---- */

/* Option values: print "petl CMD: OPT needs ..." and return -1 when s is not a number in
 * [lo, hi]; 0 with *out set otherwise. */
int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);

typedef enum {
    CLI_STR,    /* const char *: the value as given */
    CLI_LONG,   /* long in [lo, hi] (cli_parse_long) */
    CLI_INT,    /* int in [lo, hi] (cli_parse_long) */
    CLI_DOUBLE, /* double in [lo, hi] (cli_parse_double) */
    CLI_FLAG,   /* bool set to true; takes no value */
    CLI_CHOICE, /* int: the index of the value in `choices` (NULL-terminated) */
    CLI_CUSTOM, /* parse(cmd, name, value, dst): 0, or -1 after printing "petl CMD: ..." */
    CLI_REST,   /* "--": the arguments after it go to a cli_rest, unparsed */
} cli_opt_kind;

/* The arguments after "--" (e.g. petl sweep ... -- TRAIN_OPTS). */
typedef struct {
    char **argv;
    int argc;
} cli_rest;

/* One entry of a command's option table. name NULL: the positional arguments (those not
 * starting with '-', and "-" itself; without such an entry they are unknown options). A
 * CLI_STR entry takes one; a CLI_CUSTOM one gets each and says itself when there are too many. */
typedef struct {
    const char *name; /* "--batch" */
    cli_opt_kind kind;
    void *dst;
    double lo, hi;              /* CLI_LONG, CLI_INT, CLI_DOUBLE */
    const char *const *choices; /* CLI_CHOICE */
    int (*parse)(const char *cmd, const char *opt, const char *value, void *dst); /* CLI_CUSTOM */
} cli_opt;

/* Table entries; the conditional makes the compiler check dst's type. */
#define CLI_OPT_STR(name, p)                                                                       \
    { (name), CLI_STR, (1 ? (p) : (const char **)0), 0, 0, 0, 0 }
#define CLI_OPT_LONG(name, p, lo, hi)                                                              \
    { (name), CLI_LONG, (1 ? (p) : (long *)0), (lo), (hi), 0, 0 }
#define CLI_OPT_INT(name, p, lo, hi)                                                               \
    { (name), CLI_INT, (1 ? (p) : (int *)0), (lo), (hi), 0, 0 }
#define CLI_OPT_DOUBLE(name, p, lo, hi)                                                            \
    { (name), CLI_DOUBLE, (1 ? (p) : (double *)0), (lo), (hi), 0, 0 }
#define CLI_OPT_FLAG(name, p)                                                                      \
    { (name), CLI_FLAG, (1 ? (p) : (bool *)0), 0, 0, 0, 0 }
#define CLI_OPT_CHOICE(name, p, choices)                                                           \
    { (name), CLI_CHOICE, (1 ? (p) : (int *)0), 0, 0, (choices), 0 }
#define CLI_OPT_CUSTOM(name, fn, p)                                                                \
    { (name), CLI_CUSTOM, (p), 0, 0, 0, (fn) }
#define CLI_OPT_REST(p)                                                                            \
    { "--", CLI_REST, (1 ? (p) : (cli_rest *)0), 0, 0, 0, 0 }

/* cli_parse_options' result when the command should go on. */
#define CLI_GO_ON (-1)

/* Parses argv[1..argc-1] against opts[0..n_opts-1], storing each value through its dst (the
 * last one wins when an option repeats). An option's value is the next argument, whatever it
 * is, or follows '=' in the same one (--batch=8). -h / --help prints usage to stdout and
 * returns 0. An unknown option, a missing or bad value, or a value given to a flag prints
 * "petl CMD: <why>" (with the usage when the option itself is wrong) and returns 2.
 * Otherwise returns CLI_GO_ON. Arguments are taken in order: the first problem wins. */
int cli_parse_options(const char *cmd, int argc, char **argv, const cli_opt *opts, size_t n_opts,
                      void (*usage)(FILE *));
#define CLI_N_OPTS(table) (sizeof(table) / sizeof((table)[0]))

/* Help lines: "  OPT" and text from column 23, the text wrapped at 92 columns (opt "" for a
 * line of text alone). */
void cli_help_line(FILE *f, const char *opt, const char *text);
/* The help line of an option that takes one of the library's names (names[n], from its *_name
 * function): "a (what; default), b (what) or c", what[i] for i < n_what (NULL or none: no
 * description), "default" after names[def]. */
void cli_help_names(FILE *f, const char *opt, const char *const *names, size_t n,
                    const char *const *what, size_t n_what, size_t def);

/* ---- shared by train / eval / predict (tools/cli_adapter.c) ---- */

/* OpenMP and OpenBLAS threads (n <= 0: leave the defaults). Call before creating contexts. */
void cli_set_threads(int n);
/* --precision: text NULL or "fp32" leaves m as loaded; "bf16" packs its frozen linear layers
 * (for training too when `training`). Prints "petl CMD: ..." and returns 1 on failure. */
int cli_set_precision(const char *cmd, petl_model *m, const char *text, bool training);
/* The --precision option's table entry (dst: const char **): an unknown name is a usage error
 * (exit 2) at parse time, before anything is loaded; whether this CPU can run it is checked by
 * cli_set_precision (exit 1). */
int cli_parse_precision(const char *cmd, const char *opt, const char *value, void *dst);
#define CLI_OPT_PRECISION(p)                                                                       \
    { "--precision", CLI_CUSTOM, (1 ? (p) : (const char **)0), 0, 0, 0, cli_parse_precision }
/* --max-len against the model's positions: prints "petl CMD: --max-len N is over ..." naming
 * the model's config.json and returns 2 (a usage error); 0 when it fits. */
int cli_check_max_len(const char *cmd, const char *model_dir, const petl_model *m, long max_len);
/* The --help line for it. */
#define CLI_PRECISION_HELP                                                                         \
    "  --precision P    fp32 (default) or bf16: the frozen base's linear layers with bf16\n"       \
    "                   inputs and fp32 sums, about twice as fast on AVX512-BF16 CPUs;\n"          \
    "                   scores move by a fraction of a point (docs/performance.md)\n"

/* A base model with one adapter loaded on it. */
typedef struct {
    petl_tokenizer *tok;
    petl_model *base;
    petl_adapter_info info;
    petl_task_model *tm;
} cli_adapter;

/* Loads model_dir and adapter_dir, in `precision` (--precision; NULL: fp32, for inference);
 * prints "petl CMD: <why>" and returns 1 on failure. */
int cli_load_adapter(const char *cmd, const char *model_dir, const char *adapter_dir,
                     const char *precision, cli_adapter *out);
void cli_adapter_free(cli_adapter *a);

/* What petl eval / ablate score must be what the adapter was trained on, or the score is
 * noise: a task (--task, or the adapter's own) of the adapter's kind (classification or
 * regression) and input shape (single text or pair), and a data file as wide as its training file
 * (generic TSV / CSV tasks; GLUE files are checked by their headers at load). Print "petl CMD:
 * <why>" and return 1 otherwise. */
int cli_check_task(const char *cmd, const cli_adapter *ad, const petl_task *task);
int cli_check_data(const char *cmd, const cli_adapter *ad, const char *path,
                   const petl_dataset *ds);

/* JSON output helpers: a number with 9 significant digits (null when not finite), and a string
 * with the escapes JSON needs (the input is valid UTF-8). */
void cli_json_number(FILE *f, double x);
void cli_json_string(FILE *f, const char *s);

/* ---- SQuAD v1.1 (tools/cli_squad.c): petl train / eval / predict with a span head ---- */

#define CLI_SQUAD_TRAIN_FILE "train-v1.1.json"
#define CLI_SQUAD_DEV_FILE "dev-v1.1.json"

/* Questions of one SQuAD file, their windows and the windows batched (example i of b is
 * window i of f). */
typedef struct {
    petl_squad *ds;
    petl_squad_features *f;
    petl_batcher *b;
    char articles[48]; /* the range read, resolved: "38:48" */
} cli_squad_set;

/* Reads the articles `range` ("B:E", "train", "eval", "all") of the SQuAD file `path`, at most
 * max_questions of them (0: all), and makes their windows with p. Prints "petl CMD: <why>" and
 * returns 1 on failure (also when the range holds no question). */
int cli_squad_load(const char *cmd, const char *path, const char *range, long max_questions,
                   const petl_tokenizer *tok, const petl_squad_params *p, cli_squad_set *out);
void cli_squad_free(cli_squad_set *s);

/* The files behind petl train --task squad --data DATA: a folder with train-v1.1.json trains on
 * it (and evaluates on its dev-v1.1.json when present); a folder with only dev-v1.1.json, or a
 * file, is split by article (*split true: one file, two ranges). *train and *dev are malloc'ed
 * (*dev NULL: no dev set). Prints and returns 1 when neither is found. */
int cli_squad_data(const char *cmd, const char *data, char **train, char **dev, bool *split);

/* True when range a and range b (resolved "B:E" strings) share an article. */
bool cli_squad_ranges_overlap(const char *a, const char *b);

/* petl eval / petl predict for an adapter with a span head (the commands call these when
 * ad->info.tune.head is PETL_HEAD_SPAN). max_len 0: the adapter's window length. */
int cli_squad_eval(cli_adapter *ad, const char *data, const char *articles, long max_questions,
                   int batch, int max_len);
int cli_squad_predict(cli_adapter *ad, int batch, int max_len);

/* ---- plots (tools/cmd_plot.c, gnuplot) ---- */

/* "svg" or "png" from the file name's extension; NULL for anything else. */
const char *cli_plot_format(const char *out);
/* Draws the JSON at `in` into `out`: an ablation matrix (a "matrix" key) as a heatmap, or sweep
 * results (a "runs" array) as y against x, one line per value of `series` (NULL: one line).
 * Prints "petl plot: <why>" and returns 1 on failure. */
int cli_plot_run(const char *in, const char *out, const char *x, const char *y, const char *series);

#endif
