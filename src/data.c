/* Task data reader: GLUE TSV files and a generic TSV / CSV / JSON-lines format (see the section
 * "task data" of include/petl.h for the rules and the spec grammar).
 *
 * The whole file is read into one buffer that becomes the dataset's first arena block. TSV and
 * CSV fields are cut out of it in place (separators overwritten with NUL, CSV quotes undone by
 * shifting left, which never needs more room), so the examples point into the file's own bytes
 * and loading is one pass with no per-string allocation. JSON strings and label names are
 * copied into further arena blocks. */
#include "petl.h"

#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define DATA_MAX_BYTES ((size_t)4 << 30) /* a larger file is refused, not half-read */
#define ARENA_BLOCK ((size_t)64 << 10)

/* ------------------------------------------------------------------------------- tasks */

/* One task per block, kept as a table. */
/* clang-format off */
static const petl_task GLUE_TASKS[] = {
    {.name = "cola", .min_cols = 4, .col_a = 3, .col_b = PETL_COL_NONE, .col_label = 1,
     .n_labels = 2, .labels = {"0", "1"}, .n_metrics = 1, .metrics = {PETL_METRIC_MCC}},
    {.name = "sst2", .header = true, .min_cols = 2, .col_a = 0, .col_b = PETL_COL_NONE,
     .col_label = 1, .n_labels = 2, .labels = {"0", "1"}, .n_metrics = 1,
     .metrics = {PETL_METRIC_ACCURACY}},
    {.name = "mrpc", .header = true, .min_cols = 5, .col_a = 3, .col_b = 4, .col_label = 0,
     .n_labels = 2, .labels = {"0", "1"}, .n_metrics = 2,
     .metrics = {PETL_METRIC_ACCURACY, PETL_METRIC_F1}},
    {.name = "stsb", .header = true, .regression = true, .min_cols = 10, .col_a = 7, .col_b = 8,
     .col_label = PETL_COL_LAST, .n_metrics = 2,
     .metrics = {PETL_METRIC_PEARSON, PETL_METRIC_SPEARMAN}},
    {.name = "qqp", .header = true, .skip_short_rows = true, .min_cols = 6, .col_a = 3,
     .col_b = 4, .col_label = 5, .n_labels = 2, .labels = {"0", "1"}, .n_metrics = 2,
     .metrics = {PETL_METRIC_ACCURACY, PETL_METRIC_F1}},
    {.name = "mnli", .header = true, .min_cols = 12, .col_a = 8, .col_b = 9,
     .col_label = PETL_COL_LAST, .n_labels = 3,
     .labels = {"contradiction", "entailment", "neutral"}, .n_metrics = 1,
     .metrics = {PETL_METRIC_ACCURACY}, .dev_file = "dev_matched.tsv",
     .dev2_file = "dev_mismatched.tsv"},
    {.name = "qnli", .header = true, .min_cols = 4, .col_a = 1, .col_b = 2,
     .col_label = PETL_COL_LAST, .n_labels = 2, .labels = {"entailment", "not_entailment"},
     .n_metrics = 1, .metrics = {PETL_METRIC_ACCURACY}},
    {.name = "rte", .header = true, .min_cols = 4, .col_a = 1, .col_b = 2,
     .col_label = PETL_COL_LAST, .n_labels = 2, .labels = {"entailment", "not_entailment"},
     .n_metrics = 1, .metrics = {PETL_METRIC_ACCURACY}},
    {.name = "wnli", .header = true, .min_cols = 4, .col_a = 1, .col_b = 2,
     .col_label = PETL_COL_LAST, .n_labels = 2, .labels = {"0", "1"}, .n_metrics = 1,
     .metrics = {PETL_METRIC_ACCURACY}},
};
/* clang-format on */

/* The header row of each GLUE task's official files over the columns petl reads (col -1: the
 * last one). A file with another header is another task's file: an SST-2 adapter given CoLA's
 * headerless dev.tsv would take its first row for a header and read source ids as sentences. */
typedef struct {
    const char *task, *folder; /* petl_task.name, the GLUE folder name for messages */
    int col[3];
    const char *name[3];
} glue_header;
static const glue_header GLUE_HEADERS[] = {
    {"sst2", "SST-2", {0, 1, 0}, {"sentence", "label", NULL}},
    {"mrpc", "MRPC", {0, 3, 4}, {"Quality", "#1 String", "#2 String"}},
    {"stsb", "STS-B", {7, 8, -1}, {"sentence1", "sentence2", "score"}},
    {"qqp", "QQP", {3, 4, 5}, {"question1", "question2", "is_duplicate"}},
    {"mnli", "MNLI", {8, 9, -1}, {"sentence1", "sentence2", "gold_label"}},
    {"qnli", "QNLI", {1, 2, -1}, {"question", "sentence", "label"}},
    {"rte", "RTE", {1, 2, -1}, {"sentence1", "sentence2", "label"}},
    {"wnli", "WNLI", {1, 2, -1}, {"sentence1", "sentence2", "label"}},
};

