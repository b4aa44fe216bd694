/* SQuAD against the references (scripts/reference/gen-squad-golden.py): tokenizer offsets
 * against HF's return_offsets_mapping, the official evaluate-v1.1.py on rule-built prediction
 * sets for the whole dev file and on hand-made Unicode cases, Google's windowing on HF tokens,
 * Google's span choice for pseudo-random logits; plus the reader's errors and the dev split. */
#include "check.h"
#include "petl.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static petl_tokenizer *tok;
static petl_error err;
static petl_squad *dev;   /* the whole dev file */
static petl_squad *cases; /* tests/golden/squad_cases.json, unanswered allowed */
static petl_squad_features *dev_f, *cases_f;

static void golden_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/golden/%s", TEST_SRC_DIR, name);
}

/* Calls fn on every JSON line of a golden file; returns the count. */
static size_t each_json_line(const char *name, void (*fn)(json_t *, size_t)) {
    char path[4096];
    golden_path(path, sizeof path, name);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
        CHECKF(j != NULL, "%s:%zu: %s", path, n + 1, je.text);
        fn(j, ++n);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------- tokenizer offsets */

static petl_encoding off_enc;
static size_t off_bad;

static void offsets_case(json_t *c, size_t lineno) {
    json_t *ja = json_object_get(c, "text_a"), *jb = json_object_get(c, "text_b");
    json_t *ids = json_object_get(c, "input_ids"), *offs = json_object_get(c, "offsets");
    int max_len = (int)json_integer_value(json_object_get(c, "max_len"));
    CHECK_OK(petl_tokenize_offsets(tok, json_string_value(ja), json_string_length(ja),
                                   jb ? json_string_value(jb) : NULL,
                                   jb ? json_string_length(jb) : 0, max_len, &off_enc, &err),
             &err);
    bool ok = (size_t)off_enc.len == json_array_size(ids) &&
              json_array_size(offs) == json_array_size(ids);
    for (int i = 0; ok && i < off_enc.len; i++) {
        json_t *o = json_array_get(offs, (size_t)i);
        ok = off_enc.ids[i] == json_integer_value(json_array_get(ids, (size_t)i)) &&
             off_enc.offsets[2 * i] == json_integer_value(json_array_get(o, 0)) &&
             off_enc.offsets[2 * i + 1] == json_integer_value(json_array_get(o, 1));
    }
    if (!ok && off_bad++ < 5) {
        char *dump = json_dumps(c, JSON_ENSURE_ASCII | JSON_COMPACT);
        fprintf(stderr, "squad_offsets.jsonl line %zu differs: %.400s\n  got:", lineno, dump);
        for (int i = 0; i < off_enc.len; i++)
            fprintf(stderr, " %d:(%d,%d)", off_enc.ids[i], off_enc.offsets[2 * i],
                    off_enc.offsets[2 * i + 1]);
        fputc('\n', stderr);
        free(dump);
    }
    /* petl_tokenize on the same encoding gives the same ids (offsets are extra). */
    petl_encoding plain = {0};
    CHECK_OK(petl_tokenize(tok, json_string_value(ja), json_string_length(ja),
                           jb ? json_string_value(jb) : NULL, jb ? json_string_length(jb) : 0,
                           max_len, &plain, &err),
             &err);
    CHECK(plain.len == off_enc.len && plain.offsets == NULL);
    CHECK(!memcmp(plain.ids, off_enc.ids, (size_t)plain.len * sizeof *plain.ids));
    petl_encoding_free(&plain);
}

static void test_offsets(void) {
    size_t n = each_json_line("squad_offsets.jsonl", offsets_case);
    /* An encoding used without offsets first, then with them, grows its offsets array. */
    petl_encoding e = {0};
    const char *t = "Hello, wörld! 東京 [SEP] x";
    CHECK_OK(petl_tokenize(tok, t, strlen(t), NULL, 0, 0, &e, &err), &err);
    CHECK_OK(petl_tokenize_offsets(tok, t, strlen(t), "second", 6, 0, &e, &err), &err);
    CHECK(e.offsets && e.len >= 9 && e.offsets[0] == 0 && e.offsets[1] == 0);
    CHECK(e.offsets[2] == 0 && e.offsets[3] == 5); /* "hello" */
    petl_encoding_free(&e);
    petl_encoding_free(&off_enc);
    printf("tokenizer offsets: %zu cases, %zu mismatches\n", n, off_bad);
    CHECK(n >= 1000);
    CHECK(off_bad == 0);
}

/* -------------------------------------------------------------------------- the metric */

/* The prediction rules of gen-squad-golden.py (pred_rule); the text is malloc'ed. */
static char *rule_pred(const char *rule, const petl_squad_question *q, const char *ctx) {
    const petl_squad_answer *first = &q->answers[0], *last = &q->answers[q->n_answers - 1];
    char *out = NULL;
    if (!strcmp(rule, "first")) {
        out = strdup(first->text);
    } else if (!strcmp(rule, "empty")) {
        out = strdup("");
    } else if (!strcmp(rule, "drop_first_word")) {
        const char *sp = strchr(first->text, ' ');
        out = strdup(sp ? sp + 1 : "");
    } else if (!strcmp(rule, "decorated_last")) {
        out = malloc(last->len + 16);
        CHECK(out != NULL);
        strcpy(out, "The ");
        for (size_t i = 0; i < last->len; i++) {
            char c = last->text[i];
            out[4 + i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        }
        strcpy(out + 4 + last->len, " (etc.)!");
    } else if (!strcmp(rule, "context_5")) {
        const char *p = ctx;
        for (int k = 0; k < 5 && p; k++) {
            p = strchr(p, ' ');
            if (p && k < 4) p++;
        }
        out = p ? strndup(ctx, (size_t)(p - ctx)) : strdup(ctx);
    }
    CHECK(out != NULL);
    return out;
}

static void test_metric_rules(void) {
    static const char *const rules[] = {"first", "empty", "drop_first_word", "decorated_last",
                                        "context_5"};
    char path[4096];
    golden_path(path, sizeof path, "squad_metric.txt");
    FILE *gf = fopen(path, "r");
    CHECKF(gf != NULL, "cannot open %s", path);
    size_t n = petl_squad_count(dev), checked = 0;
    char **texts = calloc(n, sizeof *texts);
    size_t *lens = calloc(n, sizeof *lens);
    double *em = calloc(n, sizeof *em), *f1 = calloc(n, sizeof *f1);
    CHECK(texts && lens && em && f1);
    char line[512];
    CHECK(fgets(line, sizeof line, gf) != NULL); /* the comment */
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        for (size_t i = 0; i < n; i++) {
            const petl_squad_question *q = petl_squad_at(dev, i);
            texts[i] = rule_pred(rules[r], q, petl_squad_context_at(dev, q->context)->text);
            lens[i] = strlen(texts[i]);
        }
        double tem, tf1;
        CHECK_OK(petl_squad_score(dev, (const char *const *)texts, lens, em, f1, &tem, &tf1, &err),
                 &err);
        for (;;) {
            char name[64], idx[32];
            double gem, gf1;
            CHECK(fgets(line, sizeof line, gf) != NULL);
            CHECKF(sscanf(line, "%63s %31s %lf %lf", name, idx, &gem, &gf1) == 4, "%s", line);
            CHECKF(!strcmp(name, rules[r]), "golden out of step: %s", line);
            if (!strcmp(idx, "total")) {
                printf("metric %-16s EM %.6f F1 %.6f (reference %.6f %.6f)\n", rules[r], tem, tf1,
                       gem, gf1);
                CHECKF(fabs(tem - gem) <= 1e-9 && fabs(tf1 - gf1) <= 1e-9, "%s totals", rules[r]);
                break;
            }
            size_t qi = strtoul(idx, NULL, 10);
            CHECK(qi < n);
            CHECKF(fabs(em[qi] - gem) <= 1e-9 && fabs(f1[qi] - gf1) <= 1e-9,
                   "%s question %zu (%s): pred '%s': em %g f1 %.17g, reference %g %.17g", rules[r],
                   qi, petl_squad_at(dev, qi)->id, texts[qi], em[qi], f1[qi], gem, gf1);
            checked++;
        }
        for (size_t i = 0; i < n; i++)
            free(texts[i]);
    }
    fclose(gf);
    free(texts);
    free(lens);
    free(em);
    free(f1);
    printf("metric: %zu per-question values checked\n", checked);
    CHECK(checked >= 500);
}

static size_t metric_bad;

static void metric_case(json_t *c, size_t lineno) {
    json_t *jp = json_object_get(c, "pred"), *golds = json_object_get(c, "golds");
    double best_em = 0, best_f1 = 0;
    for (size_t k = 0; k < json_array_size(golds); k++) {
        json_t *g = json_array_get(golds, k);
        double e, f;
        CHECK_OK(petl_squad_em(json_string_value(jp), json_string_length(jp), json_string_value(g),
                               json_string_length(g), &e, &err),
                 &err);
        CHECK_OK(petl_squad_f1(json_string_value(jp), json_string_length(jp), json_string_value(g),
                               json_string_length(g), &f, &err),
                 &err);
        if (k == 0 || e > best_em) best_em = e;
        if (k == 0 || f > best_f1) best_f1 = f;
    }
    double gem = json_number_value(json_object_get(c, "em"));
    double gf1 = json_number_value(json_object_get(c, "f1"));
    if (fabs(best_em - gem) > 1e-9 || fabs(best_f1 - gf1) > 1e-9) {
        metric_bad++;
        char *dump = json_dumps(c, JSON_ENSURE_ASCII | JSON_COMPACT);
        fprintf(stderr, "squad_metric_cases.jsonl line %zu: em %g f1 %.17g: %s\n", lineno, best_em,
                best_f1, dump);
        free(dump);
    }
}

static void test_metric_cases(void) {
    size_t n = each_json_line("squad_metric_cases.jsonl", metric_case);
    printf("metric cases: %zu checked, %zu mismatches\n", n, metric_bad);
    CHECK(n >= 40);
    CHECK(metric_bad == 0);
}

/* ------------------------------------------------------------------------------ features */

/* Index of question id in ds, or SIZE_MAX. */
static size_t find_question(const petl_squad *ds, const char *id) {
    for (size_t i = 0; i < petl_squad_count(ds); i++)
        if (!strcmp(petl_squad_at(ds, i)->id, id)) return i;
    return SIZE_MAX;
}

/* First feature of question qi. */
static size_t first_feature(const petl_squad_features *f, size_t qi) {
    for (size_t i = 0; i < f->n; i++)
        if (f->question[i] == qi) return i;
    return SIZE_MAX;
}

static size_t feat_checked;

static void feature_case(json_t *c, size_t lineno) {
    const char *src = json_string_value(json_object_get(c, "source"));
    const char *id = json_string_value(json_object_get(c, "id"));
    bool is_dev = !strcmp(src, "dev");
    const petl_squad *ds = is_dev ? dev : cases;
    const petl_squad_features *f = is_dev ? dev_f : cases_f;
    size_t qi = find_question(ds, id);
    CHECKF(qi != SIZE_MAX, "line %zu: question %s not loaded", lineno, id);
    size_t fi = first_feature(f, qi) + (size_t)json_integer_value(json_object_get(c, "window"));
    CHECKF(fi < f->n && f->question[fi] == qi, "line %zu: %s has too few windows", lineno, id);
    json_t *ids = json_object_get(c, "ids"), *offs = json_object_get(c, "offsets");
    const char *types = json_string_value(json_object_get(c, "type_ids"));
    const char *mc = json_string_value(json_object_get(c, "max_ctx"));
    int row = f->max_seq_len, len = f->lengths[fi];
    int cb = (int)json_integer_value(json_object_get(c, "ctx_begin"));
    int cl = (int)json_integer_value(json_object_get(c, "ctx_len"));
    CHECKF((size_t)len == json_array_size(ids), "%s window %d: length %d, reference %zu", id,
           f->window[fi], len, json_array_size(ids));
    CHECKF(f->ctx_begin[fi] == cb && f->ctx_len[fi] == cl, "%s: context range", id);
    for (int i = 0; i < row; i++) {
        const int32_t *o = f->offsets + 2 * ((size_t)fi * row + i);
        int32_t want_id = i < len ? (int32_t)json_integer_value(json_array_get(ids, (size_t)i))
                                  : petl_tokenizer_pad_id(tok);
        int want_type = i < len ? types[i] - '0' : 0, want_mc = i < len ? mc[i] - '0' : 0;
        int32_t wb = -1, we = -1;
        if (i >= cb && i < cb + cl) {
            wb = (int32_t)json_integer_value(json_array_get(offs, (size_t)(2 * (i - cb))));
            we = (int32_t)json_integer_value(json_array_get(offs, (size_t)(2 * (i - cb) + 1)));
        }
        CHECKF(f->ids[(size_t)fi * row + i] == want_id &&
                   f->type_ids[(size_t)fi * row + i] == want_type &&
                   f->max_ctx[(size_t)fi * row + i] == want_mc && o[0] == wb && o[1] == we,
               "%s window %d position %d: id %d type %d max %d (%d,%d); reference %d %d %d (%d,%d)",
               id, f->window[fi], i, f->ids[(size_t)fi * row + i],
               f->type_ids[(size_t)fi * row + i], f->max_ctx[(size_t)fi * row + i], o[0], o[1],
               want_id, want_type, want_mc, wb, we);
    }
    int sp = (int)json_integer_value(json_object_get(c, "start"));
    int ep = (int)json_integer_value(json_object_get(c, "end"));
    CHECKF(f->start_pos[fi] == sp && f->end_pos[fi] == ep,
           "%s window %d: positions %d %d, ref %d %d", id, f->window[fi], f->start_pos[fi],
           f->end_pos[fi], sp, ep);
    /* The answer's tokens map back onto the answer in the context. */
    if (sp > 0) {
        const petl_squad_question *q = petl_squad_at(ds, qi);
        const int32_t *o = f->offsets + 2 * (size_t)fi * row;
        CHECK((size_t)o[2 * sp] <= q->answers[0].begin + q->answers[0].len);
        CHECK((size_t)o[2 * ep + 1] > q->answers[0].begin);
    }
    feat_checked++;
}

static void test_features(void) {
    size_t n = each_json_line("squad_features.jsonl", feature_case);
    printf("features: %zu windows checked (dev: %zu windows for %zu questions)\n", feat_checked,
           dev_f->n, petl_squad_count(dev));
    CHECK(n == feat_checked && n >= 100);
    /* The long crafted context has more than three windows; the long question is cut to 64. */
    size_t qi = find_question(cases, "c-longctx-end"), fi = first_feature(cases_f, qi);
    CHECK(fi + 3 < cases_f->n && cases_f->question[fi + 3] == qi);
    qi = find_question(cases, "c-longq2");
    CHECK(cases_f->ctx_begin[first_feature(cases_f, qi)] == 64 + 2);
    qi = find_question(cases, "c-unanswered");
    CHECK(cases_f->start_pos[first_feature(cases_f, qi)] == -1);

    petl_squad_params p;
    petl_squad_params_default(&p);
    p.max_seq_len = 66;
    petl_squad_features *bad = NULL;
    CHECK(petl_squad_featurize(cases, tok, &p, &bad, &err) == PETL_ERR_ARG && bad == NULL);
    CHECKF(strstr(err.msg, "max_query_len") != NULL, "%s", err.msg);
}

/* ------------------------------------------------------------------------------ decoding */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* gen-squad-golden.py's logits_for. */
static void logits_for(uint64_t seed, float *out, int n) {
    uint64_t st = seed;
    for (int i = 0; i < n; i++)
        out[i] = (float)((double)((splitmix64(&st) >> 40) % 20480) / 1024.0 - 10.0);
}

typedef struct {
    const petl_squad *ds;
    const petl_squad_features *f;
    float *start, *end;
    petl_squad_prediction *preds;
    int pass; /* 0: fill logits, 1: check */
    size_t checked;
} decode_ctx;

static decode_ctx dec[2]; /* dev, cases */

static void decode_case(json_t *c, size_t lineno) {
    bool is_dev = !strcmp(json_string_value(json_object_get(c, "source")), "dev");
    decode_ctx *d = &dec[is_dev ? 0 : 1];
    const char *id = json_string_value(json_object_get(c, "id"));
    size_t qi = find_question(d->ds, id), fi = first_feature(d->f, qi);
    CHECKF(qi != SIZE_MAX, "line %zu", lineno);
    uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
    int row = d->f->max_seq_len;
    if (d->pass == 0) {
        for (size_t j = 0; fi + j < d->f->n && d->f->question[fi + j] == qi; j++) {
            logits_for(seed * 64 + 2 * j, d->start + (fi + j) * row, row);
            logits_for(seed * 64 + 2 * j + 1, d->end + (fi + j) * row, row);
        }
        return;
    }
    const petl_squad_prediction *p = &d->preds[qi];
    bool found = json_is_true(json_object_get(c, "found"));
    CHECKF(p->found == found, "%s: found %d", id, p->found);
    if (found) {
        json_t *jt = json_object_get(c, "text");
        CHECKF(p->begin == (size_t)json_integer_value(json_object_get(c, "begin")) &&
                   p->end == (size_t)json_integer_value(json_object_get(c, "end")) &&
                   p->score == json_number_value(json_object_get(c, "score")) &&
                   p->len == json_string_length(jt) &&
                   !memcmp(p->text, json_string_value(jt), p->len),
               "%s: got '%.*s' [%zu, %zu) %.17g, reference '%s' %.17g", id, (int)p->len, p->text,
               p->begin, p->end, p->score, json_string_value(jt),
               json_number_value(json_object_get(c, "score")));
        /* char offsets: the same text in code points */
        CHECK(p->char_end - p->char_begin >= 1 && p->char_begin >= 0);
    }
    d->checked++;
}

static void test_decode(void) {
    for (int k = 0; k < 2; k++) {
        dec[k].ds = k ? cases : dev;
        dec[k].f = k ? cases_f : dev_f;
        size_t cells = dec[k].f->n * (size_t)dec[k].f->max_seq_len;
        dec[k].start = calloc(cells, sizeof(float));
        dec[k].end = calloc(cells, sizeof(float));
        dec[k].preds = calloc(petl_squad_count(dec[k].ds), sizeof *dec[k].preds);
        CHECK(dec[k].start && dec[k].end && dec[k].preds);
    }
    each_json_line("squad_decode.jsonl", decode_case);
    petl_squad_params p;
    petl_squad_params_default(&p);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(petl_squad_decode(dec[k].ds, dec[k].f, dec[k].start, dec[k].end, &p, dec[k].preds,
                                   &err),
                 &err);
        dec[k].pass = 1;
    }
    each_json_line("squad_decode.jsonl", decode_case);
    printf("decoding: %zu questions checked\n", dec[0].checked + dec[1].checked);
    CHECK(dec[0].checked + dec[1].checked >= 50);
    /* The gold span's logits win: every dev question decodes to text containing its answer's
     * tokens, mapped back through the offsets (a sanity check of the whole path). */
    for (size_t i = 0; i < dev_f->n; i++) {
        for (int t = 0; t < dev_f->max_seq_len; t++)
            dec[0].start[i * dev_f->max_seq_len + t] = dec[0].end[i * dev_f->max_seq_len + t] = 0;
        if (dev_f->start_pos[i] > 0 &&
            dev_f->max_ctx[i * dev_f->max_seq_len + dev_f->start_pos[i]]) {
            dec[0].start[i * dev_f->max_seq_len + dev_f->start_pos[i]] = 10;
            dec[0].end[i * dev_f->max_seq_len + dev_f->end_pos[i]] = 10;
        }
    }
    CHECK_OK(petl_squad_decode(dev, dev_f, dec[0].start, dec[0].end, &p, dec[0].preds, &err), &err);
    size_t n = petl_squad_count(dev), exact = 0, long_answers = 0;
    const char **texts = calloc(n, sizeof *texts);
    size_t *lens = calloc(n, sizeof *lens);
    CHECK(texts && lens);
    for (size_t i = 0; i < n; i++) {
        texts[i] = dec[0].preds[i].text;
        lens[i] = dec[0].preds[i].len;
        const petl_squad_answer *a = &petl_squad_at(dev, i)->answers[0];
        exact += dec[0].preds[i].begin == a->begin && dec[0].preds[i].len == a->len;
        long_answers += !dec[0].preds[i].found;
    }
    double tem, tf1;
    CHECK_OK(petl_squad_score(dev, texts, lens, NULL, NULL, &tem, &tf1, &err), &err);
    printf("gold-span logits through decode: EM %.3f F1 %.3f, exact first-answer span %zu / %zu, "
           "%zu not decodable (answer > 30 tokens or no token)\n",
           tem, tf1, exact, n, long_answers);
    CHECK(tem > 97 && tf1 > 98);
    free(texts);
    free(lens);
    for (int k = 0; k < 2; k++) {
        free(dec[k].start);
        free(dec[k].end);
        free(dec[k].preds);
    }
}

