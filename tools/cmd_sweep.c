/* petl sweep: runs a grid of `petl train` settings, resumably, into OUT/runs/<id>/, tabulates
 * every run (OUT/results.csv, OUT/results.json) and keeps the best adapter as OUT/best.
 *
 * Each run is a child process (this same binary, `petl train`) rather than a call into the
 * trainer: a run that crashes or runs out of memory cannot take the sweep down with it, its
 * peak memory is measured on its own (wait4's rusage of that child, not a maximum over the
 * sweep), every run starts from a clean process (no state leaking between runs through thread
 * pools or allocator high-water marks), and `petl train --resume` already gives bitwise
 * resumption from a checkpoint. The price, loading the base model once per run, is a second
 * next to minutes of training. */
#define _GNU_SOURCE /* renameat2 (RENAME_EXCHANGE): the atomic swap of OUT/best */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: petl sweep --task TASK --data DIR --out DIR --grid SPEC [OPTIONS] [-- "
        "TRAIN_OPTS]\n\n"
        "Trains every combination of the grid with `petl train`, each into OUT/runs/<id>/\n"
        "(adapter/, summary.json, train.log), and writes OUT/results.csv and OUT/results.json\n"
        "(settings, dev metrics, score, trained parameters and %%, seconds, peak RSS per run) and\n"
        "OUT/best (the adapter with the best dev score, replaced atomically).\n"
        "Rerunning the same command resumes: finished runs (summary.json present) are kept, an\n"
        "interrupted one continues from its checkpoint.\n\n"
        "  --grid SPEC          axes NAME=V1,V2,... separated by spaces, e.g.\n"
        "                       \"lr=3e-5,3e-4 epochs=1,3 size=8,64 seed=1,2\"; NAME is a train\n"
        "                       option without dashes (lr, epochs, batch, seed, max-len, warmup,\n"
        "                       weight-decay, tune, init-sd, placement) or size, act, top (K)\n"
        "  --model DIR          base model folder (default: $PETL_MODEL or\n"
        "                       models/all-MiniLM-L6-v2)\n"
        "  --task TASK          as petl train\n"
        "  --data DIR           task folder, as petl train\n"
        "  --out DIR            sweep folder (created with its parents; reused when resuming)\n"
        "  --threads N          threads of each run\n"
        "  --checkpoint-every N checkpoint each run every N steps (default: at epoch ends)\n"
        "  --dry-run            list the runs and their state, train nothing\n"
        "  -- TRAIN_OPTS        further `petl train` options for every run (the grid's values\n"
        "                       come after them, so an axis wins over a fixed option)\n"
        "  -h, --help           this help\n\n"
        "Exit status: 0 when every run finished, 1 when some failed (rerun to retry them).\n");
}

typedef struct {
    const char *model, *task, *data, *out, *grid_spec;
    long threads, ckpt_every;
    bool dry_run;
    cli_rest extra; /* the train options after -- */
} sweep_opts;

/* ------------------------------------------------------------------------- files */

static char *path2(const char *a, const char *b) {
    return petl_path_join(a, b);
}

static char *path3(const char *a, const char *b, const char *c) {
    char *ab = petl_path_join(a, b);
    char *r = ab ? petl_path_join(ab, c) : NULL;
    free(ab);
    return r;
}

static int mkdir_p1(const char *p) {
    return mkdir(p, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

/* mkdir -p: p and every missing folder above it (errno set on failure). */
static int mkdir_parents(const char *p) {
    char *q = strdup(p);
    if (!q) return -1;
    int rc = 0;
    for (char *s = strchr(q + 1, '/'); s && !rc; s = strchr(s + 1, '/')) {
        *s = '\0';
        rc = mkdir_p1(q);
        *s = '/';
    }
    if (!rc) rc = mkdir_p1(q);
    int e = errno;
    free(q);
    errno = e;
    return rc;
}

/* Writes text to path atomically (petl_write_file); says why on stderr when it cannot. */
static int write_text(const char *path, const char *text) {
    petl_error err = {0};
    if (petl_write_file(path, text, strlen(text), &err) == PETL_OK) return 0;
    fprintf(stderr, "petl sweep: %s\n", err.msg);
    return -1;
}

static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = -1, rc = -1;
    if (in < 0) return -1;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (out >= 0) {
        char buf[1 << 16];
        ssize_t r;
        rc = 0;
        while ((r = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)r) != r) {
                rc = -1;
                break;
            }
        if (r < 0 || fsync(out) != 0) rc = -1;
        if (close(out) != 0) rc = -1;
    }
    close(in);
    return rc;
}

