/* The adapter folder: adapter_config.json + adapter.safetensors. See include/petl.h
 * (section "adapter folders") and adapter_io.h. */
#include "adapter_io.h"

#include "internal.h"
#include "model.h"
#include "taskmodel.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int petl_adapter_fail_at;

/* -------------------------------------------------------------------------------- hashing */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL

static uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static uint64_t lane(uint64_t acc, uint64_t w) {
    return rotl(acc + w * P2, 31) * P1;
}

static uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8); /* little-endian hosts only store floats this way; that is all we run on */
    return w;
}

/* The xxh64 structure (four lanes of 8 bytes, merged and avalanched at the end); not
 * bit-compatible with xxh64 itself, and does not need to be. */
static uint64_t hash_bytes(const unsigned char *p, size_t n, uint64_t seed) {
    uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a = lane(a, load64(p + i));
        b = lane(b, load64(p + i + 8));
        c = lane(c, load64(p + i + 16));
        d = lane(d, load64(p + i + 24));
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
    h ^= (uint64_t)n * P3;
    for (; i + 8 <= n; i += 8)
        h = rotl(h ^ lane(0, load64(p + i)), 27) * P1 + P3;
    for (; i < n; i++)
        h = rotl(h ^ (p[i] * P3), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t petl_hash_floats(const float *x, size_t n, uint64_t seed) {
    return hash_bytes((const unsigned char *)x, n * sizeof(float), seed);
}

uint64_t petl_model_content_hash(const petl_model *m) {
    return petl_hash_floats(m->mem, (size_t)m->num_params, 0);
}

void petl_base_identity_of(const petl_model *m, petl_base_identity *id) {
    memset(id, 0, sizeof *id);
    const petl_config *c = petl_model_config(m);
    snprintf(id->model_type, sizeof id->model_type, "%s", c->model_type);
    id->vocab_size = c->vocab_size;
    id->hidden_size = c->hidden_size;
    id->num_layers = c->num_layers;
    id->num_heads = c->num_heads;
    id->intermediate_size = c->intermediate_size;
    id->max_position_embeddings = c->max_position_embeddings;
    id->type_vocab_size = c->type_vocab_size;
    id->num_params = m->num_params;
    id->content_hash = petl_model_content_hash(m);
}

void petl_base_identity_set_tokenizer(petl_base_identity *id, const petl_tokenizer *tok) {
    petl_tokenizer_opts o;
    petl_tokenizer_get_opts(tok, &o);
    id->has_tokenizer = true;
    id->lowercase = o.lowercase;
    id->strip_accents = o.strip_accents > 0;
    id->clean_text = o.clean_text;
    id->handle_chinese_chars = o.handle_chinese_chars;
    id->vocab_hash = petl_tokenizer_vocab_hash(tok);
}

petl_status petl_adapter_check_base(const char *dir, const petl_base_identity *have,
                                    const petl_base_identity *want, petl_error *err) {
    char diff[400] = "";
    size_t used = 0;
#define DIFF(field, fmt)                                                                           \
    if (have->field != want->field && used < sizeof diff)                                          \
        used += (size_t)snprintf(diff + used, sizeof diff - used,                                  \
                                 "%s" #field " " fmt " (adapter) vs " fmt " (model)",              \
                                 used ? "; " : "", have->field, want->field);
    if (strcmp(have->model_type, want->model_type) != 0)
        used += (size_t)snprintf(diff, sizeof diff, "model_type %s (adapter) vs %s (model)",
                                 have->model_type, want->model_type);
    DIFF(vocab_size, "%d")
    DIFF(hidden_size, "%d")
    DIFF(num_layers, "%d")
    DIFF(num_heads, "%d")
    DIFF(intermediate_size, "%d")
    DIFF(max_position_embeddings, "%d")
    DIFF(type_vocab_size, "%d")
    DIFF(num_params, "%" PRId64)
    DIFF(content_hash, "%016" PRIx64)
#define TDIFF(field)                                                                               \
    if (have->field != want->field && used < sizeof diff)                                          \
        used += (size_t)snprintf(                                                                  \
            diff + used, sizeof diff - used, "%stokenizer " #field " %s (adapter) vs %s (model)",  \
            used ? "; " : "", have->field ? "true" : "false", want->field ? "true" : "false");
    if (have->has_tokenizer && want->has_tokenizer) {
        TDIFF(lowercase)
        TDIFF(strip_accents)
        TDIFF(clean_text)
        TDIFF(handle_chinese_chars)
        DIFF(vocab_hash, "%016" PRIx64)
    }
#undef TDIFF
#undef DIFF
    if (!used) return PETL_OK;
    return petl_fail(err, PETL_ERR_ARG,
                     "%s: adapter was trained on a different base model or tokenizer: %s", dir,
                     diff);
}

/* ----------------------------------------------------------------------------------- info */

void petl_adapter_info_free(petl_adapter_info *info) {
    if (!info) return;
    for (size_t i = 0; i < info->n_labels; i++)
        free(info->labels[i]);
    free(info->labels);
    free(info->training_json);
    info->labels = NULL;
    info->n_labels = 0;
    info->training_json = NULL;
}

petl_status petl_adapter_info_set_labels(petl_adapter_info *info, const char *const *labels,
                                         size_t n, petl_error *err) {
    for (size_t i = 0; i < info->n_labels; i++)
        free(info->labels[i]);
    free(info->labels);
    info->labels = NULL;
    info->n_labels = 0;
    if (n == 0) return PETL_OK;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < i; k++)
            if (!strcmp(labels[k], labels[i]))
                return petl_fail(err, PETL_ERR_ARG, "label names must be distinct: \"%s\" twice",
                                 labels[i]);
    info->labels = calloc(n, sizeof *info->labels);
    if (!info->labels) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for labels");
    info->n_labels = n;
    for (size_t i = 0; i < n; i++)
        if (!(info->labels[i] = strdup(labels[i])))
            return petl_fail(err, PETL_ERR_NOMEM, "out of memory for labels");
    return PETL_OK;
}

/* tune.head: petl_head_kind's names, in enum order. */
static const char *const head_names[] = {
    [PETL_HEAD_CLASSIFY] = "classify", [PETL_HEAD_SPAN] = "span"};

static json_t *info_to_json(const petl_adapter_info *info) {
    const petl_tune_config *t = &info->tune;
    const petl_base_identity *b = &info->base;
    json_t *labels = json_array();
    for (size_t i = 0; i < info->n_labels; i++)
        json_array_append_new(labels, json_string(info->labels[i]));
    json_t *layers = json_array();
    for (int l = 0; l < 64 && l < b->num_layers; l++)
        if (t->adapter_layers >> l & 1) json_array_append_new(layers, json_integer(l));
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, b->content_hash);
    json_t *root = json_pack(
        "{s:s, s:s, s:i, s:{s:s, s:s, s:o, s:i, s:b}, s:i,"
        " s:{s:s, s:i, s:i, s:s, s:f, s:s, s:o, s:f, s:f, s:f},"
        " s:{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:s}}",
        "petl_version", PETL_VERSION, "format", "petl-adapter", "format_version",
        PETL_ADAPTER_FORMAT_VERSION, "task", "name", info->task_name, "spec", info->task_spec,
        "labels", labels, "num_labels", t->num_labels, "regression", info->regression, "max_len",
        info->max_len, "tune", "mode", petl_tune_name(t->tune), "top_k", t->top_k, "adapter_size",
        t->adapter_size, "adapter_act", petl_adapter_act_name(t->adapter_act), "adapter_init_sd",
        (double)t->adapter_init_sd, "placement", petl_placement_name(t->placement),
        "adapter_layers", layers, "hidden_dropout", (double)t->hidden_dropout, "attention_dropout",
        (double)t->attention_dropout, "head_dropout", (double)t->head_dropout, "base", "model_type",
        b->model_type, "vocab_size", b->vocab_size, "hidden_size", b->hidden_size, "num_layers",
        b->num_layers, "num_heads", b->num_heads, "intermediate_size", b->intermediate_size,
        "max_position_embeddings", b->max_position_embeddings, "type_vocab_size",
        b->type_vocab_size, "num_params", (json_int_t)b->num_params, "content_hash", hash);
    if (root) {
        json_t *task = json_object_get(root, "task");
        json_object_set_new(task, "pair_input", json_boolean(info->pair_input));
        if (info->data_columns > 0)
            json_object_set_new(task, "data_columns", json_integer(info->data_columns));
        const bool span = t->head == PETL_HEAD_SPAN;
        json_object_set_new(json_object_get(root, "tune"), "head",
                            json_string(head_names[t->head]));
        if (t->head_dense) /* (absent: false) */
            json_object_set_new(json_object_get(root, "tune"), "head_dense", json_true());
        if (t->freeze_layernorms) /* (absent: false, as in files from before it) */
            json_object_set_new(json_object_get(root, "tune"), "freeze_layernorms", json_true());
        if (span) {
            const petl_squad_params *q = &info->squad;
            json_object_set_new(root, "squad",
                                json_pack("{s:i, s:i, s:i, s:i, s:i, s:s}", "max_seq_len",
                                          q->max_seq_len, "doc_stride", q->doc_stride,
                                          "max_query_len", q->max_query_len, "max_answer_len",
                                          q->max_answer_len, "n_best", q->n_best, "eval_articles",
                                          info->squad_eval_articles));
        }
    }
    if (root && b->has_tokenizer) {
        char vh[17];
        snprintf(vh, sizeof vh, "%016" PRIx64, b->vocab_hash);
        json_object_set_new(json_object_get(root, "base"), "tokenizer",
                            json_pack("{s:b, s:b, s:b, s:b, s:s}", "lowercase", b->lowercase,
                                      "strip_accents", b->strip_accents, "clean_text",
                                      b->clean_text, "handle_chinese_chars",
                                      b->handle_chinese_chars, "vocab_hash", vh));
    }
    if (root && info->training_json) {
        json_t *tr = json_loads(info->training_json, 0, NULL);
        if (tr) json_object_set_new(root, "training", tr);
    }
    return root;
}

