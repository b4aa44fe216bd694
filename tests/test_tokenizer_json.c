/* The tokenizer.json path against the reference (`tokenizers` 0.22.2 reading the same file):
 * the golden files of scripts/reference/gen-tokenizer-json-golden.py under golden/tokjson/ for
 * every tokenizer there (hard cases with ids, type ids and byte offsets; a hash per GLUE dev
 * row; a hash per block of 256 code points), the real all-MiniLM-L6-v2 file against its
 * vocab.txt, and the refusals: what is not supported or not well-formed is an error that
 * names the file and the component. */
#include "check.h"
#include "petl.h"
#include "tok_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static petl_error err;

/* Every golden tokenizer; minilm's tokenizer.json is the model folder's own. */
static const char *const NAMES[] = {"minilm",
                                    "wordpiece-cased",
                                    "mpnet-style",
                                    "added-flags",
                                    "plain",
                                    "roberta-style",
                                    "gpt2-style",
                                    "char-bpe",
                                    "bpe-prefix",
                                    "bpe-bytefallback",
                                    "unigram-metaspace",
                                    "unigram-bytefallback",
                                    "whitespace-wordpiece",
                                    "norm-sequence",
                                    "norm-prepend",
                                    "punct-next",
                                    "punct-previous",
                                    "punct-contiguous",
                                    "norm-nfkd",
                                    "norm-replace",
                                    "bert-marks",
                                    "nfd-marks",
                                    "nfc-marks",
                                    "nfkc-marks",
                                    "unigram-precompiled",
                                    "xlmr-style",
                                    "split-gpt4",
                                    "norm-replace-regex",
                                    "split-sequence",
                                    "split-alone"};
#define N_NAMES (sizeof NAMES / sizeof NAMES[0])

/* ------------------------------------------------------------------------ helpers */

/* The golden files' hash: 64-bit FNV-1a over the ids, the type ids, then the offsets, each a
 * little-endian int32. */
static uint64_t enc_hash(const petl_encoding *e) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int pass = 0; pass < 3; pass++) {
        const int32_t *v = pass == 0 ? e->ids : pass == 1 ? e->type_ids : e->offsets;
        int n = pass == 2 ? 2 * e->len : e->len;
        for (int i = 0; i < n; i++) {
            uint32_t u = (uint32_t)v[i];
            for (int b = 0; b < 4; b++) {
                h ^= (u >> (8 * b)) & 0xFF;
                h *= 0x100000001b3ull;
            }
        }
    }
    return h;
}

static const char *golden_path(const char *name, const char *suffix) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/golden/tokjson/%s%s", TEST_SRC_DIR, name, suffix);
    return path;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

static void print_ints(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------------------- hard cases */

/* One case: ids, type ids and offsets from petl_tokenize_offsets, and petl_tokenize agrees. */
static bool case_matches(const petl_tokenizer *t, json_t *c, petl_encoding *enc,
                         petl_encoding *plain) {
    json_t *ja = json_object_get(c, "text_a"), *jb = json_object_get(c, "text_b");
    json_t *ids = json_object_get(c, "input_ids"), *types = json_object_get(c, "token_type_ids");
    json_t *offs = json_object_get(c, "offsets");
    CHECK(json_is_string(ja) && json_is_array(ids) && json_is_array(types) && json_is_array(offs));
    int max_len = (int)json_integer_value(json_object_get(c, "max_len"));
    const char *b = jb ? json_string_value(jb) : NULL;
    size_t lb = jb ? json_string_length(jb) : 0;
    CHECK_OK(petl_tokenize_offsets(t, json_string_value(ja), json_string_length(ja), b, lb, max_len,
                                   enc, &err),
             &err);
    CHECK_OK(petl_tokenize(t, json_string_value(ja), json_string_length(ja), b, lb, max_len, plain,
                           &err),
             &err);
    bool ok = (size_t)enc->len == json_array_size(ids) && plain->len == enc->len &&
              json_array_size(types) == json_array_size(ids) &&
              json_array_size(offs) == json_array_size(ids);
    for (int i = 0; ok && i < enc->len; i++) {
        json_t *o = json_array_get(offs, (size_t)i);
        ok = enc->ids[i] == json_integer_value(json_array_get(ids, (size_t)i)) &&
             enc->type_ids[i] == json_integer_value(json_array_get(types, (size_t)i)) &&
             plain->ids[i] == enc->ids[i] && plain->type_ids[i] == enc->type_ids[i] &&
             enc->offsets[2 * i] == json_integer_value(json_array_get(o, 0)) &&
             enc->offsets[2 * i + 1] == json_integer_value(json_array_get(o, 1));
    }
    return ok;
}

static size_t check_cases(const petl_tokenizer *t, const char *name, size_t *n_out) {
    const char *path = golden_path(name, ".cases.jsonl");
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0, lineno = 0, bad = 0;
    petl_encoding enc = {0}, plain = {0};
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *c = json_loads(line, JSON_ALLOW_NUL, &je);
        CHECKF(c != NULL, "%s:%zu: %s", path, lineno, je.text);
        if (!case_matches(t, c, &enc, &plain) && bad++ < 10) {
            char *dump = json_dumps(c, JSON_ENSURE_ASCII | JSON_COMPACT);
            fprintf(stderr, "%s line %zu differs: %.600s\n", path, lineno, dump);
            free(dump);
            print_ints("got ids", enc.ids, (size_t)enc.len);
            print_ints("got types", enc.type_ids, (size_t)enc.len);
            print_ints("got offsets", enc.offsets, 2 * (size_t)enc.len);
        }
        json_decref(c);
    }
    free(line);
    fclose(f);
    petl_encoding_free(&enc);
    petl_encoding_free(&plain);
    *n_out = lineno;
    return bad;
}

