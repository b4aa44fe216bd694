/* Tokenizer against the reference (BertTokenizerFast, tokenizers 0.22.2): the golden files of
 * scripts/reference/gen-tokenizer-golden.py (hard cases with full ids; a hash per row of every
 * GLUE sentence of five tasks; a hash per block of 256 code points), plus errors (invalid
 * UTF-8, missing special tokens), custom vocabularies and reuse of an encoding. The goldens run
 * twice: on the model folder as loaded (its tokenizer.json) and on its vocab.txt alone. */
#include "check.h"
#include "petl.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static petl_tokenizer *tok;
static petl_error err;
/* The golden files of the tokenizer under test: tests/golden (MiniLM's) or a subfolder of it
 * (all-mpnet-base-v2's: tokenizer-mpnet), as scripts/reference/gen-tokenizer-golden.py --out
 * writes them. */
static const char *golden_dir = "golden";

/* ------------------------------------------------------------------------ helpers */

/* The golden files' hash: 64-bit FNV-1a over the ids, then the type ids, as little-endian
 * int32. */
static uint64_t enc_hash(const petl_encoding *e) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int pass = 0; pass < 2; pass++) {
        const int32_t *v = pass ? e->type_ids : e->ids;
        for (int i = 0; i < e->len; i++) {
            uint32_t u = (uint32_t)v[i];
            for (int b = 0; b < 4; b++) {
                h ^= (u >> (8 * b)) & 0xFF;
                h *= 0x100000001b3ull;
            }
        }
    }
    return h;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
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

static void print_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------------------- hard cases */

static bool case_matches(json_t *c, petl_encoding *enc, size_t lineno) {
    json_t *ja = json_object_get(c, "text_a"), *jb = json_object_get(c, "text_b");
    json_t *ids = json_object_get(c, "input_ids"), *types = json_object_get(c, "token_type_ids");
    CHECKF(json_is_string(ja) && json_is_array(ids) && json_is_array(types), "line %zu", lineno);
    int max_len = (int)json_integer_value(json_object_get(c, "max_len"));
    CHECK_OK(petl_tokenize(tok, json_string_value(ja), json_string_length(ja),
                           jb ? json_string_value(jb) : NULL, jb ? json_string_length(jb) : 0,
                           max_len, enc, &err),
             &err);
    bool ok =
        (size_t)enc->len == json_array_size(ids) && json_array_size(types) == json_array_size(ids);
    for (int i = 0; ok && i < enc->len; i++)
        ok = enc->ids[i] == json_integer_value(json_array_get(ids, (size_t)i)) &&
             enc->type_ids[i] == json_integer_value(json_array_get(types, (size_t)i));
    if (!ok) {
        char *dump = json_dumps(c, JSON_ENSURE_ASCII | JSON_COMPACT);
        fprintf(stderr, "tokenizer_cases.jsonl line %zu differs: %.300s\n", lineno, dump);
        free(dump);
        print_ids("got ids", enc->ids, (size_t)enc->len);
        print_ids("got types", enc->type_ids, (size_t)enc->len);
    }
    return ok;
}

static void test_cases(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/tokenizer_cases.jsonl", TEST_SRC_DIR, golden_dir);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0, lineno = 0, bad = 0;
    petl_encoding enc = {0};
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *c = json_loads(line, JSON_ALLOW_NUL, &je);
        CHECKF(c != NULL, "%s:%zu: %s", path, lineno, je.text);
        if (!case_matches(c, &enc, lineno)) bad++;
        json_decref(c);
    }
    free(line);
    fclose(f);
    petl_encoding_free(&enc);
    printf("hard cases: %zu checked, %zu mismatches\n", lineno, bad);
    CHECK(lineno >= 200);
    CHECK(bad == 0);
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

/* Every scalar value in blocks of 256, each as "<c> x<c>y " (the generator builds the same
 * text): any divergence in dropping, splitting or mapping a character that can change ids. */
