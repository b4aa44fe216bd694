/* Small utilities shared by the library and the tools: atomic file writes and the monotonic
 * clock. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double petl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------- atomic writes */

#define TMP_SUFFIX ".tmp-"

bool petl_is_write_tmp(const char *name, const char *target) {
    size_t t = strlen(target), s = strlen(TMP_SUFFIX);
    return !strncmp(name, target, t) && !strncmp(name + t, TMP_SUFFIX, s) &&
           strlen(name) == t + s + 6; /* mkstemp's XXXXXX */
}

bool petl_write_all(int fd, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = EIO;
        if (w <= 0) return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Makes the rename durable; file systems that cannot fsync a folder are not an error. */
static void sync_dir_of(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

petl_status petl_write_atomic(const char *path, petl_write_fn fill, void *user, petl_error *err) {
    if (!path || !fill) return petl_fail(err, PETL_ERR_ARG, "petl_write_atomic: NULL argument");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof TMP_SUFFIX + 6);
    if (!tmp) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, TMP_SUFFIX "XXXXXX", sizeof TMP_SUFFIX + 6);
    petl_status s = PETL_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot create a temporary file: %s", path,
                      strerror(errno));
        free(tmp);
        return s;
    }
    bool ok = fchmod(fd, 0644) == 0 && fill(fd, user) && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) ok = false, e = errno;
    if (ok && rename(tmp, path) != 0) ok = false, e = errno;
    if (ok) {
        sync_dir_of(path);
    } else {
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot write: %s", path, strerror(e));
        (void)unlink(tmp);
    }
    free(tmp);
    return s;
}

typedef struct {
    const void *data;
    size_t len;
} buffer;

static bool write_buffer(int fd, void *user) {
    const buffer *b = user;
    return petl_write_all(fd, b->data, b->len);
}

petl_status petl_write_file(const char *path, const void *data, size_t len, petl_error *err) {
    if (!data && len) return petl_fail(err, PETL_ERR_ARG, "%s: NULL data", path ? path : "?");
    buffer b = {data, len};
    return petl_write_atomic(path, write_buffer, &b, err);
}
