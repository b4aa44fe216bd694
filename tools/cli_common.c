/* Pieces shared by the subcommands: the default model folder and the JSON-lines text reader. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *cli_default_model(void) {
    static char buf[PATH_MAX];
    const char *env = getenv("PETL_MODEL");
    if (env && *env) return env;
    /* The binary lives in REPO/build/petl: look for REPO/models/all-MiniLM-L6-v2. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = '\0';
        }
        int w = snprintf(buf, sizeof buf, "%s/models/all-MiniLM-L6-v2", exe);
        if (w > 0 && (size_t)w < sizeof buf && is_dir(buf)) return buf;
    }
    return "models/all-MiniLM-L6-v2";
}

int cli_read_text_line(FILE *in, long lineno, char **line, size_t *cap, cli_text *out,
                       char *errbuf, size_t errlen) {
    memset(out, 0, sizeof *out);
    ssize_t n = getline(line, cap, in);
    if (n < 0) return 0;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    json_error_t je;
    json_t *root = json_loadb(*line, (size_t)n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        snprintf(errbuf, errlen, "line %ld, column %d: invalid JSON: %s", lineno, je.column,
                 je.text);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(errbuf, errlen, "line %ld: expected a JSON object", lineno);
        return -1;
    }
    json_t *t = json_object_get(root, "text");
    json_t *a = json_object_get(root, "text_a");
    json_t *b = json_object_get(root, "text_b");
    if (t && a) {
        json_decref(root);
        snprintf(errbuf, errlen, "line %ld: give either \"text\" or \"text_a\", not both", lineno);
        return -1;
    }
    if (!a) a = t;
    if (!a || !json_is_string(a) || (b && !json_is_string(b))) {
        json_decref(root);
        snprintf(errbuf, errlen,
                 "line %ld: expected a string field \"text\" (or \"text_a\" and optional "
                 "\"text_b\")",
                 lineno);
        return -1;
    }
    out->root = root;
    out->a = json_string_value(a);
    out->len_a = json_string_length(a);
    if (b) {
        out->b = json_string_value(b);
        out->len_b = json_string_length(b);
    }
    return 1;
}

int cli_check_stdout(const char *cmd) {
    static bool reported; /* the first failure's reason is the one to show */
    if (reported) return 1;
    errno = 0;
    /* glibc keeps what a failed write left in the buffer, so a second fflush reports the
     * reason (ENOSPC, EFBIG) again even when the first failure was inside a printf. */
    bool bad = fflush(stdout) != 0;
    int e = errno;
    if (!bad && !ferror(stdout)) return 0;
    reported = true;
    if (e)
        fprintf(stderr, "petl %s: write error on standard output: %s\n", cmd, strerror(e));
    else
        fprintf(stderr, "petl %s: write error on standard output\n", cmd);
    return 1;
}

void cli_text_free(cli_text *t) {
    if (t && t->root) json_decref((json_t *)t->root);
    if (t) memset(t, 0, sizeof *t);
}
