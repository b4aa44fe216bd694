/* A tiny test harness: CHECK stops the test with exit code 1 at the first failure, printing
 * where and why. Each tests/test_*.c is its own executable and CTest test. */
#ifndef PETL_CHECK_H
#define PETL_CHECK_H

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

#define CHECK_DONE(name)                                                                   \
    do {                                                                                   \
        printf("%s: %d checks passed\n", (name), check_count);                            \
        return 0;                                                                          \
    } while (0)

/* Paths the build passes in (see CMakeLists.txt); environment variables override them. */
static inline const char *test_model_dir(void) {
    const char *e = getenv("PETL_MODEL_DIR");
    return e && *e ? e : PETL_TEST_MODEL_DIR;
}
static inline const char *test_data_dir(void) {
    const char *e = getenv("PETL_DATA_DIR");
    return e && *e ? e : PETL_TEST_DATA_DIR;
}
#define TEST_SRC_DIR PETL_TEST_SRC_DIR

#endif