#define BEST_MARKER "SWEEP_RUN" /* OUT/best's file naming the run it was copied from */

/* Whether NAME is a file install_best writes (or its temporary file, left by a killed sweep). */
static bool is_best_file(const char *name) {
    return !strcmp(name, PETL_ADAPTER_CONFIG) || !strcmp(name, PETL_ADAPTER_WEIGHTS) ||
           !strcmp(name, BEST_MARKER) || petl_is_write_tmp(name, BEST_MARKER);
}

/* Removes a copy of the best adapter: the files install_best writes, then the folder. Anything
 * else a user put there stays, and so does the folder (petl deletes only what it created). */
static void remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!is_best_file(e->d_name)) continue;
        char *p = path2(dir, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(p);
        free(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

/* Whether dir is missing, or a folder holding only what install_best writes. Otherwise says on
 * stderr what else is there: the sweep replaces only its own copy of the best adapter. */
static bool replaceable_best(const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) return errno == ENOENT;
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "petl sweep: %s is not a folder the sweep wrote; move it away\n", dir);
        return false;
    }
    DIR *d = opendir(dir);
    if (!d) return false;
    const char *other = NULL;
    struct dirent *e;
    while (!other && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !is_best_file(e->d_name))
            other = e->d_name;
    if (other)
        fprintf(stderr,
                "petl sweep: %s holds %s, which the sweep did not write; it replaces only its own "
                "copy of the best adapter: move the folder away\n",
                dir, other);
    closedir(d);
    return other == NULL;
}

/* OUT/best := a copy of adapter_dir, swapped in atomically (RENAME_EXCHANGE where the kernel
 * has it), so that a reader sees the old best or the new one, never half of either. */
static int install_best(const char *out, const char *adapter_dir, const char *id) {
    char *best = path2(out, "best"), *tmp = path2(out, ".best.tmp");
    int rc = -1;
    if (!best || !tmp || !replaceable_best(best) || !replaceable_best(tmp)) goto done;
    remove_flat_dir(tmp);
    if (mkdir(tmp, 0777) != 0) goto done;
    static const char *const files[] = {PETL_ADAPTER_CONFIG, PETL_ADAPTER_WEIGHTS};
    for (size_t i = 0; i < 2; i++) {
        char *a = path2(adapter_dir, files[i]), *b = path2(tmp, files[i]);
        int r = a && b ? copy_file(a, b) : -1;
        free(a);
        free(b);
        if (r) goto done;
    }
    char *marker = path2(tmp, BEST_MARKER);
    int r = marker ? write_text(marker, id) : -1;
    free(marker);
    if (r) goto done;
    struct stat sb;
    if (stat(best, &sb) != 0) {
        rc = rename(tmp, best);
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, best, RENAME_EXCHANGE) == 0) {
        remove_flat_dir(tmp); /* now the old best */
        rc = 0;
    } else {
        /* No RENAME_EXCHANGE (old kernel, some filesystems): move the old one aside first. */
        char *old = path2(out, ".best.old");
        if (old) {
            remove_flat_dir(old);
            if (rename(best, old) == 0 && rename(tmp, best) == 0) rc = 0;
            remove_flat_dir(old);
        }
        free(old);
    }
done:
    if (rc) remove_flat_dir(tmp);
    free(best);
    free(tmp);
    return rc;
}