/* Task names compare ignoring case and '-' so that the GLUE folder names (SST-2, STS-B, CoLA)
 * work as well as the short names. */
static bool same_task_name(const char *given, const char *name) {
    for (;;) {
        while (*given == '-')
            given++;
        if (tolower((unsigned char)*given) != *name) return false;
        if (*name == '\0') return true;
        given++;
        name++;
    }
}

static const char *FORMAT_NAMES[] = {"tsv", "csv", "jsonl"};

/* One "key=value" (or flag) of a generic spec; opt is NUL-terminated. */
static petl_status spec_option(const char *spec, char *opt, petl_task *t, bool seen[3],
                               petl_error *err) {
    if (strcmp(opt, "header") == 0 || strcmp(opt, "regression") == 0) {
        *(opt[0] == 'h' ? &t->header : &t->regression) = true;
        return PETL_OK;
    }
    char *eq = strchr(opt, '=');
    int which = -1;
    if (eq) {
        *eq = '\0';
        if (strcmp(opt, "text") == 0 || strcmp(opt, "text_a") == 0) which = 0;
        if (strcmp(opt, "text_b") == 0) which = 1;
        if (strcmp(opt, "label") == 0) which = 2;
    }
    if (which < 0)
        return petl_fail(err, PETL_ERR_ARG,
                         "task spec '%s': unknown option '%s' (expected "
                         "text=, text_b=, label=, header or regression)",
                         spec, opt);
    const char *val = eq + 1;
    size_t len = strlen(val);
    char *names[3] = {t->name_a, t->name_b, t->name_label};
    int *cols[3] = {&t->col_a, &t->col_b, &t->col_label};
    if (seen[which])
        return petl_fail(err, PETL_ERR_ARG, "task spec '%s': %s given twice", spec, opt);
    if (len == 0 || len >= sizeof t->name_a)
        return petl_fail(err, PETL_ERR_ARG,
                         "task spec '%s': %s needs a column of 1 to %zu "
                         "characters",
                         spec, opt, sizeof t->name_a - 1);
    seen[which] = true;
    memcpy(names[which], val, len + 1);
    bool digits = strspn(val, "0123456789") == len;
    if (t->format == PETL_FMT_JSONL)
        *cols[which] = PETL_COL_BYNAME;
    else if (digits && len <= 6)
        *cols[which] = atoi(val);
    else if (digits)
        return petl_fail(err, PETL_ERR_ARG,
                         "task spec '%s': column %s is too "
                         "large",
                         spec, val);
    else
        *cols[which] = PETL_COL_BYNAME;
    return PETL_OK;
}

static void generic_defaults(petl_task *t, petl_data_format f) {
    static const char *TRAIN[] = {"train.tsv", "train.csv", "train.jsonl"};
    static const char *DEV[] = {"dev.tsv", "dev.csv", "dev.jsonl"};
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", FORMAT_NAMES[f]);
    t->format = f;
    t->col_a = t->col_b = t->col_label = PETL_COL_NONE;
    t->train_file = TRAIN[f];
    t->dev_file = DEV[f];
}

static petl_status parse_spec(const char *spec, petl_task *t, petl_error *err) {
    size_t flen = strcspn(spec, ":");
    int f = -1;
    for (int i = 0; i < 3; i++)
        if (strlen(FORMAT_NAMES[i]) == flen && strncmp(spec, FORMAT_NAMES[i], flen) == 0) f = i;
    if (f < 0)
        return petl_fail(err, PETL_ERR_ARG,
                         "unknown task '%s' (expected cola, sst2, mrpc, "
                         "stsb, qqp, mnli, qnli, rte, wnli or a tsv: / csv: / jsonl: spec)",
                         spec);
    generic_defaults(t, (petl_data_format)f);
    char buf[512];
    if (strlen(spec) >= sizeof buf)
        return petl_fail(err, PETL_ERR_ARG, "task spec is over %zu characters", sizeof buf - 1);
    snprintf(buf, sizeof buf, "%s", spec[flen] ? spec + flen + 1 : "");
    bool seen[3] = {false, false, false};
    for (char *opt = buf, *next; opt; opt = next) {
        next = strchr(opt, ',');
        if (next) *next++ = '\0';
        if (*opt == '\0') continue;
        petl_status st = spec_option(spec, opt, t, seen, err);
        if (st != PETL_OK) return st;
    }
    if (!seen[0] || !seen[2])
        return petl_fail(err, PETL_ERR_ARG, "task spec '%s' needs text= and label=", spec);
    bool byname = t->col_a == PETL_COL_BYNAME || t->col_b == PETL_COL_BYNAME ||
                  t->col_label == PETL_COL_BYNAME;
    if (t->format != PETL_FMT_JSONL && byname && !t->header)
        return petl_fail(err, PETL_ERR_ARG,
                         "task spec '%s': columns given by name need the "
                         "header option",
                         spec);
    t->n_metrics = t->regression ? 3 : 1;
    t->metrics[0] = t->regression ? PETL_METRIC_PEARSON : PETL_METRIC_ACCURACY;
    t->metrics[1] = PETL_METRIC_SPEARMAN;
    t->metrics[2] = PETL_METRIC_MSE;
    return PETL_OK;
}

