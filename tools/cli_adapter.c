/* Pieces shared by `petl train`, `petl eval` and `petl predict`: threads, precision and loading
 * a base model with an adapter. */
#include "cli.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void cli_set_threads(int n) {
    if (n > 0) {
        /* Before any context exists: contexts size their scratch for this many threads. */
        omp_set_num_threads(n);
        openblas_set_num_threads(n);
    }
}

int cli_set_precision(const char *cmd, petl_model *m, const char *text, bool training) {
    petl_error err = {0};
    petl_precision p = PETL_FP32; /* what petl_model_load gives */
    if ((text && petl_precision_parse(text, &p, &err) != PETL_OK) ||
        petl_model_set_precision(m, p, training, &err) != PETL_OK) {
        fprintf(stderr, "petl %s: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}

int cli_parse_precision(const char *cmd, const char *opt, const char *value, void *dst) {
    petl_precision p;
    petl_error err = {0};
    if (petl_precision_parse(value, &p, &err) != PETL_OK) {
        fprintf(stderr, "petl %s: %s: %s\n", cmd, opt, err.msg);
        return -1;
    }
    *(const char **)dst = value;
    return 0;
}

int cli_check_max_len(const char *cmd, const char *model_dir, const petl_model *m, long max_len) {
    const int positions = petl_model_max_len(m);
    if (max_len <= positions) return 0;
    fprintf(stderr,
            "petl %s: --max-len %ld is over the model's %d positions (max_position_embeddings in "
            "%s/config.json)\n",
            cmd, max_len, positions, model_dir);
    return 2;
}

int cli_load_adapter(const char *cmd, const char *model_dir, const char *adapter_dir,
                     const char *precision, cli_adapter *out) {
    memset(out, 0, sizeof *out);
    petl_error err = {0};
    if (petl_tokenizer_load(model_dir, &out->tok, &err) != PETL_OK ||
        petl_model_load(model_dir, &out->base, &err) != PETL_OK) {
        fprintf(stderr, "petl %s: %s\n", cmd, err.msg);
        cli_adapter_free(out);
        return 1;
    }
    petl_base_identity id;
    petl_base_identity_of(out->base, &id);
    petl_base_identity_set_tokenizer(&id, out->tok);
    if (petl_adapter_load(adapter_dir, out->base, &id, &out->info, &out->tm, &err) != PETL_OK) {
        fprintf(stderr, "petl %s: %s\n", cmd, err.msg);
        cli_adapter_free(out);
        return 1;
    }
    if (cli_set_precision(cmd, out->base, precision, false)) {
        cli_adapter_free(out);
        return 1;
    }
    return 0;
}

int cli_check_task(const char *cmd, const cli_adapter *ad, const petl_task *task) {
    if (task->regression != ad->info.regression) {
        fprintf(stderr, "petl %s: task %s is %s but the adapter was trained for %s\n", cmd,
                task->name, task->regression ? "regression" : "classification",
                ad->info.regression ? "regression" : "classification");
        return 1;
    }
    const bool pair = task->col_b != PETL_COL_NONE;
    if (pair == ad->info.pair_input) return 0;
    fprintf(stderr, "petl %s: task %s reads %s but the adapter was trained on %s (task %s)\n", cmd,
            task->name, pair ? "text pairs" : "single texts",
            ad->info.pair_input ? "text pairs" : "single texts", ad->info.task_spec);
    return 1;
}

int cli_check_data(const char *cmd, const cli_adapter *ad, const char *path,
                   const petl_dataset *ds) {
    const size_t want = (size_t)ad->info.data_columns, have = petl_dataset_columns(ds);
    if (want == 0 || have == 0 || have == want) return 0;
    fprintf(stderr,
            "petl %s: %s has %zu columns but the adapter was trained on a file of %zu (task "
            "%s): is it another task's data?\n",
            cmd, path, have, want, ad->info.task_spec);
    return 1;
}

void cli_adapter_free(cli_adapter *a) {
    petl_task_model_free(a->tm);
    petl_adapter_info_free(&a->info);
    petl_model_free(a->base);
    petl_tokenizer_free(a->tok);
    memset(a, 0, sizeof *a);
}

void cli_json_number(FILE *f, double x) {
    if (isfinite(x))
        fprintf(f, "%.9g", x);
    else
        fputs("null", f);
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
