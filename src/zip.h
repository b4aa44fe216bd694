/* A reader of the stored (uncompressed) entries of a zip archive held in memory: the container
 * of torch.save's format (src/torch_bin.c). Internal to the library.
 *
 * Only what torch writes is read: one disk, the central directory (zip64 too), stored entries.
 * An entry's data is a pointer into the caller's buffer, never a copy: a mapped checkpoint is
 * read in place, as a safetensors file is. Compressed and encrypted entries are listed but
 * refused when their data is asked for. CRC-32s are not checked (torch's own reader does not
 * check them either, and may write files without them). */
#ifndef PETL_ZIP_H
#define PETL_ZIP_H

#include "petl.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; /* into the archive's buffer, NOT NUL-terminated */
    size_t name_len;
    uint64_t local;  /* offset of the entry's local header */
    uint64_t size;   /* uncompressed size */
    uint64_t csize;  /* compressed size */
    uint16_t method; /* 0 = stored */
    uint16_t flags;  /* bit 0: encrypted */
    size_t order;    /* its place in the central directory */
} petl_zip_entry;

typedef struct {
    const unsigned char *buf; /* borrowed */
    size_t len;
    petl_zip_entry *entries; /* [n] sorted by name */
    size_t n;
} petl_zip;

/* Reads the central directory of buf[len] (borrowed: it must outlive z). Every offset and
 * size is checked against the buffer; duplicate names are refused. `what` names the file in
 * messages. Free with petl_zip_free, also after a failure. */
petl_status petl_zip_read(petl_zip *z, const void *buf, size_t len, const char *what,
                          petl_error *err);
void petl_zip_free(petl_zip *z);

/* The entry named name[len], or NULL. */
const petl_zip_entry *petl_zip_find(const petl_zip *z, const char *name, size_t len);

/* The data of a stored entry: *data points into the buffer, *offset is its offset there.
 * PETL_ERR_UNSUPPORTED for a compressed or encrypted entry, PETL_ERR_FORMAT for a local header
 * that does not agree with the directory or data past the end of the buffer. */
petl_status petl_zip_data(const petl_zip *z, const petl_zip_entry *e, const char *what,
                          const unsigned char **data, uint64_t *offset, petl_error *err);

#endif