petl_status petl_task_lookup(const char *name, petl_task *out, petl_error *err) {
    if (!name || !out) return petl_fail(err, PETL_ERR_ARG, "petl_task_lookup: NULL argument");
    for (size_t i = 0; i < sizeof GLUE_TASKS / sizeof GLUE_TASKS[0]; i++) {
        if (!same_task_name(name, GLUE_TASKS[i].name)) continue;
        *out = GLUE_TASKS[i];
        out->glue = true;
        out->format = PETL_FMT_TSV;
        out->train_file = "train.tsv";
        if (!out->dev_file) out->dev_file = "dev.tsv";
        return PETL_OK;
    }
    return parse_spec(name, out, err);
}

const char *petl_task_split_file(const petl_task *task, const char *split) {
    if (strcmp(split, "train") == 0) return task->train_file;
    if (strcmp(split, "dev") == 0) return task->dev_file;
    if (!task->dev2_file) return NULL;
    if (strcmp(split, "dev_matched") == 0) return task->dev_file;
    if (strcmp(split, "dev_mismatched") == 0) return task->dev2_file;
    return NULL;
}

/* ------------------------------------------------------------------------------- arena */

typedef struct block {
    struct block *next;
    char *data; /* malloc'ed, owned by the block */
    size_t used, cap;
} block;

struct petl_dataset {
    petl_example *ex; /* [n], malloc'ed */
    size_t n, cap;
    char **labels; /* [n_labels], names in the arena */
    size_t *label_len;
    size_t n_labels;
    bool regression;
    size_t skipped;
    size_t columns; /* tsv / csv: every data row's field count; 0 when they differ, or jsonl */
    bool ragged;    /* rows of different widths seen */
    block *arena;   /* every string of the dataset */
};

/* Makes buf (malloc'ed, size cap) an arena block owned by ds; frees buf on failure. */
static bool arena_adopt(petl_dataset *ds, char *buf, size_t used, size_t cap) {
    block *b = malloc(sizeof *b);
    if (!b) {
        free(buf);
        return false;
    }
    *b = (block){ds->arena, buf, used, cap};
    ds->arena = b;
    return true;
}

/* A copy of s[len] plus NUL in the arena, or NULL when out of memory. */
static char *arena_strdup(petl_dataset *ds, const char *s, size_t len) {
    block *b = ds->arena;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > ARENA_BLOCK ? len + 1 : ARENA_BLOCK;
        char *buf = malloc(cap);
        if (!buf || !arena_adopt(ds, buf, 0, cap)) return NULL;
        b = ds->arena;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    p[len] = '\0';
    b->used += len + 1;
    return p;
}

void petl_dataset_free(petl_dataset *ds) {
    if (!ds) return;
    for (block *b = ds->arena, *next; b; b = next) {
        next = b->next;
        free(b->data);
        free(b);
    }
    free(ds->ex);
    free(ds->labels);
    free(ds->label_len);
    free(ds);
}

size_t petl_dataset_count(const petl_dataset *ds) {
    return ds->n;
}
const petl_example *petl_dataset_at(const petl_dataset *ds, size_t i) {
    return i < ds->n ? &ds->ex[i] : NULL;
}
const petl_example *petl_dataset_examples(const petl_dataset *ds) {
    return ds->ex;
}
bool petl_dataset_is_regression(const petl_dataset *ds) {
    return ds->regression;
}
size_t petl_dataset_num_labels(const petl_dataset *ds) {
    return ds->n_labels;
}
const char *const *petl_dataset_labels(const petl_dataset *ds) {
    return (const char *const *)ds->labels;
}
size_t petl_dataset_skipped(const petl_dataset *ds) {
    return ds->skipped;
}
size_t petl_dataset_columns(const petl_dataset *ds) {
    return ds->ragged ? 0 : ds->columns;
}

