/* safetensors reader and writer: malformed files built here are refused with a message that
 * names the file and the detail; every verdict of the reference reader on the crafted files
 * in tests/golden/safetensors/ is matched; written files round-trip; the real model opens. */
#include "check.h"
#include "petl.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/petl-test-st-XXXXXX";

/* Writes an 8-byte length (n, or the header's length when n is UINT64_MAX), the header and
 * dlen bytes of data to tmpdir/name; returns the path (static buffer). */
static const char *write_case(const char *name, uint64_t n, const char *header, size_t hlen,
                              const void *data, size_t dlen) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (n == UINT64_MAX) n = hlen;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(n >> (8 * i));
    CHECK(fwrite(len8, 1, 8, f) == 8);
    CHECK(fwrite(header, 1, hlen, f) == hlen);
    if (dlen) CHECK(fwrite(data, 1, dlen, f) == dlen);
    CHECK(fclose(f) == 0);
    return path;
}

/* Opens path and checks it is refused with code and a message naming the file and detail. */
static void expect_refused(const char *path, petl_status code, const char *detail) {
    petl_safetensors *st = (petl_safetensors *)1;
    petl_error err = {0};
    petl_status s = petl_st_open(path, &st, &err);
    CHECKF(s == code, "%s: got %s (%s), want %s", path, petl_status_str(s), err.msg,
           petl_status_str(code));
    CHECK(st == NULL);
    CHECKF(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    CHECKF(strstr(err.msg, detail) != NULL, "message lacks '%s': %s", detail, err.msg);
}

/* A header given as a C string with `data` bytes of zeros after it. */
static void bad_header(const char *name, const char *header, size_t zeros, const char *detail) {
    static const unsigned char zero[64];
    CHECK(zeros <= sizeof zero);
    expect_refused(write_case(name, UINT64_MAX, header, strlen(header), zero, zeros),
                   PETL_ERR_FORMAT, detail);
}

static void test_truncated(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite("\x02\0\0", 1, 3, f) == 3 && fclose(f) == 0);
    expect_refused(path, PETL_ERR_FORMAT, "shorter than the 8-byte");
    expect_refused(write_case("past_end", 100, "{}", 2, NULL, 0), PETL_ERR_FORMAT,
                   "runs past the end");
    expect_refused(write_case("too_large", 100000001, "{}", 2, NULL, 0), PETL_ERR_FORMAT,
                   "header length 100000001 is over the limit");
    expect_refused(write_case("huge_len", UINT64_MAX - 1, "{}", 2, NULL, 0), PETL_ERR_FORMAT,
                   "over the limit");
    bad_header("data_short", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
               "past the end of the data");
    bad_header("trailing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5,
               "trailing bytes at file offset 66");
    petl_error err;
    expect_refused("/nonexistent/x.safetensors", PETL_ERR_IO, "cannot open");
    CHECK(petl_st_open(tmpdir, &(petl_safetensors *){NULL}, &err) == PETL_ERR_IO);
}

