/* libFuzzer target: any bytes through the task data reader. The first byte picks the task
 * (GLUE TSV layouts, generic TSV / CSV / JSON lines) and whether a fixed label set is given;
 * the rest is the file. An accepted dataset must satisfy the invariants training relies on:
 * every text NUL-terminated at its length and valid to read, every label a valid index. */
#include "petl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const SPECS[] = {
    "sst2",
    "cola",
    "stsb",
    "qqp",
    "mnli",
    "rte",
    "tsv:text=a,text_b=b,label=y,header",
    "csv:text=0,text_b=1,label=2",
    "csv:text=a,label=y,header,regression",
    "jsonl:text=t,text_b=u,label=l",
    "jsonl:text=t,label=v,regression",
    "tsv:text=0,label=1",
};
#define N_SPECS (sizeof SPECS / sizeof SPECS[0])

static void check_dataset(const petl_dataset *ds, const petl_task *t, size_t n_given) {
    size_t n = petl_dataset_count(ds), nl = petl_dataset_num_labels(ds);
    const char *const *names = petl_dataset_labels(ds);
    if (n == 0 || (n_given && nl != n_given)) abort();
    if (t->regression != petl_dataset_is_regression(ds) || (t->regression && nl != 0)) abort();
    for (size_t i = 0; i < nl; i++)
        if (!names[i] || petl_dataset_label_index(ds, names[i]) != (int32_t)i) abort();
    for (size_t i = 0; i < n; i++) {
        const petl_example *e = petl_dataset_at(ds, i);
        if (!e->text_a || strlen(e->text_a) != e->len_a) abort();
        if (e->text_b ? strlen(e->text_b) != e->len_b : e->len_b != 0) abort();
        if (t->regression ? (e->label != -1 || !isfinite(e->target))
                          : (e->label < 0 || (size_t)e->label >= nl))
            abort();
        if (e->line == 0 || (i > 0 && e->line <= petl_dataset_at(ds, i - 1)->line)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    petl_task t;
    petl_error err;
    if (petl_task_lookup(SPECS[data[0] % N_SPECS], &t, &err) != PETL_OK) abort();
    /* Bit 7: a fixed label set as a dev file would get it from its training set. */
    static const char *const LABELS[] = {"0", "1", "pos"};
    size_t n_given = (data[0] & 0x80) ? 3 : 0;
    petl_dataset *ds = NULL;
    petl_status st = petl_dataset_parse(&t, (const char *)data + 1, size - 1, "fuzz",
                                        n_given ? LABELS : NULL, n_given, &ds, &err);
    if (st != PETL_OK) {
        if (ds || !memchr(err.msg, '\0', sizeof err.msg) || strncmp(err.msg, "fuzz", 4)) abort();
        return 0;
    }
    check_dataset(ds, &t, t.regression ? 0 : n_given);
    petl_dataset_free(ds);
    return 0;
}