int32_t petl_dataset_label_index(const petl_dataset *ds, const char *name) {
    for (size_t i = 0; i < ds->n_labels; i++)
        if (strcmp(ds->labels[i], name) == 0) return (int32_t)i;
    return -1;
}

/* ------------------------------------------------------------------------------ parser */

typedef struct {
    char *s; /* NUL-terminated, inside the arena */
    size_t len;
} field;

typedef struct {
    const petl_task *task;
    const char *what; /* the file name for messages */
    petl_dataset *ds;
    petl_error *err;
    bool fixed_labels;           /* the label set is given: an unknown label is an error */
    int col_a, col_b, col_label; /* resolved columns (tsv / csv) */
    size_t need;                 /* columns a row needs */
    bool seen_header;
    size_t rows; /* non-blank rows seen after the header, skipped ones included */
    field *f;    /* scratch for one row's fields */
    size_t nf, fcap;
} parser;

static petl_status no_mem(parser *ps) {
    return petl_fail(ps->err, PETL_ERR_NOMEM, "%s: out of memory", ps->what);
}

static petl_status push_field(parser *ps, char *s, size_t len) {
    if (ps->nf == ps->fcap) {
        size_t cap = ps->fcap ? 2 * ps->fcap : 16;
        field *f = realloc(ps->f, cap * sizeof *f);
        if (!f) return no_mem(ps);
        ps->f = f;
        ps->fcap = cap;
    }
    ps->f[ps->nf++] = (field){s, len};
    return PETL_OK;
}

static petl_status add_label_name(parser *ps, const char *s, size_t len) {
    petl_dataset *ds = ps->ds;
    char **names = realloc(ds->labels, (ds->n_labels + 1) * sizeof *names);
    if (!names) return no_mem(ps);
    ds->labels = names;
    size_t *lens = realloc(ds->label_len, (ds->n_labels + 1) * sizeof *lens);
    if (!lens) return no_mem(ps);
    ds->label_len = lens;
    char *copy = arena_strdup(ds, s, len);
    if (!copy) return no_mem(ps);
    names[ds->n_labels] = copy;
    lens[ds->n_labels++] = len;
    return PETL_OK;
}

/* "a, b, c" of the label set, for messages. */
static void label_list(const petl_dataset *ds, char *out, size_t cap) {
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ds->n_labels && k + 1 < cap; i++) {
        int w = snprintf(out + k, cap - k, "%s'%.40s'", i ? ", " : "", ds->labels[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

static petl_status label_index(parser *ps, const char *s, size_t len, size_t line, int32_t *idx) {
    petl_dataset *ds = ps->ds;
    for (size_t i = 0; i < ds->n_labels; i++) {
        if (ds->label_len[i] == len && memcmp(ds->labels[i], s, len) == 0) {
            *idx = (int32_t)i;
            return PETL_OK;
        }
    }
    if (ps->fixed_labels) {
        char list[200];
        label_list(ds, list, sizeof list);
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s:%zu: unknown label '%.60s' (the labels "
                         "are %s)",
                         ps->what, line, s, list);
    }
    if (ds->n_labels == PETL_DATA_MAX_LABELS)
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s:%zu: more than %d distinct labels: is "
                         "the label column right?",
                         ps->what, line, PETL_DATA_MAX_LABELS);
    *idx = (int32_t)ds->n_labels;
    return add_label_name(ps, s, len);
}

/* Strict float: the whole field, finite; strtod's own leading-space skip is not allowed. */
static petl_status parse_target(parser *ps, const char *s, size_t line, double *out) {
    char *end = NULL;
    errno = 0;
    double v = (*s && !isspace((unsigned char)*s)) ? strtod(s, &end) : NAN;
    if (!end || *end != '\0' || !isfinite(v) || errno == ERANGE)
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s:%zu: regression target '%.60s' is not "
                         "a finite number",
                         ps->what, line, s);
    *out = v;
    return PETL_OK;
}

static petl_status push_example(parser *ps, const petl_example *e) {
    petl_dataset *ds = ps->ds;
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 1024;
        petl_example *ex = realloc(ds->ex, cap * sizeof *ex);
        if (!ex) return no_mem(ps);
        ds->ex = ex;
        ds->cap = cap;
    }
    ds->ex[ds->n++] = *e;
    return PETL_OK;
}

/* Adds one example; label is a NUL-terminated string of length label_len. */
static petl_status add_example(parser *ps, field a, const field *b, field label, size_t line) {
    petl_example e = {a.s, b ? b->s : NULL, a.len, b ? b->len : 0, -1, 0.0, line};
    petl_status st = ps->task->regression ? parse_target(ps, label.s, line, &e.target)
                                          : label_index(ps, label.s, label.len, line, &e.label);
    if (st != PETL_OK) return st;
    return push_example(ps, &e);
}