static void test_layout(void) {
    bad_header("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "tensor 'b' begins at data byte 4, expected 8 (overlap)");
    bad_header("gap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "tensor 'b' begins at data byte 8, expected 4 (gap)");
    bad_header("not_zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
               "expected 0");
    bad_header("mismatch", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w': data_offsets [0, 8] hold 8 bytes, but shape [2, 3] of F16 needs 12");
    bad_header("wrap0",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               0, "tensor 'a': shape product overflows");
    bad_header("bytes_wrap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,0]}}",
               0, "byte size of the shape overflows");
    bad_header("end_before", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
               "end before");
}

static void test_json_values(void) {
    bad_header("dtype_typo", "{\"a\":{\"dtype\":\"FP32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor 'a': unknown dtype 'FP32'");
    bad_header("off_real", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
               "tensor 'a': data_offsets must be two non-negative integers");
    bad_header("off_neg", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
               "negative number in the header at byte 58");
    bad_header("off_2p64",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[0,18446744073709551616]}}",
               4, "too big integer");
    bad_header("shape_real", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}",
               4, "tensor 'a': shape[0] is not a non-negative integer");
    bad_header("dup",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "duplicate object key near '\"a\"'");
    bad_header("meta_int", "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", 0,
               "__metadata__ value of 'step' is not a string");
    bad_header("meta_tensor",
               "{\"__metadata__\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "a tensor may not be named __metadata__");
    bad_header("extra_key",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offset\":0}}", 4,
               "tensor 'a': unknown key 'offset'");
    bad_header("missing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0,
               "tensor 'a': missing 'data_offsets'");
    bad_header("not_object", "[{}]", 0, "not a JSON object");
    const char nul_pad[] = "{}  \0\0\0";
    expect_refused(write_case("nul_pad", UINT64_MAX, nul_pad, sizeof nul_pad - 1, NULL, 0),
                   PETL_ERR_FORMAT, "control byte 0x00 in the header at byte 12");
    bad_header("utf8", "{\"\xc3\x28\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
               "invalid JSON header at byte");
    char deep[256] = "{\"__metadata__\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    bad_header("deep", deep, 0, "nests deeper than 8 levels");
    /* Rank above PETL_ST_MAX_RANK: well-formed, but petl refuses it as unsupported. */
    const char *r9 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                     "\"data_offsets\":[0,4]}}";
    expect_refused(write_case("rank9", UINT64_MAX, r9, strlen(r9), "\0\0\0\0", 4),
                   PETL_ERR_UNSUPPORTED, "tensor 'a': rank 9 is over petl's limit of 8");
}

/* Every crafted file of the golden manifest gets the verdict the reference reader gave
 * (or, for "strict" rows, a deliberate refusal). */
static void test_golden(void) {
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/golden/safetensors/manifest.tsv", TEST_SRC_DIR);
    FILE *f = fopen(mpath, "r");
    CHECKF(f != NULL, "cannot open %s", mpath);
    char line[1024];
    int rows = 0, strict = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *file = strtok(line, "\t"), *expect = strtok(NULL, "\t"), *detail = strtok(NULL, "\t");
        CHECKF(file && expect && detail, "bad manifest row %d", rows + 1);
        char path[1200];
        snprintf(path, sizeof path, "%s/golden/safetensors/%s", TEST_SRC_DIR, file);
        petl_safetensors *st = NULL;
        petl_error err = {0};
        petl_status s = petl_st_open(path, &st, &err);
        if (!strcmp(expect, "ok")) {
            CHECKF(s == PETL_OK, "%s: the reference accepts it, petl says: %s", file, err.msg);
        } else {
            CHECKF(s != PETL_OK, "%s: expected a refusal (%s)", file, expect);
            CHECKF(strstr(err.msg, file) != NULL, "%s: message does not name it: %s", file,
                   err.msg);
            CHECKF(!strcmp(detail, "-") || strstr(err.msg, detail), "%s: message lacks '%s': %s",
                   file, detail, err.msg);
            strict += !strcmp(expect, "strict");
        }
        petl_st_close(st);
        rows++;
    }
    fclose(f);
    CHECKF(rows >= 60, "only %d manifest rows", rows);
    printf("golden: %d files agree with the reference (%d deliberately stricter)\n", rows, strict);
}

/* The golden ok files have the content their generator gave them. */
static void test_golden_content(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/safetensors/ok_unaligned.st", TEST_SRC_DIR);
    petl_safetensors *st;
    petl_error err;
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    const petl_st_tensor *t = petl_st_find(st, "a");
    CHECK(t && t->rank == 1 && t->shape[0] == 2 && ((uintptr_t)t->data & 3) != 0);
    float v[2];
    CHECK_OK(petl_st_read_f32(t, v, &err), &err);
    CHECK(v[0] == 1.0f && v[1] == -2.0f);
    petl_st_close(st);

    snprintf(path, sizeof path, "%s/golden/safetensors/ok_zero_shared.st", TEST_SRC_DIR);
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    CHECK(petl_st_count(st) == 3);
    /* data-offset order; the zero-size tensors at one offset come by name */
    CHECK(!strcmp(petl_st_at(st, 0)->name, "z") && !strcmp(petl_st_at(st, 1)->name, "a") &&
          !strcmp(petl_st_at(st, 2)->name, "y"));
    CHECK(petl_st_at(st, 2)->numel == 0 && petl_st_at(st, 3) == NULL);
    petl_st_close(st);
}

/* Known values: 1, -2, 65504 (max), 2^-14 (min normal), 2^-24 (min subnormal), 2^-15 + 2^-24
 * (subnormal), -0, inf, -inf, NaN. */
