/* What petl may replace or delete: adapter folders and checkpoints it wrote, and nothing else.
 * See include/petl.h (section "outputs"). Every function here is conservative: when a path
 * holds something petl cannot prove is its own, the answer is a refusal naming what is there,
 * never a deletion. */
#include "internal.h"
#include "taskmodel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- path pieces */

petl_status petl_path_split(const char *what, const char *path, char *parent, char *base,
                            size_t cap, petl_error *err) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0) return petl_fail(err, PETL_ERR_ARG, "%s: the path is empty", what);
    if (n >= cap) return petl_fail(err, PETL_ERR_ARG, "%s: the path is too long", what);
    size_t slash = n;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '/') slash = i;
    if (slash == n) {
        strcpy(parent, ".");
        memcpy(base, path, n);
        base[n] = '\0';
    } else {
        memcpy(parent, path, slash ? slash : 1);
        parent[slash ? slash : 1] = '\0';
        memcpy(base, path + slash + 1, n - slash - 1);
        base[n - slash - 1] = '\0';
    }
    if (!base[0] || !strcmp(base, ".") || !strcmp(base, ".."))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: '%s' names a folder petl cannot replace (give a new folder's name, "
                         "e.g. %s/my-adapter)",
                         what, path, path);
    return PETL_OK;
}

/* The parent must exist, be a folder, and take new entries. */
static petl_status check_parent(const char *what, const char *path, const char *parent,
                                petl_error *err) {
    struct stat sb;
    if (stat(parent, &sb) != 0)
        return petl_fail(err, PETL_ERR_IO, "%s: %s: the folder %s does not exist (%s)", what, path,
                         parent, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return petl_fail(err, PETL_ERR_IO, "%s: %s: %s is not a folder", what, path, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return petl_fail(err, PETL_ERR_IO, "%s: %s: cannot write in %s (%s)", what, path, parent,
                         strerror(errno));
    return PETL_OK;
}

/* --------------------------------------------------------------------- adapter folders */

/* NAME is PREFIX followed by exactly six characters (mkdtemp). */
static bool is_tmp_name(const char *name, const char *prefix) {
    size_t p = strlen(prefix);
    return !strncmp(name, prefix, p) && strlen(name) == p + 6;
}

bool petl_out_is_adapter_file(const char *name) {
    /* and the temporary files of petl_write_file, left by a killed save */
    return !strcmp(name, PETL_ADAPTER_CONFIG) || !strcmp(name, PETL_ADAPTER_WEIGHTS) ||
           petl_is_write_tmp(name, PETL_ADAPTER_CONFIG) ||
           petl_is_write_tmp(name, PETL_ADAPTER_WEIGHTS);
}

/* Whether dir/adapter_config.json is one petl wrote ("format": "petl-adapter"). */
static bool has_petl_config(const char *dir) {
    char *p = petl_path_join(dir, PETL_ADAPTER_CONFIG);
    json_t *j = p ? json_load_file(p, 0, NULL) : NULL;
    const char *fmt = json_string_value(json_object_get(j, "format"));
    bool ok = fmt && !strcmp(fmt, "petl-adapter");
    json_decref(j);
    free(p);
    return ok;
}

/* What the folder holds: *n entries, the first few that are not petl's listed in `others`. */
static petl_status survey(const char *dir, size_t *n, size_t *n_others, char *others, size_t cap,
                          petl_error *err) {
    DIR *d = opendir(dir);
    if (!d)
        return petl_fail(err, PETL_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
    *n = *n_others = 0;
    others[0] = '\0';
    size_t used = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        (*n)++;
        struct stat sb;
        char *p = petl_path_join(dir, e->d_name);
        bool file = p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        free(p);
        if (file && petl_out_is_adapter_file(e->d_name)) continue;
        if (++*n_others <= 3 && used < cap)
            used +=
                (size_t)snprintf(others + used, cap - used, "%s%s", used ? ", " : "", e->d_name);
    }
    closedir(d);
    if (*n_others > 3 && used < cap)
        snprintf(others + used, cap - used, " and %zu more", *n_others - 3);
    return PETL_OK;
}

petl_status petl_out_resolve(const char *dir, char *resolved, size_t cap, petl_error *err) {
    char parent[PATH_MAX], base[PATH_MAX], path[PATH_MAX];
    petl_status s = petl_path_split("--out", dir, parent, base, sizeof parent, err);
    if (s != PETL_OK) return s;
    /* Without its trailing '/': lstat("link/") follows the link and would not see it. */
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n >= cap || n >= sizeof path) return petl_fail(err, PETL_ERR_ARG, "%s: path too long", dir);
    memcpy(path, dir, n);
    path[n] = '\0';
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
        /* Written through: the target is replaced (when it is an adapter folder), the link
         * stays. Renaming the link itself away would leave the user's folder behind it to be
         * "removed" as the old adapter. */
        char target[PATH_MAX];
        if (!realpath(path, target))
            return petl_fail(err, PETL_ERR_IO,
                             "%s is a symbolic link whose target cannot be used (%s); point it at "
                             "a folder or remove it",
                             dir, strerror(errno));
        if (stat(target, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return petl_fail(err, PETL_ERR_IO,
                             "%s is a symbolic link to %s, which is not a folder; petl writes "
                             "adapter folders only",
                             dir, target);
        if (strlen(target) >= cap) return petl_fail(err, PETL_ERR_ARG, "%s: path too long", dir);
        if ((s = petl_path_split("--out", target, parent, base, sizeof parent, err)) != PETL_OK)
            return s;
        if ((s = check_parent("--out", dir, parent, err)) != PETL_OK) return s;
        strcpy(resolved, target);
        return PETL_OK;
    }
    if ((s = check_parent("--out", dir, parent, err)) != PETL_OK) return s;
    strcpy(resolved, path);
    return PETL_OK;
}

petl_status petl_out_check(const char *dir, bool force, petl_out_state *state, petl_error *err) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) {
        if (errno != ENOENT) return petl_fail(err, PETL_ERR_IO, "%s: %s", dir, strerror(errno));
        *state = PETL_OUT_MISSING;
        return PETL_OK;
    }
    if (S_ISLNK(sb.st_mode))
        return petl_fail(err, PETL_ERR_IO,
                         "%s is a symbolic link; give the folder it points to (petl never "
                         "replaces a link)",
                         dir);
    if (!S_ISDIR(sb.st_mode))
        return petl_fail(err, PETL_ERR_IO,
                         "%s exists and is not a folder; petl writes adapter folders only and "
                         "replaces nothing else: choose another --out",
                         dir);
    size_t n = 0, n_others = 0;
    char others[512];
    petl_status s = survey(dir, &n, &n_others, others, sizeof others, err);
    if (s != PETL_OK) return s;
    if (n == 0) {
        *state = PETL_OUT_EMPTY;
        return PETL_OK;
    }
    if (n_others > 0 || !has_petl_config(dir))
        return petl_fail(err, PETL_ERR_IO,
                         "%s is not a petl adapter folder (it holds %s); petl replaces only "
                         "folders it wrote, --force included: choose another --out or move it "
                         "away",
                         dir, n_others ? others : PETL_ADAPTER_CONFIG " not written by petl");
    if (!force)
        return petl_fail(err, PETL_ERR_IO,
                         "%s already holds an adapter; pass --force to replace it (the old "
                         "adapter is kept until the new one is complete)",
                         dir);
    *state = PETL_OUT_ADAPTER;
    return PETL_OK;
}