/* Field readers: each names the file and the key in its error. */
typedef struct {
    const char *path;
    petl_error *err;
    petl_status st;
} jctx;

static json_t *jget(jctx *c, json_t *obj, const char *key, json_type type) {
    if (c->st != PETL_OK) return NULL;
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    bool ok = v && (json_typeof(v) == type || (type == JSON_REAL && json_is_integer(v)) ||
                    (type == JSON_TRUE && json_is_boolean(v)));
    if (!ok) {
        static const char *names[] = {"an object", "an array",  "a string",  "an integer",
                                      "a number",  "a boolean", "a boolean", "null"};
        c->st = petl_fail(c->err, PETL_ERR_FORMAT, "%s: \"%s\" is missing or not %s", c->path, key,
                          names[type]);
        return NULL;
    }
    return v;
}

static int jint(jctx *c, json_t *obj, const char *key, int lo, int hi) {
    json_t *v = jget(c, obj, key, JSON_INTEGER);
    if (!v) return 0;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        c->st = petl_fail(c->err, PETL_ERR_FORMAT, "%s: \"%s\" = %lld is out of range %d..%d",
                          c->path, key, (long long)x, lo, hi);
        return 0;
    }
    return (int)x;
}

static const char *jstr(jctx *c, json_t *obj, const char *key, size_t cap) {
    json_t *v = jget(c, obj, key, JSON_STRING);
    if (!v) return "";
    if (json_string_length(v) >= cap) {
        c->st = petl_fail(c->err, PETL_ERR_FORMAT, "%s: \"%s\" is longer than %zu bytes", c->path,
                          key, cap - 1);
        return "";
    }
    return json_string_value(v);
}