/* ------------------------------------------------------------------ code point blocks */

static size_t put_utf8(char *p, uint32_t c) {
    if (c < 0x80) return (size_t)(p[0] = (char)c, 1);
    if (c < 0x800) {
        p[0] = (char)(0xC0 | (c >> 6));
        p[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        p[0] = (char)(0xE0 | (c >> 12));
        p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | (c >> 18));
    p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    p[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Every scalar value in blocks of 256, each as "<c> x<c>y " (the generator builds the same). */
static size_t check_codepoints(const petl_tokenizer *t, const char *name, size_t *n_out) {
    const char *path = golden_path(name, ".codepoints.tsv");
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    char *text = malloc(256 * 12);
    CHECK(text != NULL);
    petl_encoding enc = {0};
    unsigned lo;
    char hex[32];
    size_t n = 0, bad = 0;
    while (fscanf(f, "%X %31s", &lo, hex) == 2) {
        size_t len = 0;
        for (uint32_t c = lo; c < lo + 256; c++) {
            if (c >= 0xD800 && c <= 0xDFFF) continue;
            len += put_utf8(text + len, c);
            text[len++] = ' ';
            text[len++] = 'x';
            len += put_utf8(text + len, c);
            text[len++] = 'y';
            text[len++] = ' ';
        }
        CHECK_OK(petl_tokenize_offsets(t, text, len, NULL, 0, 0, &enc, &err), &err);
        char got[32];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)enc_hash(&enc));
        if (strcmp(got, hex) != 0 && bad++ < 10)
            fprintf(stderr, "%s: code points U+%04X..U+%04X: hash %s, expected %s\n", name, lo,
                    lo + 255, got, hex);
        n++;
    }
    fclose(f);
    free(text);
    petl_encoding_free(&enc);
    *n_out = n;
    return bad;
}

/* ------------------------------------------------------------------------------ GLUE */

typedef struct {
    const char *task;
    bool header;
    int col_a, col_b; /* col_b < 0: single sentences */
} glue_task;

static const glue_task TASKS[] = {
    {"CoLA", false, 3, -1}, {"SST-2", true, 0, -1}, {"MRPC", true, 3, 4},
    {"RTE", true, 1, 2},    {"STS-B", true, 7, 8},
};

/* Splits line (modified in place) on tabs into at most max fields; returns the count. */
static int split_tabs(char *line, char **fields, int max) {
    int n = 0;
    fields[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            fields[n++] = p + 1;
        }
    return n;
}

/* Every dev row of the five tasks against NAME.glue.tsv (task, row, hash; in file order). */
static size_t check_glue(const petl_tokenizer *t, const char *name, size_t *n_out) {
    const char *gpath = golden_path(name, ".glue.tsv");
    FILE *g = fopen(gpath, "r");
    CHECKF(g != NULL, "cannot open %s", gpath);
    petl_encoding enc = {0};
    size_t n = 0, bad = 0;
    for (size_t k = 0; k < sizeof TASKS / sizeof TASKS[0]; k++) {
        const glue_task *tk = &TASKS[k];
        char path[4096];
        snprintf(path, sizeof path, "%s/glue/%s/dev.tsv", test_data_dir(), tk->task);
        size_t len;
        char *buf = read_all(path, &len);
        CHECKF(buf != NULL, "cannot read %s", path);
        char *p = buf;
        if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
        long row = tk->header ? -1 : 0;
        while (*p) {
            char *nl = strchr(p, '\n');
            if (nl) *nl = '\0';
            if (row >= 0) {
                char *fld[16];
                int nf = split_tabs(p, fld, 16);
                int need = (tk->col_b > tk->col_a ? tk->col_b : tk->col_a) + 1;
                CHECKF(nf >= need, "%s: row %ld has %d fields", path, row, nf);
                const char *a = fld[tk->col_a], *b = tk->col_b >= 0 ? fld[tk->col_b] : NULL;
                CHECK_OK(
                    petl_tokenize_offsets(t, a, strlen(a), b, b ? strlen(b) : 0, 128, &enc, &err),
                    &err);
                char task[16], hex[32];
                long grow;
                CHECKF(fscanf(g, "%15s %ld %31s", task, &grow, hex) == 3 &&
                           !strcmp(task, tk->task) && grow == row,
                       "%s out of step at %s row %ld", gpath, tk->task, row);
                char got[32];
                snprintf(got, sizeof got, "%016llx", (unsigned long long)enc_hash(&enc));
                if (strcmp(got, hex) != 0 && bad++ < 10) {
                    fprintf(stderr, "%s: GLUE %s dev row %ld differs:\n  a: %s\n  b: %s\n", name,
                            tk->task, row, a, b ? b : "(none)");
                    print_ints("got ids", enc.ids, (size_t)enc.len);
                }
                n++;
            }
            row++;
            if (!nl) break;
            p = nl + 1;
        }
        free(buf);
    }
    char extra[64];
    CHECKF(fscanf(g, "%63s", extra) != 1, "%s has rows past the data", gpath);
    fclose(g);
    petl_encoding_free(&enc);
    *n_out = n;
    return bad;
}

/* ----------------------------------------------------------------------- the goldens */

static bool have_data(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/glue/CoLA/dev.tsv", test_data_dir());
    return access(path, R_OK) == 0;
}

static void test_goldens(void) {
    size_t total_cases = 0, total_rows = 0, total_blocks = 0;
    for (size_t i = 0; i < N_NAMES; i++) {
        char path[4096];
        if (strcmp(NAMES[i], "minilm") == 0)
            snprintf(path, sizeof path, "%s/tokenizer.json", test_model_dir());
        else
            snprintf(path, sizeof path, "%s", golden_path(NAMES[i], ".json"));
        if (access(path, R_OK) != 0) {
            test_skip("model", "%s: no %s", NAMES[i], path);
            continue;
        }
        petl_tokenizer *t = NULL;
        CHECK_OK(petl_tokenizer_load_json(path, &t, &err), &err);
        size_t nc, nr = 0, nb;
        size_t bc = check_cases(t, NAMES[i], &nc);
        size_t bb = check_codepoints(t, NAMES[i], &nb);
        size_t br = 0;
        if (have_data()) br = check_glue(t, NAMES[i], &nr);
        printf("%-16s hard cases %zu (%zu mismatches), code point blocks %zu (%zu), GLUE dev "
               "rows %zu (%zu)\n",
               NAMES[i], nc, bc, nb, bb, nr, br);
        CHECK(nc >= 800 && nb == 4344);
        CHECK(bc == 0 && bb == 0 && br == 0);
        total_cases += nc, total_rows += nr, total_blocks += nb;
        petl_tokenizer_free(t);
    }
    if (!have_data()) test_skip("data", "no GLUE data under %s", test_data_dir());
    printf("tokenizer.json goldens: %zu hard cases, %zu code point blocks, %zu GLUE dev rows\n",
           total_cases, total_blocks, total_rows);
}

/* ------------------------------------------------ tokenizer.json vs vocab.txt (MiniLM) */

static void test_same_as_vocab(void) {
    char json[4096], vocab[4096], cfg[4096];
    snprintf(json, sizeof json, "%s/tokenizer.json", test_model_dir());
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", test_model_dir());
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", test_model_dir());
    if (access(json, R_OK) != 0 || access(vocab, R_OK) != 0) {
        test_skip("model", "no %s", json);
        return;
    }
    /* a folder with only the vocab.txt (+ config): the vocab.txt path */
    char dir[] = "/tmp/petl_tokjson_XXXXXX", link_v[4200], link_c[4200];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(link_v, sizeof link_v, "%s/vocab.txt", dir);
    snprintf(link_c, sizeof link_c, "%s/tokenizer_config.json", dir);
    CHECK(symlink(vocab, link_v) == 0);
    CHECK(symlink(cfg, link_c) == 0);
    petl_tokenizer *tj = NULL, *tv = NULL, *td = NULL;
    CHECK_OK(petl_tokenizer_load_json(json, &tj, &err), &err);
    CHECK_OK(petl_tokenizer_load(dir, &tv, &err), &err);
    CHECK_OK(petl_tokenizer_load(test_model_dir(), &td, &err), &err); /* prefers the json */
    CHECK(petl_tokenizer_vocab_size(tj) == petl_tokenizer_vocab_size(tv));
    CHECK(petl_tokenizer_vocab_hash(tj) == petl_tokenizer_vocab_hash(tv));
    CHECK(petl_tokenizer_vocab_hash(td) == petl_tokenizer_vocab_hash(tv));
    CHECK(petl_tokenizer_pad_id(tj) == petl_tokenizer_pad_id(tv));
    petl_tokenizer_opts a, b;
    petl_tokenizer_get_opts(tj, &a);
    petl_tokenizer_get_opts(tv, &b);
    CHECK(a.clean_text == b.clean_text && a.handle_chinese_chars == b.handle_chinese_chars &&
          a.lowercase == b.lowercase && a.strip_accents == b.strip_accents);
    unlink(link_v);
    unlink(link_c);
    /* tokenizer_config.json's casing overrides a BertNormalizer's, as BertTokenizerFast does */
    char link_j[4200];
    snprintf(link_j, sizeof link_j, "%s/tokenizer.json", dir);
    CHECK(symlink(json, link_j) == 0);
    FILE *f = fopen(link_c, "w");
    CHECK(f != NULL);
    fputs("{\"do_lower_case\": false}", f);
    fclose(f);
    petl_tokenizer *tc = NULL;
    CHECK_OK(petl_tokenizer_load(dir, &tc, &err), &err);
    petl_tokenizer_get_opts(tc, &a);
    CHECK(!a.lowercase && !a.strip_accents && a.handle_chinese_chars && a.clean_text);
    petl_encoding e1 = {0}, e2 = {0};
    CHECK_OK(petl_tokenize(tc, "Hello", 5, NULL, 0, 0, &e1, &err), &err);
    CHECK_OK(petl_tokenize(tj, "Hello", 5, NULL, 0, 0, &e2, &err), &err);
    CHECK(e1.len != e2.len || memcmp(e1.ids, e2.ids, (size_t)e1.len * sizeof *e1.ids) != 0);
    petl_encoding_free(&e1);
    petl_encoding_free(&e2);
    petl_tokenizer_free(tc);
    unlink(link_j);
    unlink(link_c);
    rmdir(dir);
    petl_tokenizer_free(tj);
    petl_tokenizer_free(tv);
    petl_tokenizer_free(td);
}

/* ------------------------------------------------------------------------- refusals */

/* A small tokenizer.json with each part replaceable (NULL: the default part). */
static char *make_json(const char *normalizer, const char *pre, const char *model, const char *post,
                       const char *added, const char *extra) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"version\": \"1.0\", \"normalizer\": %s, \"pre_tokenizer\": %s, \"model\": %s, "
             "\"post_processor\": %s, \"added_tokens\": %s%s}",
             normalizer ? normalizer : "null", pre ? pre : "{\"type\": \"BertPreTokenizer\"}",
             model ? model
                   : "{\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": "
                     "{\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"a\": 3, \"##b\": 4}}",
             post ? post
                  : "{\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 1], \"sep\": "
                    "[\"[SEP]\", 2]}",
             added ? added : "[]", extra ? extra : "");
    return buf;
}