/* The id of the run OUT/best was copied from ("" when none). */
static void current_best(const char *out, char *buf, size_t cap) {
    buf[0] = '\0';
    char *p = path3(out, "best", BEST_MARKER);
    FILE *f = p ? fopen(p, "r") : NULL;
    if (f) {
        size_t n = fread(buf, 1, cap - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    free(p);
}

/* ------------------------------------------------------------------------- running */

/* The dev score of a train summary: the mean of its dev metrics except mse (GLUE's task score,
 * as petl_metric_set.score), which for SQuAD is F1 alone (exact_match is not averaged in);
 * NAN when none. */
static double summary_score(json_t *summary) {
    static const char *const names[] = {"accuracy", "f1", "mcc", "pearson", "spearman"};
    double s = 0;
    int n = 0;
    for (size_t i = 0; i < 5; i++) {
        json_t *v = json_object_get(summary, names[i]);
        if (json_is_number(v)) s += json_number_value(v), n++;
    }
    return n ? s / n : NAN;
}

/* A setting as JSON: a number when the value is one (plots need numbers), else a string. */
static json_t *setting_json(const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (end != v && !*end && isfinite(x)) return json_real(x);
    return json_string(v);
}

/* Runs `petl train` for run r. Returns 0 when it finished and summary.json is written. */
static int run_one(const sweep_opts *o, const petl_grid *g, size_t r, const char *id,
                   const char *rdir) {
    char *adapter = path2(rdir, "adapter"), *sum_tmp = path2(rdir, "summary.out"),
         *sum = path2(rdir, "summary.json"), *log = path2(rdir, "train.log");
    int rc = -1;
    char **av = NULL;
    if (!adapter || !sum_tmp || !sum || !log) goto done;
    size_t cap = 24 + (size_t)o->extra.argc + 2 * g->n_axes, n = 0;
    av = calloc(cap, sizeof *av);
    if (!av) goto done;
    char threads[32], every[32];
    av[n++] = "petl";
    av[n++] = "train";
    av[n++] = "--model", av[n++] = (char *)o->model;
    av[n++] = "--task", av[n++] = (char *)o->task;
    av[n++] = "--data", av[n++] = (char *)o->data;
    av[n++] = "--out", av[n++] = adapter;
    /* --force: a run killed after saving its adapter but before its summary is redone from
     * its checkpoint or from the start (deterministic: the same adapter). */
    av[n++] = "--resume", av[n++] = "--force";
    if (o->threads > 0) {
        snprintf(threads, sizeof threads, "%ld", o->threads);
        av[n++] = "--threads", av[n++] = threads;
    }
    if (o->ckpt_every > 0) {
        snprintf(every, sizeof every, "%ld", o->ckpt_every);
        av[n++] = "--checkpoint-every", av[n++] = every;
    }
    for (int i = 0; i < o->extra.argc; i++)
        av[n++] = o->extra.argv[i];
    for (size_t a = 0; a < g->n_axes; a++) {
        av[n++] = (char *)g->axes[a].option;
        av[n++] = g->axes[a].args[petl_grid_value_index(g, r, a)];
    }
    av[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, sum_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    pid_t pid;
    double t0 = petl_now();
    int e = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, av, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        fprintf(stderr, "petl sweep: %s: cannot start petl train: %s\n", id, strerror(e));
        goto done;
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "petl sweep: %s: wait: %s\n", id, strerror(errno));
            goto done;
        }
    double wall = petl_now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "petl sweep: %s: petl train killed by signal %d (see %s)\n", id,
                    WTERMSIG(status), log);
        else
            fprintf(stderr, "petl sweep: %s: petl train exited %d (see %s)\n", id,
                    WEXITSTATUS(status), log);
        goto done;
    }
    json_error_t je;
    json_t *s = json_load_file(sum_tmp, 0, &je);
    if (!json_is_object(s)) {
        fprintf(stderr, "petl sweep: %s: unreadable train summary %s: %s\n", id, sum_tmp, je.text);
        json_decref(s);
        goto done;
    }
    json_t *settings = json_object();
    for (size_t a = 0; a < g->n_axes; a++)
        json_object_set_new(settings, g->axes[a].name,
                            setting_json(g->axes[a].values[petl_grid_value_index(g, r, a)]));
    json_object_set_new(s, "id", json_string(id));
    json_object_set_new(s, "settings", settings);
    double score = summary_score(s);
    json_object_set_new(s, "score", isfinite(score) ? json_real(score) : json_null());
    json_object_set_new(s, "wall_seconds", json_real(wall));
    json_object_set_new(s, "peak_rss_mb", json_real((double)ru.ru_maxrss / 1024.0));
    char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(s);
    if (!text || write_text(sum, text) != 0) {
        fprintf(stderr, "petl sweep: %s: cannot write %s%s\n", id, sum,
                text ? "" : ": out of memory");
        free(text);
        goto done;
    }
    free(text);
    unlink(sum_tmp);
    rc = 0;