/* ------------------------------------------------------------------------ tsv and csv rows */

static petl_status resolve_column(parser *ps, const char *name, int *col, size_t line) {
    if (*col != PETL_COL_BYNAME) return PETL_OK;
    for (size_t i = 0; i < ps->nf; i++) {
        if (strcmp(ps->f[i].s, name) == 0) {
            *col = (int)i;
            return PETL_OK;
        }
    }
    return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: the header has no column '%s'", ps->what,
                     line, name);
}

static void compute_need(parser *ps) {
    int cols[3] = {ps->col_a, ps->col_b, ps->col_label};
    size_t need = ps->task->min_cols > 0 ? (size_t)ps->task->min_cols : 1;
    for (int i = 0; i < 3; i++)
        if (cols[i] >= 0 && (size_t)cols[i] + 1 > need) need = (size_t)cols[i] + 1;
    ps->need = need;
}

/* A GLUE task's header row must be its official one (GLUE_HEADERS). */
static petl_status check_glue_header(parser *ps, size_t line) {
    for (size_t i = 0; i < sizeof GLUE_HEADERS / sizeof GLUE_HEADERS[0]; i++) {
        const glue_header *h = &GLUE_HEADERS[i];
        if (strcmp(h->task, ps->task->name) != 0) continue;
        for (int k = 0; k < 3 && h->name[k]; k++) {
            size_t c = h->col[k] < 0 ? ps->nf - 1 : (size_t)h->col[k];
            if (c < ps->nf && strcmp(ps->f[c].s, h->name[k]) == 0) continue;
            char where[32] = "the last column";
            if (h->col[k] >= 0) snprintf(where, sizeof where, "column %d", h->col[k] + 1);
            char found[64] = "no such column";
            if (c < ps->nf) snprintf(found, sizeof found, "'%.40s'", ps->f[c].s);
            return petl_fail(ps->err, PETL_ERR_FORMAT,
                             "%s:%zu: not %s data: %s files start with a header row that has "
                             "'%s' in %s; this one has %s there (another task's file?)",
                             ps->what, line, h->folder, h->folder, h->name[k], where, found);
        }
    }
    return PETL_OK;
}

static petl_status take_header(parser *ps, size_t line) {
    const petl_task *t = ps->task;
    ps->seen_header = true;
    if (t->glue) {
        petl_status st = check_glue_header(ps, line);
        if (st != PETL_OK) return st;
    }
    petl_status st = resolve_column(ps, t->name_a, &ps->col_a, line);
    if (st == PETL_OK) st = resolve_column(ps, t->name_b, &ps->col_b, line);
    if (st == PETL_OK) st = resolve_column(ps, t->name_label, &ps->col_label, line);
    compute_need(ps);
    return st;
}

/* One non-blank row of fields ps->f[0 .. nf). */
static petl_status take_row(parser *ps, size_t line) {
    if (ps->task->header && !ps->seen_header) return take_header(ps, line);
    ps->rows++;
    if (ps->rows == 1) ps->ds->columns = ps->nf;
    if (ps->nf != ps->ds->columns) ps->ds->ragged = true;
    if (ps->nf < ps->need) {
        if (ps->task->skip_short_rows) {
            ps->ds->skipped++;
            return PETL_OK;
        }
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s:%zu: expected at least %zu %s columns, "
                         "found %zu",
                         ps->what, line, ps->need,
                         ps->task->format == PETL_FMT_CSV ? "comma-separated" : "tab-separated",
                         ps->nf);
    }
    field label = ps->f[ps->col_label == PETL_COL_LAST ? ps->nf - 1 : (size_t)ps->col_label];
    const field *b = ps->col_b >= 0 ? &ps->f[ps->col_b] : NULL;
    return add_example(ps, ps->f[ps->col_a], b, label, line);
}

/* Cuts the line [p, e) at every TAB, in place (e points at a writable terminator slot). */
static petl_status split_tsv(parser *ps, char *p, char *e) {
    ps->nf = 0;
    *e = '\0';
    for (;;) {
        char *tab = memchr(p, '\t', (size_t)(e - p));
        char *end = tab ? tab : e;
        *end = '\0';
        petl_status st = push_field(ps, p, (size_t)(end - p));
        if (st != PETL_OK || !tab) return st;
        p = tab + 1;
    }
}

static petl_status parse_tsv(parser *ps, char *p, char *end, size_t line0) {
    for (size_t line = line0; p < end; line++) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end; /* no final newline: end[0] is the buffer's NUL slot */
        char *next = eol < end ? eol + 1 : end;
        char *e = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;
        if (e > p) {
            petl_status st = split_tsv(ps, p, e);
            if (st == PETL_OK) st = take_row(ps, line);
            if (st != PETL_OK) return st;
        }
        p = next;
    }
    return PETL_OK;
}