static double jnum(jctx *c, json_t *obj, const char *key, double lo, double hi) {
    json_t *v = jget(c, obj, key, JSON_REAL);
    if (!v) return 0;
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        c->st = petl_fail(c->err, PETL_ERR_FORMAT, "%s: \"%s\" = %g is out of range %g..%g",
                          c->path, key, x, lo, hi);
        return 0;
    }
    return x;
}

static int jenum(jctx *c, json_t *obj, const char *key, const char *const *names, int n) {
    const char *s = jstr(c, obj, key, 64);
    if (c->st != PETL_OK) return 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    c->st = petl_fail(c->err, PETL_ERR_FORMAT, "%s: unknown %s \"%s\"", c->path, key, s);
    return 0;
}

/* A field holding one of the names of src/options.c. */
static int jname(jctx *c, json_t *obj, const char *key, petl_names_kind kind) {
    size_t n;
    const char *const *names = petl_option_names(kind, &n);
    return jenum(c, obj, key, names, (int)n);
}

/* task.labels: as many as num_labels says (none for regression and span heads), strings, and
 * distinct. */
static petl_status labels_from_json(json_t *labels, int num_labels, bool span, const char *path,
                                    petl_adapter_info *info, petl_error *err) {
    size_t nl = json_array_size(labels);
    if (span               ? (nl != 0 || num_labels != 2 || info->regression)
        : info->regression ? (nl != 0 || num_labels != 1)
                           : (nl < 2 || nl != (size_t)num_labels))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: task.num_labels = %d does not fit %zu labels%s",
                         path, num_labels, nl,
                         span               ? " of a span head (2 and none)"
                         : info->regression ? " of a regression task"
                                            : "");
    info->labels = calloc(nl ? nl : 1, sizeof *info->labels);
    if (!info->labels) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nl; i++) {
        json_t *l = json_array_get(labels, i);
        if (!json_is_string(l))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: task.labels[%zu] is not a string", path, i);
        /* Two classes of one name could not be told apart in predictions or metrics. */
        for (size_t k = 0; k < i; k++)
            if (!strcmp(info->labels[k], json_string_value(l)))
                return petl_fail(err, PETL_ERR_FORMAT,
                                 "%s: task.labels[%zu] and [%zu] are both \"%s\": label names must "
                                 "be distinct",
                                 path, k, i, info->labels[k]);
        if (!(info->labels[i] = strdup(json_string_value(l))))
            return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        info->n_labels = i + 1;
    }
    return PETL_OK;
}

