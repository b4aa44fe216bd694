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

/* Opens path read-only for a reader that needs a regular file: a FIFO is opened without
 * waiting for a writer (a FIFO given as a data or model file would otherwise hang petl in
 * open(2)), then anything but a regular file is refused, naming what it is. Returns the
 * descriptor (close-on-exec) with its size in *size, or -1 with err set (PETL_ERR_IO). */
int petl_open_regular(const char *path, long long *size, petl_error *err);

/* Reads a whole regular file into a NUL-terminated malloc'ed buffer (*out, caller frees; *len
 * excludes the NUL). Files over max_bytes are refused, and so is anything but a regular file
 * (petl_open_regular). */
petl_status petl_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                           petl_error *err);

/* Maps a whole regular file read-only (petl_open_regular's checks): *map (NULL for an empty
 * file) and *len; the caller munmaps it. The mapping stays valid while it lives; a file
 * truncated by someone else meanwhile would fault on access, as with any mmap reader. */
petl_status petl_map_file(const char *path, void **map, size_t *len, petl_error *err);

/* petl_write_file for a writer that streams: fill(fd, user) writes the contents into the
 * temporary file (returning false with errno set on failure), which is then fsync'ed and
 * renamed over path. */
typedef bool (*petl_write_fn)(int fd, void *user);
petl_status petl_write_atomic(const char *path, petl_write_fn fill, void *user, petl_error *err);
/* write(2) of all n bytes, again after EINTR; false with errno set on failure. */
bool petl_write_all(int fd, const void *p, size_t n);

/* Splits path (trailing '/' ignored) into its parent folder and last component (cap bytes
 * each; parent "." for a bare name). PETL_ERR_ARG, naming `what` (e.g. "--out"), for "", ".",
 * "..", "/" and paths ending in them: nothing can be renamed into place there. */
petl_status petl_path_split(const char *what, const char *path, char *parent, char *base,
                            size_t cap, petl_error *err);

/* The start of writing a folder whole (petl_adapter_save, petl export): out resolved into dir
 * (PATH_MAX) and checked (petl_out_resolve, petl_out_check with force: *state says what is
 * there), split into parent and base (PATH_MAX each), and an empty temporary folder
 * PARENT/.BASE.tmp-XXXXXX created (mode 0755) in tmp (2 PATH_MAX + 16): the name
 * petl_out_clean_litter knows, so what a killed writer leaves is cleaned like an adapter's. */
petl_status petl_out_begin(const char *out, bool force, char *dir, char *parent, char *base,
                           char *tmp, petl_out_state *state, petl_error *err);

/* The names of an enum petl reads by name, in value order (src/options.c): for readers that
 * report a bad name themselves (adapter_config.json names the file and the key). *n gets the
 * count. */
typedef enum {
    PETL_NAMES_TUNE,        /* petl_tune */
    PETL_NAMES_ADAPTER_ACT, /* petl_adapter_act */
    PETL_NAMES_PLACEMENT,   /* petl_adapter_placement */
    PETL_NAMES_PRECISION,   /* petl_precision */
} petl_names_kind;
const char *const *petl_option_names(petl_names_kind kind, size_t *n);

/* Drops from the process's resident set the mapped file pages that lie wholly inside tensor
 * t's data (petl_st_open maps the file; a tensor copied out is not read from the map again).
 * Without it, loading a model holds the file and its float copy at once: a peak resident set
 * of twice the model. Re-reading t afterwards still works (the pages fault in again). No-op
 * for a safetensors parsed from memory. */
void petl_st_drop_pages(const petl_safetensors *st, const petl_st_tensor *t);

/* A petl_safetensors over tensors another reader found (src/torch_bin.c), so that the rest
 * of petl sees one kind of object whatever the file format. Takes tensors[n] and names (the
 * malloc'ed block the tensors' names point into) in every case, and the mapping map[map_len]
 * (munmap'ed by petl_st_close; NULL when the data is borrowed) only on success. Sets each
 * tensor's file to `what`; refuses a name given twice. */
petl_status petl_st_adopt(const char *what, petl_st_tensor *tensors, size_t n, char *names,
                          void *map, size_t map_len, petl_safetensors **out, petl_error *err);

#endif