/* Is p the end of a CSV record (LF, CRLF or the end of the buffer)? */
static size_t csv_eol(const char *p, const char *end) {
    if (p >= end) return 0;
    if (*p == '\n') return 1;
    if (*p == '\r' && p + 1 < end && p[1] == '\n') return 2;
    return (size_t)-1;
}

/* One quoted field starting at *pp (on the opening quote); unescapes in place. *line counts
 * the line breaks inside it. On return *pp is just past the closing quote. */
static petl_status csv_quoted(parser *ps, char **pp, char *end, size_t *line, size_t rec_line) {
    char *r = *pp + 1, *w = *pp, *start = *pp;
    for (;;) {
        if (r >= end)
            return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: quoted field never closed",
                             ps->what, rec_line);
        if (*r == '"') {
            if (r + 1 < end && r[1] == '"') {
                *w++ = '"';
                r += 2;
                continue;
            }
            r++;
            break;
        }
        if (*r == '\n') (*line)++;
        *w++ = *r++;
    }
    size_t k = csv_eol(r, end);
    if (k == (size_t)-1 && *r != ',')
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s:%zu: unexpected character '%c' after a "
                         "closing quote",
                         ps->what, *line, *r);
    *w = '\0'; /* w < r: the unescaped text never outgrows the quoted one */
    *pp = r;
    return push_field(ps, start, (size_t)(w - start));
}

/* One CSV record starting at *pp; fields go to ps->f. *line advances past the record. */
static petl_status csv_record(parser *ps, char **pp, char *end, size_t *line) {
    size_t rec_line = *line;
    char *p = *pp;
    ps->nf = 0;
    for (;;) {
        petl_status st;
        if (p < end && *p == '"') {
            st = csv_quoted(ps, &p, end, line, rec_line);
        } else {
            char *s = p;
            while (p < end && *p != ',' && csv_eol(p, end) == (size_t)-1)
                p++;
            st = push_field(ps, s, (size_t)(p - s));
        }
        if (st != PETL_OK) return st;
        size_t k = csv_eol(p, end);
        char c = p < end ? *p : '\0';
        ps->f[ps->nf - 1].s[ps->f[ps->nf - 1].len] = '\0'; /* may overwrite the separator */
        if (c == ',') {
            p++;
            continue;
        }
        (*line)++;
        *pp = p + (k == (size_t)-1 ? 0 : k);
        return PETL_OK;
    }
}

static petl_status parse_csv(parser *ps, char *p, char *end, size_t line0) {
    size_t line = line0;
    while (p < end) {
        size_t rec_line = line;
        petl_status st = csv_record(ps, &p, end, &line);
        if (st != PETL_OK) return st;
        bool blank = ps->nf == 1 && ps->f[0].len == 0;
        if (!blank && (st = take_row(ps, rec_line)) != PETL_OK) return st;
    }
    return PETL_OK;
}

/* -------------------------------------------------------------------------- JSON lines */

static petl_status json_text(parser *ps, json_t *obj, const char *key, size_t line, field *out) {
    json_t *v = json_object_get(obj, key);
    if (!v)
        return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: missing key \"%s\"", ps->what, line,
                         key);
    if (!json_is_string(v))
        return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: \"%s\" is not a string", ps->what, line,
                         key);
    size_t len = json_string_length(v);
    out->s = arena_strdup(ps->ds, json_string_value(v), len);
    out->len = len;
    return out->s ? PETL_OK : no_mem(ps);
}

/* The label of a JSON object as text: a string, or an integer (or, for regression, any
 * number) printed back. buf holds printed numbers. */
static petl_status json_label(parser *ps, json_t *obj, size_t line, char *buf, size_t cap,
                              field *out) {
    const char *key = ps->task->name_label;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: missing key \"%s\"", ps->what, line,
                         key);
    if (json_is_string(v)) {
        out->s = (char *)json_string_value(v);
        out->len = json_string_length(v);
        if (strlen(out->s) == out->len) return PETL_OK;
    } else if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = (field){buf, strlen(buf)};
        return PETL_OK;
    } else if (json_is_real(v) && ps->task->regression) {
        snprintf(buf, cap, "%.17g", json_real_value(v));
        *out = (field){buf, strlen(buf)};
        return PETL_OK;
    }
    return petl_fail(ps->err, PETL_ERR_FORMAT,
                     "%s:%zu: label \"%s\" must be a string or an "
                     "integer%s",
                     ps->what, line, key, ps->task->regression ? " or number" : "");
}

