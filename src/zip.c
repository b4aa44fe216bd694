/* zip: the central directory and stored entries of an archive in memory (see zip.h).
 *
 * Why not libzip: its API reads an entry into a buffer of the caller's and has no way to give
 * the entry's place in the file, so a mapped checkpoint would be copied whole before its
 * floats are copied again (twice the model in memory at the peak, which petl_st_drop_pages
 * exists to avoid). torch writes stored entries only, which take a few dozen lines to locate;
 * written here, the fuzzer (fuzz/fuzz_torch_bin.c) also sees inside the reader.
 *
 * Layout (APPNOTE.TXT): local header + data per entry, the central directory (one record per
 * entry), [zip64 end record, zip64 locator], end record (with a comment of up to 64 KiB).
 * torch.save always writes the zip64 records and a data descriptor after each entry (flag bit
 * 3: the sizes in the local header are zero), so sizes are taken from the central directory. */
#include "zip.h"

#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define EOCD_SIG 0x06054b50u
#define EOCD_LEN 22u
#define Z64_LOC_SIG 0x07064b50u
#define Z64_LOC_LEN 20u
#define Z64_EOCD_SIG 0x06064b50u
#define Z64_EOCD_LEN 56u
#define CEN_SIG 0x02014b50u
#define CEN_LEN 46u
#define LOC_SIG 0x04034b50u
#define LOC_LEN 30u
#define ZIP_MAX_COMMENT 65535u
/* Far above a checkpoint's entries (two per storage, a few thousand for the largest models). */
#define ZIP_MAX_ENTRIES (1u << 20)

static uint16_t le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Where the central directory is and how many entries it holds. */
typedef struct {
    uint64_t n, off, size;
} zip_dir;

static petl_status read_zip64_end(const unsigned char *b, size_t loc, const char *what, zip_dir *d,
                                  petl_error *err) {
    uint64_t at = le64(b + loc + 8);
    if (le32(b + loc + 4) != 0 || le32(b + loc + 16) > 1)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: a zip archive on several disks", what);
    if (at > loc || loc - at < Z64_EOCD_LEN || le32(b + at) != Z64_EOCD_SIG)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: no zip64 end record at byte %llu", what,
                         (unsigned long long)at);
    const unsigned char *z = b + at;
    if (le32(z + 16) != 0 || le32(z + 20) != 0)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: a zip archive on several disks", what);
    d->n = le64(z + 32);
    d->size = le64(z + 40);
    d->off = le64(z + 48);
    if (le64(z + 24) != d->n)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: zip64 end record: entry counts disagree", what);
    return PETL_OK;
}

/* Finds the end record: the last one whose comment runs exactly to the end of the file. */
static petl_status find_end(const unsigned char *b, size_t len, const char *what, zip_dir *d,
                            petl_error *err) {
    if (len < EOCD_LEN)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: %zu bytes are too few for a zip archive (torch.save's format)", what,
                         len);
    size_t lo = len - EOCD_LEN > ZIP_MAX_COMMENT ? len - EOCD_LEN - ZIP_MAX_COMMENT : 0;
    for (size_t at = len - EOCD_LEN + 1; at-- > lo;) {
        const unsigned char *e = b + at;
        if (le32(e) != EOCD_SIG || le16(e + 20) != len - at - EOCD_LEN) continue;
        if (le16(e + 4) != 0 || le16(e + 6) != 0)
            return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: a zip archive on several disks", what);
        if (at >= Z64_LOC_LEN && le32(b + at - Z64_LOC_LEN) == Z64_LOC_SIG)
            return read_zip64_end(b, at - Z64_LOC_LEN, what, d, err);
        d->n = le16(e + 10);
        d->size = le32(e + 12);
        d->off = le32(e + 16);
        if (le16(e + 8) != d->n)
            return petl_fail(err, PETL_ERR_FORMAT, "%s: zip end record: entry counts disagree",
                             what);
        return PETL_OK;
    }
    return petl_fail(err, PETL_ERR_FORMAT,
                     "%s: no zip end record: not a zip archive (torch.save's format since "
                     "PyTorch 1.6), or truncated",
                     what);
}

/* Reads the zip64 extra field x[xlen]: the 64-bit values of those of size, csize and local
 * that are 0xffffffff in the directory record, in that order. */
static bool read_zip64_extra(const unsigned char *x, size_t xlen, petl_zip_entry *e) {
    while (xlen >= 4) {
        uint16_t id = le16(x), sz = le16(x + 2);
        if (sz > xlen - 4) return false;
        if (id == 1) {
            const unsigned char *q = x + 4, *end = q + sz;
            uint64_t *fields[] = {&e->size, &e->csize, &e->local};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xffffffffu) continue;
                if (end - q < 8) return false;
                *fields[i] = le64(q);
                q += 8;
            }
            return true;
        }
        x += 4 + (size_t)sz;
        xlen -= 4 + (size_t)sz;
    }
    return false;
}

