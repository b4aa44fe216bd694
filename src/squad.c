/* SQuAD v1.1: reader, windowed features, decoding and the official metric. The rules are
 * documented in include/petl.h (section "SQuAD v1.1"); the comments here say why the code looks
 * the way it does. */
#include "petl.h"

#include "internal.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* The official dev file is 4.8 MB and the training file 30 MB. */
#define SQUAD_MAX_BYTES (1u << 30)

struct petl_squad {
    json_t *root;            /* owns every string the questions point at */
    size_t n_articles;       /* in the whole file */
    const char **titles;     /* [n_articles] into root */
    petl_squad_question *qs; /* [n_qs] */
    size_t n_qs;
    petl_squad_context *ctxs; /* [n_ctxs] */
    size_t n_ctxs;
    petl_squad_answer *answers; /* [n_answers], pointed at by qs */
    size_t n_answers;
};

/* ----------------------------------------------------------------------------- UTF-8 */

/* Decodes one scalar at s[0..n); an invalid sequence reads as U+FFFD over one byte (the
 * metric's inputs come from callers; the reader's strings were checked by jansson). */
static size_t next_cp(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k < 1) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return (size_t)k;
}

/* Code points in s[0..n) (n must end on a character boundary for an exact answer). */
static int64_t count_cps(const char *s, size_t n) {
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of code point cp in s[0..n), or SIZE_MAX past the end (cp == count is n). */
static size_t cp_to_byte(const char *s, size_t n, int64_t cp) {
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
        if (k++ == cp) return i;
    }
    return k == cp ? n : SIZE_MAX;
}

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
static bool py_isspace(int32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int32_t c;
        i += next_cp(s + i, n - i, &c);
        if (!py_isspace(c)) return false;
    }
    return true;
}

/* --------------------------------------------------------------------------- reading */

void petl_squad_opts_default(petl_squad_opts *o) {
    o->article_begin = 0;
    o->article_end = -1;
    o->allow_unanswered = false;
    o->max_questions = 0;
}

bool petl_squad_is_blank(const char *s, size_t len) {
    return blank(s, len);
}

petl_status petl_squad_parse_range(const char *spec, petl_squad_opts *o, petl_error *err) {
    if (!spec || !o) return petl_fail(err, PETL_ERR_ARG, "petl_squad_parse_range: NULL");
    if (!strcmp(spec, "all")) spec = ":";
    if (!strcmp(spec, "train")) spec = "0:38";
    if (!strcmp(spec, "eval")) spec = "38:";
    const char *colon = strchr(spec, ':');
    long long b = 0, e = -1;
    char *end;
    if (!colon) goto bad;
    if (colon > spec) {
        b = strtoll(spec, &end, 10);
        if (end != colon || b < 0 || spec[0] == '-' || spec[0] == '+') goto bad;
    }
    if (colon[1]) {
        e = strtoll(colon + 1, &end, 10);
        if (*end || e < 0 || colon[1] == '-' || colon[1] == '+' || e < b) goto bad;
    }
    o->article_begin = b;
    o->article_end = e;
    return PETL_OK;
bad:
    return petl_fail(err, PETL_ERR_ARG,
                     "article range '%s': expected B:E, B: or :E (0-based, E exclusive, B <= E), "
                     "train, eval or all",
                     spec);
}

void petl_squad_free(petl_squad *ds) {
    if (!ds) return;
    json_decref(ds->root);
    free(ds->titles);
    free(ds->qs);
    free(ds->ctxs);
    free(ds->answers);
    free(ds);
}

/* Where an error is: source, article and (when known) question id. */
typedef struct {
    const char *what;
    size_t article;
    const char *title;
    const char *qid; /* NULL outside a question */
} where;

#define WHERE_FMT "%s: article %zu (\"%.60s\")%s%.100s"
#define WHERE_ARGS(w)                                                                              \
    (w)->what, (w)->article, (w)->title, (w)->qid ? ", question " : "", (w)->qid ? (w)->qid : ""

static json_t *get_typed(json_t *obj, const char *key, json_type type, const where *w,
                         petl_error *err, petl_status *st) {
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (v && json_typeof(v) == type) return v;
    static const char *const names[] = {"an object", "an array", "a string", "an integer",
                                        "a number",  "true",     "false",    "null"};
    *st =
        petl_fail(err, PETL_ERR_FORMAT, WHERE_FMT ": \"%s\" %s (expected %s)", WHERE_ARGS(w), key,
                  v ? "has the wrong type" : "is missing", (unsigned)type < 8 ? names[type] : "?");
    return NULL;
}

/* Counts articles, paragraphs, questions and answers while checking the structure, so that
 * the arrays can be allocated once. */