done:
    free(av);
    free(adapter);
    free(sum_tmp);
    free(sum);
    free(log);
    return rc;
}

/* ------------------------------------------------------------------------- tables */

/* GLUE's metrics and SQuAD's exact_match: the CSV has a column for each that any run reported. */
static const char *const metric_cols[] = {"accuracy", "exact_match", "f1", "mcc",
                                          "pearson",  "spearman",    "mse"};
#define N_METRIC_COLS (sizeof metric_cols / sizeof *metric_cols)
static const char *const num_cols[] = {"score",      "trainable", "trainable_pct", "steps",
                                       "best_epoch", "seconds",   "wall_seconds",  "peak_rss_mb"};

static void csv_value(FILE *f, json_t *v) {
    if (json_is_integer(v))
        fprintf(f, "%lld", (long long)json_integer_value(v));
    else if (json_is_number(v))
        fprintf(f, "%.9g", json_number_value(v));
    else if (json_is_string(v))
        fputs(json_string_value(v), f); /* grid values: no commas or quotes by construction */
}

/* results.csv: id, the axes, the metrics any run reported, then the numbers of every run. */
static void write_csv(FILE *f, const petl_grid *g, json_t *runs, const bool *has_metric) {
    fputs("id", f);
    for (size_t a = 0; a < g->n_axes; a++)
        fprintf(f, ",%s", g->axes[a].name);
    for (size_t m = 0; m < N_METRIC_COLS; m++)
        if (has_metric[m]) fprintf(f, ",%s", metric_cols[m]);
    for (size_t c = 0; c < sizeof num_cols / sizeof *num_cols; c++)
        fprintf(f, ",%s", num_cols[c]);
    fputc('\n', f);
    size_t i;
    json_t *s;
    json_array_foreach(runs, i, s) {
        fputs(json_string_value(json_object_get(s, "id")), f);
        json_t *set = json_object_get(s, "settings");
        for (size_t a = 0; a < g->n_axes; a++) {
            fputc(',', f);
            csv_value(f, json_object_get(set, g->axes[a].name));
        }
        for (size_t m = 0; m < N_METRIC_COLS; m++)
            if (has_metric[m]) fputc(',', f), csv_value(f, json_object_get(s, metric_cols[m]));
        for (size_t c = 0; c < sizeof num_cols / sizeof *num_cols; c++)
            fputc(',', f), csv_value(f, json_object_get(s, num_cols[c]));
        fputc('\n', f);
    }
}

/* Reads every finished run's summary (in grid order) and writes results.csv / results.json;
 * returns the best run's index by score (-1 when none). A table that cannot be written (a full
 * disk) is reported and sets *failed: the sweep's status says so. */
static long write_tables(const sweep_opts *o, const petl_grid *g, char **ids, size_t *n_done,
                         bool *failed) {
    json_t *runs = json_array();
    long best = -1;
    double best_score = -INFINITY;
    bool has_metric[N_METRIC_COLS] = {0};
    *n_done = 0;
    for (size_t r = 0; r < g->n_runs; r++) {
        char *p = path3(o->out, "runs", ids[r]), *q = p ? path2(p, "summary.json") : NULL;
        json_t *s = q ? json_load_file(q, 0, NULL) : NULL;
        free(p);
        free(q);
        if (!json_is_object(s)) {
            json_decref(s);
            continue;
        }
        (*n_done)++;
        for (size_t m = 0; m < N_METRIC_COLS; m++)
            if (json_object_get(s, metric_cols[m])) has_metric[m] = true;
        json_t *sc = json_object_get(s, "score");
        if (json_is_number(sc) && json_number_value(sc) > best_score) {
            best_score = json_number_value(sc);
            best = (long)r;
        }
        json_array_append_new(runs, s);
    }
    char *csv = path2(o->out, "results.csv"), *table = NULL;
    size_t table_len = 0;
    FILE *f = csv ? open_memstream(&table, &table_len) : NULL;
    if (f) write_csv(f, g, runs, has_metric);
    const bool built = f && fclose(f) == 0 && table;
    if (!built)
        fprintf(stderr, "petl sweep: cannot write %s: out of memory\n", csv ? csv : "results.csv");
    if (!built || write_text(csv, table) != 0) *failed = true;
    free(table);
    free(csv);

    json_t *axes = json_array();
    for (size_t a = 0; a < g->n_axes; a++)
        json_array_append_new(axes, json_string(g->axes[a].name));
    json_t *top = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:o}", "task", o->task, "grid",
                            o->grid_spec, "model", o->model, "axes", axes, "planned",
                            (json_int_t)g->n_runs, "finished", (json_int_t)*n_done, "best",
                            best >= 0 ? json_string(ids[best]) : json_null(), "runs", runs);
    char *text = top ? json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    char *jp = path2(o->out, "results.json");
    if (!text || !jp) {
        fprintf(stderr, "petl sweep: cannot write %s: out of memory\n", jp ? jp : "results.json");
        *failed = true;
    } else if (write_text(jp, text) != 0) {
        *failed = true;
    }
    free(jp);
    free(text);
    json_decref(top);
    return best;
}

