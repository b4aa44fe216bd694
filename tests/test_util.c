/* src/util.c: atomic file writes (a failure leaves the old file and no temporary file; the
 * temporary names are those petl_out_clean_litter recognises) and the monotonic clock. */
#include "check.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/petl-test-util-XXXXXX";

/* The entries of dir besides "." and "..". */
static int count_entries(void) {
    DIR *d = opendir(dir);
    CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void check_contents(const char *path, const char *want) {
    char *text = NULL;
    size_t len = 0;
    petl_error err = {0};
    CHECK_OK(petl_read_file(path, 1 << 20, &text, &len, &err), &err);
    CHECKF(len == strlen(want) && !memcmp(text, want, len), "%s holds '%s'", path, text);
    free(text);
}

/* Writes half of the text, then fails as a full disk would. */
static bool fill_then_fail(int fd, void *user) {
    const char *text = user;
    if (!petl_write_all(fd, text, strlen(text) / 2)) return false;
    errno = ENOSPC;
    return false;
}

/* Checks, while the file is being written, that its temporary file is the one name in dir
 * besides results.json and that petl_is_write_tmp knows it. */
static bool fill_and_look(int fd, void *user) {
    (void)user;
    DIR *d = opendir(dir);
    CHECK(d);
    int tmps = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "results.json"))
            CHECKF(petl_is_write_tmp(e->d_name, "results.json") && ++tmps == 1, "%s", e->d_name);
    closedir(d);
    CHECK(tmps == 1);
    return petl_write_all(fd, "seen\n", 5);
}

static void test_write_file(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/results.json", dir);
    petl_error err = {0};
    CHECK_OK(petl_write_file(path, "first\n", 6, &err), &err);
    check_contents(path, "first\n");
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    CHECK_OK(petl_write_file(path, "second, longer\n", 15, &err), &err);
    check_contents(path, "second, longer\n");
    CHECK_OK(petl_write_file(path, "", 0, &err), &err);
    check_contents(path, "");
    CHECK(count_entries() == 1); /* no temporary file left */

    CHECK_OK(petl_write_atomic(path, fill_and_look, NULL, &err), &err);
    check_contents(path, "seen\n");

    /* A failed write keeps the old file and removes its temporary file. */
    CHECK_OK(petl_write_file(path, "kept\n", 5, &err), &err);
    CHECK(petl_write_atomic(path, fill_then_fail, "never seen in full\n", &err) == PETL_ERR_IO);
    CHECKF(strstr(err.msg, path) && strstr(err.msg, strerror(ENOSPC)), "%s", err.msg);
    check_contents(path, "kept\n");
    CHECK(count_entries() == 1);

    /* No folder: an error naming the path. */
    CHECK(petl_write_file("/nonexistent-petl-dir/x.json", "x", 1, &err) == PETL_ERR_IO);
    CHECKF(strstr(err.msg, "/nonexistent-petl-dir/x.json"), "%s", err.msg);
    unlink(path);
}

static void test_tmp_names(void) {
    CHECK(petl_is_write_tmp("adapter.safetensors.tmp-Ab12Cd", "adapter.safetensors"));
    CHECK(petl_is_write_tmp("a.checkpoint.safetensors.tmp-x9y8z7", "a.checkpoint.safetensors"));
    CHECK(!petl_is_write_tmp("adapter.safetensors.tmp-Ab12C", "adapter.safetensors"));
    CHECK(!petl_is_write_tmp("adapter.safetensors.tmp-Ab12Cde", "adapter.safetensors"));
    CHECK(!petl_is_write_tmp("adapter.safetensors", "adapter.safetensors"));
    CHECK(!petl_is_write_tmp("other.safetensors.tmp-Ab12Cd", "adapter.safetensors"));
    CHECK(!petl_is_write_tmp(".adapter.safetensors.tmp-Ab12Cd", "adapter.safetensors"));
}

static void test_now(void) {
    double a = petl_now();
    CHECK(a > 0);
    usleep(20000);
    double b = petl_now(), c = petl_now();
    CHECKF(b - a >= 0.015 && b - a < 5 && c >= b, "%.6f %.6f %.6f", a, b, c);
}

int main(void) {
    test_now();
    CHECK(mkdtemp(dir));
    test_write_file();
    test_tmp_names();
    CHECK(rmdir(dir) == 0);
    CHECK_DONE("test_util");
}
