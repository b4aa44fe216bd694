/* Helpers shared by the library's source files. Not part of the public API. */
#ifndef PETL_INTERNAL_H
#define PETL_INTERNAL_H

#include "petl.h"

#include <stddef.h>

#if defined(__GNUC__)
#define PETL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PETL_PRINTF(a, b)
#endif

/* Fills err (when non-NULL) with code and a printf-formatted message; returns code, so that
 * callers can write `return petl_fail(err, PETL_ERR_FORMAT, "%s: ...", path);`. */
petl_status petl_fail(petl_error *err, petl_status code, const char *fmt, ...) PETL_PRINTF(3, 4);

/* Reads a whole file into a NUL-terminated malloc'ed buffer (*out, caller frees; *len excludes
 * the NUL). Files over max_bytes are refused. */
petl_status petl_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                           petl_error *err);

/* Joins dir and name with one '/' into a malloc'ed string (caller frees); NULL on no memory. */
char *petl_path_join(const char *dir, const char *name);

#endif