static petl_status count_file(json_t *data, const char *what, size_t *n_ctx, size_t *n_q,
                              size_t *n_ans, petl_error *err) {
    petl_status st = PETL_OK;
    for (size_t a = 0; a < json_array_size(data); a++) {
        json_t *art = json_array_get(data, a);
        where w = {what, a, "?", NULL};
        json_t *title = get_typed(art, "title", JSON_STRING, &w, err, &st);
        if (!title) return st;
        w.title = json_string_value(title);
        json_t *paras = get_typed(art, "paragraphs", JSON_ARRAY, &w, err, &st);
        if (!paras) return st;
        for (size_t p = 0; p < json_array_size(paras); p++) {
            json_t *para = json_array_get(paras, p);
            json_t *qas = get_typed(para, "qas", JSON_ARRAY, &w, err, &st);
            if (!qas || !get_typed(para, "context", JSON_STRING, &w, err, &st)) return st;
            (*n_ctx)++;
            for (size_t q = 0; q < json_array_size(qas); q++) {
                json_t *qa = json_array_get(qas, q);
                json_t *id = get_typed(qa, "id", JSON_STRING, &w, err, &st);
                if (!id) return st;
                w.qid = json_string_value(id);
                json_t *ans = get_typed(qa, "answers", JSON_ARRAY, &w, err, &st);
                if (!ans || !get_typed(qa, "question", JSON_STRING, &w, err, &st)) return st;
                (*n_q)++;
                *n_ans += json_array_size(ans);
                w.qid = NULL;
            }
        }
    }
    return st;
}

/* Open-addressing set of question ids, to refuse duplicates (the official script keys its
 * predictions by id). */
typedef struct {
    const char **slot;
    size_t mask;
} id_set;

static bool id_insert(id_set *s, const char *id) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    for (size_t i = (size_t)h & s->mask;; i = (i + 1) & s->mask) {
        if (!s->slot[i]) {
            s->slot[i] = id;
            return true;
        }
        if (!strcmp(s->slot[i], id)) return false;
    }
}

/* Validates one answer and fills *out. */
static petl_status read_answer(json_t *an, const char *ctx, size_t ctx_len, const where *w,
                               size_t k, petl_squad_answer *out, petl_error *err) {
    petl_status st = PETL_OK;
    json_t *text = get_typed(an, "text", JSON_STRING, w, err, &st);
    json_t *start = text ? get_typed(an, "answer_start", JSON_INTEGER, w, err, &st) : NULL;
    if (!start) return st;
    out->text = json_string_value(text);
    out->len = json_string_length(text);
    out->start = json_integer_value(start);
    if (out->len == 0)
        return petl_fail(err, PETL_ERR_FORMAT, WHERE_FMT ": answer %zu has an empty text",
                         WHERE_ARGS(w), k);
    size_t b = out->start < 0 ? SIZE_MAX : cp_to_byte(ctx, ctx_len, out->start);
    if (b == SIZE_MAX || out->len > ctx_len - b)
        return petl_fail(err, PETL_ERR_FORMAT,
                         WHERE_FMT ": answer %zu (\"%.60s\") at answer_start %lld runs past the "
                                   "end of the context (%lld characters)",
                         WHERE_ARGS(w), k, out->text, (long long)out->start,
                         (long long)count_cps(ctx, ctx_len));
    if (memcmp(ctx + b, out->text, out->len) != 0)
        return petl_fail(err, PETL_ERR_FORMAT,
                         WHERE_FMT ": answer %zu (\"%.60s\") does not match the context at "
                                   "answer_start %lld (the context there reads \"%.*s\")",
                         WHERE_ARGS(w), k, out->text, (long long)out->start,
                         (int)(out->len < 60 ? out->len : 60), ctx + b);
    out->begin = b;
    return PETL_OK;
}

/* Whether another question of the range is kept (opts.max_questions). */
static bool room(const petl_squad *ds, const petl_squad_opts *o) {
    return o->max_questions <= 0 || ds->n_qs < (size_t)o->max_questions;
}

