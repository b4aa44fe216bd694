/* A tiny test harness: CHECK stops the test with exit code 1 at the first failure, printing
 * where and why. Each tests/test_*.c is its own executable and CTest test. */
#ifndef PETL_CHECK_H
#define PETL_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_count;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CHECKF(cond, ...)                                                                  \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* A call that must succeed: on failure print the library's message. */
#define CHECK_OK(call, errp)                                                               \
    do {                                                                                   \
        check_count++;                                                                     \
        petl_status st_ = (call);                                                          \
        if (st_ != PETL_OK) {                                                              \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,           \
                    (errp)->msg);                                                          \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Skips. A test that cannot run some of its checks here calls test_skip(WHAT, reason...): it
 * prints the reason and goes on with the rest; CHECK_DONE then exits 77, which CTest reports as
 * "Skipped" (SKIP_RETURN_CODE in CMakeLists.txt), never as passed. WHAT says what is missing:
 * "data", "model" or "tool" (what `make test` installs or the machine is expected to hold), or
 * "avx512bf16" (the CPU's instruction set: no set-up can provide it). With PETL_REQUIRE_ALL=1 (set
 * by `make test` under CI=true and by .ci/run) every skip except those named in
 * TEST_ALLOWED_SKIPS is a failure, so CI cannot pass with checks silently not run. tests/skip.sh
 * is the same for the CLI tests; keep the two lists equal. */
#define TEST_SKIP_CODE 77
#define TEST_ALLOWED_SKIPS "avx512bf16"

static int skip_count;

__attribute__((format(printf, 2, 3))) static inline void test_skip(const char *what,
                                                                   const char *fmt, ...) {
    va_list ap;
    const char *req = getenv("PETL_REQUIRE_ALL");
    const int required = req && *req && strcmp(req, "0") != 0 && strcmp(what, TEST_ALLOWED_SKIPS);
    FILE *out = required ? stderr : stdout;
    fprintf(out, "%s (%s): ", required ? "FAIL: required but skipped" : "SKIP", what);
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    if (required) {
        fprintf(stderr, "PETL_REQUIRE_ALL=%s: only a missing %s may skip\n", req,
                TEST_ALLOWED_SKIPS);
        exit(1);
    }
    skip_count++;
}

#define CHECK_DONE(name)                                                                   \
    do {                                                                                   \
        printf("%s: %d checks passed", (name), check_count);                               \
        if (skip_count) {                                                                  \
            printf("; %d part(s) skipped (see SKIP above)\n", skip_count);                \
            fflush(stdout);                                                                \
            return TEST_SKIP_CODE;                                                         \
        }                                                                                  \
        printf("\n");                                                                     \
        return 0;                                                                          \
    } while (0)

/* Paths the build passes in (see CMakeLists.txt); environment variables override them. */
static inline const char *test_model_dir(void) {
    const char *e = getenv("PETL_MODEL_DIR");
    return e && *e ? e : PETL_TEST_MODEL_DIR;
}
/* all-mpnet-base-v2 (scripts/fetch-model all-mpnet-base-v2; `make test` installs it). */
static inline const char *test_mpnet_dir(void) {
    const char *e = getenv("PETL_MPNET_DIR");
    return e && *e ? e : PETL_TEST_MPNET_DIR;
}
static inline const char *test_data_dir(void) {
    const char *e = getenv("PETL_DATA_DIR");
    return e && *e ? e : PETL_TEST_DATA_DIR;
}
#define TEST_SRC_DIR PETL_TEST_SRC_DIR

#endif
