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

int cmd_ablate(int argc, char **argv) {
    const char *precision = NULL;
    const char *model = cli_default_model(), *adapter = NULL, *data = NULL, *task_spec = NULL,
               *split = "dev", *plot = NULL;
    long batch = 64, threads = 0;
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &model),
        CLI_OPT_STR("--adapter", &adapter),
        CLI_OPT_STR("--data", &data),
        CLI_OPT_STR("--task", &task_spec),
        CLI_OPT_STR("--split", &split),
        CLI_OPT_STR("--plot", &plot),
        CLI_OPT_LONG("--batch", &batch, 1, 1 << 16),
        CLI_OPT_LONG("--threads", &threads, 1, 1024),
        CLI_OPT_PRECISION(&precision),
    };
    int rc = cli_parse_options("ablate", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!adapter || !data) {
        fprintf(stderr, "petl ablate: --adapter and --data are required (petl ablate --help)\n");
        return 2;
    }
    if (plot && !cli_plot_format(plot)) {
        fprintf(stderr, "petl ablate: --plot needs a .svg or .png file, got '%s'\n", plot);
        return 2;
    }
    cli_set_threads((int)threads);
    cli_adapter ad;
    if (cli_load_adapter("ablate", model, adapter, precision, &ad)) return 1;
    rc = 1;
    petl_error err = {0};
    petl_task task;
    petl_dataset *ds = NULL;
    petl_batcher *b = NULL;
    petl_ctx *ctx = NULL;
    char *path = NULL, *json_path = NULL;
    double *score = NULL;
    FILE *jf = NULL;
    const int L = petl_model_config(ad.base)->num_layers;
    if (L > 64) {
        fprintf(stderr, "petl ablate: the model has %d layers; at most 64 can be switched off\n",
                L);
        goto done;
    }
    if (petl_task_lookup(task_spec ? task_spec : ad.info.task_spec, &task, &err) != PETL_OK) {
        if (task_spec) rc = 2; /* a bad --task is a usage error; a bad saved spec is not */
        goto fail;
    }
    if (cli_check_task("ablate", &ad, &task)) goto done;
    const char *f = petl_task_split_file(&task, split);
    if (!f) {
        fprintf(stderr, "petl ablate: unknown split '%s' for task %s\n", split, task.name);
        rc = 2;
        goto done;
    }
    if (!(path = petl_path_join(data, f))) goto oom;
    if (petl_dataset_load(&task, path, (const char *const *)ad.info.labels, ad.info.n_labels, &ds,
                          &err) != PETL_OK)
        goto fail;
    if (cli_check_data("ablate", &ad, path, ds)) goto done;
    if (petl_dataset_count(ds) == 0) {
        fprintf(stderr, "petl ablate: %s holds no examples\n", path);
        goto done;
    }
    if (petl_batcher_new(ad.tok, ad.info.max_len, &b, &err) != PETL_OK ||
        petl_batcher_add_dataset(b, ds, &err) != PETL_OK) {
        fprintf(stderr, "petl ablate: %s: %s\n", path, err.msg);
        goto done;
    }
    /* One context for all (L + 1) L / 2 + 1 evaluations. */
    if (petl_predict_ctx_new(ad.tm, (int)batch, petl_batcher_max_len(b), &ctx, &err) != PETL_OK)
        goto fail;
    if (!(score = malloc((size_t)L * (size_t)L * sizeof *score))) goto oom;
    petl_metric_set m;
    petl_task_model_disable_adapters(ad.tm, 0);
    if (petl_evaluate(ad.tm, ctx, &task, b, (int)batch, NULL, &m, &err) != PETL_OK) goto fail;
    const double full = m.score;
    char metric[64] = "";
    for (size_t k = 0; k < m.count; k++)
        if (m.metric[k] != PETL_METRIC_MSE)
            snprintf(metric + strlen(metric), sizeof metric - strlen(metric), "%s%s",
                     metric[0] ? "+" : "", petl_metric_name(m.metric[k]));
    fprintf(stderr, "ablate: %s on %zu %s examples, %d layers: full %s %.4f\n", task.name,
            petl_dataset_count(ds), split, L, metric, full);
    for (int i = 0; i < L; i++)
        for (int j = i; j < L; j++) {
            uint64_t mask = (j == 63 ? ~0ull : ((1ull << (j + 1)) - 1)) & ~((1ull << i) - 1);
            petl_task_model_disable_adapters(ad.tm, mask);
            if (petl_evaluate(ad.tm, ctx, &task, b, (int)batch, NULL, &m, &err) != PETL_OK)
                goto fail;
            score[i * L + j] = m.score;
            fprintf(stderr, "ablate: layers %d..%d removed: %.4f\n", i, j, m.score);
        }
    petl_task_model_disable_adapters(ad.tm, 0);

    /* The JSON goes to stdout, and to a file beside the plot for `petl plot` to read. */
    if (plot) {
        size_t n = strlen(plot) + 16;
        if (!(json_path = malloc(n))) goto oom;
        snprintf(json_path, n, "%s.ablate.json", plot);
        if (!(jf = fopen(json_path, "w"))) {
            fprintf(stderr, "petl ablate: cannot write %s\n", json_path);
            goto done;
        }
    }
    write_matrix(stdout, task.name, split, petl_dataset_count(ds), L, metric, full, score);
    if (jf) write_matrix(jf, task.name, split, petl_dataset_count(ds), L, metric, full, score);
    if (cli_check_stdout("ablate")) goto done;
    if (jf) {
        bool ok = fflush(jf) == 0;
        ok = fclose(jf) == 0 && ok;
        jf = NULL;
        if (!ok) {
            fprintf(stderr, "petl ablate: cannot write %s: %s\n", json_path, strerror(errno));
            goto done;
        }
        if (cli_plot_run(json_path, plot, NULL, NULL, NULL)) goto done;
        unlink(json_path);
    }
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "petl ablate: out of memory\n");
    goto done;
fail:
    fprintf(stderr, "petl ablate: %s\n", err.msg);
done:
    if (jf) fclose(jf);
    free(json_path);
    free(score);
    petl_ctx_free(ctx);
    petl_batcher_free(b);
    petl_dataset_free(ds);
    free(path);
    cli_adapter_free(&ad);
    return rc;
}
