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

/* Drops from the process's resident set the mapped file pages that lie wholly inside tensor
 * t's data (petl_st_open maps the file; a tensor copied out is not read from the map again).
 * Without it, loading a model holds the file and its float copy at once: a peak resident set
 * of twice the model. Re-reading t afterwards still works (the pages fault in again). No-op
 * for a safetensors parsed from memory. */
void petl_st_drop_pages(const petl_safetensors *st, const petl_st_tensor *t);

#endif