/* ------------------------------------------------------------------- reader and errors */

static void expect_error(const char *json, petl_status code, const char *const *needles) {
    petl_squad *ds = NULL;
    petl_error e = {0};
    petl_status st = petl_squad_parse(json, strlen(json), "bad.json", NULL, &ds, &e);
    CHECKF(st == code, "status %d for %s (%s)", st, json, e.msg);
    CHECK(ds == NULL);
    for (; *needles; needles++)
        CHECKF(strstr(e.msg, *needles) != NULL, "message '%s' lacks '%s'", e.msg, *needles);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ART(ctx, qas)                                                                              \
    "{\"version\":\"1.1\",\"data\":[{\"title\":\"T0\",\"paragraphs\":[]},"                         \
    "{\"title\":\"Second\",\"paragraphs\":[{\"context\":" ctx ",\"qas\":[" qas "]}]}]}"
#define QA(id, ans) "{\"id\":\"" id "\",\"question\":\"Why?\",\"answers\":[" ans "]}"

static void test_errors(void) {
    expect_error("{\"data\": [", PETL_ERR_FORMAT, NEEDLES("bad.json", "line 1", "invalid JSON"));
    expect_error("[1]", PETL_ERR_FORMAT, NEEDLES("top"));
    expect_error("{\"data\": 3}", PETL_ERR_FORMAT, NEEDLES("\"data\""));
    expect_error("{\"data\": [], \"data\": []}", PETL_ERR_FORMAT, NEEDLES("duplicate"));
    expect_error("{\"data\": [{\"paragraphs\": []}]}", PETL_ERR_FORMAT,
                 NEEDLES("article 0", "\"title\" is missing"));
    expect_error(ART("\"Paris is big.\"", QA("q1", "{\"text\":\"Paris\",\"answer_start\":1}")),
                 PETL_ERR_FORMAT,
                 NEEDLES("article 1 (\"Second\")", "question q1", "does not match", "aris "));
    expect_error(ART("\"Paris\"", QA("q2", "{\"text\":\"Paris\",\"answer_start\":3}")),
                 PETL_ERR_FORMAT, NEEDLES("question q2", "runs past the end"));
    expect_error(ART("\"Paris\"", QA("q3", "{\"text\":\"Paris\",\"answer_start\":-1}")),
                 PETL_ERR_FORMAT, NEEDLES("question q3", "runs past the end"));
    expect_error(ART("\"Paris\"", QA("q4", "{\"text\":\"Paris\",\"answer_start\":\"0\"}")),
                 PETL_ERR_FORMAT, NEEDLES("question q4", "answer_start", "wrong type"));
    expect_error(ART("\"Paris\"", QA("q5", "{\"text\":\"\",\"answer_start\":0}")), PETL_ERR_FORMAT,
                 NEEDLES("question q5", "empty text"));
    expect_error(ART("\" \\n \"", QA("q6", "")), PETL_ERR_FORMAT,
                 NEEDLES("article 1 (\"Second\")", "empty context"));
    expect_error(ART("\"Paris\"", QA("q7", "")), PETL_ERR_FORMAT,
                 NEEDLES("article 1", "question q7", "no answers"));
    expect_error(ART("\"Paris\"", QA("q8", "{\"text\":\"P\",\"answer_start\":0}") "," QA(
                                      "q8", "{\"text\":\"P\",\"answer_start\":0}")),
                 PETL_ERR_FORMAT, NEEDLES("question q8", "duplicate question id"));
    expect_error(ART("\"Paris\"", "{\"id\":\"q9\",\"answers\":[]}"), PETL_ERR_FORMAT,
                 NEEDLES("question q9", "\"question\" is missing"));
    expect_error(ART("\"Paris\"", "{\"id\":\"q10\",\"question\":\"  \",\"answers\":[]}"),
                 PETL_ERR_FORMAT, NEEDLES("question q10", "empty question"));
    /* Code point offsets: "é" is two bytes but one answer_start unit, as in Python. */
    const char *ok =
        ART("\"Caf\\u00e9 Paris\"", QA("q11", "{\"text\":\"Paris\",\"answer_start\":5}"));
    petl_squad *ds = NULL;
    CHECK_OK(petl_squad_parse(ok, strlen(ok), "ok.json", NULL, &ds, &err), &err);
    CHECK(petl_squad_count(ds) == 1 && petl_squad_at(ds, 0)->answers[0].begin == 6);
    CHECK(petl_squad_num_articles(ds) == 2 && !strcmp(petl_squad_article_title(ds, 1), "Second"));
    petl_squad_free(ds);
    /* No answers are allowed when asked for (prediction-only files), but cannot be scored. */
    const char *unans = ART("\"Paris\"", QA("q12", ""));
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    o.allow_unanswered = true;
    CHECK_OK(petl_squad_parse(unans, strlen(unans), "u.json", &o, &ds, &err), &err);
    const char *pred = "x";
    size_t plen = 1;
    double em, f1;
    CHECK(petl_squad_score(ds, &pred, &plen, NULL, NULL, &em, &f1, &err) == PETL_ERR_ARG);
    CHECKF(strstr(err.msg, "q12") != NULL, "%s", err.msg);
    petl_squad_free(ds);
    petl_squad_free(NULL);
    petl_squad_features_free(NULL);
}

static void test_ranges(void) {
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    CHECK_OK(petl_squad_parse_range("train", &o, &err), &err);
    CHECK(o.article_begin == 0 && o.article_end == PETL_SQUAD_DEV_TRAIN_ARTICLES);
    CHECK_OK(petl_squad_parse_range("eval", &o, &err), &err);
    CHECK(o.article_begin == 38 && o.article_end == -1);
    CHECK_OK(petl_squad_parse_range("3:7", &o, &err), &err);
    CHECK(o.article_begin == 3 && o.article_end == 7);
    CHECK_OK(petl_squad_parse_range(":5", &o, &err), &err);
    CHECK(o.article_begin == 0 && o.article_end == 5);
    CHECK_OK(petl_squad_parse_range("all", &o, &err), &err);
    CHECK(o.article_begin == 0 && o.article_end == -1);
    static const char *const bad[] = {"", "5", "7:3", "-1:", "a:b", "1:2:3", "1:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(petl_squad_parse_range(bad[i], &o, &err) == PETL_ERR_ARG, "'%s'", bad[i]);
}

static void test_dev_split(void) {
    CHECK(petl_squad_num_articles(dev) == 48);
    CHECK(petl_squad_count(dev) == 10570);
    char path[4096];
    snprintf(path, sizeof path, "%s/squad/dev-v1.1.json", test_data_dir());
    petl_squad *tr = NULL, *ev = NULL;
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    CHECK_OK(petl_squad_parse_range("train", &o, &err), &err);
    CHECK_OK(petl_squad_load(path, &o, &tr, &err), &err);
    CHECK_OK(petl_squad_parse_range("eval", &o, &err), &err);
    CHECK_OK(petl_squad_load(path, &o, &ev, &err), &err);
    size_t nt = petl_squad_count(tr), ne = petl_squad_count(ev);
    printf("dev split: train %zu questions (%zu contexts), eval %zu questions (%zu contexts)\n", nt,
           petl_squad_num_contexts(tr), ne, petl_squad_num_contexts(ev));
    CHECK(nt + ne == 10570 && nt == 8582);
    CHECK(petl_squad_at(tr, nt - 1)->article < 38 && petl_squad_at(ev, 0)->article == 38);
    for (size_t i = 0; i < nt; i++)
        CHECK(petl_squad_at(tr, i)->article < PETL_SQUAD_DEV_TRAIN_ARTICLES);
    for (size_t i = 0; i < ne; i++)
        CHECK(petl_squad_at(ev, i)->article >= PETL_SQUAD_DEV_TRAIN_ARTICLES);
    /* Same questions, same order as the whole file. */
    CHECK(!strcmp(petl_squad_at(ev, 0)->id, petl_squad_at(dev, nt)->id));
    petl_squad_free(tr);
    /* max_questions: the first N of the range, and only their contexts (still validating the
     * whole file) */
    o.max_questions = 7;
    CHECK_OK(petl_squad_load(path, &o, &tr, &err), &err);
    CHECK(petl_squad_count(tr) == 7 && !strcmp(petl_squad_at(tr, 6)->id, petl_squad_at(ev, 6)->id));
    CHECK(petl_squad_num_contexts(tr) == petl_squad_at(tr, 6)->context + 1);
    petl_squad_free(tr);
    petl_squad_free(ev);
    /* blank as the reader means it: Python whitespace only */
    CHECK(petl_squad_is_blank(" \t\n\xc2\xa0\xe3\x80\x80", 8) && petl_squad_is_blank("", 0));
    CHECK(!petl_squad_is_blank(" x ", 3));
}

/* The same questions' windows with all-mpnet-base-v2's tokenizer.json, whose pair template is
 * <s> q </s></s> c </s> with type ids 0 (tests/golden/squad_features_mpnet.jsonl, from the
 * tokenizer's build_inputs_with_special_tokens). */
static void test_features_mpnet(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", test_mpnet_dir());
    if (access(path, R_OK) != 0) {
        test_skip("model", "no %s (scripts/fetch-model all-mpnet-base-v2)", path);
        return;
    }
    petl_tokenizer *bert_tok = tok;
    petl_squad_features *bert_dev = dev_f, *bert_cases = cases_f;
    CHECK_OK(petl_tokenizer_load(test_mpnet_dir(), &tok, &err), &err);
    petl_squad_params p;
    petl_squad_params_default(&p);
    CHECK_OK(petl_squad_featurize(dev, tok, &p, &dev_f, &err), &err);
    CHECK_OK(petl_squad_featurize(cases, tok, &p, &cases_f, &err), &err);
    feat_checked = 0;
    size_t n = each_json_line("squad_features_mpnet.jsonl", feature_case);
    printf("features, all-mpnet-base-v2: %zu windows checked\n", feat_checked);
    CHECK(n == feat_checked && n >= 100);
    /* one more special than BERT's template: the long question's context starts at 64 + 3 */
    size_t qi = find_question(cases, "c-longq2");
    CHECK(cases_f->ctx_begin[first_feature(cases_f, qi)] == 64 + 3);
    petl_squad_features_free(dev_f);
    petl_squad_features_free(cases_f);
    petl_tokenizer_free(tok);
    tok = bert_tok, dev_f = bert_dev, cases_f = bert_cases;
}

int main(void) {
    CHECK_OK(petl_tokenizer_load(test_model_dir(), &tok, &err), &err);
    char path[4096];
    snprintf(path, sizeof path, "%s/squad/dev-v1.1.json", test_data_dir());
    CHECK_OK(petl_squad_load(path, NULL, &dev, &err), &err);
    petl_squad_opts o;
    petl_squad_opts_default(&o);
    o.allow_unanswered = true;
    golden_path(path, sizeof path, "squad_cases.json");
    CHECK_OK(petl_squad_load(path, &o, &cases, &err), &err);
    petl_squad_params p;
    petl_squad_params_default(&p);
    CHECK_OK(petl_squad_featurize(dev, tok, &p, &dev_f, &err), &err);
    CHECK_OK(petl_squad_featurize(cases, tok, &p, &cases_f, &err), &err);

    test_offsets();
    test_metric_cases();
    test_metric_rules();
    test_features();
    test_features_mpnet();
    test_decode();
    test_errors();
    test_ranges();
    test_dev_split();

    petl_squad_features_free(dev_f);
    petl_squad_features_free(cases_f);
    petl_squad_free(dev);
    petl_squad_free(cases);
    petl_tokenizer_free(tok);
    CHECK_DONE("test_squad");
}
