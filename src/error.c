/* Status codes, error messages and small file helpers shared by every part of the library. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *petl_status_str(petl_status s) {
    switch (s) {
    case PETL_OK: return "ok";
    case PETL_ERR_IO: return "I/O error";
    case PETL_ERR_FORMAT: return "format error";
    case PETL_ERR_UNSUPPORTED: return "unsupported";
    case PETL_ERR_NOMEM: return "out of memory";
    case PETL_ERR_ARG: return "invalid argument";
    case PETL_ERR_UTF8: return "invalid UTF-8";
    case PETL_ERR_SHAPE: return "shape error";
    }
    return "unknown error";
}

petl_status petl_fail(petl_error *err, petl_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int petl_open_regular(const char *path, long long *size, petl_error *err) {
    /* O_NONBLOCK only changes how a FIFO or device opens; reads of a regular file ignore it. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        petl_fail(err, PETL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        petl_fail(err, PETL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        petl_fail(err, PETL_ERR_IO, "%s: is %s, not a regular file: petl reads only files", path,
                  file_kind(sb.st_mode));
        close(fd);
        return -1;
    }
    *size = (long long)sb.st_size;
    return fd;
}

petl_status petl_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                           petl_error *err) {
    *out = NULL;
    *len = 0;
    long long size = 0;
    int fd = petl_open_regular(path, &size, err);
    if (fd < 0) return PETL_ERR_IO;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return petl_fail(err, PETL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if ((uint64_t)size > max_bytes) {
        fclose(f);
        return petl_fail(err, PETL_ERR_FORMAT, "%s: file of %lld bytes is over the limit of %zu",
                         path, size, max_bytes);
    }
    size_t n = (size_t)size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad) {
        free(buf);
        return petl_fail(err, PETL_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return PETL_OK;
}

petl_status petl_map_file(const char *path, void **map, size_t *len, petl_error *err) {
    *map = NULL;
    *len = 0;
    long long size = 0;
    int fd = petl_open_regular(path, &size, err); /* a FIFO or device is refused, not waited on */
    if (fd < 0) return PETL_ERR_IO;
    if (size == 0) { /* mmap refuses an empty file */
        close(fd);
        return PETL_OK;
    }
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (m == MAP_FAILED)
        return petl_fail(err, PETL_ERR_IO, "%s: cannot map: %s", path, strerror(map_errno));
    *map = m;
    *len = (size_t)size;
    return PETL_OK;
}

char *petl_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (k > 0 && p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}