static void test_codepoints(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/tokenizer_codepoints.tsv", TEST_SRC_DIR, golden_dir);
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
        CHECK_OK(petl_tokenize(tok, text, len, NULL, 0, 0, &enc, &err), &err);
        char got[32];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)enc_hash(&enc));
        if (strcmp(got, hex) != 0 && bad++ < 10)
            fprintf(stderr, "code points U+%04X..U+%04X: hash %s, expected %s\n", lo, lo + 255, got,
                    hex);
        n++;
    }
    fclose(f);
    free(text);
    petl_encoding_free(&enc);
    printf("code point blocks: %zu checked, %zu mismatches\n", n, bad);
    CHECK(n == 4344);
    CHECK(bad == 0);
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

typedef struct {
    char task[16], split[8];
    long row;
    char hash[17];
} golden_row;

static golden_row *read_glue_golden(size_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/tokenizer_glue.tsv", TEST_SRC_DIR, golden_dir);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 17;
    golden_row *g = malloc(cap * sizeof *g);
    CHECK(g != NULL);
    *n = 0;
    while (*n < cap &&
           fscanf(f, "%15s %7s %ld %16s", g[*n].task, g[*n].split, &g[*n].row, g[*n].hash) == 4)
        (*n)++;
    fclose(f);
    return g;
}

/* Checks one GLUE file against the golden rows starting at *gi; returns the mismatches. */
static size_t check_glue_file(const glue_task *t, const char *split, const golden_row *g, size_t ng,
                              size_t *gi, petl_encoding *enc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/glue/%s/%s.tsv", test_data_dir(), t->task, split);
    size_t len;
    char *buf = read_all(path, &len);
    CHECKF(buf != NULL, "cannot read %s", path);
    char *p = buf;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 byte-order mark */
    long row = t->header ? -1 : 0;
    size_t bad = 0;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (row >= 0) {
            char *fld[16];
            int nf = split_tabs(p, fld, 16);
            int need = (t->col_b > t->col_a ? t->col_b : t->col_a) + 1;
            CHECKF(nf >= need, "%s: row %ld has %d fields", path, row, nf);
            const char *a = fld[t->col_a], *b = t->col_b >= 0 ? fld[t->col_b] : NULL;
            CHECK_OK(petl_tokenize(tok, a, strlen(a), b, b ? strlen(b) : 0, 128, enc, &err), &err);
            CHECKF(*gi < ng && !strcmp(g[*gi].task, t->task) && !strcmp(g[*gi].split, split) &&
                       g[*gi].row == row,
                   "golden file out of step at %s %s row %ld", t->task, split, row);
            char got[32];
            snprintf(got, sizeof got, "%016llx", (unsigned long long)enc_hash(enc));
            if (strcmp(got, g[*gi].hash) != 0 && bad++ < 10) {
                fprintf(stderr, "GLUE %s %s row %ld differs:\n  a: %s\n  b: %s\n", t->task, split,
                        row, a, b ? b : "(none)");
                print_ids("got ids", enc->ids, (size_t)enc->len);
            }
            (*gi)++;
        }
        row++;
        if (!nl) break;
        p = nl + 1;
    }
    free(buf);
    return bad;
}

static void test_glue(void) {
    size_t ng, gi = 0, bad = 0;
    golden_row *g = read_glue_golden(&ng);
    petl_encoding enc = {0};
    for (size_t i = 0; i < sizeof TASKS / sizeof TASKS[0]; i++) {
        bad += check_glue_file(&TASKS[i], "train", g, ng, &gi, &enc);
        bad += check_glue_file(&TASKS[i], "dev", g, ng, &gi, &enc);
    }
    printf("GLUE rows: %zu checked, %zu mismatches\n", gi, bad);
    CHECK(gi == ng);
    CHECK(ng == 91907);
    CHECK(bad == 0);
    petl_encoding_free(&enc);
    free(g);
}

/* ---------------------------------------------------------------------- error paths */