static petl_status read_file_body(petl_squad *ds, json_t *data, const char *what,
                                  const petl_squad_opts *o, id_set *ids, petl_error *err) {
    size_t a_end = o->article_end < 0 ? SIZE_MAX : (size_t)o->article_end;
    petl_status st = PETL_OK;
    for (size_t a = 0; a < ds->n_articles; a++) {
        json_t *art = json_array_get(data, a);
        const char *title = json_string_value(json_object_get(art, "title"));
        ds->titles[a] = title;
        where w = {what, a, title, NULL};
        bool keep = a >= (size_t)o->article_begin && a < a_end;
        json_t *paras = json_object_get(art, "paragraphs");
        for (size_t p = 0; p < json_array_size(paras); p++) {
            json_t *para = json_array_get(paras, p), *jc = json_object_get(para, "context");
            const char *ctx = json_string_value(jc);
            size_t ctx_len = json_string_length(jc);
            json_t *qas = json_object_get(para, "qas");
            if (blank(ctx, ctx_len))
                return petl_fail(err, PETL_ERR_FORMAT,
                                 WHERE_FMT ": paragraph %zu has an empty "
                                           "context",
                                 WHERE_ARGS(&w), p);
            if (ctx_len > INT32_MAX)
                return petl_fail(err, PETL_ERR_FORMAT,
                                 WHERE_FMT ": paragraph %zu: context "
                                           "over 2 GiB",
                                 WHERE_ARGS(&w), p);
            size_t ci = ds->n_ctxs;
            if (keep && json_array_size(qas) > 0 && room(ds, o))
                ds->ctxs[ds->n_ctxs++] = (petl_squad_context){ctx, ctx_len, a};
            for (size_t q = 0; q < json_array_size(qas); q++) {
                json_t *qa = json_array_get(qas, q), *jq = json_object_get(qa, "question");
                json_t *ans = json_object_get(qa, "answers");
                w.qid = json_string_value(json_object_get(qa, "id"));
                if (!id_insert(ids, w.qid))
                    return petl_fail(err, PETL_ERR_FORMAT, WHERE_FMT ": duplicate question id",
                                     WHERE_ARGS(&w));
                if (blank(json_string_value(jq), json_string_length(jq)))
                    return petl_fail(err, PETL_ERR_FORMAT, WHERE_FMT ": empty question",
                                     WHERE_ARGS(&w));
                if (json_array_size(ans) == 0 && !o->allow_unanswered)
                    return petl_fail(err, PETL_ERR_FORMAT,
                                     WHERE_FMT
                                     ": no answers (SQuAD v1.1 questions need at least "
                                     "one; allow_unanswered is for files that are only predicted)",
                                     WHERE_ARGS(&w));
                petl_squad_answer *first = ds->answers + ds->n_answers;
                for (size_t k = 0; k < json_array_size(ans); k++) {
                    petl_squad_answer tmp;
                    st = read_answer(json_array_get(ans, k), ctx, ctx_len, &w, k, &tmp, err);
                    if (st != PETL_OK) return st;
                    if (keep && room(ds, o)) ds->answers[ds->n_answers++] = tmp;
                }
                if (keep && room(ds, o))
                    ds->qs[ds->n_qs++] = (petl_squad_question){
                        .id = w.qid,
                        .question = json_string_value(jq),
                        .question_len = json_string_length(jq),
                        .context = ci,
                        .article = a,
                        .n_answers = json_array_size(ans),
                        .answers = json_array_size(ans) ? first : NULL,
                    };
            }
            w.qid = NULL;
        }
    }
    return PETL_OK;
}

petl_status petl_squad_parse(const char *buf, size_t len, const char *what,
                             const petl_squad_opts *opts, petl_squad **out, petl_error *err) {
    if (!out || (!buf && len > 0)) return petl_fail(err, PETL_ERR_ARG, "petl_squad_parse: NULL");
    *out = NULL;
    if (!what) what = "squad";
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    if (opts) o = *opts;
    if (o.article_begin < 0 || (o.article_end >= 0 && o.article_end < o.article_begin))
        return petl_fail(err, PETL_ERR_ARG, "%s: invalid article range %lld:%lld", what,
                         (long long)o.article_begin, (long long)o.article_end);
    json_error_t je;
    json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: line %d, column %d: invalid JSON: %s", what,
                         je.line, je.column, je.text);
    petl_status st = PETL_OK;
    petl_squad *ds = calloc(1, sizeof *ds);
    id_set ids = {0};
    if (!ds) {
        json_decref(root);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    ds->root = root;
    json_t *data = NULL;
    if (!json_is_object(root)) {
        st = petl_fail(err, PETL_ERR_FORMAT, "%s: expected a JSON object at the top", what);
        goto fail;
    }
    data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        st = petl_fail(err, PETL_ERR_FORMAT, "%s: \"data\" is %s (expected an array)", what,
                       data ? "not an array" : "missing");
        goto fail;
    }
    size_t n_ctx = 0, n_q = 0, n_ans = 0;
    if ((st = count_file(data, what, &n_ctx, &n_q, &n_ans, err)) != PETL_OK) goto fail;
    ds->n_articles = json_array_size(data);
    size_t n_slots = 16;
    while (n_slots < 2 * n_q)
        n_slots *= 2;
    ds->titles = calloc(ds->n_articles + 1, sizeof *ds->titles);
    ds->qs = calloc(n_q + 1, sizeof *ds->qs);
    ds->ctxs = calloc(n_ctx + 1, sizeof *ds->ctxs);
    ds->answers = calloc(n_ans + 1, sizeof *ds->answers);
    ids.slot = calloc(n_slots, sizeof *ids.slot);
    ids.mask = n_slots - 1;
    if (!ds->titles || !ds->qs || !ds->ctxs || !ds->answers || !ids.slot) {
        st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    if ((st = read_file_body(ds, data, what, &o, &ids, err)) != PETL_OK) goto fail;
    free(ids.slot);
    *out = ds;
    return PETL_OK;
fail:
    free(ids.slot);
    petl_squad_free(ds);
    return st;
}