static petl_status json_row(parser *ps, json_t *obj, size_t line) {
    const petl_task *t = ps->task;
    if (!json_is_object(obj))
        return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu: expected a JSON object", ps->what,
                         line);
    field a, b, label;
    char num[64];
    petl_status st = json_text(ps, obj, t->name_a, line, &a);
    if (st == PETL_OK && t->name_b[0]) st = json_text(ps, obj, t->name_b, line, &b);
    if (st == PETL_OK) st = json_label(ps, obj, line, num, sizeof num, &label);
    if (st != PETL_OK) return st;
    ps->rows++;
    /* The label string may live in obj: it is only read (and copied when new) right here. */
    return add_example(ps, a, t->name_b[0] ? &b : NULL, label, line);
}

static petl_status parse_jsonl(parser *ps, char *p, char *end, size_t line0) {
    for (size_t line = line0; p < end; line++) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        char *next = eol < end ? eol + 1 : end;
        size_t len = (size_t)(eol - p);
        if (strspn(p, " \t\r") < len) {
            json_error_t je;
            json_t *obj = json_loadb(p, len, JSON_REJECT_DUPLICATES, &je);
            if (!obj)
                return petl_fail(ps->err, PETL_ERR_FORMAT, "%s:%zu:%d: %s", ps->what, line,
                                 je.column, je.text);
            petl_status st = json_row(ps, obj, line);
            json_decref(obj);
            if (st != PETL_OK) return st;
        }
        p = next;
    }
    return PETL_OK;
}

/* ------------------------------------------------------------------------------ checks */

/* The whole buffer must be valid UTF-8 without NUL bytes (a NUL would cut a C string short). */
static petl_status check_text(const char *what, const char *s, size_t len, petl_error *err) {
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            line++;
            line_start = i + 1;
        }
        if (c == 0)
            return petl_fail(err, PETL_ERR_FORMAT, "%s:%zu:%zu: NUL byte in a text file", what,
                             line, i - line_start + 1);
        if (c < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0)
            return petl_fail(err, PETL_ERR_UTF8, "%s:%zu:%zu: invalid UTF-8 (byte 0x%02x)", what,
                             line, i - line_start + 1, c);
        i += (size_t)k;
    }
    return PETL_OK;
}

/* Sort order of discovered labels: numeric when every label is an integer, else bytewise. */
static bool is_int_label(const char *s) {
    if (*s == '-') s++;
    size_t n = strspn(s, "0123456789");
    return n > 0 && n <= 18 && s[n] == '\0';
}

static int cmp_label(const char *x, const char *y, bool numeric) {
    if (numeric) {
        long long u = strtoll(x, NULL, 10), v = strtoll(y, NULL, 10);
        if (u != v) return u < v ? -1 : 1;
    }
    return strcmp(x, y);
}

/* Insertion sort: at most PETL_DATA_MAX_LABELS names, and unlike qsort it takes the numeric
 * flag without a global (datasets may load on several threads at once). */