static void expect_refused(const char *json, const char *needle) {
    petl_tokenizer *t = NULL;
    petl_error e = {0};
    petl_status st = petl_tokenizer_from_json(json, strlen(json), "test.json", &t, &e);
    CHECKF(st == PETL_ERR_FORMAT && t == NULL, "status %d for %s", st, json);
    CHECKF(strstr(e.msg, "test.json") && strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg,
           needle);
}

static void test_refusals(void) {
    /* the base file is fine */
    char *ok = strdup(make_json(NULL, NULL, NULL, NULL, NULL, NULL)); /* make_json's is reused */
    CHECK(ok != NULL);
    petl_tokenizer *t = NULL;
    CHECK_OK(petl_tokenizer_from_json(ok, strlen(ok), "test.json", &t, &err), &err);
    petl_encoding enc = {0};
    CHECK_OK(petl_tokenize_offsets(t, "ab a x", 6, NULL, 0, 0, &enc, &err), &err);
    int32_t want[] = {1, 3, 4, 3, 0, 2}, want_off[] = {0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 0, 0};
    CHECK(enc.len == 6 && !memcmp(enc.ids, want, sizeof want) &&
          !memcmp(enc.offsets, want_off, sizeof want_off));
    CHECK(petl_tokenizer_pad_id(t) == 0); /* no pad token anywhere: 0 */
    petl_tokenizer_free(t);
    const char *padded = make_json(NULL, NULL, NULL, NULL, NULL, ", \"padding\": {\"pad_id\": 3}");
    CHECK_OK(petl_tokenizer_from_json(padded, strlen(padded), "test.json", &t, &err), &err);
    CHECK(petl_tokenizer_pad_id(t) == 3);
    petl_tokenizer_free(t);

    expect_refused("{", "invalid JSON");
    expect_refused("[]", "expected a JSON object");
    expect_refused("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}, "
                   "\"vocab\": {}}}",
                   "invalid JSON");
    expect_refused(make_json(NULL, NULL, NULL, NULL, NULL, ", \"version\": \"2.0\""),
                   "invalid JSON"); /* "version" twice */
    expect_refused("{\"version\": \"2.0\", \"model\": null}", "\"version\" must be \"1.0\"");
    expect_refused("{\"version\": \"1.0\"}", "\"model\" is missing");
    /* unsupported components, each named */
    expect_refused(make_json("{\"type\": \"NmtNormalizer\"}", NULL, NULL, NULL, NULL, NULL),
                   "normalizer \"NmtNormalizer\" is not supported");
    expect_refused(make_json("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, "
                             "{\"type\": \"Nmt\"}]}",
                             NULL, NULL, NULL, NULL, NULL),
                   "normalizer \"Nmt\" is not supported");
    expect_refused(
        make_json("{\"type\": \"Sequence\", \"normalizers\": {}}", NULL, NULL, NULL, NULL, NULL),
        "\"normalizers\" must be an array");
    expect_refused(
        make_json("{\"type\": \"Strip\", \"strip_left\": 1}", NULL, NULL, NULL, NULL, NULL),
        "\"strip_left\" must be true or false");
    /* Replace and Split patterns: a Regex the engines would read differently, or that does not
     * compile, is refused naming the component; Split needs all of its keys */
    static const char *const bad_regex[][2] = {
        {"\\\\w+", "the escape \\w is not supported"},
        {"(?i:ss)", "letters under (?i) that a ligature folds to"},
        {"(?i:\\u00e9)", "a non-ASCII character under (?i)"},
        {"a(?i)b", "(?i) is only supported where a group starts"},
        {"[a-z&&[^aeiou]]", "class intersection"},
        {"[[:alpha:]]", "nested class"},
        {"a{2}?", "{n}? and {,n}? mean other things"},
        {"a{2,3}+", "{n,m}+ means other things"},
        {"\\\\p{Greek}", "only general categories"},
        {"\\\\p{Cs}", "only general categories"},
        {"\\\\p{Lx}", "only general categories"},
        {"(?i:\\\\p{Lu})", "\\d or \\p under (?i)"},
        {"(?i)[\\\\d]", "\\d or \\p under (?i)"},
        {"(?<name>a)", "this kind of group"},
        {"(a", "an unclosed ("},
        {"a)", "an unmatched )"},
        {"(?<=a+)b", "does not compile"},
        {"\\\\1", "the escape \\1 is not supported"},
    };
    for (size_t k = 0; k < sizeof bad_regex / sizeof bad_regex[0]; k++) {
        char norm[256], pre[256];
        snprintf(norm, sizeof norm,
                 "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"%s\"}, \"content\": \" \"}",
                 bad_regex[k][0]);
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": "
                 "\"Isolated\", \"invert\": false}",
                 bad_regex[k][0]);
        expect_refused(make_json(norm, NULL, NULL, NULL, NULL, NULL), bad_regex[k][1]);
        expect_refused(make_json(norm, NULL, NULL, NULL, NULL, NULL), "normalizer \"Replace\"");
        expect_refused(make_json(NULL, pre, NULL, NULL, NULL, NULL), bad_regex[k][1]);
        expect_refused(make_json(NULL, pre, NULL, NULL, NULL, NULL), "pre_tokenizer \"Split\"");
    }
    expect_refused(make_json("{\"type\": \"Replace\", \"pattern\": {\"Glob\": \"*\"}, "
                             "\"content\": \" \"}",
                             NULL, NULL, NULL, NULL, NULL),
                   "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
    expect_refused(make_json("{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}}", NULL,
                             NULL, NULL, NULL, NULL),
                   "\"content\" is missing");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Split\", \"behavior\": \"Isolated\", \"invert\": "
                             "false}",
                             NULL, NULL, NULL, NULL),
                   "pre_tokenizer \"Split\": \"pattern\" must be");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                             "\"invert\": false}",
                             NULL, NULL, NULL, NULL),
                   "pre_tokenizer \"Split\": \"behavior\" is missing");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                             "\"behavior\": \"Removed\"}",
                             NULL, NULL, NULL, NULL),
                   "pre_tokenizer \"Split\": \"invert\" is missing");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                             "\"behavior\": \"Apart\", \"invert\": false}",
                             NULL, NULL, NULL, NULL),
                   "behavior \"Apart\" is unknown");
    /* a Split that works: a String pattern, each "a" merged with the piece before it */
    const char *split_ok = make_json(NULL,
                                     "{\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, "
                                     "\"behavior\": \"MergedWithPrevious\", \"invert\": false}",
                                     NULL, NULL, NULL, NULL);
    CHECK_OK(petl_tokenizer_from_json(split_ok, strlen(split_ok), "test.json", &t, &err), &err);
    CHECK_OK(petl_tokenize_offsets(t, "aba", 3, NULL, 0, 0, &enc, &err), &err);
    /* "a" | "ba": [CLS] a [UNK] [SEP] */
    int32_t want_split[] = {1, 3, 0, 2}, want_split_off[] = {0, 0, 0, 1, 1, 3, 0, 0};
    CHECK(enc.len == 4 && !memcmp(enc.ids, want_split, sizeof want_split) &&
          !memcmp(enc.offsets, want_split_off, sizeof want_split_off));
    petl_tokenizer_free(t);
    expect_refused(make_json(NULL, "{\"type\": \"Punctuation\", \"behavior\": \"Sideways\"}", NULL,
                             NULL, NULL, NULL),
                   "behavior \"Sideways\" is unknown");
    expect_refused(
        make_json(NULL, "{\"type\": \"Digits\", \"individual_digits\": 1}", NULL, NULL, NULL, NULL),
        "\"individual_digits\" must be true or false");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                             "\"Metaspace\", \"replacement\": \"_\"}, {\"type\": "
                             "\"WhitespaceSplit\"}]}",
                             NULL, NULL, NULL, NULL),
                   "Metaspace before another pre-tokenizer is not supported");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Metaspace\", \"replacement\": \"ab\", "
                             "\"prepend_scheme\": \"always\"}",
                             NULL, NULL, NULL, NULL),
                   "\"replacement\" must be one character");
    expect_refused(make_json(NULL,
                             "{\"type\": \"Metaspace\", \"replacement\": \"_\", "
                             "\"prepend_scheme\": \"sometimes\"}",
                             NULL, NULL, NULL, NULL),
                   "\"prepend_scheme\" must be always, first or never");
    expect_refused(
        make_json(NULL, NULL, "{\"type\": \"WordLevel\", \"vocab\": {}}", NULL, NULL, NULL),
        "model \"WordLevel\" is not supported");
    expect_refused(
        make_json(NULL, NULL, "{\"type\": \"Unigram\", \"vocab\": [[\"a\", 0]]}", NULL, NULL, NULL),
        "\"unk_id\" is missing");
    expect_refused(make_json(NULL, NULL,
                             "{\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"a\"]]}", NULL,
                             NULL, NULL),
                   "vocab[0] must be [piece, score]");
    /* BPE: what is refused in its options and merges */
    const char *bpe_vocab = "\"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"a\": 3, "
                            "\"b\": 4, \"ab\": 5}";
    char model[512];
    snprintf(model, sizeof model, "{\"type\": \"BPE\", \"dropout\": 0.1, %s, \"merges\": []}",
             bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL), "\"dropout\" is not supported");
    snprintf(model, sizeof model, "{\"type\": \"BPE\", %s, \"merges\": [\"a c\"]}", bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "merges[0]: \"c\" is not in the vocabulary");
    snprintf(model, sizeof model, "{\"type\": \"BPE\", %s, \"merges\": [\"b a\"]}", bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "merges[0]: \"ba\" is not in the vocabulary");
    snprintf(model, sizeof model, "{\"type\": \"BPE\", %s, \"merges\": [\"a b c\"]}", bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "merges[0] must be \"a b\" or [\"a\", \"b\"]");
    snprintf(model, sizeof model, "{\"type\": \"BPE\", %s, \"merges\": [[\"a\", 2]]}", bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "merges[0] must be \"a b\" or [\"a\", \"b\"]");
    snprintf(model, sizeof model,
             "{\"type\": \"BPE\", \"unk_token\": \"<unk>\", %s, \"merges\": []}", bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "unk_token \"<unk>\" is not in the vocabulary");
    snprintf(model, sizeof model,
             "{\"type\": \"BPE\", \"byte_fallback\": true, \"end_of_word_suffix\": \"</w>\", %s, "
             "\"merges\": []}",
             bpe_vocab);
    expect_refused(make_json(NULL, NULL, model, NULL, NULL, NULL),
                   "byte_fallback with a prefix or suffix is not supported");
    /* a BPE that works: both merge forms, "#version" skipped, the ByteLevel post-processor */
    snprintf(model, sizeof model,
             "{\"type\": \"BPE\", \"unk_token\": \"[UNK]\", %s, \"merges\": [\"#version: 0.2\", "
             "[\"a\", \"b\"]]}",
             bpe_vocab);
    char *bpe = strdup(make_json(NULL, NULL, model,
                                 "{\"type\": \"ByteLevel\", \"trim_offsets\": false}", NULL, NULL));
    CHECK(bpe != NULL);
    CHECK_OK(petl_tokenizer_from_json(bpe, strlen(bpe), "test.json", &t, &err), &err);
    CHECK_OK(petl_tokenize(t, "ab ba x", 7, NULL, 0, 0, &enc, &err), &err);
    int32_t want_bpe[] = {5, 4, 3, 0};
    CHECK(enc.len == 4 && !memcmp(enc.ids, want_bpe, sizeof want_bpe));
    petl_tokenizer_free(t);
    free(bpe);
    expect_refused(
        make_json(NULL, NULL, NULL, "{\"type\": \"Sequence\", \"processors\": []}", NULL, NULL),
        "post_processor \"Sequence\" is not supported");
    /* wrong types and missing fields */
    expect_refused(make_json("{\"type\": \"BertNormalizer\", \"clean_text\": true, "
                             "\"handle_chinese_chars\": true, \"strip_accents\": null, "
                             "\"lowercase\": \"yes\"}",
                             NULL, NULL, NULL, NULL, NULL),
                   "\"lowercase\" must be true or false");
    expect_refused(make_json("{\"type\": \"BertNormalizer\", \"handle_chinese_chars\": true, "
                             "\"strip_accents\": null, \"lowercase\": true}",
                             NULL, NULL, NULL, NULL, NULL),
                   "\"clean_text\" is missing");
    expect_refused(make_json("{\"type\": \"BertNormalizer\", \"clean_text\": true, "
                             "\"handle_chinese_chars\": true, \"strip_accents\": 1, "
                             "\"lowercase\": true}",
                             NULL, NULL, NULL, NULL, NULL),
                   "\"strip_accents\" must be true, false or null");
    expect_refused(make_json("\"BertNormalizer\"", NULL, NULL, NULL, NULL, NULL),
                   "\"normalizer\" must be an object or null");
    expect_refused(make_json("{\"clean_text\": true}", NULL, NULL, NULL, NULL, NULL),
                   "normalizer has no \"type\"");
    expect_refused(make_json(NULL, NULL, "{\"vocab\": {}}", NULL, NULL, NULL),
                   "model has no \"type\"");
    expect_refused(make_json(NULL, NULL,
                             "{\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 2}}", NULL,
                             NULL, NULL),
                   "without gaps");
    expect_refused(make_json(NULL, NULL,
                             "{\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": \"1\"}}",
                             NULL, NULL, NULL),
                   "must be an integer");
    expect_refused(make_json(NULL, NULL,
                             "{\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 0}}", NULL,
                             NULL, NULL),
                   "id 0 is given to");
    expect_refused(
        make_json(NULL, NULL, "{\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}", NULL, NULL, NULL),
        "unk_token \"[UNK]\" is not in the vocabulary");
    expect_refused(
        make_json(NULL, NULL, "{\"type\": \"WordPiece\", \"vocab\": []}", NULL, NULL, NULL),
        "\"vocab\" must be an object");
    expect_refused(make_json(NULL, NULL,
                             "{\"type\": \"WordPiece\", \"max_input_chars_per_word\": -1, "
                             "\"vocab\": {\"[UNK]\": 0}}",
                             NULL, NULL, NULL),
                   "\"max_input_chars_per_word\" must be an integer");
    expect_refused(make_json(NULL, NULL, NULL, NULL, "{}", NULL),
                   "\"added_tokens\" must be an array");
    expect_refused(make_json(NULL, NULL, NULL, NULL, "[{\"id\": 5}]", NULL),
                   "added_tokens[0]: \"content\" is missing");
    expect_refused(make_json(NULL, NULL, NULL, NULL,
                             "[{\"id\": 5, \"content\": \"x\", \"lstrip\": \"no\"}]", NULL),
                   "added_tokens[0]: \"lstrip\" must be true or false");
    expect_refused(make_json(NULL, NULL, NULL, NULL, "[{\"content\": \"x\"}]", NULL),
                   "added_tokens[0]: \"id\" is missing");
    expect_refused(make_json("{\"type\": \"BertNormalizer\", \"clean_text\": true, "
                             "\"handle_chinese_chars\": true, \"strip_accents\": null, "
                             "\"lowercase\": true}",
                             NULL, NULL, NULL,
                             "[{\"id\": 5, \"content\": \"\\u0007\", \"normalized\": true}]", NULL),
                   "is empty after the normalizer");
    expect_refused(make_json(NULL, NULL, NULL,
                             "{\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 9], \"sep\": "
                             "[\"[SEP]\", 2]}",
                             NULL, NULL),
                   "\"cls\": id 9 is outside the vocabulary");
    expect_refused(make_json(NULL, NULL, NULL,
                             "{\"type\": \"RobertaProcessing\", \"cls\": \"<s>\", \"sep\": "
                             "[\"</s>\", 2]}",
                             NULL, NULL),
                   "\"cls\" must be [token, id]");
    expect_refused(make_json(NULL, NULL, NULL,
                             "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": "
                             "{\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": "
                             "\"[X]\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {}}",
                             NULL, NULL),
                   "special token \"[X]\" has no \"ids\" in special_tokens");
    expect_refused(make_json(NULL, NULL, NULL,
                             "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": "
                             "{\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"Sequence\": "
                             "{\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}",
                             NULL, NULL),
                   "\"pair\" must hold sequence A and B once each");
    expect_refused(make_json(NULL, NULL, NULL,
                             "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": "
                             "{\"id\": \"C\", \"type_id\": 0}}], \"pair\": [], "
                             "\"special_tokens\": {}}",
                             NULL, NULL),
                   "sequence \"C\" must be A or B");
    expect_refused(make_json(NULL, NULL, NULL, NULL, NULL, ", \"padding\": {\"pad_id\": -1}"),
                   "\"pad_id\" must be an integer");
    expect_refused(make_json(NULL, NULL, NULL, NULL, NULL, ", \"padding\": {\"pad_id\": 5}"),
                   "\"pad_id\" must be an integer from 0 to 4");

    /* a file: load errors name it; petl_tokenizer_load takes tokenizer.json over vocab.txt */
    char dir[] = "/tmp/petl_tokjson_XXXXXX", path[4200], vpath[4200];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(vpath, sizeof vpath, "%s/vocab.txt", dir);
    FILE *f = fopen(vpath, "w");
    CHECK(f != NULL);
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", f);
    fclose(f);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(ok, f);
    fclose(f);
    CHECK_OK(petl_tokenizer_load(dir, &t, &err), &err);
    CHECK(petl_tokenizer_vocab_size(t) == 5 && petl_tokenizer_token_to_id(t, "##b") == 4);
    petl_tokenizer_free(t);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("{\"model\": 1}", f);
    fclose(f);
    CHECK(petl_tokenizer_load(dir, &t, &err) == PETL_ERR_FORMAT && t == NULL);
    CHECKF(strstr(err.msg, "tokenizer.json") && strstr(err.msg, "\"model\" must be"), "%s",
           err.msg);
    unlink(path);
    unlink(vpath);
    rmdir(dir);
    CHECK(petl_tokenizer_load_json("/nonexistent/tokenizer.json", &t, &err) == PETL_ERR_IO);
    CHECK(petl_tokenizer_from_json(NULL, 1, "x", &t, &err) == PETL_ERR_ARG);
    petl_encoding_free(&enc);
    free(ok);
}