petl_status petl_squad_load(const char *path, const petl_squad_opts *opts, petl_squad **out,
                            petl_error *err) {
    if (!path || !out) return petl_fail(err, PETL_ERR_ARG, "petl_squad_load: NULL");
    char *buf = NULL;
    size_t len = 0;
    petl_status st = petl_read_file(path, SQUAD_MAX_BYTES, &buf, &len, err);
    if (st == PETL_OK) st = petl_squad_parse(buf, len, path, opts, out, err);
    free(buf);
    return st;
}

size_t petl_squad_num_articles(const petl_squad *ds) {
    return ds ? ds->n_articles : 0;
}
size_t petl_squad_count(const petl_squad *ds) {
    return ds ? ds->n_qs : 0;
}
const petl_squad_question *petl_squad_at(const petl_squad *ds, size_t i) {
    return ds && i < ds->n_qs ? &ds->qs[i] : NULL;
}
size_t petl_squad_num_contexts(const petl_squad *ds) {
    return ds ? ds->n_ctxs : 0;
}
const petl_squad_context *petl_squad_context_at(const petl_squad *ds, size_t i) {
    return ds && i < ds->n_ctxs ? &ds->ctxs[i] : NULL;
}
const char *petl_squad_article_title(const petl_squad *ds, size_t article) {
    return ds && article < ds->n_articles ? ds->titles[article] : NULL;
}

/* -------------------------------------------------------------------------- features */

void petl_squad_params_default(petl_squad_params *p) {
    p->max_seq_len = 384;
    p->max_query_len = 64;
    p->doc_stride = 128;
    p->n_best = 20;
    p->max_answer_len = 30;
}

void petl_squad_features_free(petl_squad_features *f) {
    if (!f) return;
    free(f->ids);
    free(f->type_ids);
    free(f->lengths);
    free(f->question);
    free(f->window);
    free(f->ctx_begin);
    free(f->ctx_len);
    free(f->offsets);
    free(f->max_ctx);
    free(f->start_pos);
    free(f->end_pos);
    free(f);
}

#define GROW(ptr, n) grow_array((void **)&(ptr), (n), sizeof *(ptr))
static bool grow_array(void **p, size_t n, size_t size) {
    void *q = realloc(*p, n * size);
    if (!q) return false;
    *p = q;
    return true;
}

/* Makes room for `need` windows. */
static bool feat_reserve(petl_squad_features *f, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need)
        c *= 2;
    size_t row = (size_t)f->max_seq_len;
    if (!GROW(f->ids, c * row) || !GROW(f->type_ids, c * row) || !GROW(f->lengths, c) ||
        !GROW(f->question, c) || !GROW(f->window, c) || !GROW(f->ctx_begin, c) ||
        !GROW(f->ctx_len, c) || !GROW(f->offsets, 2 * c * row) || !GROW(f->max_ctx, c * row) ||
        !GROW(f->start_pos, c) || !GROW(f->end_pos, c))
        return false;
    *cap = c;
    return true;
}

/* Google's _check_is_max_context: is window `cur` the one where context token `pos` has the
 * best score min(left, right) + 0.01 * length (the first one on ties)? Windows are
 * [starts[i], starts[i] + lens[i]). Compared in hundredths so that the 0.01 term is exact. */
static bool is_max_context(const int *starts, const int *lens, int n_win, int cur, int pos) {
    long best = -1;
    int best_i = -1;
    for (int i = 0; i < n_win; i++) {
        int end = starts[i] + lens[i] - 1;
        if (pos < starts[i] || pos > end) continue;
        int left = pos - starts[i], right = end - pos;
        long score = 100L * (left < right ? left : right) + lens[i];
        if (score > best) best = score, best_i = i;
    }
    return best_i == cur;
}

/* The special tokens the tokenizer's template puts around one text and around a (question,
 * context) pair: BERT's [CLS] A [SEP] and [CLS] q [SEP] c [SEP] (types 0 then 1), RoBERTa's and
 * MPNet's <s> A </s> and <s> q </s></s> c </s> (types 0). Read off the encodings of one-letter
 * texts: a template's tokens have an empty span, the texts' do not. */
#define TEMPLATE_MAX 8
typedef struct {
    int single_pre, single_post; /* around one text */
    int n_pre, n_mid, n_post;    /* around a pair: before q, between q and c, after c */
    int32_t id[3][TEMPLATE_MAX], type[3][TEMPLATE_MAX];
    int32_t type_q, type_c;
} pair_template;