/* The input shape of an adapter saved before pair_input was recorded: what its task spec reads
 * (a span head, whose spec is "squad", reads question + context pairs). */
static bool pair_of_spec(const char *spec) {
    petl_task t;
    petl_error ignored = {0};
    if (petl_task_lookup(spec, &t, &ignored) != PETL_OK) return strcmp(spec, "squad") == 0;
    return t.col_b != PETL_COL_NONE;
}

static petl_status info_from_json(json_t *root, const char *path, petl_adapter_info *info,
                                  petl_error *err) {
    jctx c = {path, err, PETL_OK};
    memset(info, 0, sizeof *info);
    if (!json_is_object(root))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: not a JSON object", path);
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "petl-adapter") != 0)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: not a petl adapter (\"format\" is not "
                         "\"petl-adapter\")",
                         path);
    int version = jint(&c, root, "format_version", 1, 1 << 30);
    if (c.st == PETL_OK && version > PETL_ADAPTER_FORMAT_VERSION)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: format_version %d is newer than this petl (%d): upgrade petl", path,
                         version, PETL_ADAPTER_FORMAT_VERSION);
    snprintf(info->petl_version, sizeof info->petl_version, "%s",
             jstr(&c, root, "petl_version", sizeof info->petl_version));
    json_t *task = jget(&c, root, "task", JSON_OBJECT);
    snprintf(info->task_name, sizeof info->task_name, "%s",
             jstr(&c, task, "name", sizeof info->task_name));
    snprintf(info->task_spec, sizeof info->task_spec, "%s",
             jstr(&c, task, "spec", sizeof info->task_spec));
    info->regression = json_is_true(jget(&c, task, "regression", JSON_TRUE));
    int num_labels = jint(&c, task, "num_labels", 1, PETL_DATA_MAX_LABELS);
    json_t *labels = jget(&c, task, "labels", JSON_ARRAY);
    info->max_len = jint(&c, root, "max_len", 3, 1 << 20);
    if (json_object_get(task, "pair_input")) /* absent in files from before it */
        info->pair_input = json_is_true(jget(&c, task, "pair_input", JSON_TRUE));
    else
        info->pair_input = pair_of_spec(info->task_spec);
    if (json_object_get(task, "data_columns"))
        info->data_columns = jint(&c, task, "data_columns", 1, 1 << 20);
    json_t *tune = jget(&c, root, "tune", JSON_OBJECT);
    json_t *base = jget(&c, root, "base", JSON_OBJECT);
    if (c.st != PETL_OK) return c.st;
    if (json_object_get(tune, "head")) /* absent in files from before span heads */
        info->tune.head = (petl_head_kind)jenum(&c, tune, "head", head_names,
                                                sizeof head_names / sizeof *head_names);
    const bool span = info->tune.head == PETL_HEAD_SPAN;
    if (span) {
        json_t *sq = jget(&c, root, "squad", JSON_OBJECT);
        petl_squad_params *q = &info->squad;
        q->max_seq_len = jint(&c, sq, "max_seq_len", 5, 1 << 20);
        q->doc_stride = jint(&c, sq, "doc_stride", 1, 1 << 20);
        q->max_query_len = jint(&c, sq, "max_query_len", 1, 1 << 20);
        q->max_answer_len = jint(&c, sq, "max_answer_len", 1, 1 << 20);
        q->n_best = jint(&c, sq, "n_best", 1, 1 << 20);
        snprintf(info->squad_eval_articles, sizeof info->squad_eval_articles, "%s",
                 jstr(&c, sq, "eval_articles", sizeof info->squad_eval_articles));
        if (c.st != PETL_OK) return c.st;
        if (q->max_seq_len != info->max_len)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: squad.max_seq_len %d differs from max_len %d", path,
                             q->max_seq_len, info->max_len);
    }

    petl_status ls = labels_from_json(labels, num_labels, span, path, info, err);
    if (ls != PETL_OK) return ls;

    petl_tune_config *t = &info->tune;
    t->tune = (petl_tune)jname(&c, tune, "mode", PETL_NAMES_TUNE);
    t->top_k = jint(&c, tune, "top_k", 0, PETL_TUNE_TOP_MAX);
    t->adapter_size = jint(&c, tune, "adapter_size", 1, 1 << 16);
    t->adapter_act = (petl_adapter_act)jname(&c, tune, "adapter_act", PETL_NAMES_ADAPTER_ACT);
    t->adapter_init_sd = (float)jnum(&c, tune, "adapter_init_sd", 0, 10);
    t->placement = (petl_adapter_placement)jname(&c, tune, "placement", PETL_NAMES_PLACEMENT);
    /* (absent in files from before it: false) */
    if (json_object_get(tune, "head_dense"))
        t->head_dense = json_is_true(jget(&c, tune, "head_dense", JSON_TRUE));
    if (json_object_get(tune, "freeze_layernorms"))
        t->freeze_layernorms = json_is_true(jget(&c, tune, "freeze_layernorms", JSON_TRUE));
    t->hidden_dropout = (float)jnum(&c, tune, "hidden_dropout", 0, 1);
    t->attention_dropout = (float)jnum(&c, tune, "attention_dropout", 0, 1);
    t->head_dropout = (float)jnum(&c, tune, "head_dropout", 0, 1);
    t->num_labels = num_labels;
    json_t *layers = jget(&c, tune, "adapter_layers", JSON_ARRAY);

    petl_base_identity *b = &info->base;
    snprintf(b->model_type, sizeof b->model_type, "%s",
             jstr(&c, base, "model_type", sizeof b->model_type));
    b->vocab_size = jint(&c, base, "vocab_size", 1, 1 << 30);
    b->hidden_size = jint(&c, base, "hidden_size", 1, 1 << 20);
    b->num_layers = jint(&c, base, "num_layers", 1, 64);
    b->num_heads = jint(&c, base, "num_heads", 1, 1 << 16);
    b->intermediate_size = jint(&c, base, "intermediate_size", 1, 1 << 24);
    b->max_position_embeddings = jint(&c, base, "max_position_embeddings", 1, 1 << 24);
    b->type_vocab_size = jint(&c, base, "type_vocab_size", 1, 1 << 16);
    json_t *np = jget(&c, base, "num_params", JSON_INTEGER);
    const char *hash = jstr(&c, base, "content_hash", 17);
    if (c.st != PETL_OK) return c.st;
    b->num_params = (int64_t)json_integer_value(np);
    char *end;
    errno = 0;
    b->content_hash = strtoull(hash, &end, 16);
    if (strlen(hash) != 16 || *end || errno)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: base.content_hash \"%s\" is not 16 hex digits",
                         path, hash);
    json_t *tk = json_object_get(base, "tokenizer"); /* absent in files from before it */
    if (tk) {
        if (!json_is_object(tk))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: base.tokenizer is not an object", path);
        b->has_tokenizer = true;
        b->lowercase = json_is_true(jget(&c, tk, "lowercase", JSON_TRUE));
        b->strip_accents = json_is_true(jget(&c, tk, "strip_accents", JSON_TRUE));
        b->clean_text = json_is_true(jget(&c, tk, "clean_text", JSON_TRUE));
        b->handle_chinese_chars = json_is_true(jget(&c, tk, "handle_chinese_chars", JSON_TRUE));
        const char *vh = jstr(&c, tk, "vocab_hash", 17);
        if (c.st != PETL_OK) return c.st;
        errno = 0;
        b->vocab_hash = strtoull(vh, &end, 16);
        if (strlen(vh) != 16 || *end || errno)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: base.tokenizer.vocab_hash \"%s\" is not 16 hex digits", path, vh);
    }
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        if (!json_is_integer(l) || json_integer_value(l) < 0 ||
            json_integer_value(l) >= b->num_layers)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tune.adapter_layers[%zu] is not a layer index below %d", path, i,
                             b->num_layers);
        t->adapter_layers |= 1ULL << json_integer_value(l);
    }
    json_t *tr = json_object_get(root, "training");
    if (json_is_object(tr)) info->training_json = json_dumps(tr, JSON_COMPACT);
    return PETL_OK;
}