/* ------------------------------------------------------------------------- main */

/* Returns CLI_GO_ON, or the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, sweep_opts *o) {
    *o = (sweep_opts){.model = cli_default_model()};
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_STR("--task", &o->task),
        CLI_OPT_STR("--data", &o->data),
        CLI_OPT_STR("--out", &o->out),
        CLI_OPT_STR("--grid", &o->grid_spec),
        CLI_OPT_LONG("--threads", &o->threads, 1, 1024),
        CLI_OPT_LONG("--checkpoint-every", &o->ckpt_every, 0, 1L << 40),
        CLI_OPT_FLAG("--dry-run", &o->dry_run),
        CLI_OPT_REST(&o->extra),
    };
    int rc = cli_parse_options("sweep", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!o->task || !o->data || !o->out || !o->grid_spec) {
        fprintf(stderr, "petl sweep: --task, --data, --out and --grid are required "
                        "(petl sweep --help)\n");
        return 2;
    }
    /* The options sweep passes to every run itself, as --NAME VALUE or --NAME=VALUE. */
    static const char *const own[] = {"--out", "--model", "--task", "--data"};
    for (int i = 0; i < o->extra.argc; i++)
        for (size_t k = 0; k < sizeof own / sizeof *own; k++) {
            const char *e = o->extra.argv[i];
            size_t len = strlen(own[k]);
            if (!strncmp(e, own[k], len) && (e[len] == '\0' || e[len] == '=')) {
                fprintf(stderr, "petl sweep: give %s to petl sweep itself, not after --\n", own[k]);
                return 2;
            }
        }
    return CLI_GO_ON;
}

/* The fixed part of the sweep (everything but the grid) must match when resuming, or the
 * finished runs would be mixed with runs of another experiment. */