static petl_status read_template(const petl_tokenizer *tok, pair_template *t, petl_error *err) {
    memset(t, 0, sizeof *t);
    petl_encoding e = {0};
    petl_status st = petl_tokenize_offsets(tok, "a", 1, NULL, 0, 0, &e, err);
    int n_real = 0, first = -1;
    for (int i = 0; st == PETL_OK && i < e.len; i++)
        if (e.offsets[2 * i + 1] > e.offsets[2 * i]) {
            if (first < 0) first = i;
            n_real++;
        }
    if (st == PETL_OK && n_real > 0) {
        t->single_pre = first;
        t->single_post = e.len - first - n_real;
        st = petl_tokenize_offsets(tok, "a", 1, "a", 1, 0, &e, err);
    }
    /* the pair: specials, n_real tokens of q, specials, n_real tokens of c, specials */
    int part = 0, seen = 0, *count[3] = {&t->n_pre, &t->n_mid, &t->n_post};
    bool ok = st == PETL_OK && n_real > 0;
    for (int i = 0; ok && i < e.len; i++) {
        const bool real = e.offsets[2 * i + 1] > e.offsets[2 * i];
        if (real) {
            if (seen == 0) t->type_q = e.type_ids[i];
            if (seen == n_real) t->type_c = e.type_ids[i];
            if (++seen == n_real || seen == 2 * n_real) part++;
            ok = seen <= 2 * n_real;
            continue;
        }
        ok = *count[part] < TEMPLATE_MAX;
        if (!ok) break;
        t->id[part][*count[part]] = e.ids[i];
        t->type[part][(*count[part])++] = e.type_ids[i];
    }
    petl_encoding_free(&e);
    if (st != PETL_OK) return st;
    if (!ok || seen != 2 * n_real)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "squad: cannot read the tokenizer's special-token template from the "
                         "encodings of \"a\" and (\"a\", \"a\")");
    return PETL_OK;
}

petl_status petl_squad_featurize(const petl_squad *ds, const petl_tokenizer *tok,
                                 const petl_squad_params *p, petl_squad_features **out,
                                 petl_error *err) {
    if (!ds || !tok || !out) return petl_fail(err, PETL_ERR_ARG, "petl_squad_featurize: NULL");
    *out = NULL;
    petl_squad_params prm;
    petl_squad_params_default(&prm);
    if (p) prm = *p;
    pair_template tp;
    petl_status ts = read_template(tok, &tp, err);
    if (ts != PETL_OK) return ts;
    const int n_special = tp.n_pre + tp.n_mid + tp.n_post;
    int max_doc_min = prm.max_seq_len - prm.max_query_len - n_special;
    if (prm.max_seq_len > 512 || prm.max_query_len < 1 || max_doc_min < 1 || prm.doc_stride < 1)
        return petl_fail(err, PETL_ERR_ARG,
                         "squad settings: max_seq_len %d, max_query_len %d, doc_stride %d leave no "
                         "room for the context (need max_seq_len - max_query_len - %d special "
                         "tokens >= 1, max_seq_len <= 512, doc_stride >= 1)",
                         prm.max_seq_len, prm.max_query_len, prm.doc_stride, n_special);
    petl_squad_features *f = calloc(1, sizeof *f);
    if (!f) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    f->max_seq_len = prm.max_seq_len;
    petl_encoding qenc = {0}, cenc = {0};
    int *starts = NULL, *lens = NULL;
    size_t cap = 0, cur_ctx = SIZE_MAX;
    int n_ctx_tok = 0, win_cap = 0;
    petl_status st = PETL_OK;
    const int row = prm.max_seq_len;
    const int32_t pad = petl_tokenizer_pad_id(tok);
    for (size_t qi = 0; qi < ds->n_qs; qi++) {
        const petl_squad_question *q = &ds->qs[qi];
        if (q->context != cur_ctx) { /* questions of one paragraph are consecutive */
            const petl_squad_context *c = &ds->ctxs[q->context];
            st = petl_tokenize_offsets(tok, c->text, c->len, NULL, 0, 0, &cenc, err);
            if (st != PETL_OK) goto fail;
            cur_ctx = q->context;
            n_ctx_tok = cenc.len - tp.single_pre - tp.single_post;
        }
        st = petl_tokenize(tok, q->question, q->question_len, NULL, 0, 0, &qenc, err);
        if (st != PETL_OK) goto fail;
        int nq = qenc.len - tp.single_pre - tp.single_post;
        if (nq > prm.max_query_len) nq = prm.max_query_len;
        int max_doc = prm.max_seq_len - nq - n_special;
        /* The windows (Google's doc_spans): context token ranges [start, start + len). */
        int n_win = 0;
        for (int s = 0;;) {
            int l = n_ctx_tok - s < max_doc ? n_ctx_tok - s : max_doc;
            if (n_win == win_cap) {
                win_cap = win_cap ? 2 * win_cap : 16;
                if (!GROW(starts, (size_t)win_cap) || !GROW(lens, (size_t)win_cap)) {
                    st = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
                    goto fail;
                }
            }
            starts[n_win] = s, lens[n_win++] = l;
            if (s + l >= n_ctx_tok) break;
            s += l < prm.doc_stride ? l : prm.doc_stride;
        }
        /* The first answer's context tokens: those overlapping its byte span. */
        int tok_s = -1, tok_e = -1;
        if (q->n_answers > 0) {
            int32_t ab = (int32_t)q->answers[0].begin;
            int32_t ae = (int32_t)(q->answers[0].begin + q->answers[0].len);
            const int32_t *off = cenc.offsets + 2 * tp.single_pre; /* context token 0 */
            for (int t = 0; t < n_ctx_tok; t++) {
                if (off[2 * t + 1] > ab && off[2 * t] < ae) {
                    if (tok_s < 0) tok_s = t;
                    tok_e = t;
                }
            }
        }
        if (!feat_reserve(f, &cap, f->n + (size_t)n_win)) {
            st = petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu windows", f->n + n_win);
            goto fail;
        }
        for (int w = 0; w < n_win; w++) {
            size_t fi = f->n++;
            int32_t *ids = f->ids + fi * row, *types = f->type_ids + fi * row;
            int32_t *offs = f->offsets + 2 * fi * row;
            uint8_t *mc = f->max_ctx + fi * row;
            for (int i = 0; i < row; i++) {
                ids[i] = pad, types[i] = 0, offs[2 * i] = offs[2 * i + 1] = -1, mc[i] = 0;
            }
            /* the template's specials around the question and this window of the context */
            int n = 0;
            for (int i = 0; i < tp.n_pre; i++, n++)
                ids[n] = tp.id[0][i], types[n] = tp.type[0][i];
            for (int i = 0; i < nq; i++, n++)
                ids[n] = qenc.ids[tp.single_pre + i], types[n] = tp.type_q;
            for (int i = 0; i < tp.n_mid; i++, n++)
                ids[n] = tp.id[1][i], types[n] = tp.type[1][i];
            int cb = n;
            for (int i = 0; i < lens[w]; i++, n++) {
                int t = tp.single_pre + starts[w] + i;
                ids[n] = cenc.ids[t];
                types[n] = tp.type_c;
                offs[2 * n] = cenc.offsets[2 * t];
                offs[2 * n + 1] = cenc.offsets[2 * t + 1];
                mc[n] = is_max_context(starts, lens, n_win, w, starts[w] + i);
            }
            for (int i = 0; i < tp.n_post; i++, n++)
                ids[n] = tp.id[2][i], types[n] = tp.type[2][i];
            f->lengths[fi] = n;
            f->question[fi] = qi;
            f->window[fi] = w;
            f->ctx_begin[fi] = cb;
            f->ctx_len[fi] = lens[w];
            int sp = -1, ep = -1;
            if (q->n_answers > 0) {
                sp = ep = 0;
                if (tok_s >= 0 && tok_s >= starts[w] && tok_e <= starts[w] + lens[w] - 1) {
                    sp = tok_s - starts[w] + cb;
                    ep = tok_e - starts[w] + cb;
                }
            }
            f->start_pos[fi] = sp;
            f->end_pos[fi] = ep;
        }
    }
    petl_encoding_free(&qenc);
    petl_encoding_free(&cenc);
    free(starts);
    free(lens);
    *out = f;
    return PETL_OK;
fail:
    petl_encoding_free(&qenc);
    petl_encoding_free(&cenc);
    free(starts);
    free(lens);
    petl_squad_features_free(f);
    return st;
}