static void expect_utf8_error(const char *a, size_t la, const char *b, size_t lb,
                              const char *needle) {
    petl_encoding enc = {0};
    petl_error e = {0};
    petl_status st = petl_tokenize(tok, a, la, b, lb, 128, &enc, &e);
    CHECKF(st == PETL_ERR_UTF8, "status %d for %s", st, needle);
    CHECKF(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    petl_encoding_free(&enc);
}

static void test_invalid_utf8(void) {
    expect_utf8_error("\xff", 1, NULL, 0, "text_a: invalid UTF-8 at byte offset 0");
    expect_utf8_error("abc\xc3", 4, NULL, 0, "offset 3");          /* truncated */
    expect_utf8_error("ab\xc0\xaf", 4, NULL, 0, "offset 2");       /* overlong '/' */
    expect_utf8_error("a\xe0\x80\xaf", 4, NULL, 0, "offset 1");    /* overlong, 3 bytes */
    expect_utf8_error("x\xed\xa0\x80y", 5, NULL, 0, "offset 1");   /* surrogate U+D800 */
    expect_utf8_error("\xf4\x90\x80\x80", 4, NULL, 0, "offset 0"); /* above U+10FFFF */
    expect_utf8_error("caf\xc3\xa9\x80", 6, NULL, 0, "offset 5");  /* stray continuation */
    expect_utf8_error("ok", 2, "fine\xe2\x82", 6, "text_b: invalid UTF-8 at byte offset 4");
    /* A NUL byte is valid UTF-8 (and dropped by clean_text). */
    petl_encoding enc = {0};
    CHECK_OK(petl_tokenize(tok, "a\0b", 3, NULL, 0, 128, &enc, &err), &err);
    CHECK(enc.len == 3); /* "ab": the NUL is dropped before the split */
    petl_encoding_free(&enc);
}

static const char *tmp_dir(void) {
    static char dir[] = "/tmp/petl_tok_XXXXXX";
    static bool made;
    if (!made) CHECK(mkdtemp(dir) != NULL);
    made = true;
    return dir;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void test_missing_specials(void) {
    petl_tokenizer *t = NULL;
    petl_error e = {0};
    const char *v = "[PAD]\n[UNK]\n[CLS]\nhello\n";
    CHECK(petl_tokenizer_from_vocab(v, strlen(v), "my-vocab", NULL, &t, &e) == PETL_ERR_FORMAT);
    CHECK(t == NULL);
    CHECKF(strstr(e.msg, "my-vocab") && strstr(e.msg, "[SEP]"), "%s", e.msg);

    const char *dir = tmp_dir();
    write_file(dir, "vocab.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n");
    CHECK(petl_tokenizer_load(dir, &t, &e) == PETL_ERR_FORMAT);
    CHECKF(strstr(e.msg, "vocab.txt") && strstr(e.msg, "[UNK]"), "%s", e.msg);
    remove_file(dir, "vocab.txt");
    CHECK(petl_tokenizer_load(dir, &t, &e) == PETL_ERR_IO);
    CHECKF(strstr(e.msg, "vocab.txt") != NULL, "%s", e.msg);
    CHECK(petl_tokenizer_from_vocab("", 0, "empty", NULL, &t, &e) == PETL_ERR_FORMAT);
    CHECK(petl_tokenizer_from_vocab("[PAD]\n\xff\n", 8, "bad", NULL, &t, &e) == PETL_ERR_FORMAT);
    CHECKF(strstr(e.msg, "line 2") != NULL, "%s", e.msg);
}

/* ------------------------------------------------------------------ custom vocabularies */

static void expect_ids(const petl_tokenizer *t, const char *a, const char *b, int max_len,
                       const int32_t *want, int n) {
    petl_encoding enc = {0};
    CHECK_OK(petl_tokenize(t, a, strlen(a), b, b ? strlen(b) : 0, max_len, &enc, &err), &err);
    bool ok = enc.len == n;
    for (int i = 0; ok && i < n; i++)
        ok = enc.ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "'%s' / '%s':\n", a, b ? b : "");
        print_ids("got", enc.ids, (size_t)enc.len);
        print_ids("want", want, (size_t)n);
    }
    CHECK(ok);
    petl_encoding_free(&enc);
}

