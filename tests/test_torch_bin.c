/* PyTorch .bin reader (src/torch_bin.c): every case of tests/golden/torchbin/manifest.tsv
 * (scripts/reference/gen-torch-bin-cases.py) gets its declared verdict: the files torch loads
 * give, bit for bit, the tensors safetensors holds for them; the malicious and broken ones are
 * refused with a message naming the global or the problem, and nothing they name runs. A model
 * folder with only pytorch_model.bin gives the same forward as its safetensors twin. */
#include "check.h"
#include "petl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN PETL_TEST_SRC_DIR "/golden"
/* What err_os_system.tbin and err_inst.tbin would create if anything ran them. */
#define PWNED "/tmp/petl-torchbin-pwned"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The same tensors, names, dtypes, shapes and bytes in both files. */
static void check_same(const char *what, const petl_safetensors *bin, const petl_safetensors *st) {
    CHECKF(petl_st_count(bin) == petl_st_count(st), "%s: %zu tensors vs %zu", what,
           petl_st_count(bin), petl_st_count(st));
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const petl_st_tensor *s = petl_st_at(st, i), *b = petl_st_find(bin, s->name);
        CHECKF(b != NULL, "%s: no tensor '%s'", what, s->name);
        CHECKF(b->dtype == s->dtype && b->rank == s->rank && b->numel == s->numel,
               "%s: '%s': %s rank %d vs %s rank %d", what, s->name, petl_dtype_name(b->dtype),
               b->rank, petl_dtype_name(s->dtype), s->rank);
        for (int d = 0; d < s->rank; d++)
            CHECK(b->shape[d] == s->shape[d]);
        size_t nbytes = (size_t)s->numel * petl_dtype_size(s->dtype);
        CHECK(b->end - b->begin == nbytes);
        CHECKF(nbytes == 0 || memcmp(b->data, s->data, nbytes) == 0, "%s: '%s' differs", what,
               s->name);
        if (s->dtype == PETL_DT_F32 || s->dtype == PETL_DT_F16 || s->dtype == PETL_DT_BF16) {
            float *x = malloc((nbytes + 1) * sizeof *x), *y = malloc((nbytes + 1) * sizeof *y);
            petl_error err;
            CHECK(x && y);
            CHECK_OK(petl_st_read_f32(b, x, &err), &err);
            CHECK_OK(petl_st_read_f32(s, y, &err), &err);
            CHECK(memcmp(x, y, (size_t)s->numel * sizeof *x) == 0);
            free(x);
            free(y);
        }
    }
}

static void run_case(const char *file, const char *expect, const char *detail) {
    char path[1024];
    snprintf(path, sizeof path, "%s/torchbin/%s", GOLDEN, file);
    petl_safetensors *bin = (petl_safetensors *)1;
    petl_error err = {0};
    petl_status s = petl_torch_open(path, &bin, &err);
    if (strcmp(expect, "ok") != 0) {
        CHECKF(s != PETL_OK, "%s: accepted, want refused (%s)", file, detail);
        CHECK(bin == NULL);
        CHECKF(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", file,
               err.msg);
        CHECKF(strstr(err.msg, detail) != NULL, "%s: message lacks '%s': %s", file, detail,
               err.msg);
        printf("  %-28s refused: %s\n", file, err.msg + strlen(path) + 2);
        return;
    }
    CHECK_OK(s, &err);
    char stpath[1024];
    snprintf(stpath, sizeof stpath, "%s/%s", GOLDEN, detail);
    petl_safetensors *st = NULL;
    CHECK_OK(petl_st_open(stpath, &st, &err), &err);
    check_same(file, bin, st);
    CHECK(petl_st_meta_count(bin) == 0);
    printf("  %-28s %zu tensors, bit-identical to %s\n", file, petl_st_count(bin), detail);
    petl_st_close(bin);
    petl_st_close(st);
}

static void test_manifest(void) {
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/torchbin/manifest.tsv", GOLDEN);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    int n = 0, ok = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *file = strtok(line, "\t"), *expect = strtok(NULL, "\t"), *detail = strtok(NULL, "\t");
        CHECK(file && expect && detail);
        run_case(file, expect, detail);
        n++;
        ok += !strcmp(expect, "ok");
    }
    fclose(f);
    CHECK(n >= 20 && ok >= 5);
    CHECKF(access(PWNED, F_OK) != 0, "%s exists: a malicious pickle ran", PWNED);
    printf("manifest: %d cases (%d read, %d refused)\n", n, ok, n - ok);
}

/* Every prefix of a good file is refused (never read past its end: ASan), and the whole
 * buffer parses in memory as from the file. */