static int check_fixed(const sweep_opts *o) {
    json_t *extra = json_array();
    for (int i = 0; i < o->extra.argc; i++)
        json_array_append_new(extra, json_string(o->extra.argv[i]));
    json_t *j = json_pack("{s:s, s:s, s:s, s:o}", "model", o->model, "task", o->task, "data",
                          o->data, "train_options", extra);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    char *p = path2(o->out, "sweep.json");
    int rc = -1;
    if (!text || !p) goto done;
    json_t *old = json_load_file(p, 0, NULL);
    if (old) {
        char *old_text = json_dumps(old, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(old);
        bool same = old_text && !strcmp(old_text, text);
        free(old_text);
        if (!same) {
            fprintf(stderr,
                    "petl sweep: %s was made with another --model, --task, --data or "
                    "train options:\n%s\nuse another --out\n",
                    p, text);
            goto done;
        }
        rc = 0;
    } else {
        rc = write_text(p, text);
    }
done:
    free(text);
    free(p);
    return rc;
}

int cmd_sweep(int argc, char **argv) {
    sweep_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    petl_error err = {0};
    petl_grid *g = NULL;
    if (petl_grid_parse(o.grid_spec, &g, &err) != PETL_OK) {
        fprintf(stderr, "petl sweep: %s\n", err.msg);
        return 2;
    }
    char **ids = calloc(g->n_runs, sizeof *ids);
    char *runs_dir = path2(o.out, "runs");
    size_t failed = 0, n_done = 0;
    rc = 1;
    if (!ids || !runs_dir) goto oom;
    for (size_t r = 0; r < g->n_runs; r++) {
        char id[PETL_GRID_ID_MAX];
        if (petl_grid_run_id(g, r, id, sizeof id) >= sizeof id) {
            fprintf(stderr, "petl sweep: run ids over %d characters: use fewer axes\n",
                    PETL_GRID_ID_MAX);
            rc = 2;
            goto done;
        }
        if (!(ids[r] = strdup(id))) goto oom;
    }
    if (o.dry_run) {
        for (size_t r = 0; r < g->n_runs; r++) {
            char *p = path3(o.out, "runs", ids[r]), *q = p ? path2(p, "summary.json") : NULL;
            printf("%s\t%s\n", ids[r], q && access(q, F_OK) == 0 ? "done" : "todo");
            free(p);
            free(q);
        }
        rc = 0;
        goto done;
    }
    if (mkdir_parents(o.out) || mkdir_p1(runs_dir)) {
        fprintf(stderr, "petl sweep: cannot create %s: %s\n", runs_dir, strerror(errno));
        goto done;
    }
    if (check_fixed(&o)) goto done;
    fprintf(stderr, "sweep: %zu runs into %s\n", g->n_runs, runs_dir);
    for (size_t r = 0; r < g->n_runs; r++) {
        char *rdir = path2(runs_dir, ids[r]), *sum = rdir ? path2(rdir, "summary.json") : NULL;
        if (!sum) {
            free(rdir);
            goto oom;
        }
        if (access(sum, F_OK) == 0) {
            fprintf(stderr, "[%zu/%zu] %s: done before, kept\n", r + 1, g->n_runs, ids[r]);
        } else if (mkdir_p1(rdir)) {
            fprintf(stderr, "petl sweep: cannot create %s: %s\n", rdir, strerror(errno));
            failed++;
        } else {
            fprintf(stderr, "[%zu/%zu] %s: training\n", r + 1, g->n_runs, ids[r]);
            double t0 = petl_now();
            if (run_one(&o, g, r, ids[r], rdir) == 0) {
                json_t *s = json_load_file(sum, 0, NULL);
                json_t *sc = json_object_get(s, "score");
                fprintf(stderr, "[%zu/%zu] %s: dev score %.4f in %.1f s\n", r + 1, g->n_runs,
                        ids[r], json_is_number(sc) ? json_number_value(sc) : NAN, petl_now() - t0);
                json_decref(s);
            } else {
                failed++;
            }
            /* Tables and best after every run: a long sweep is useful while it runs. */
            bool table_failed = false; /* reported; the final write below sets the status */
            long best = write_tables(&o, g, ids, &n_done, &table_failed);
            char cur[PETL_GRID_ID_MAX];
            current_best(o.out, cur, sizeof cur);
            if (best >= 0 && strcmp(cur, ids[best])) {
                char *ad = path3(runs_dir, ids[best], "adapter");
                if (!ad || install_best(o.out, ad, ids[best]) != 0)
                    fprintf(stderr, "petl sweep: cannot copy %s to %s/best\n", ad ? ad : "", o.out);
                free(ad);
            }
        }
        free(rdir);
        free(sum);
    }
    /* Again at the end: a resumed sweep with nothing left to run still rewrites the tables. */
    bool table_failed = false;
    long best = write_tables(&o, g, ids, &n_done, &table_failed);
    if (table_failed) failed++;
    char cur[PETL_GRID_ID_MAX];
    current_best(o.out, cur, sizeof cur);
    if (best >= 0 && strcmp(cur, ids[best])) {
        char *ad = path3(runs_dir, ids[best], "adapter");
        if (!ad || install_best(o.out, ad, ids[best]) != 0) failed++;
        free(ad);
    }
    fprintf(stderr, "sweep: %zu of %zu runs finished%s%s; results in %s/results.csv\n", n_done,
            g->n_runs, best >= 0 ? ", best " : "", best >= 0 ? ids[best] : "", o.out);
    rc = failed ? 1 : 0;
    goto done;
oom:
    fprintf(stderr, "petl sweep: out of memory\n");
done:
    if (ids)
        for (size_t r = 0; r < g->n_runs; r++)
            free(ids[r]);
    free(ids);
    free(runs_dir);
    petl_grid_free(g);
    return rc;
}