int petl_out_remove_adapter_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!petl_out_is_adapter_file(e->d_name)) continue;
            char *f = petl_path_join(dir, e->d_name);
            struct stat sb;
            if (f && lstat(f, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(f);
            free(f);
        }
        closedir(d);
    }
    return rmdir(dir);
}

/* ------------------------------------------------------------------------- checkpoints */

petl_status petl_checkpoint_check(const char *path, petl_error *err) {
    char parent[PATH_MAX], base[PATH_MAX];
    petl_status s = petl_path_split("--checkpoint", path, parent, base, sizeof parent, err);
    if (s != PETL_OK) return s;
    if ((s = check_parent("--checkpoint", path, parent, err)) != PETL_OK) return s;
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return PETL_OK;
        return petl_fail(err, PETL_ERR_IO, "--checkpoint %s: %s", path, strerror(errno));
    }
    if (S_ISLNK(sb.st_mode))
        return petl_fail(err, PETL_ERR_IO,
                         "--checkpoint %s is a symbolic link; petl writes checkpoints as new "
                         "files and replaces no link: give another path",
                         path);
    if (!S_ISREG(sb.st_mode))
        return petl_fail(err, PETL_ERR_IO,
                         "--checkpoint %s exists and is not a file: give another path", path);
    petl_safetensors *st = NULL;
    petl_error e2 = {0};
    bool ours = petl_st_open(path, &st, &e2) == PETL_OK && petl_st_meta(st, PETL_CKPT_KEY);
    petl_st_close(st);
    if (!ours)
        return petl_fail(err, PETL_ERR_IO,
                         "--checkpoint %s exists and is not a petl checkpoint; petl overwrites "
                         "only its own checkpoints: give another path",
                         path);
    return PETL_OK;
}