petl_status petl_adapter_read_info(const char *dir, petl_adapter_info *info, petl_error *err) {
    memset(info, 0, sizeof *info);
    char *path = petl_path_join(dir, PETL_ADAPTER_CONFIG);
    if (!path) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    petl_status s = petl_read_file(path, 1 << 20, &text, &len, err);
    if (s == PETL_OK) {
        json_error_t je;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!root)
            s = petl_fail(err, PETL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", path, je.line,
                          je.column, je.text);
        else
            s = info_from_json(root, path, info, err);
        json_decref(root);
    }
    if (s != PETL_OK) petl_adapter_info_free(info);
    free(text);
    free(path);
    return s;
}

/* --------------------------------------------------------------------------------- saving */

static int fsync_path(const char *p) {
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static bool inject(int step) {
    if (petl_adapter_fail_at != step) return false;
    petl_adapter_fail_at = 0;
    errno = ENOSPC;
    return true;
}

static uint64_t params_hash(const petl_task_model *tm) {
    uint64_t h = 0;
    for (size_t i = 0; i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        h = petl_hash_floats(p->data, (size_t)p->numel, h);
    }
    return h;
}

petl_status petl_adapter_save(const char *out, const petl_task_model *tm,
                              const petl_adapter_info *info, bool force, petl_error *err) {
    char dir[PATH_MAX], parent[PATH_MAX], base[PATH_MAX], tmpdir[2 * PATH_MAX + 16],
        olddir[2 * PATH_MAX + 32];
    /* A link is written through to its target; what is there decides what may be replaced
     * (src/outputs.c): nothing, an empty folder, or with force a petl adapter folder. */
    petl_out_state state;
    petl_status s = petl_out_begin(out, force, dir, parent, base, tmpdir, &state, err);
    if (s != PETL_OK) return s;

    char *wpath = petl_path_join(tmpdir, PETL_ADAPTER_WEIGHTS);
    char *cpath = petl_path_join(tmpdir, PETL_ADAPTER_CONFIG);
    size_t n = petl_task_model_num_params(tm);
    petl_st_entry *ents = calloc(n ? n : 1, sizeof *ents);
    char *text = NULL;
    json_t *root = NULL;
    if (!wpath || !cpath || !ents) {
        s = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        ents[i] = (petl_st_entry){p->name, PETL_DT_F32, p->rank, p->shape, p->data};
    }
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, params_hash(tm));
    const char *meta[] = {"petl_version", PETL_VERSION, "petl_params_hash", hash};
    if ((s = petl_st_write(wpath, ents, n, meta, 2, err)) != PETL_OK) goto fail;
    if (inject(1)) {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot write: %s", wpath, strerror(errno));
        goto fail;
    }
    root = info_to_json(info);
    text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (!text) {
        s = petl_fail(err, PETL_ERR_NOMEM, "out of memory for %s", PETL_ADAPTER_CONFIG);
        goto fail;
    }
    size_t tl = strlen(text);
    char *t2 = realloc(text, tl + 2);
    if (!t2) {
        s = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    text = t2;
    memcpy(text + tl, "\n", 2);
    if ((s = petl_write_file(cpath, text, strlen(text), err)) != PETL_OK) goto fail;
    if (inject(2) || fsync_path(tmpdir) != 0) {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot write: %s", tmpdir, strerror(errno));
        goto fail;
    }
    if (inject(3)) {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot move the new adapter into place: %s", dir,
                      strerror(errno));
        goto fail;
    }
    /* Into place, after a second look: something may have appeared while training. An empty
     * target folder is replaced by rename(2) itself (which fails if it is no longer empty). */
    if ((s = petl_out_check(dir, force, &state, err)) != PETL_OK) goto fail;
    if (state == PETL_OUT_ADAPTER) {
        snprintf(olddir, sizeof olddir, "%s/.%s.old-%ld", parent, base, (long)getpid());
        if (rename(dir, olddir) != 0) {
            s = petl_fail(err, PETL_ERR_IO, "%s: cannot move the old adapter away: %s", dir,
                          strerror(errno));
            goto fail;
        }
        if (rename(tmpdir, dir) != 0) {
            int e = errno;
            rename(olddir, dir); /* put the old one back */
            s = petl_fail(err, PETL_ERR_IO, "%s: cannot move the new adapter into place: %s", dir,
                          strerror(e));
            goto fail;
        }
        /* petl's own files only: anything put there meanwhile keeps the old folder */
        petl_out_remove_adapter_dir(olddir);
    } else if (rename(tmpdir, dir) != 0) {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot move the new adapter into place: %s", dir,
                      strerror(errno));
        goto fail;
    }
    fsync_path(parent); /* the renames are durable once the parent folder is */
    json_decref(root);
    free(text);
    free(ents);
    free(wpath);
    free(cpath);
    return PETL_OK;