static void test_half_conversion(void) {
    static const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001,
                                   0x0201, 0x8000, 0x7c00, 0xfc00, 0x7e00};
    static const uint16_t bf16[] = {0x3f80, 0xc000, 0x7f7f, 0x0080, 0x0001,
                                    0x3eab, 0x8000, 0x7f80, 0xff80, 0x7fc0};
    const float want16[] = {1.0f,  -2.0f,    65504.0f,  0x1p-14f, 0x1p-24f, 0x1p-15f + 0x1p-24f,
                            -0.0f, INFINITY, -INFINITY, NAN};
    const float wantbf[] = {1.0f,       -2.0f, 0x1.fep127f, 0x1p-126f, 0x1p-133f,
                            0x1.56p-2f, -0.0f, INFINITY,    -INFINITY, NAN};
    int64_t shape = 10;
    float out[10];
    petl_error err;
    for (int k = 0; k < 2; k++) {
        /* The bytes sit one past an aligned address, to read unaligned halves. */
        unsigned char raw[21];
        memcpy(raw + 1, k ? (const void *)bf16 : (const void *)f16, 20);
        petl_st_tensor t = {.name = "h",
                            .dtype = k ? PETL_DT_BF16 : PETL_DT_F16,
                            .rank = 1,
                            .numel = shape,
                            .data = raw + 1};
        t.shape[0] = shape;
        CHECK_OK(petl_st_read_f32(&t, out, &err), &err);
        const float *want = k ? wantbf : want16;
        for (int i = 0; i < 10; i++) {
            if (isnan(want[i]))
                CHECK(isnan(out[i]));
            else
                CHECKF(out[i] == want[i] && signbit(out[i]) == signbit(want[i]),
                       "%s[%d]: %a, want %a", k ? "bf16" : "f16", i, out[i], want[i]);
        }
    }
    /* Every half converts exactly: compare with the value computed from its fields. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t hh = (uint16_t)h;
        petl_st_tensor t = {.name = "h", .dtype = PETL_DT_F16, .rank = 0, .numel = 1, .data = &hh};
        CHECK_OK(petl_st_read_f32(&t, out, &err), &err);
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
        if (h & 0x8000) v = -v;
        if (e == 31)
            CHECK(m ? isnan(out[0]) : isinf(out[0]));
        else
            CHECKF((double)out[0] == v, "half 0x%04x -> %a, want %a", h, out[0], v);
    }
    /* F64: rounding and out-of-range values without undefined behaviour; integers refused. */
    /* FLT_MAX + a quarter ulp rounds down; + half an ulp is a tie that rounds to infinity */
    const double d[] = {0.1, 1e300, -1e300, 0x1.fffffep127 + 0x1p102, 0x1.fffffep127 + 0x1p103};
    petl_st_tensor t = {.name = "d", .dtype = PETL_DT_F64, .rank = 1, .numel = 5, .data = d};
    CHECK_OK(petl_st_read_f32(&t, out, &err), &err);
    CHECK(out[0] == 0.1f && out[1] == INFINITY && out[2] == -INFINITY);
    CHECK(out[3] == 0x1.fffffep127f && out[4] == INFINITY);
    t.dtype = PETL_DT_I64;
    CHECK(petl_st_read_f32(&t, out, &err) == PETL_ERR_SHAPE && strstr(err.msg, "'d'"));
}

static void check_file_layout(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    unsigned char len8[8];
    CHECK(fread(len8, 1, 8, f) == 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    CHECKF(n % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)n);
    char *h = malloc(n + 1);
    CHECK(h && fread(h, 1, n, f) == n);
    h[n] = '\0';
    fclose(f);
    CHECK(!strncmp(h, "{\"__metadata__\":{\"format\":\"pt\"", 30));
    CHECK(strstr(h, "\"w\"") < strstr(h, "\"h\"")); /* tensors in the given order */
    free(h);
}