static void test_custom_vocab(void) {
    /* CRLF and trailing blanks are trimmed; the duplicate "want" keeps the later id (9), as
     * the reference's HashMap insert does. Ids never come from hard-coded values. */
    const char *v =
        "[UNK]\r\n[SEP]  \n[PAD]\n[CLS]\t\nun\n##want\nwant\n##ed\n[MASK]\nwant\nABC\nabc";
    petl_tokenizer *t = NULL;
    CHECK_OK(petl_tokenizer_from_vocab(v, strlen(v), "custom", NULL, &t, &err), &err);
    CHECK(petl_tokenizer_vocab_size(t) == 12);
    CHECK(petl_tokenizer_pad_id(t) == 2);
    CHECK(petl_tokenizer_token_to_id(t, "[SEP]") == 1);
    CHECK(petl_tokenizer_token_to_id(t, "want") == 9);
    CHECK(petl_tokenizer_token_to_id(t, "nope") == -1);
    CHECK(strcmp(petl_tokenizer_id_to_token(t, 3), "[CLS]") == 0);
    CHECK(petl_tokenizer_id_to_token(t, 12) == NULL);
    CHECK(petl_tokenizer_id_to_token(t, -1) == NULL);
    expect_ids(t, "unwanted want", NULL, 0, (const int32_t[]){3, 4, 5, 7, 9, 1}, 6);
    expect_ids(t, "unwantedx", NULL, 0, (const int32_t[]){3, 0, 1}, 3);
    expect_ids(t, "ABC", NULL, 0, (const int32_t[]){3, 11, 1}, 3);
    expect_ids(t, "x[MASK]", "[PAD]", 0, (const int32_t[]){3, 0, 8, 1, 2, 1}, 6);
    petl_tokenizer_free(t);

    petl_tokenizer_opts o;
    petl_tokenizer_opts_default(&o);
    o.lowercase = false;
    CHECK_OK(petl_tokenizer_from_vocab(v, strlen(v), "custom", &o, &t, &err), &err);
    expect_ids(t, "ABC abc", NULL, 0, (const int32_t[]){3, 10, 11, 1}, 4);
    petl_tokenizer_free(t);

    /* tokenizer_config.json is read when present. */
    const char *dir = tmp_dir();
    write_file(dir, "vocab.txt", v);
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": false, \"strip_accents\": null}");
    CHECK_OK(petl_tokenizer_load(dir, &t, &err), &err);
    expect_ids(t, "ABC", NULL, 0, (const int32_t[]){3, 10, 1}, 3);
    petl_tokenizer_free(t);
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": 3}");
    CHECK(petl_tokenizer_load(dir, &t, &err) == PETL_ERR_FORMAT);
    CHECKF(strstr(err.msg, "tokenizer_config.json") && strstr(err.msg, "do_lower_case"), "%s",
           err.msg);
    write_file(dir, "tokenizer_config.json", "{not json");
    CHECK(petl_tokenizer_load(dir, &t, &err) == PETL_ERR_FORMAT);
    CHECKF(strstr(err.msg, "tokenizer_config.json") != NULL, "%s", err.msg);
    remove_file(dir, "tokenizer_config.json");
    remove_file(dir, "vocab.txt");
    rmdir(dir);
    petl_tokenizer_free(NULL);
}

/* ------------------------------------------------------------------------- reuse etc. */