static void test_truncations(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/torchbin/ok_state.tbin", GOLDEN);
    size_t len;
    char *buf = read_all(path, &len);
    petl_safetensors *st = NULL;
    petl_error err;
    for (size_t n = 0; n < len; n++) {
        char *cut = malloc(n + 1);
        CHECK(cut);
        memcpy(cut, buf, n);
        CHECKF(petl_torch_parse(cut, n, "cut", &st, &err) != PETL_OK, "prefix %zu accepted", n);
        CHECK(st == NULL && !strncmp(err.msg, "cut", 3));
        free(cut);
    }
    CHECK_OK(petl_torch_parse(buf, len, "mem", &st, &err), &err);
    CHECK(petl_st_count(st) == 13 && petl_st_find(st, "f16.second")->numel == 5);
    CHECK(!strcmp(petl_st_find(st, "param")->file, "mem"));
    petl_st_close(st);
    free(buf);
    CHECK(petl_torch_open(NULL, &st, &err) == PETL_ERR_ARG);
    CHECK(petl_torch_parse(NULL, 4, "x", &st, &err) == PETL_ERR_ARG);
    CHECK(petl_torch_open("/nonexistent/pytorch_model.bin", &st, &err) == PETL_ERR_IO);
    printf("truncations: every one of %zu prefixes refused\n", len);
}

/* ------------------------------------------------------------------- model folder fallback */

static char dirs[4][64];

static void link_into(const char *dir, const char *src, const char *name) {
    char s[1024], d[1024];
    snprintf(s, sizeof s, "%s/%s", GOLDEN, src);
    snprintf(d, sizeof d, "%s/%s", dir, name);
    CHECK(symlink(s, d) == 0);
}

static void remove_dir(const char *dir) {
    const char *names[] = {"config.json", "model.safetensors", "pytorch_model.bin"};
    char p[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    CHECK(rmdir(dir) == 0);
}

/* last_hidden of a fixed batch through model dir. */
static float *forward(const char *dir, size_t *n) {
    petl_error err;
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(dir, &m, &err), &err);
    enum { B = 2, T = 7 };
    const int32_t ids[B * T] = {0, 5, 17, 33, 60, 2, 1, 0, 9, 8, 7, 2, 1, 1};
    const int32_t types[B * T] = {0};
    const int lens[B] = {6, 5};
    petl_ctx *ctx = NULL;
    CHECK_OK(petl_ctx_new(m, B, T, &ctx, &err), &err);
    *n = (size_t)B * T * (size_t)petl_model_config(m)->hidden_size;
    float *out = malloc(*n * sizeof *out);
    CHECK(out);
    CHECK_OK(petl_encode(ctx, &(petl_batch){B, T, ids, types, lens}, out, NULL, NULL, NULL, &err),
             &err);
    petl_ctx_free(ctx);
    petl_model_free(m);
    return out;
}

static void test_model_folder(void) {
    for (int i = 0; i < 4; i++) {
        snprintf(dirs[i], sizeof dirs[i], "/tmp/petl-torchbin-XXXXXX");
        CHECK(mkdtemp(dirs[i]) != NULL);
        link_into(dirs[i], "tiny-roberta/config.json", "config.json");
    }
    link_into(dirs[0], "tiny-roberta/model.st", "model.safetensors");
    link_into(dirs[1], "torchbin/tiny-roberta.tbin", "pytorch_model.bin");
    /* both: safetensors is preferred (the .bin beside it would be refused) */
    link_into(dirs[2], "tiny-roberta/model.st", "model.safetensors");
    link_into(dirs[2], "torchbin/err_os_system.tbin", "pytorch_model.bin");
    size_t n0, n1, n2;
    float *h0 = forward(dirs[0], &n0), *h1 = forward(dirs[1], &n1), *h2 = forward(dirs[2], &n2);
    CHECK(n0 == n1 && n0 == n2);
    CHECK(memcmp(h0, h1, n0 * sizeof *h0) == 0 && memcmp(h0, h2, n0 * sizeof *h0) == 0);
    printf("tiny-roberta from pytorch_model.bin: forward bit-identical to model.safetensors "
           "(%zu floats)\n",
           n0);
    free(h0);
    free(h1);
    free(h2);
    petl_model *m = NULL;
    petl_error err;
    CHECK(petl_model_load(dirs[3], &m, &err) == PETL_ERR_IO && m == NULL);
    CHECKF(strstr(err.msg, "model.safetensors") && strstr(err.msg, "pytorch_model.bin"),
           "message does not name both files: %s", err.msg);
    /* a refused .bin is reported under its own name */
    link_into(dirs[3], "torchbin/err_nested_global.tbin", "pytorch_model.bin");
    CHECK(petl_model_load(dirs[3], &m, &err) == PETL_ERR_FORMAT);
    CHECKF(strstr(err.msg, "pytorch_model.bin") && strstr(err.msg, "global posix.system"), "%s",
           err.msg);
    for (int i = 0; i < 4; i++)
        remove_dir(dirs[i]);
}

int main(void) {
    unlink(PWNED);
    test_manifest();
    test_truncations();
    test_model_folder();
    CHECK(access(PWNED, F_OK) != 0);
    CHECK_DONE("test_torch_bin");
}
