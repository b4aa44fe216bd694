/* Task data: the nine GLUE tasks and a generic TSV / CSV / JSON-lines format.
 *
 * public API: to be merged into include/petl.h
 *
 * A task (petl_task, a plain value filled by petl_task_lookup) says how to read a file: format,
 * header, which columns hold text_a / text_b / label, the label set, whether it is a regression
 * task and which metrics are official. A dataset (petl_dataset, opaque) is one loaded file:
 * its examples, all strings in one arena owned by the dataset.
 *
 * Reading rules, for every format:
 *   - A UTF-8 byte-order mark at the start is skipped; the whole file must be valid UTF-8
 *     (PETL_ERR_UTF8 naming file:line:column) and hold no NUL byte.
 *   - Lines end with LF or CRLF (the CR is dropped); a missing final newline is fine.
 *   - Blank lines are skipped (they never hold a row).
 *   - TSV: fields are split at every TAB with NO quote processing: several GLUE files hold
 *     literal '"' characters that a CSV-style reader would swallow.
 *   - CSV: RFC 4180: fields split at ',', a field that starts with '"' is quoted and may hold
 *     ',', '"' (written "") and line breaks; a '"' inside an unquoted field is kept literally.
 *   - JSON lines: one object per line, read with jansson.
 *   - Any error (missing column, unknown label, bad number, ...) names file:line and stops the
 *     load. Rows are skipped only where the official processors skip them: QQP rows with too few
 *     columns (transformers' QqpProcessor catches the IndexError); they are counted.
 *
 * The generic format, given to petl_task_lookup instead of a task name:
 *
 *     spec    := format [ ":" option { "," option } ]
 *     format  := "tsv" | "csv" | "jsonl"
 *     option  := ("text" | "text_a" | "text_b" | "label") "=" column
 *              | "header" | "regression"
 *     column  := digits (0-based column index; tsv / csv)
 *              | name   (a header column name for tsv / csv with "header"; a key for jsonl)
 *
 * "text" and "text_a" are the same; text and label are required, text_b is optional. Names
 * cannot hold ',', '=' or ':'. Defaults: no header, classification. Examples:
 *     tsv:text=0,label=1            csv:text=review,label=stars,header
 *     tsv:text=1,text_b=2,label=3,header      jsonl:text=premise,text_b=hypothesis,label=label
 *     csv:text_a=s1,text_b=s2,label=score,header,regression
 * Labels of a generic classification task are discovered from the file: numerically sorted when
 * every label is an integer, else sorted by bytes (strcmp). JSON labels may be strings or
 * integers; a regression target may be a JSON number or a numeric string.
 */
#ifndef PETL_DATA_H
#define PETL_DATA_H

#include "metrics.h"
#include "petl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ========================================================================== data (src/data.c) */

typedef enum { PETL_FMT_TSV, PETL_FMT_CSV, PETL_FMT_JSONL } petl_data_format;

#define PETL_COL_NONE (-1)   /* no such column (text_b of a single-sentence task) */
#define PETL_COL_LAST (-2)   /* the row's last column (the label of several GLUE tasks) */
#define PETL_COL_BYNAME (-3) /* resolved at load time from the header by the *_name field */
#define PETL_TASK_MAX_LABELS 8
#define PETL_DATA_MAX_LABELS 1024 /* more distinct labels than this means a wrong label column */

typedef struct petl_task {
    char name[16]; /* "sst2", "mnli", ...; "tsv" / "csv" / "jsonl" for a generic spec */
    bool glue;     /* one of the nine GLUE tasks */
    petl_data_format format;
    bool header;          /* the first row is a header (skipped, or used to resolve names) */
    bool regression;      /* label is a float target (STS-B) */
    bool skip_short_rows; /* QQP: rows with fewer than min_cols columns are skipped, counted */
    int min_cols;         /* tsv / csv: rows need at least this many columns */
    int col_a, col_b, col_label;                 /* tsv / csv column index, or a PETL_COL_* value */
    char name_a[64], name_b[64], name_label[64]; /* jsonl keys / header names; "" when unused */
    size_t n_labels; /* fixed label set in the official order; 0: discovered / none */
    const char *labels[PETL_TASK_MAX_LABELS]; /* static strings */
    size_t n_metrics; /* the task's official metrics, in the order GLUE reports them */
    petl_metric metrics[PETL_MAX_METRICS];
    const char *train_file; /* "train.tsv" ("train.csv", "train.jsonl" for a generic spec) */
    const char *dev_file;   /* "dev.tsv"; MNLI "dev_matched.tsv" */
    const char *dev2_file;  /* MNLI "dev_mismatched.tsv"; NULL for the others */
} petl_task;

/* Fills *out for a GLUE task name (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; case and
 * '-' ignored, so "SST-2" and "STS-B" work too) or a generic format spec (grammar above). */
petl_status petl_task_lookup(const char *name, petl_task *out, petl_error *err);

/* File name (inside a GLUE-layout task folder) of a split: "train", "dev" ("dev_matched" for
 * MNLI), "dev_matched" and "dev_mismatched" (MNLI only). NULL for an unknown split. */
const char *petl_task_split_file(const petl_task *task, const char *split);

typedef struct {
    const char *text_a;  /* NUL-terminated UTF-8, owned by the dataset */
    const char *text_b;  /* NULL for a single-sentence task */
    size_t len_a, len_b; /* bytes, without the NUL (len_b 0 when text_b is NULL) */
    int32_t label;       /* class index into the dataset's labels; -1 for regression */
    double target;       /* regression target; 0 for classification */
    size_t line;         /* 1-based line of the row (its first line for a multi-line CSV row) */
} petl_example;

typedef struct petl_dataset petl_dataset;

/* Reads a task file. The label set of a classification task is, in order of preference:
 * `labels` (n_labels names, e.g. the training set's or a saved adapter's: an unknown label is
 * an error), the task's fixed GLUE set, or the labels discovered in this file. On success
 * *out owns everything; free with petl_dataset_free. */
petl_status petl_dataset_load(const petl_task *task, const char *path, const char *const *labels,
                              size_t n_labels, petl_dataset **out, petl_error *err);
/* The same from memory (buf is copied; it need not be NUL-terminated). `what` names the
 * source in error messages. Used by the fuzzer and tests. */
petl_status petl_dataset_parse(const petl_task *task, const char *buf, size_t len, const char *what,
                               const char *const *labels, size_t n_labels, petl_dataset **out,
                               petl_error *err);
void petl_dataset_free(petl_dataset *ds);

size_t petl_dataset_count(const petl_dataset *ds);
const petl_example *petl_dataset_at(const petl_dataset *ds, size_t i);
/* The examples as one array [count] (NULL when count is 0), owned by the dataset. */
const petl_example *petl_dataset_examples(const petl_dataset *ds);
bool petl_dataset_is_regression(const petl_dataset *ds);
/* The label names in class-index order (owned by the dataset; 0 for regression): pass them as
 * `labels` when loading the dev set so that indices agree. */
size_t petl_dataset_num_labels(const petl_dataset *ds);
const char *const *petl_dataset_labels(const petl_dataset *ds);
/* Index of a label name, or -1. */
int32_t petl_dataset_label_index(const petl_dataset *ds, const char *name);
/* Rows skipped as malformed (QQP only; 0 for every other task). */
size_t petl_dataset_skipped(const petl_dataset *ds);

#ifdef __cplusplus
}
#endif
#endif /* PETL_DATA_H */