static void test_reuse(void) {
    petl_encoding enc = {0}, fresh = {0};
    size_t n = 20000;
    char *big = malloc(n * 2);
    CHECK(big != NULL);
    for (size_t i = 0; i < n; i++)
        big[2 * i] = 'a' + (char)(i % 26), big[2 * i + 1] = ' ';
    CHECK_OK(petl_tokenize(tok, big, 2 * n, NULL, 0, 0, &enc, &err), &err);
    CHECK(enc.len == (int)n + 2);
    int cap = enc.cap;
    int32_t *ids = enc.ids;
    CHECK_OK(petl_tokenize(tok, big, 2 * n, "x y", 3, 512, &enc, &err), &err);
    CHECK(enc.len == 512 && enc.type_ids[511] == 1 && enc.type_ids[508] == 0);
    /* A short text after a long one: same buffers, same result as a fresh encoding. */
    CHECK_OK(petl_tokenize(tok, "hello world", 11, "b", 1, 128, &enc, &err), &err);
    CHECK_OK(petl_tokenize(tok, "hello world", 11, "b", 1, 128, &fresh, &err), &err);
    CHECK(enc.cap == cap && enc.ids == ids);
    CHECK(enc.len == fresh.len && enc.len == 6);
    CHECK(memcmp(enc.ids, fresh.ids, (size_t)enc.len * sizeof *enc.ids) == 0);
    CHECK(memcmp(enc.type_ids, fresh.type_ids, (size_t)enc.len * sizeof *enc.ids) == 0);
    petl_encoding_free(&enc);
    petl_encoding_free(&enc); /* twice is harmless */
    petl_encoding_free(&fresh);
    petl_encoding_free(NULL);
    free(big);
    CHECK(petl_tokenize(tok, NULL, 1, NULL, 0, 0, &enc, &err) == PETL_ERR_ARG);
    CHECK(petl_tokenize(NULL, "a", 1, NULL, 0, 0, &enc, &err) == PETL_ERR_ARG);
}

/* The model folder's vocab.txt (+ tokenizer_config.json) alone, in a folder of links: the
 * vocab.txt path, even where the model folder has a tokenizer.json. */
static petl_tokenizer *load_vocab_only(void) {
    static char dir[] = "/tmp/petl_tokv_XXXXXX";
    char src[4096], dst[4200];
    CHECK(mkdtemp(dir) != NULL);
    const char *names[] = {"vocab.txt", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", test_model_dir(), names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        if (access(src, F_OK) == 0) CHECK(symlink(src, dst) == 0);
    }
    petl_tokenizer *t = NULL;
    CHECK_OK(petl_tokenizer_load(dir, &t, &err), &err);
    for (int i = 0; i < 2; i++) {
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        unlink(dst);
    }
    rmdir(dir);
    return t;
}

int main(void) {
    /* Twice: the model folder as petl_tokenizer_load sees it (its tokenizer.json when there),
     * then its vocab.txt alone. Both must give the reference's ids. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            CHECK_OK(petl_tokenizer_load(test_model_dir(), &tok, &err), &err);
        else
            tok = load_vocab_only();
        printf("%s:\n", pass == 0 ? "model folder" : "vocab.txt alone");
        CHECK(petl_tokenizer_vocab_size(tok) == 30522);
        CHECK(petl_tokenizer_token_to_id(tok, "[CLS]") == 101);
        CHECK(petl_tokenizer_pad_id(tok) == 0);
        test_invalid_utf8();
        test_reuse();
        test_cases();
        test_codepoints();
        test_glue();
        petl_tokenizer_free(tok);
    }
    /* all-mpnet-base-v2's tokenizer.json (BERT's WordPiece in RoBERTa's template, type ids 0)
     * against transformers' MPNetTokenizerFast on the same cases, code points and GLUE rows. */
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/tokenizer.json", test_mpnet_dir());
    if (access(mp, R_OK) == 0) {
        printf("all-mpnet-base-v2 tokenizer.json:\n");
        golden_dir = "golden/tokenizer-mpnet";
        CHECK_OK(petl_tokenizer_load(test_mpnet_dir(), &tok, &err), &err);
        CHECK(petl_tokenizer_vocab_size(tok) == 30527);
        CHECK(petl_tokenizer_token_to_id(tok, "<s>") == 0 && petl_tokenizer_pad_id(tok) == 1);
        test_cases();
        test_codepoints();
        test_glue();
        petl_tokenizer_free(tok);
        golden_dir = "golden";
    } else {
        test_skip("model", "no %s (scripts/fetch-model all-mpnet-base-v2)", mp);
    }
    test_missing_specials();
    test_custom_vocab();
    CHECK_DONE("test_tokenizer");
}