/* ------------------------------------------------------------------------------- locks */

struct petl_lock {
    int fd;
    char *path;
};

#define LOCK_MAGIC "petl lock\n"

/* PARENT/.BASE.lock for path PARENT/BASE. */
static char *lock_path_of(const char *path) {
    char parent[PATH_MAX], base[PATH_MAX];
    if (petl_path_split("lock", path, parent, base, sizeof parent, NULL) != PETL_OK) return NULL;
    size_t n = strlen(parent) + strlen(base) + 8;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/.%s.lock", parent, base);
    return p;
}

/* Reads what the holder wrote into the lock ("pid 123, started ..., petl train ..."). */
static void lock_holder(int fd, char *buf, size_t cap) {
    char raw[512];
    ssize_t n = pread(fd, raw, sizeof raw - 1, 0);
    raw[n > 0 ? n : 0] = '\0';
    const char *body = strncmp(raw, LOCK_MAGIC, strlen(LOCK_MAGIC)) ? "" : raw + strlen(LOCK_MAGIC);
    snprintf(buf, cap, "%s", *body ? body : "an unknown process");
    for (char *c = buf; *c; c++)
        if (*c == '\n') *c = *(c + 1) ? ' ' : '\0';
}

petl_status petl_lock_take(const char *path, const char *who, petl_lock **out, petl_error *err) {
    *out = NULL;
    char *lp = lock_path_of(path);
    if (!lp) return petl_fail(err, PETL_ERR_ARG, "%s: no lock can be taken beside it", path);
    /* Open, lock, then check that the name still leads to the locked file: a holder that
     * finished in between unlinked it, and a lock on an unlinked file excludes nobody. */
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            petl_status s = petl_fail(err, PETL_ERR_IO, "%s: cannot create the lock %s: %s", path,
                                      lp, strerror(errno));
            free(lp);
            return s;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && a.st_size > 0) {
            char head[sizeof LOCK_MAGIC];
            ssize_t n = pread(fd, head, sizeof head - 1, 0);
            if (n != (ssize_t)sizeof head - 1 || memcmp(head, LOCK_MAGIC, sizeof head - 1)) {
                close(fd);
                petl_status s =
                    petl_fail(err, PETL_ERR_IO,
                              "%s: %s exists and is not a petl lock; move it away", path, lp);
                free(lp);
                return s;
            }
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            char holder[512];
            lock_holder(fd, holder, sizeof holder);
            close(fd);
            petl_status s = petl_fail(err, PETL_ERR_IO,
                                      "%s is in use by another run (%s); wait for it to finish "
                                      "or stop it",
                                      path, holder);
            free(lp);
            return s;
        }
        if (fstat(fd, &a) != 0 || stat(lp, &b) != 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        char text[1024];
        time_t now = time(NULL);
        struct tm tmv;
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
        int tl = snprintf(text, sizeof text, LOCK_MAGIC "pid %ld, started %s, %s\n", (long)getpid(),
                          when, who ? who : "petl");
        if (tl < 0 || (size_t)tl >= sizeof text) tl = (int)strlen(text);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)tl, 0) != tl) {
            petl_status s = petl_fail(err, PETL_ERR_IO, "%s: cannot write the lock %s: %s", path,
                                      lp, strerror(errno));
            unlink(lp);
            close(fd);
            free(lp);
            return s;
        }
        petl_lock *l = malloc(sizeof *l);
        if (!l) {
            unlink(lp);
            close(fd);
            free(lp);
            return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        }
        *l = (petl_lock){fd, lp};
        *out = l;
        return PETL_OK;
    }
    free(lp);
    return petl_fail(err, PETL_ERR_IO, "%s: the lock keeps changing hands; try again", path);
}

void petl_lock_release(petl_lock *l) {
    if (!l) return;
    unlink(l->path); /* while still holding it: the next taker re-checks the name */
    close(l->fd);
    free(l->path);
    free(l);
}

/* ------------------------------------------------------------------------------ litter */