static void test_roundtrip(void) {
    const float w[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -1e30f};
    const uint16_t h[3] = {0x3c00, 0x0001, 0xfc00};
    const uint16_t b[2] = {0x3f80, 0xc049};
    const int64_t ids[4] = {0, -1, INT64_MAX, 42};
    const float s = 7.0f;
    const int64_t sw[2] = {2, 3}, sh[1] = {3}, sb[2] = {1, 2}, si[1] = {4}, sz[2] = {0, 5};
    const petl_st_entry e[] = {
        {"w", PETL_DT_F32, 2, sw, w},         {"h", PETL_DT_F16, 1, sh, h},
        {"b", PETL_DT_BF16, 2, sb, b},        {"ids", PETL_DT_I64, 1, si, ids},
        {"scalar", PETL_DT_F32, 0, NULL, &s}, {"empty", PETL_DT_F32, 2, sz, NULL},
    };
    const char *meta[] = {"step", "12", "note", "caf\xc3\xa9"};
    char path[512];
    snprintf(path, sizeof path, "%s/round.safetensors", tmpdir);
    petl_error err;
    CHECK_OK(petl_st_write(path, e, 6, meta, 2, &err), &err);
    check_file_layout(path);

    petl_safetensors *st;
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    CHECK(petl_st_count(st) == 6);
    for (size_t i = 0; i < 6; i++) {
        const petl_st_tensor *t = petl_st_at(st, i);
        CHECK(!strcmp(t->name, e[i].name) && t->dtype == e[i].dtype && t->rank == e[i].rank);
        for (int d = 0; d < t->rank; d++)
            CHECK(t->shape[d] == e[i].shape[d]);
        size_t bytes = (size_t)t->numel * petl_dtype_size(t->dtype);
        CHECK(t->end - t->begin == bytes && (!bytes || !memcmp(t->data, e[i].data, bytes)));
        CHECK(petl_st_find(st, e[i].name) == t);
    }
    CHECK(petl_st_find(st, "absent") == NULL && petl_st_find(st, "") == NULL);
    CHECK(petl_st_at(st, 4)->numel == 1 && petl_st_at(st, 5)->numel == 0);
    float f[3];
    CHECK_OK(petl_st_read_f32(petl_st_find(st, "h"), f, &err), &err);
    CHECK(f[0] == 1.0f && f[1] == 0x1p-24f && f[2] == -INFINITY);
    CHECK_OK(petl_st_read_f32(petl_st_find(st, "b"), f, &err), &err);
    CHECK(f[0] == 1.0f && f[1] == -0x1.92p1f);
    CHECK(!strcmp(petl_st_meta(st, "format"), "pt") && !strcmp(petl_st_meta(st, "step"), "12"));
    CHECK(!strcmp(petl_st_meta(st, "note"), "caf\xc3\xa9") && !petl_st_meta(st, "absent"));
    CHECK(petl_st_meta_count(st) == 3);
    const char *k, *v;
    petl_st_meta_at(st, 0, &k, &v);
    CHECK(!strcmp(k, "format") && !strcmp(v, "pt"));
    petl_st_meta_at(st, 3, &k, &v);
    CHECK(k == NULL && v == NULL);
    petl_st_close(st);

    /* No tensors at all is a valid file too. */
    CHECK_OK(petl_st_write(path, NULL, 0, NULL, 0, &err), &err);
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    CHECK(petl_st_count(st) == 0 && petl_st_meta_count(st) == 1);
    petl_st_close(st);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A refused write leaves the old file as it was and no temporary file behind. */
static void test_write_refusals(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/round.safetensors", tmpdir);
    int before = count_files(tmpdir);
    const float x = 1;
    const int64_t neg = -1, one = 1;
    petl_error err;
    const petl_st_entry dup[] = {{"x", PETL_DT_F32, 0, NULL, &x}, {"x", PETL_DT_F32, 0, NULL, &x}};
    CHECK(petl_st_write(path, dup, 2, NULL, 0, &err) == PETL_ERR_ARG && strstr(err.msg, "'x'"));
    const petl_st_entry m = {"__metadata__", PETL_DT_F32, 0, NULL, &x};
    CHECK(petl_st_write(path, &m, 1, NULL, 0, &err) == PETL_ERR_ARG);
    const petl_st_entry n = {"n", PETL_DT_F32, 1, &neg, &x};
    CHECK(petl_st_write(path, &n, 1, NULL, 0, &err) == PETL_ERR_ARG && strstr(err.msg, "-1"));
    const petl_st_entry u = {"\xff", PETL_DT_F32, 1, &one, &x};
    CHECK(petl_st_write(path, &u, 1, NULL, 0, &err) == PETL_ERR_ARG);
    const petl_st_entry r = {"r", PETL_DT_F32, PETL_ST_MAX_RANK + 1, &one, &x};
    CHECK(petl_st_write(path, &r, 1, NULL, 0, &err) == PETL_ERR_ARG);
    const char *badmeta[] = {"k", NULL};
    const petl_st_entry ok = {"x", PETL_DT_F32, 0, NULL, &x};
    CHECK(petl_st_write(path, &ok, 1, badmeta, 1, &err) == PETL_ERR_ARG);
    CHECK(count_files(tmpdir) == before);
    petl_safetensors *st;
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    petl_st_close(st);
    CHECK(petl_st_write("/nonexistent-dir/x.safetensors", &ok, 1, NULL, 0, &err) == PETL_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.safetensors"));
}

static void test_parse_buffer(void) {
    /* An in-memory file at an odd address: parse is the same code as open. */
    const char *hdr = "{\"t\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t hl = strlen(hdr);
    unsigned char *buf = calloc(1, 8 + hl + 4 + 1);
    CHECK(buf != NULL);
    unsigned char *p = buf + 1;
    p[0] = (unsigned char)hl;
    memcpy(p + 8, hdr, hl);
    p[8 + hl] = 7;
    petl_safetensors *st;
    petl_error err;
    CHECK_OK(petl_st_parse(p, 8 + hl + 4, "mem", &st, &err), &err);
    int32_t v;
    memcpy(&v, petl_st_find(st, "t")->data, 4);
    CHECK(v == 7);
    float f;
    CHECK(petl_st_read_f32(petl_st_find(st, "t"), &f, &err) == PETL_ERR_SHAPE);
    petl_st_close(st);
    CHECK(petl_st_parse(p, 5, "mem", &st, &err) == PETL_ERR_FORMAT && !strncmp(err.msg, "mem:", 4));
    CHECK(petl_st_parse(NULL, 5, "mem", &st, &err) == PETL_ERR_ARG);
    petl_st_close(NULL);
    CHECK(petl_st_count(NULL) == 0 && petl_st_find(NULL, "t") == NULL);
    CHECK(!strcmp(petl_dtype_name(PETL_DT_BF16), "BF16") && petl_dtype_size(PETL_DT_F64) == 8);
    CHECK(!strcmp(petl_dtype_name((petl_dtype)99), "?") && petl_dtype_size((petl_dtype)99) == 0);
    free(buf);
}

static void test_real_model(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", test_model_dir());
    if (access(path, R_OK) != 0) {
        test_skip("model", "the real model: %s not found (run scripts/fetch-model)", path);
        return;
    }
    petl_safetensors *st;
    petl_error err;
    CHECK_OK(petl_st_open(path, &st, &err), &err);
    CHECKF(petl_st_count(st) == 104, "%zu tensors", petl_st_count(st));
    const petl_st_tensor *t = petl_st_find(st, "embeddings.word_embeddings.weight");
    CHECK(t && t->dtype == PETL_DT_F32 && t->rank == 2 && t->shape[0] == 30522 &&
          t->shape[1] == 384);
    t = petl_st_find(st, "encoder.layer.5.output.LayerNorm.bias");
    CHECK(t && t->rank == 1 && t->shape[0] == 384);
    CHECK(petl_st_find(st, "pooler.dense.weight") != NULL);
    int64_t params = 0;
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const petl_st_tensor *x = petl_st_at(st, i);
        if (i > 0) CHECK(x->begin == petl_st_at(st, i - 1)->end);
        if (x->dtype == PETL_DT_F32) params += x->numel;
    }
    CHECKF(params > 22000000 && params < 23000000, "%lld params", (long long)params);
    float *buf = malloc(384 * sizeof *buf);
    CHECK(buf != NULL);
    CHECK_OK(petl_st_read_f32(petl_st_find(st, "embeddings.LayerNorm.weight"), buf, &err), &err);
    for (int i = 0; i < 384; i++)
        CHECK(isfinite(buf[i]));
    free(buf);
    petl_st_close(st);
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char path[1024];
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    CHECK(mkdtemp(tmpdir) != NULL);
    test_truncated();
    test_layout();
    test_json_values();
    test_golden();
    test_golden_content();
    test_half_conversion();
    test_roundtrip();
    test_write_refusals();
    test_parse_buffer();
    test_real_model();
    remove_tmpdir();
    CHECK_DONE("test_safetensors");
}
