/* petl command-line tool: the thin main() that dispatches to one subcommand per file
 * (tools/cmd_*.c). Only code under tools/ prints usage or calls exit. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"tokenize", cmd_tokenize, "tokenize JSON-lines text into input ids and token types"},
    {"embed", cmd_embed, "run the encoder: pooler output, [CLS] and mean vectors per line"},
    {"inspect", cmd_inspect, "list a safetensors file's tensors or summarise a model folder"},
    {"train", cmd_train, "train a task adapter (or a baseline) on a frozen base model"},
    {"eval", cmd_eval, "evaluate an adapter on a task's dev set: metrics as JSON"},
    {"predict", cmd_predict, "label JSON-lines text with an adapter"},
    {"serve", cmd_serve, "serve many adapters on one base model over HTTP"},
    {"sweep", cmd_sweep, "train a grid of settings (resumable): results table, best adapter"},
    {"ablate", cmd_ablate, "dev score with the adapters of each span of layers removed"},
    {"plot", cmd_plot, "draw sweep results or an ablation matrix as PNG or SVG (gnuplot)"},
    {"export", cmd_export, "write an adapter in AdapterHub's (the adapters library's) format"},
    {"import", cmd_import, "read an AdapterHub (adapters library) adapter as a petl adapter"},
};

static void usage(FILE *f) {
    fprintf(f, "petl %s: parameter-efficient transfer learning on a frozen BERT encoder\n\n",
            PETL_VERSION);
    fprintf(f, "usage: petl COMMAND [OPTIONS]   (petl COMMAND --help for its options)\n\n");
    fprintf(f, "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return cli_check_stdout("help");
    }
    if (!strcmp(argv[1], "--version")) {
        printf("petl %s\n", PETL_VERSION);
        return cli_check_stdout("--version");
    }
    /* A file over `ulimit -f` would kill the process with SIGXFSZ, mid-write and without a
     * word; ignored, the write fails with EFBIG and is reported like a full disk. */
    signal(SIGXFSZ, SIG_IGN);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        int rc = commands[i].run(argc - 1, argv + 1);
        /* Output lost on a full disk is a failure even when the command saw no error. */
        if (cli_check_stdout(commands[i].name) && rc == 0) rc = 1;
        if (fclose(stdout) != 0 && rc == 0) {
            fprintf(stderr, "petl %s: write error on standard output: %s\n", commands[i].name,
                    strerror(errno));
            rc = 1;
        }
        return rc;
    }
    fprintf(stderr, "petl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
