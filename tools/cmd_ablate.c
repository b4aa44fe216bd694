/* petl ablate: the paper's Figure 6. The dev score of a trained adapter with the adapters of
 * every contiguous span of layers [i, j] switched off at inference (no retraining), as a JSON
 * matrix on stdout and optionally a heatmap. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: petl ablate --adapter ADAPTER_DIR --data DIR [OPTIONS]\n\n"
        "Evaluates the adapter with the adapters of layers i..j removed (the identity) for every\n"
        "0 <= i <= j < L and prints one JSON object:\n"
        "  {\"layers\": L, \"metric\": \"accuracy\", \"full\": 0.71, \"matrix\": [[...], ...]}\n"
        "matrix[i][j] is the dev score with layers i..j removed, null below the diagonal;\n"
        "matrix[0][L-1] removes every adapter (base + trained LayerNorms + head).\n\n"
        "  --model DIR      base model folder (default: $PETL_MODEL or models/all-MiniLM-L6-v2)\n"
        "  --adapter DIR    adapter folder written by petl train\n"
        "  --data DIR       task folder (GLUE layout)\n"
        "  --task TASK      task name or generic spec (default: the adapter's)\n"
        "  --split NAME     dev (default), train, ...\n"
        "  --batch N        examples per batch (64)\n"
        "  --plot FILE      also draw the matrix as a heatmap: FILE.svg or FILE.png (gnuplot)\n"
        "  --threads N      OpenMP / OpenBLAS threads\n" CLI_PRECISION_HELP
        "  -h, --help       this help\n");
}

/* The result as one JSON object: matrix[i][j] for j >= i, null below the diagonal. */
static void write_matrix(FILE *o, const char *task, const char *split, size_t n, int L,
                         const char *metric, double full, const double *score) {
    fprintf(o, "{\"task\": ");
    cli_json_string(o, task);
    fprintf(o, ", \"split\": ");
    cli_json_string(o, split);
    fprintf(o, ", \"n\": %zu, \"layers\": %d, \"metric\": ", n, L);
    cli_json_string(o, metric);
    fprintf(o, ", \"full\": ");
    cli_json_number(o, full);
    fprintf(o, ", \"matrix\": [");
    for (int i = 0; i < L; i++) {
        fprintf(o, "%s[", i ? ", " : "");
        for (int j = 0; j < L; j++) {
            if (j) fputs(", ", o);
            if (j < i)
                fputs("null", o);
            else
                cli_json_number(o, score[i * L + j]);
        }
        fputc(']', o);
    }
    fprintf(o, "]}\n");
}

typedef struct {
    const char *model, *adapter, *data, *task, *split, *plot, *precision;
    long batch, threads;
} ablate_opts;

/* Returns CLI_GO_ON, or the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, ablate_opts *o) {
    *o = (ablate_opts){.model = cli_default_model(), .split = "dev", .batch = 64};
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_STR("--adapter", &o->adapter),
        CLI_OPT_STR("--data", &o->data),
        CLI_OPT_STR("--task", &o->task),
        CLI_OPT_STR("--split", &o->split),
        CLI_OPT_STR("--plot", &o->plot),
        CLI_OPT_LONG("--batch", &o->batch, 1, 1 << 16),
        CLI_OPT_LONG("--threads", &o->threads, 1, 1024),
        CLI_OPT_PRECISION(&o->precision),
    };
    int rc = cli_parse_options("ablate", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!o->adapter || !o->data) {
        fprintf(stderr, "petl ablate: --adapter and --data are required (petl ablate --help)\n");
        return 2;
    }
    if (o->plot && !cli_plot_format(o->plot)) {
        fprintf(stderr, "petl ablate: --plot needs a .svg or .png file, got '%s'\n", o->plot);
        return 2;
    }
    return CLI_GO_ON;
}

/* What the ablation runs on: the adapter on its base, the dev examples and one context. */
typedef struct {
    cli_adapter ad;
    bool loaded; /* ad holds a model */
    int layers;
    petl_task task;
    char *path; /* the data file */
    petl_dataset *ds;
    petl_batcher *b;
    petl_ctx *ctx;
} ablate_run;

static void run_free(ablate_run *r) {
    petl_ctx_free(r->ctx);
    petl_batcher_free(r->b);
    petl_dataset_free(r->ds);
    free(r->path);
    if (r->loaded) cli_adapter_free(&r->ad);
}