/* -------------------------------------------------------------------------- decoding */

/* The k highest of v[0..n) into idx (Google's _get_best_indexes: sorted by value, descending,
 * ties in position order); returns how many. */
static int top_k(const float *v, int n, int k, int *idx) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        /* Insertion into the sorted list: after every element >= v[i] keeps ties in order. */
        int j = m < k ? m : k;
        while (j > 0 && v[idx[j - 1]] < v[i])
            j--;
        if (j >= k) continue;
        int last = m < k ? m : k - 1;
        for (int t = last; t > j; t--)
            idx[t] = idx[t - 1];
        idx[j] = i;
        if (m < k) m++;
    }
    return m;
}

petl_status petl_squad_decode(const petl_squad *ds, const petl_squad_features *f,
                              const float *start_logits, const float *end_logits,
                              const petl_squad_params *p, petl_squad_prediction *preds,
                              petl_error *err) {
    if (!ds || !f || !start_logits || !end_logits || (!preds && ds->n_qs > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_squad_decode: NULL argument");
    petl_squad_params prm;
    petl_squad_params_default(&prm);
    if (p) prm = *p;
    if (prm.n_best < 1 || prm.max_answer_len < 1)
        return petl_fail(err, PETL_ERR_ARG, "petl_squad_decode: n_best %d, max_answer_len %d",
                         prm.n_best, prm.max_answer_len);
    int *si = malloc((size_t)prm.n_best * sizeof *si),
        *ei = malloc((size_t)prm.n_best * sizeof *ei);
    if (!si || !ei) {
        free(si);
        free(ei);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    }
    for (size_t q = 0; q < ds->n_qs; q++)
        preds[q] = (petl_squad_prediction){.text = "", .score = -INFINITY};
    const int row = f->max_seq_len;
    petl_status st = PETL_OK;
    for (size_t fi = 0; fi < f->n; fi++) {
        size_t q = f->question[fi];
        if (q >= ds->n_qs) {
            st = petl_fail(err, PETL_ERR_ARG, "petl_squad_decode: features of another dataset");
            break;
        }
        const float *sl = start_logits + fi * row, *el = end_logits + fi * row;
        int ns = top_k(sl, row, prm.n_best, si), ne = top_k(el, row, prm.n_best, ei);
        int cb = f->ctx_begin[fi], ce = cb + f->ctx_len[fi]; /* context positions [cb, ce) */
        const uint8_t *mc = f->max_ctx + fi * row;
        const int32_t *offs = f->offsets + 2 * fi * row;
        petl_squad_prediction *best = &preds[q];
        for (int a = 0; a < ns; a++) {
            int s = si[a];
            if (s < cb || s >= ce || !mc[s]) continue;
            for (int b = 0; b < ne; b++) {
                int e = ei[b];
                if (e < cb || e >= ce || e < s || e - s + 1 > prm.max_answer_len) continue;
                double score = (double)sl[s] + (double)el[e];
                /* Strictly greater: the first best in Google's order (window, start, end
                 * candidate) wins, as its stable sort does. */
                if (best->found && !(score > best->score)) continue;
                best->found = true;
                best->score = score;
                best->begin = (size_t)offs[2 * s];
                best->end = (size_t)offs[2 * e + 1];
            }
        }
    }
    for (size_t q = 0; q < ds->n_qs && st == PETL_OK; q++) {
        petl_squad_prediction *pr = &preds[q];
        if (!pr->found) continue;
        const petl_squad_context *c = &ds->ctxs[ds->qs[q].context];
        pr->text = c->text + pr->begin;
        pr->len = pr->end - pr->begin;
        pr->char_begin = count_cps(c->text, pr->begin);
        pr->char_end = pr->char_begin + count_cps(pr->text, pr->len);
    }
    free(si);
    free(ei);
    return st;
}

/* ---------------------------------------------------------------------------- metric */

/* Cased and Case_Ignorable (Unicode's definitions, used by Python's final-sigma rule). */
static bool is_cased(int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
        return true;
    return utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
}

static bool is_case_ignorable(int32_t c) {
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0x5E:
    case 0x60:
    case 0xA8:
    case 0xAD:
    case 0xAF:
    case 0xB4:
    case 0xB7:
    case 0xB8:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A: return true;
    default: break;
    }
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

/* A word character of Python's re on str patterns (str.isalnum() or '_'). */
static bool is_word(int32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static bool ascii_punct(int32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}

/* A normalized text: its tokens, each a run of code points. */
typedef struct {
    int32_t *cp; /* [n_cp] the tokens back to back */
    size_t n_cp;
    size_t *tok; /* [n_tok + 1] start of each token in cp, then n_cp */
    size_t n_tok;
} norm_text;

static void norm_free(norm_text *t) {
    free(t->cp);
    free(t->tok);
}

/* normalize_answer(s).split() of the official script. */
static petl_status normalize(const char *s, size_t n, norm_text *out, petl_error *err) {
    memset(out, 0, sizeof *out);
    /* Lowercasing expands a code point to at most 2 (U+0130 -> i + U+0307): 2n bounds it. */
    int32_t *raw = malloc((n + 1) * sizeof *raw), *low = malloc((2 * n + 1) * sizeof *low);
    out->cp = malloc((2 * n + 1) * sizeof *out->cp);
    out->tok = malloc((2 * n + 2) * sizeof *out->tok);
    if (!raw || !low || !out->cp || !out->tok) {
        free(raw);
        free(low);
        norm_free(out);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory normalizing %zu bytes", n);
    }
    size_t nr = 0;
    for (size_t i = 0; i < n;)
        i += next_cp(s + i, n - i, &raw[nr++]);
    /* 1. str.lower(), with Python's final sigma; 2. drop string.punctuation. */
    size_t nl = 0;
    for (size_t i = 0; i < nr; i++) {
        int32_t c = raw[i];
        if (c == 0x130) {
            low[nl++] = 'i';
            low[nl++] = 0x307;
            continue;
        }
        if (c == 0x3A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(raw[j - 1]))
                j--;
            bool final = j > 0 && is_cased(raw[j - 1]);
            if (final) {
                size_t k = i + 1;
                while (k < nr && is_case_ignorable(raw[k]))
                    k++;
                final = k == nr || !is_cased(raw[k]);
            }
            low[nl++] = final ? 0x3C2 : 0x3C3;
            continue;
        }
        c = utf8proc_tolower(c);
        if (!ascii_punct(c)) low[nl++] = c;
    }
    /* 3. \b(a|an|the)\b -> ' ': a maximal run of word characters equal to an article.
     * 4. split on whitespace. */
    static const int32_t art[3][4] = {{'a'}, {'a', 'n'}, {'t', 'h', 'e'}};
    static const size_t art_len[3] = {1, 2, 3};
    bool in_tok = false;
    for (size_t i = 0; i < nl;) {
        if (is_word(low[i])) {
            size_t j = i;
            while (j < nl && is_word(low[j]))
                j++;
            bool article = false;
            for (int a = 0; a < 3 && !article; a++)
                article = j - i == art_len[a] && !memcmp(low + i, art[a], art_len[a] * sizeof *low);
            if (article) {
                in_tok = false; /* replaced by a space */
            } else {
                if (!in_tok) out->tok[out->n_tok++] = out->n_cp;
                memcpy(out->cp + out->n_cp, low + i, (j - i) * sizeof *low);
                out->n_cp += j - i;
                in_tok = true;
            }
            i = j;
        } else if (py_isspace(low[i])) {
            in_tok = false;
            i++;
        } else {
            if (!in_tok) out->tok[out->n_tok++] = out->n_cp;
            out->cp[out->n_cp++] = low[i++];
            in_tok = true;
        }
    }
    out->tok[out->n_tok] = out->n_cp;
    free(raw);
    free(low);
    return PETL_OK;
}

static bool tok_eq(const norm_text *a, size_t i, const norm_text *b, size_t j) {
    size_t la = a->tok[i + 1] - a->tok[i], lb = b->tok[j + 1] - b->tok[j];
    return la == lb && !memcmp(a->cp + a->tok[i], b->cp + b->tok[j], la * sizeof *a->cp);
}

static double em_of(const norm_text *p, const norm_text *g) {
    return p->n_cp == g->n_cp && p->n_tok == g->n_tok &&
                   !memcmp(p->cp, g->cp, p->n_cp * sizeof *p->cp) &&
                   !memcmp(p->tok, g->tok, p->n_tok * sizeof *p->tok)
               ? 1.0
               : 0.0;
}

/* Counter(pred) & Counter(gold): a greedy one-to-one matching gives the same count. */
static petl_status f1_of(const norm_text *p, const norm_text *g, double *out, petl_error *err) {
    bool *used = calloc(g->n_tok + 1, 1);
    if (!used) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    size_t same = 0;
    for (size_t i = 0; i < p->n_tok; i++)
        for (size_t j = 0; j < g->n_tok; j++)
            if (!used[j] && tok_eq(p, i, g, j)) {
                used[j] = true;
                same++;
                break;
            }
    free(used);
    if (same == 0) {
        *out = 0.0;
        return PETL_OK;
    }
    /* The official script's arithmetic, operation by operation. */
    double precision = 1.0 * (double)same / (double)p->n_tok;
    double recall = 1.0 * (double)same / (double)g->n_tok;
    *out = (2 * precision * recall) / (precision + recall);
    return PETL_OK;
}

static petl_status pair_scores(const char *pred, size_t pl, const char *gold, size_t gl, double *em,
                               double *f1, petl_error *err) {
    if ((!pred && pl) || (!gold && gl)) return petl_fail(err, PETL_ERR_ARG, "squad metric: NULL");
    norm_text p, g;
    petl_status st = normalize(pred ? pred : "", pl, &p, err);
    if (st != PETL_OK) return st;
    if ((st = normalize(gold ? gold : "", gl, &g, err)) != PETL_OK) {
        norm_free(&p);
        return st;
    }
    if (em) *em = em_of(&p, &g);
    if (f1) st = f1_of(&p, &g, f1, err);
    norm_free(&p);
    norm_free(&g);
    return st;
}

petl_status petl_squad_em(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err) {
    if (!out) return petl_fail(err, PETL_ERR_ARG, "petl_squad_em: NULL");
    return pair_scores(pred, pred_len, gold, gold_len, out, NULL, err);
}

petl_status petl_squad_f1(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err) {
    if (!out) return petl_fail(err, PETL_ERR_ARG, "petl_squad_f1: NULL");
    return pair_scores(pred, pred_len, gold, gold_len, NULL, out, err);
}

petl_status petl_squad_score(const petl_squad *ds, const char *const *texts, const size_t *lens,
                             double *em, double *f1, double *total_em, double *total_f1,
                             petl_error *err) {
    if (!ds || ((!texts || !lens) && ds->n_qs > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_squad_score: NULL argument");
    if (ds->n_qs == 0) return petl_fail(err, PETL_ERR_ARG, "petl_squad_score: no questions");
    /* The official script sums booleans for EM (an exact integer) and floats for F1. */
    long long em_sum = 0;
    double f1_sum = 0;
    for (size_t i = 0; i < ds->n_qs; i++) {
        const petl_squad_question *q = &ds->qs[i];
        if (q->n_answers == 0)
            return petl_fail(err, PETL_ERR_ARG, "question %s has no answers to score against",
                             q->id);
        double best_em = 0, best_f1 = 0;
        for (size_t k = 0; k < q->n_answers; k++) {
            double e, f;
            petl_status st =
                pair_scores(texts[i], lens[i], q->answers[k].text, q->answers[k].len, &e, &f, err);
            if (st != PETL_OK) return st;
            if (k == 0 || e > best_em) best_em = e;
            if (k == 0 || f > best_f1) best_f1 = f;
        }
        if (em) em[i] = best_em;
        if (f1) f1[i] = best_f1;
        em_sum += best_em > 0;
        f1_sum += best_f1;
    }
    if (total_em) *total_em = 100.0 * (double)em_sum / (double)ds->n_qs;
    if (total_f1) *total_f1 = 100.0 * f1_sum / (double)ds->n_qs;
    return PETL_OK;
}