/* Standard base64 of raw[0 .. n) into out (4 * ceil(n / 3) + 1 bytes). */
static void base64(const unsigned char *raw, size_t n, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < n ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? raw[i + 2] : 0);
        for (int k = 0; k < 4; k++)
            out[o++] = (size_t)k <= (n - i) ? abc[(v >> (18 - 6 * k)) & 63] : '=';
    }
    out[o] = '\0';
}

/* Precompiled on a hand-made charsmap ("a" -> "bc": SentencePiece's layout, a u32 size, the
 * double-array units, the strings), its refusals, and a broken trie met while tokenizing: an
 * error naming it, never a read outside the file's array. The real charsmap (nmt_nfkc) is in the
 * goldens (unigram-precompiled). */
static void test_precompiled(void) {
    uint32_t units[0x80] = {0};
    units[0x61] = 0x61 | 1u << 8 | 1u << 10; /* 'a', which has a leaf: its value 0x61 ^ 1 */
    units[0x60] = 0;                         /* the value: the strings' offset of "bc" */
    unsigned char raw[4 + sizeof units + 3];
    uint32_t size = sizeof units;
    for (size_t k = 0; k <= 0x80; k++)
        for (int b = 0; b < 4; b++)
            raw[4 * k + b] = (unsigned char)((k ? units[k - 1] : size) >> (8 * b));
    memcpy(raw + 4 + sizeof units, "bc", 3);
    char b64[1024], norm[1200];
    base64(raw, sizeof raw, b64);
    snprintf(norm, sizeof norm, "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"%s\"}",
             b64);
    const char *vocab =
        "{\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {\"[UNK]\": "
        "0, \"[CLS]\": 1, \"[SEP]\": 2, \"bc\": 3, \"x\": 4}}";
    const char *json = make_json(norm, NULL, vocab, NULL, NULL, NULL);
    petl_tokenizer *t = NULL;
    petl_encoding enc = {0};
    CHECK_OK(petl_tokenizer_from_json(json, strlen(json), "test.json", &t, &err), &err);
    CHECK_OK(petl_tokenize_offsets(t, "a x", 3, NULL, 0, 0, &enc, &err), &err);
    /* "bc" replaces "a": b takes a's span, c (inserted) the span of the character before it */
    int32_t want[] = {1, 3, 4, 2}, want_off[] = {0, 0, 0, 1, 2, 3, 0, 0};
    CHECKF(enc.len == 4 && !memcmp(enc.ids, want, sizeof want) &&
               !memcmp(enc.offsets, want_off, sizeof want_off),
           "%d tokens", enc.len);
    petl_tokenizer_free(t);

    /* a root whose children lie past the array's end */
    base64((const unsigned char *)"\4\0\0\0\0\4\0\0", 8, b64);
    snprintf(norm, sizeof norm, "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"%s\"}",
             b64);
    json = make_json(norm, NULL, vocab, NULL, NULL, NULL);
    CHECK_OK(petl_tokenizer_from_json(json, strlen(json), "test.json", &t, &err), &err);
    CHECK(petl_tokenize_offsets(t, "a", 1, NULL, 0, 0, &enc, &err) == PETL_ERR_FORMAT &&
          strstr(err.msg, "\"Precompiled\"") && strstr(err.msg, "trie is broken"));
    petl_tokenizer_free(t);

    static const struct {
        const char *b64, *needle;
    } bad[] = {{"abc", "not valid base64"},
               {"AAB=", "not valid base64"}, /* a stray bit under the padding */
               {"CAAAAAAAAAA=", "cut short"},
               {"AAAAAA==", "trie is empty"},
               {"BAAAAAAAAAD/", "not valid UTF-8"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(norm, sizeof norm, "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"%s\"}",
                 bad[i].b64);
        expect_refused(make_json(norm, NULL, vocab, NULL, NULL, NULL), bad[i].needle);
    }
    expect_refused(make_json("{\"type\": \"Precompiled\"}", NULL, vocab, NULL, NULL, NULL),
                   "\"precompiled_charsmap\" must be a string");
    petl_encoding_free(&enc);
}

/* \p{..} and \d in their plain, negated and class forms on characters that Unicode 15 and 16
 * added (which PCRE2's older tables do not know): which characters each matches, as the
 * reference matched them (a Split on the pattern, invert, Removed, over the same text). */
static void test_properties(void) {
    static const char text[] = "aA1 \u0897\u0CF3\u1C89\u1C8A\uA7CB\U00011BF0\U00016D70\U00010D40"
                               "\U00010D4A\u0378\uE000\u00B2\u180E";
    static const char *const cases[][2] = {
        {"\\p{L}", "11000011100010000"},   {"\\P{L}", "00111100011101111"},
        {"\\p{^L}", "00111100011101111"},  {"[^\\p{L}]", "00111100011101111"},
        {"[\\P{L}]", "00111100011101111"}, {"[x\\p{^L}]", "00111100011101111"},
        {"\\d", "00100000011100000"},      {"\\D", "11011111100011111"},
        {"[\\D]", "11011111100011111"},    {"[^\\d]", "11011111100011111"},
        {"\\p{M}", "00001100000000000"},   {"\\p{Cn}", "00000000000001000"},
        {"\\P{Cn}", "11111111111110111"},  {"\\p{N}", "00100000011100010"},
        {"\\p{Lu}", "01000010100000000"},  {"[^\\s\\p{L}\\p{N}]", "00001100000001101"},
        {"\\s", "00010000000000000"},
    };
    int32_t cp[32];
    size_t n = 0;
    for (size_t i = 0; text[i]; n++)
        i += petl_utf8_decode((const unsigned char *)text + i, sizeof text - 1 - i, &cp[n]);
    petl_tok_regex_scratch s = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        void *re = NULL;
        CHECK_OK(petl_tok_regex_compile(cases[k][0], false, "test", "Split", &re, &err), &err);
        CHECK_OK(petl_tok_regex_find(re, cp, n, &s, &err), &err);
        char got[32];
        memset(got, '0', n);
        got[n] = '\0';
        for (size_t m = 0; m < s.n_m; m++)
            for (size_t i = s.m[2 * m]; i < s.m[2 * m + 1]; i++)
                got[i] = '1';
        CHECKF(strcmp(got, cases[k][1]) == 0, "%s matched %s, the reference %s", cases[k][0], got,
               cases[k][1]);
        petl_tok_regex_free(re);
    }
    petl_tok_regex_scratch_free(&s);
}

/* A match that needs more than the JIT's stack (a group repeated once per character) is the
 * interpreter's: the same one match, no error. */
static void test_jit_stack(void) {
    enum { N = 200000 };
    int32_t *cp = malloc(N * sizeof *cp);
    CHECK(cp != NULL);
    for (size_t i = 0; i < N; i++)
        cp[i] = 'a';
    void *re = NULL;
    petl_tok_regex_scratch s = {0};
    CHECK_OK(petl_tok_regex_compile("(?:a|b(?=c))+", false, "test", "Split", &re, &err), &err);
    CHECK_OK(petl_tok_regex_find(re, cp, N, &s, &err), &err);
    CHECK(s.n_m == 1 && s.m[0] == 0 && s.m[1] == N);
    petl_tok_regex_free(re);
    petl_tok_regex_scratch_free(&s);
    free(cp);
}

int main(void) {
    test_refusals();
    test_properties();
    test_jit_stack();
    test_precompiled();
    test_same_as_vocab();
    test_goldens();
    CHECK_DONE("test_tokenizer_json");
}