fail:
    petl_out_remove_adapter_dir(tmpdir);
    json_decref(root);
    free(text);
    free(ents);
    free(wpath);
    free(cpath);
    return s;
}

/* -------------------------------------------------------------------------------- loading */

static void shape_str(char *buf, size_t cap, int rank, const int64_t *shape) {
    size_t u = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && u < cap; i++)
        u += (size_t)snprintf(buf + u, cap - u, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (u < cap) snprintf(buf + u, cap - u, "]");
}

/* NaN or Inf in a weight turns every score into NaN (or one fixed class): refused at load,
 * whether or not the file carries the content hash that would also catch the damage. */
static petl_status check_finite(const char *wpath, const petl_param *p, petl_error *err) {
    for (int64_t i = 0; i < p->numel; i++)
        if (!isfinite(p->data[i]))
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tensor %s holds %s at index %lld: the file is damaged (petl "
                             "saves only finite weights)",
                             wpath, p->name, isnan(p->data[i]) ? "NaN" : "Inf", (long long)i);
    return PETL_OK;
}

petl_status petl_adapter_load(const char *dir, const petl_model *base, const petl_base_identity *id,
                              petl_adapter_info *info, petl_task_model **out, petl_error *err) {
    *out = NULL;
    petl_status s = petl_adapter_read_info(dir, info, err);
    if (s != PETL_OK) return s;
    if ((s = petl_adapter_check_base(dir, &info->base, id, err)) != PETL_OK) goto fail_info;
    petl_task_model *tm = NULL;
    petl_safetensors *st = NULL;
    char *wpath = petl_path_join(dir, PETL_ADAPTER_WEIGHTS);
    if (!wpath) {
        s = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        goto fail_info;
    }
    if ((s = petl_task_model_new(base, &info->tune, 0, &tm, err)) != PETL_OK) goto fail;
    if ((s = petl_st_open(wpath, &st, err)) != PETL_OK) goto fail;
    size_t n = petl_task_model_num_params(tm);
    for (size_t i = 0; i < n; i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        const petl_st_tensor *t = petl_st_find(st, p->name);
        char want[64], got[64];
        shape_str(want, sizeof want, p->rank, p->shape);
        if (!t) {
            s = petl_fail(err, PETL_ERR_SHAPE, "%s: missing tensor %s (expected %s)", wpath,
                          p->name, want);
            goto fail;
        }
        bool same = t->rank == p->rank;
        for (int k = 0; same && k < p->rank; k++)
            same = t->shape[k] == p->shape[k];
        if (!same) {
            shape_str(got, sizeof got, t->rank, t->shape);
            s = petl_fail(err, PETL_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", wpath,
                          p->name, got, want);
            goto fail;
        }
        if ((s = petl_st_read_f32(t, p->data, err)) != PETL_OK) goto fail;
        if ((s = check_finite(wpath, p, err)) != PETL_OK) goto fail;
    }
    if (petl_st_count(st) != n) {
        for (size_t i = 0; i < petl_st_count(st); i++) {
            const char *name = petl_st_at(st, i)->name;
            if (!petl_task_model_find(tm, name)) {
                s = petl_fail(err, PETL_ERR_SHAPE,
                              "%s: unexpected tensor %s (not a parameter of tune mode \"%s\")",
                              wpath, name, petl_tune_name(info->tune.tune));
                goto fail;
            }
        }
    }
    const char *want_hash = petl_st_meta(st, "petl_params_hash");
    if (want_hash) {
        char hash[17];
        snprintf(hash, sizeof hash, "%016" PRIx64, params_hash(tm));
        if (strcmp(hash, want_hash) != 0) {
            s = petl_fail(err, PETL_ERR_FORMAT,
                          "%s: the tensors do not match the hash saved with them (%s vs %s): the "
                          "file is damaged",
                          wpath, hash, want_hash);
            goto fail;
        }
    }
    petl_st_close(st);
    free(wpath);
    *out = tm;
    return PETL_OK;
fail:
    petl_st_close(st);
    petl_task_model_free(tm);
    free(wpath);
fail_info:
    petl_adapter_info_free(info);
    return s;
}