static void note(char **report, const char *fmt, ...) PETL_PRINTF(2, 3);
static void note(char **report, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = *report ? strlen(*report) : 0, n = strlen(line);
    char *r = realloc(*report, old + n + 2);
    if (!r) return;
    memcpy(r + old, line, n);
    memcpy(r + old + n, "\n", 2);
    *report = r;
}

/* NAME is PREFIX followed by a process id; *pid gets it. */
static bool is_old_name(const char *name, const char *prefix, long *pid) {
    size_t p = strlen(prefix);
    if (strncmp(name, prefix, p) != 0 || !name[p]) return false;
    char *end;
    *pid = strtol(name + p, &end, 10);
    return *end == '\0' && *pid > 0;
}

static bool pid_alive(long pid) {
    return pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

static bool complete_adapter(const char *dir) {
    char *w = petl_path_join(dir, PETL_ADAPTER_WEIGHTS);
    bool ok = w && access(w, R_OK) == 0 && has_petl_config(dir);
    free(w);
    return ok;
}

/* One entry of the output's parent folder: a temporary or replaced adapter folder. */
static void clean_dir_entry(const char *parent, const char *name, const char *out, const char *base,
                            char **report) {
    char tmp_prefix[PATH_MAX + 16], old_prefix[PATH_MAX + 16];
    snprintf(tmp_prefix, sizeof tmp_prefix, ".%s.tmp-", base);
    snprintf(old_prefix, sizeof old_prefix, ".%s.old-", base);
    long pid = 0;
    bool tmp = is_tmp_name(name, tmp_prefix), old = !tmp && is_old_name(name, old_prefix, &pid);
    if (!tmp && !old) return;
    char *p = petl_path_join(parent, name);
    struct stat sb;
    if (!p || lstat(p, &sb) != 0 || !S_ISDIR(sb.st_mode) || (old && pid_alive(pid))) {
        free(p);
        return;
    }
    if (old && lstat(out, &sb) != 0 && errno == ENOENT && complete_adapter(p)) {
        /* Killed between the two renames of a replacement: the old adapter is the only one. */
        if (rename(p, out) == 0)
            note(report, "restored %s from %s, left by a run killed while replacing it", out, p);
        else
            note(report, "%s is missing but %s holds the adapter it replaced: restore it with mv",
                 out, p);
    } else if (petl_out_remove_adapter_dir(p) == 0) {
        note(report, "removed %s, left by a killed run", p);
    } else {
        note(report, "left %s (a killed run's folder that holds files petl did not write)", p);
    }
    free(p);
}

petl_status petl_out_clean_litter(const char *out, const char *checkpoint, char **report,
                                  petl_error *err) {
    *report = NULL;
    char parent[PATH_MAX], base[PATH_MAX];
    petl_status s = petl_path_split("--out", out, parent, base, sizeof parent, err);
    if (s != PETL_OK) return s;
    DIR *d = opendir(parent);
    if (!d)
        return petl_fail(err, PETL_ERR_IO, "%s: cannot read %s: %s", out, parent, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        clean_dir_entry(parent, e->d_name, out, base, report);
    closedir(d);
    if (!checkpoint) return PETL_OK;
    char cparent[PATH_MAX], cbase[PATH_MAX];
    if ((s = petl_path_split("--checkpoint", checkpoint, cparent, cbase, sizeof cparent, err)) !=
        PETL_OK)
        return s;
    if (!(d = opendir(cparent))) return PETL_OK;
    while ((e = readdir(d)) != NULL) {
        if (!petl_is_write_tmp(e->d_name, cbase)) continue;
        char *p = petl_path_join(cparent, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(p) == 0)
            note(report, "removed %s, a partial checkpoint left by a killed run", p);
        free(p);
    }
    closedir(d);
    return PETL_OK;
}

petl_status petl_out_begin(const char *out, bool force, char *dir, char *parent, char *base,
                           char *tmp, petl_out_state *state, petl_error *err) {
    petl_status s = petl_out_resolve(out, dir, PATH_MAX, err);
    if (s == PETL_OK) s = petl_out_check(dir, force, state, err);
    if (s == PETL_OK) s = petl_path_split("--out", dir, parent, base, PATH_MAX, err);
    if (s != PETL_OK) return s;
    snprintf(tmp, 2 * PATH_MAX + 16, "%s/.%s.tmp-XXXXXX", parent, base);
    if (!mkdtemp(tmp))
        return petl_fail(err, PETL_ERR_IO, "%s: cannot create a temporary folder in %s: %s", dir,
                         parent, strerror(errno));
    chmod(tmp, 0755);
    return PETL_OK;
}