/* The directory record at b[*at], whose record may not run past end; *at moves past it. */
static petl_status read_entry(const unsigned char *b, uint64_t *at, uint64_t end, size_t i,
                              const char *what, petl_zip_entry *e, petl_error *err) {
    const unsigned char *p = b + *at;
    if (end - *at < CEN_LEN || le32(p) != CEN_SIG)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip directory record %zu at byte %llu is malformed", what, i,
                         (unsigned long long)*at);
    size_t nlen = le16(p + 28), xlen = le16(p + 30), clen = le16(p + 32);
    if (end - *at - CEN_LEN < nlen + xlen + clen || nlen == 0)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip directory record %zu at byte %llu runs past the directory", what,
                         i, (unsigned long long)*at);
    e->flags = le16(p + 8);
    e->method = le16(p + 10);
    e->csize = le32(p + 20);
    e->size = le32(p + 24);
    e->local = le32(p + 42);
    e->name = (const char *)p + CEN_LEN;
    e->name_len = nlen;
    e->order = i;
    bool z64 = e->size == 0xffffffffu || e->csize == 0xffffffffu || e->local == 0xffffffffu;
    if (z64 && !read_zip64_extra(p + CEN_LEN + nlen, xlen, e))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip entry '%.*s' lacks the zip64 sizes its record calls for", what,
                         (int)nlen, e->name);
    *at += CEN_LEN + nlen + xlen + clen;
    return PETL_OK;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const void *x, const void *y) {
    const petl_zip_entry *a = x, *b = y;
    return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

petl_status petl_zip_read(petl_zip *z, const void *buf, size_t len, const char *what,
                          petl_error *err) {
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    zip_dir d = {0};
    petl_status s = find_end(z->buf, len, what, &d, err);
    if (s != PETL_OK) return s;
    if (d.off > len || d.size > len - d.off)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: the zip directory (%llu bytes at byte %llu) runs past the end of the "
                         "file (%zu bytes): truncated?",
                         what, (unsigned long long)d.size, (unsigned long long)d.off, len);
    if (d.n > d.size / CEN_LEN || d.n > ZIP_MAX_ENTRIES)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: the zip directory of %llu bytes cannot hold %llu entries", what,
                         (unsigned long long)d.size, (unsigned long long)d.n);
    z->entries = calloc((size_t)d.n + 1, sizeof *z->entries);
    if (!z->entries) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    uint64_t at = d.off;
    for (size_t i = 0; i < d.n; i++) {
        s = read_entry(z->buf, &at, d.off + d.size, i, what, &z->entries[i], err);
        if (s != PETL_OK) return s;
        z->n++;
    }
    qsort(z->entries, z->n, sizeof *z->entries, entry_cmp);
    for (size_t i = 1; i < z->n; i++) {
        const petl_zip_entry *e = &z->entries[i];
        if (!entry_cmp(e - 1, e))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: zip entry '%.*s' appears twice", what,
                             (int)e->name_len, e->name);
    }
    return PETL_OK;
}

void petl_zip_free(petl_zip *z) {
    if (!z) return;
    free(z->entries);
    z->entries = NULL;
    z->n = 0;
}

const petl_zip_entry *petl_zip_find(const petl_zip *z, const char *name, size_t len) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const petl_zip_entry *e = &z->entries[mid];
        int c = name_cmp(name, len, e->name, e->name_len);
        if (c == 0) return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

petl_status petl_zip_data(const petl_zip *z, const petl_zip_entry *e, const char *what,
                          const unsigned char **data, uint64_t *offset, petl_error *err) {
    const int nl = (int)e->name_len;
    if (e->flags & 1)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: zip entry '%.*s' is encrypted", what, nl,
                         e->name);
    if (e->method != 0)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: zip entry '%.*s' is compressed (method %u%s): petl reads only "
                         "stored entries, which torch.save writes (re-save the file with "
                         "torch.save, or convert it to safetensors)",
                         what, nl, e->name, e->method, e->method == 8 ? ", deflate" : "");
    if (e->csize != e->size)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip entry '%.*s' is stored, but its sizes differ (%llu, %llu)", what,
                         nl, e->name, (unsigned long long)e->csize, (unsigned long long)e->size);
    const unsigned char *p = z->buf + e->local;
    if (e->local > z->len || z->len - e->local < LOC_LEN || le32(p) != LOC_SIG)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: zip entry '%.*s': no local header at byte %llu",
                         what, nl, e->name, (unsigned long long)e->local);
    size_t nlen = le16(p + 26), xlen = le16(p + 28);
    uint64_t start = e->local + LOC_LEN + nlen + xlen;
    if (nlen != e->name_len || start > z->len || memcmp(p + LOC_LEN, e->name, nlen) != 0)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip entry '%.*s': its local header at byte %llu names another entry "
                         "or runs past the end of the file",
                         what, nl, e->name, (unsigned long long)e->local);
    if (e->size > z->len - start)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: zip entry '%.*s' (%llu bytes at byte %llu) runs past the end of the "
                         "file (%zu bytes): truncated?",
                         what, nl, e->name, (unsigned long long)e->size, (unsigned long long)start,
                         z->len);
    *data = z->buf + start;
    *offset = start;
    return PETL_OK;
}