static void sort_names(char **v, size_t n, bool numeric) {
    for (size_t i = 1; i < n; i++) {
        char *x = v[i];
        size_t j = i;
        for (; j > 0 && cmp_label(v[j - 1], x, numeric) > 0; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Puts discovered labels in sorted order and renumbers the examples. */
static petl_status sort_labels(parser *ps) {
    petl_dataset *ds = ps->ds;
    size_t n = ds->n_labels;
    if (n == 0) return PETL_OK;
    char **sorted = malloc(n * sizeof *sorted);
    int32_t *remap = malloc(n * sizeof *remap);
    if (!sorted || !remap) {
        free(sorted);
        free(remap);
        return no_mem(ps);
    }
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = ds->labels[i];
        numeric = numeric && is_int_label(sorted[i]);
    }
    sort_names(sorted, n, numeric);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (ds->labels[j] != sorted[i])
            j++; /* labels are distinct pointers */
        remap[j] = (int32_t)i;
    }
    for (size_t i = 0; i < ds->n; i++)
        ds->ex[i].label = remap[ds->ex[i].label];
    for (size_t i = 0; i < n; i++) {
        ds->labels[i] = sorted[i];
        ds->label_len[i] = strlen(sorted[i]);
    }
    free(sorted);
    free(remap);
    return PETL_OK;
}

/* ------------------------------------------------------------------------------- entry */

static petl_status init_labels(parser *ps, const char *const *labels, size_t n_labels) {
    const petl_task *t = ps->task;
    if (t->regression) return PETL_OK;
    if (!labels && t->n_labels > 0) {
        labels = t->labels;
        n_labels = t->n_labels;
    }
    ps->fixed_labels = labels != NULL;
    for (size_t i = 0; labels && i < n_labels; i++) {
        petl_status st = add_label_name(ps, labels[i], strlen(labels[i]));
        if (st != PETL_OK) return st;
    }
    return PETL_OK;
}

static petl_status check_task(const petl_task *t, const char *what, petl_error *err) {
    bool bad =
        t->format > PETL_FMT_JSONL || t->n_labels > PETL_TASK_MAX_LABELS ||
        (t->format != PETL_FMT_JSONL &&
         (t->col_a < PETL_COL_BYNAME || t->col_a == PETL_COL_NONE || t->col_a == PETL_COL_LAST ||
          t->col_b < PETL_COL_BYNAME || t->col_b == PETL_COL_LAST ||
          t->col_label < PETL_COL_BYNAME || t->col_label == PETL_COL_NONE)) ||
        (t->format == PETL_FMT_JSONL && (!t->name_a[0] || !t->name_label[0])) ||
        (t->format != PETL_FMT_JSONL && !t->header &&
         (t->col_a == PETL_COL_BYNAME || t->col_b == PETL_COL_BYNAME ||
          t->col_label == PETL_COL_BYNAME));
    return bad ? petl_fail(err, PETL_ERR_ARG, "%s: invalid task description", what) : PETL_OK;
}

static petl_status run_parser(parser *ps, char *buf, size_t len) {
    size_t skip = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    petl_status st = check_text(ps->what, buf + skip, len - skip, ps->err);
    if (st != PETL_OK) return st;
    char *p = buf + skip, *end = buf + len;
    const petl_task *t = ps->task;
    st = t->format == PETL_FMT_TSV   ? parse_tsv(ps, p, end, 1)
         : t->format == PETL_FMT_CSV ? parse_csv(ps, p, end, 1)
                                     : parse_jsonl(ps, p, end, 1);
    if (st != PETL_OK) return st;
    if (ps->rows == 0 && !(t->header && ps->seen_header))
        return petl_fail(ps->err, PETL_ERR_FORMAT, "%s: empty file (no rows)", ps->what);
    if (ps->ds->n == 0)
        return petl_fail(ps->err, PETL_ERR_FORMAT,
                         "%s: no examples (%zu rows after the header, "
                         "%zu skipped as malformed)",
                         ps->what, ps->rows, ps->ds->skipped);
    return ps->fixed_labels || t->regression ? PETL_OK : sort_labels(ps);
}

/* Takes ownership of buf (malloc'ed, len bytes + a NUL slot). */
static petl_status parse_owned(const petl_task *task, char *buf, size_t len, const char *what,
                               const char *const *labels, size_t n_labels, petl_dataset **out,
                               petl_error *err) {
    petl_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !arena_adopt(ds, buf, len + 1, len + 1)) {
        if (!ds) free(buf);
        free(ds);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    ds->regression = task->regression;
    parser ps = {.task = task,
                 .what = what,
                 .ds = ds,
                 .err = err,
                 .col_a = task->col_a,
                 .col_b = task->col_b,
                 .col_label = task->col_label};
    compute_need(&ps);
    petl_status st = init_labels(&ps, labels, n_labels);
    if (st == PETL_OK) st = run_parser(&ps, buf, len);
    free(ps.f);
    if (st != PETL_OK) {
        petl_dataset_free(ds);
        return st;
    }
    *out = ds;
    return PETL_OK;
}

petl_status petl_dataset_parse(const petl_task *task, const char *buf, size_t len, const char *what,
                               const char *const *labels, size_t n_labels, petl_dataset **out,
                               petl_error *err) {
    if (out) *out = NULL;
    if (!task || (!buf && len) || !out || (n_labels && !labels))
        return petl_fail(err, PETL_ERR_ARG, "petl_dataset_parse: NULL argument");
    if (!what) what = "<memory>";
    petl_status st = check_task(task, what, err);
    if (st != PETL_OK) return st;
    char *copy = malloc(len + 1);
    if (!copy) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    if (len) memcpy(copy, buf, len);
    copy[len] = '\0';
    return parse_owned(task, copy, len, what, labels, n_labels, out, err);
}

petl_status petl_dataset_load(const petl_task *task, const char *path, const char *const *labels,
                              size_t n_labels, petl_dataset **out, petl_error *err) {
    if (out) *out = NULL;
    if (!task || !path || !out || (n_labels && !labels))
        return petl_fail(err, PETL_ERR_ARG, "petl_dataset_load: NULL argument");
    petl_status st = check_task(task, path, err);
    if (st != PETL_OK) return st;
    char *buf;
    size_t len;
    st = petl_read_file(path, DATA_MAX_BYTES, &buf, &len, err);
    if (st != PETL_OK) return st;
    return parse_owned(task, buf, len, path, labels, n_labels, out, err);
}
