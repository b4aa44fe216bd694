/* petl eval: an adapter's metrics on a split of a task folder, as one JSON object. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: petl eval --adapter ADAPTER_DIR --data DIR [OPTIONS]\n\n"
        "Evaluates an adapter on a split of a task folder and prints one JSON object, e.g.\n"
        "  {\"task\": \"rte\", \"split\": \"dev\", \"n\": 277, \"accuracy\": 0.712}\n"
        "with the task's official metrics (accuracy, f1, mcc, pearson, spearman; null when\n"
        "undefined).\n\n"
        "  --model DIR      base model folder (default: $PETL_MODEL or models/all-MiniLM-L6-v2)\n"
        "  --adapter DIR    adapter folder written by petl train\n"
        "  --data DIR       task folder (GLUE layout)\n"
        "  --task TASK      task name or generic spec (default: the adapter's)\n"
        "  --split NAME     dev (default), train, or for MNLI dev_matched / dev_mismatched\n"
        "  --file PATH      evaluate this file instead of --data / --split\n"
        "  --batch N        examples per batch (64)\n"
        "  --max-len N      truncation (default: the adapter's training --max-len)\n"
        "  --threads N      OpenMP / OpenBLAS threads\n" CLI_PRECISION_HELP
        "  -h, --help       this help\n\n"
        "SQuAD adapters (petl train --task squad): --data is a SQuAD v1.1 file or a folder\n"
        "with dev-v1.1.json, and prints\n"
        "  {\"task\": \"squad\", \"split\": \"dev-v1.1.json\", \"articles\": \"38:48\",\n"
        "   \"n\": 1988, \"exact_match\": 0.61, \"f1\": 0.72}\n"
        "with the official SQuAD v1.1 scores as fractions like every petl metric (the official\n"
        "script prints them x 100).\n"
        "  --articles SPEC   articles B:E (0-based, E exclusive), train (0:38), eval (38:),\n"
        "                    all; default: those the adapter held out in training\n"
        "  --max-questions N only the first N questions of those articles\n"
        "  --max-len N       window length (default: the adapter's)\n");
}

int cmd_eval(int argc, char **argv) {
    const char *precision = NULL;
    const char *model = cli_default_model(), *adapter = NULL, *data = NULL, *task_spec = NULL,
               *split = "dev", *file = NULL, *articles = NULL;
    long batch = 64, max_len = 0, threads = 0, max_questions = 0;
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &model),
        CLI_OPT_STR("--adapter", &adapter),
        CLI_OPT_STR("--data", &data),
        CLI_OPT_STR("--task", &task_spec),
        CLI_OPT_STR("--split", &split),
        CLI_OPT_STR("--file", &file),
        CLI_OPT_STR("--articles", &articles),
        CLI_OPT_LONG("--max-questions", &max_questions, 1, 1L << 40),
        CLI_OPT_LONG("--batch", &batch, 1, 1 << 16),
        CLI_OPT_LONG("--max-len", &max_len, 3, 1 << 20),
        CLI_OPT_LONG("--threads", &threads, 1, 1024),
        CLI_OPT_PRECISION(&precision),
    };
    int rc = cli_parse_options("eval", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!adapter || (!data && !file)) {
        fprintf(stderr, "petl eval: --adapter and --data (or --file) are required "
                        "(petl eval --help)\n");
        return 2;
    }
    cli_set_threads((int)threads);
    cli_adapter ad;
    if (cli_load_adapter("eval", model, adapter, precision, &ad)) return 1;
    if (max_len && (rc = cli_check_max_len("eval", model, ad.base, max_len)) != 0) {
        cli_adapter_free(&ad);
        return rc;
    }
    if (ad.info.tune.head == PETL_HEAD_SPAN) {
        int src = cli_squad_eval(&ad, file ? file : data, articles, max_questions, (int)batch,
                                 (int)max_len);
        cli_adapter_free(&ad);
        return src;
    }
    if (articles || max_questions) {
        fprintf(stderr, "petl eval: --articles and --max-questions are for SQuAD adapters\n");
        cli_adapter_free(&ad);
        return 2;
    }
    rc = 1;
    petl_error err = {0};
    petl_task task;
    petl_dataset *ds = NULL;
    petl_batcher *b = NULL;
    char *path = NULL;
    if (petl_task_lookup(task_spec ? task_spec : ad.info.task_spec, &task, &err) != PETL_OK) {
        if (task_spec) rc = 2; /* a bad --task is a usage error; a bad saved spec is not */
        goto fail;
    }
    if (cli_check_task("eval", &ad, &task)) goto done;
    if (file) {
        path = strdup(file);
        split = "file";
    } else {
        const char *f = petl_task_split_file(&task, split);
        if (!f) {
            fprintf(stderr, "petl eval: unknown split '%s' for task %s\n", split, task.name);
            rc = 2;
            goto done;
        }
        path = petl_path_join(data, f);
    }
    if (!path) {
        fprintf(stderr, "petl eval: out of memory\n");
        goto done;
    }
    /* The adapter's labels fix the class indices: a label it does not know is an error. */
    if (petl_dataset_load(&task, path, (const char *const *)ad.info.labels, ad.info.n_labels, &ds,
                          &err) != PETL_OK)
        goto fail;
    if (cli_check_data("eval", &ad, path, ds)) goto done;
    if (petl_dataset_count(ds) == 0) {
        fprintf(stderr, "petl eval: %s holds no examples\n", path);
        goto done;
    }
    if (petl_batcher_new(ad.tok, max_len ? (int)max_len : ad.info.max_len, &b, &err) != PETL_OK ||
        petl_batcher_add_dataset(b, ds, &err) != PETL_OK) {
        fprintf(stderr, "petl eval: %s: %s\n", path, err.msg);
        goto done;
    }
    petl_metric_set m;
    if (petl_evaluate(ad.tm, NULL, &task, b, (int)batch, NULL, &m, &err) != PETL_OK) goto fail;
    printf("{\"task\": ");
    cli_json_string(stdout, task.name);
    printf(", \"split\": ");
    cli_json_string(stdout, split);
    printf(", \"n\": %zu", petl_dataset_count(ds));
    for (size_t i = 0; i < m.count; i++) {
        printf(", \"%s\": ", petl_metric_name(m.metric[i]));
        cli_json_number(stdout, m.value[i]);
    }
    printf("}\n");
    rc = cli_check_stdout("eval");
    goto done;
fail:
    fprintf(stderr, "petl eval: %s\n", err.msg);
done:
    petl_batcher_free(b);
    petl_dataset_free(ds);
    free(path);
    cli_adapter_free(&ad);
    return rc;
}