/* The adapter, the task (--task or the adapter's own) and its split, tokenized. */
static int load(const ablate_opts *o, ablate_run *r) {
    if (cli_load_adapter("ablate", o->model, o->adapter, o->precision, &r->ad)) return 1;
    r->loaded = true;
    petl_error err = {0};
    r->layers = petl_model_config(r->ad.base)->num_layers;
    if (r->layers > 64) {
        fprintf(stderr, "petl ablate: the model has %d layers; at most 64 can be switched off\n",
                r->layers);
        return 1;
    }
    if (petl_task_lookup(o->task ? o->task : r->ad.info.task_spec, &r->task, &err) != PETL_OK) {
        fprintf(stderr, "petl ablate: %s\n", err.msg);
        return o->task ? 2 : 1; /* a bad --task is a usage error; a bad saved spec is not */
    }
    if (cli_check_task("ablate", &r->ad, &r->task)) return 1;
    const char *f = petl_task_split_file(&r->task, o->split);
    if (!f) {
        fprintf(stderr, "petl ablate: unknown split '%s' for task %s\n", o->split, r->task.name);
        return 2;
    }
    if (!(r->path = petl_path_join(o->data, f))) {
        fprintf(stderr, "petl ablate: out of memory\n");
        return 1;
    }
    if (petl_dataset_load(&r->task, r->path, (const char *const *)r->ad.info.labels,
                          r->ad.info.n_labels, &r->ds, &err) != PETL_OK) {
        fprintf(stderr, "petl ablate: %s\n", err.msg);
        return 1;
    }
    if (cli_check_data("ablate", &r->ad, r->path, r->ds)) return 1;
    if (petl_dataset_count(r->ds) == 0) {
        fprintf(stderr, "petl ablate: %s holds no examples\n", r->path);
        return 1;
    }
    if (petl_batcher_new(r->ad.tok, r->ad.info.max_len, &r->b, &err) != PETL_OK ||
        petl_batcher_add_dataset(r->b, r->ds, &err) != PETL_OK) {
        fprintf(stderr, "petl ablate: %s: %s\n", r->path, err.msg);
        return 1;
    }
    /* One context for all (L + 1) L / 2 + 1 evaluations. */
    if (petl_predict_ctx_new(r->ad.tm, (int)o->batch, petl_batcher_max_len(r->b), &r->ctx, &err) !=
        PETL_OK) {
        fprintf(stderr, "petl ablate: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* The dev score with the adapters of layers i..j off (in score[i * L + j], j >= i) and with
 * all on (*full), and the metric the score is made of ("accuracy", "pearson+spearman"). */
static int evaluate_spans(const ablate_opts *o, ablate_run *r, double *full, double *score,
                          char *metric, size_t cap) {
    const int L = r->layers;
    petl_error err = {0};
    petl_metric_set m;
    petl_task_model_disable_adapters(r->ad.tm, 0);
    if (petl_evaluate(r->ad.tm, r->ctx, &r->task, r->b, (int)o->batch, NULL, &m, &err) != PETL_OK)
        goto fail;
    *full = m.score;
    metric[0] = '\0';
    for (size_t k = 0; k < m.count; k++)
        if (m.metric[k] != PETL_METRIC_MSE)
            snprintf(metric + strlen(metric), cap - strlen(metric), "%s%s", metric[0] ? "+" : "",
                     petl_metric_name(m.metric[k]));
    fprintf(stderr, "ablate: %s on %zu %s examples, %d layers: full %s %.4f\n", r->task.name,
            petl_dataset_count(r->ds), o->split, L, metric, *full);
    for (int i = 0; i < L; i++)
        for (int j = i; j < L; j++) {
            uint64_t mask = (j == 63 ? ~0ull : ((1ull << (j + 1)) - 1)) & ~((1ull << i) - 1);
            petl_task_model_disable_adapters(r->ad.tm, mask);
            if (petl_evaluate(r->ad.tm, r->ctx, &r->task, r->b, (int)o->batch, NULL, &m, &err) !=
                PETL_OK)
                goto fail;
            score[i * L + j] = m.score;
            fprintf(stderr, "ablate: layers %d..%d removed: %.4f\n", i, j, m.score);
        }
    petl_task_model_disable_adapters(r->ad.tm, 0);
    return 0;
fail:
    fprintf(stderr, "petl ablate: %s\n", err.msg);
    return 1;
}

/* The JSON on stdout, and with --plot to PLOT.ablate.json for gnuplot (removed after). */
static int write_outputs(const ablate_opts *o, const ablate_run *r, const char *metric, double full,
                         const double *score) {
    const size_t n = petl_dataset_count(r->ds);
    char *json_path = NULL;
    FILE *jf = NULL;
    if (o->plot) {
        size_t len = strlen(o->plot) + 16;
        if (!(json_path = malloc(len))) {
            fprintf(stderr, "petl ablate: out of memory\n");
            return 1;
        }
        snprintf(json_path, len, "%s.ablate.json", o->plot);
        if (!(jf = fopen(json_path, "w"))) {
            fprintf(stderr, "petl ablate: cannot write %s\n", json_path);
            free(json_path);
            return 1;
        }
    }
    write_matrix(stdout, r->task.name, o->split, n, r->layers, metric, full, score);
    if (jf) write_matrix(jf, r->task.name, o->split, n, r->layers, metric, full, score);
    int rc = cli_check_stdout("ablate");
    if (jf) {
        bool ok = fflush(jf) == 0;
        ok = fclose(jf) == 0 && ok;
        if (!rc && !ok) {
            fprintf(stderr, "petl ablate: cannot write %s: %s\n", json_path, strerror(errno));
            rc = 1;
        }
        if (!rc) rc = cli_plot_run(json_path, o->plot, NULL, NULL, NULL);
        if (!rc) unlink(json_path);
    }
    free(json_path);
    return rc;
}

int cmd_ablate(int argc, char **argv) {
    ablate_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    cli_set_threads((int)o.threads);
    ablate_run r = {0};
    double full = 0, *score = NULL;
    char metric[64];
    if ((rc = load(&o, &r)) == 0) {
        score = malloc((size_t)r.layers * (size_t)r.layers * sizeof *score);
        if (!score) fprintf(stderr, "petl ablate: out of memory\n");
        rc = !score || evaluate_spans(&o, &r, &full, score, metric, sizeof metric) ||
             write_outputs(&o, &r, metric, full, score);
    }
    free(score);
    run_free(&r);
    return rc;
}
