/* petl plot: sweep results (line charts) and ablation matrices (heatmaps) as PNG or SVG.
 *
 * Drawn by gnuplot (Debian gnuplot-nox) from a generated script, started with posix_spawnp:
 * axes, ticks, log scales, legends, colour boxes and two good output formats come from a
 * plotting tool that has been maintained for decades, instead of a few hundred lines of our
 * own layout code per format. No Python at run time; gnuplot is only needed to draw. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *cli_plot_format(const char *out) {
    size_t n = out ? strlen(out) : 0;
    if (n > 4 && !strcmp(out + n - 4, ".svg")) return "svg";
    if (n > 4 && !strcmp(out + n - 4, ".png")) return "png";
    return NULL;
}

/* A gnuplot single-quoted string: ' doubles. */
static void gp_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

static void terminal(FILE *f, const char *out, const char *fmt) {
    if (!strcmp(fmt, "svg"))
        fprintf(f,
                "set terminal svg size 900,600 noenhanced font 'sans,13' background '#ffffff'\n");
    else
        fprintf(f, "set terminal pngcairo size 900,600 noenhanced font 'sans,11'\n");
    fprintf(f, "set output ");
    gp_string(f, out);
    fprintf(f, "\n");
}

/* Runs gnuplot on script (PETL_GNUPLOT overrides the program). */
static int run_gnuplot(const char *script) {
    const char *prog = getenv("PETL_GNUPLOT");
    if (!prog || !*prog) prog = "gnuplot";
    char *av[] = {(char *)prog, (char *)script, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, prog, NULL, NULL, av, environ);
    if (e) {
        fprintf(stderr, "petl plot: cannot run %s: %s (Debian: apt-get install gnuplot-nox)\n",
                prog, strerror(e));
        return 1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "petl plot: %s failed on %s\n", prog, script);
        return 1;
    }
    return 0;
}

/* Heatmap of an ablation matrix: x the last removed layer, y the first. */
static int heatmap(json_t *root, FILE *sf, FILE *df, const char *data, const char *out,
                   const char *fmt) {
    json_t *mat = json_object_get(root, "matrix");
    size_t L = json_array_size(mat);
    if (!json_is_array(mat) || L == 0) {
        fprintf(stderr, "petl plot: \"matrix\" is not a non-empty array\n");
        return 1;
    }
    for (size_t i = 0; i < L; i++) {
        json_t *row = json_array_get(mat, i);
        if (json_array_size(row) != L) {
            fprintf(stderr, "petl plot: matrix row %zu has %zu values, want %zu\n", i,
                    json_array_size(row), L);
            return 1;
        }
        for (size_t j = 0; j < L; j++) {
            json_t *v = json_array_get(row, j);
            if (json_is_number(v)) fprintf(df, "%zu %zu %.9g\n", j, i, json_number_value(v));
        }
    }
    const char *metric = json_string_value(json_object_get(root, "metric"));
    const char *task = json_string_value(json_object_get(root, "task"));
    json_t *full = json_object_get(root, "full");
    terminal(sf, out, fmt);
    char title[256];
    snprintf(title, sizeof title,
             "%s%sdev %s with the adapters of layers i..j removed "
             "(all kept: %.4f)",
             task ? task : "", task ? ": " : "", metric ? metric : "score",
             json_is_number(full) ? json_number_value(full) : NAN);
    fprintf(sf, "set title ");
    gp_string(sf, title);
    fprintf(sf, "\nset xlabel 'last layer removed (j)'\nset ylabel 'first layer removed (i)'\n"
                "set cblabel ");
    gp_string(sf, metric ? metric : "score");
    fprintf(sf,
            "\nset xrange [-0.5:%zu.5]\nset yrange [%zu.5:-0.5]\n"
            "set xtics 1\nset ytics 1\nset size ratio -1\nset palette defined (0 '#440154', 0.5 "
            "'#21918c', 1 '#fde725')\n"
            "unset key\n",
            L - 1, L - 1);
    fprintf(sf, "plot ");
    gp_string(sf, data);
    /* Cells as filled boxes rather than `with image`, which wants a full grid: the lower
     * triangle (j < i) is not a span and stays empty. */
    fprintf(sf, " using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette "
                "title 'score', '' using 1:2:(sprintf('%%.2f', $3)) with labels textcolor "
                "'white' notitle\n");
    return 0;
}

/* A run's value for key: a top-level field, a setting, or a dev metric. */
static json_t *run_value(json_t *run, const char *key) {
    json_t *v = json_object_get(run, key);
    if (!v) v = json_object_get(json_object_get(run, "settings"), key);
    if (!v) v = json_object_get(json_object_get(run, "dev"), key);
    return v;
}

static void value_text(json_t *v, char *buf, size_t cap) {
    if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_number(v))
        snprintf(buf, cap, "%g", json_number_value(v));
    else
        snprintf(buf, cap, "(none)");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* y against x, one line per series value; runs sharing (series, x) (seeds, say) are drawn as
 * their mean with a bar from the lowest to the highest. */
static int lines(json_t *root, FILE *sf, FILE *df, const char *data, const char *out,
                 const char *fmt, const char *x, const char *y, const char *series) {
    json_t *runs = json_object_get(root, "runs");
    size_t n = json_array_size(runs);
    if (!json_is_array(runs) || n == 0) {
        fprintf(stderr, "petl plot: no \"runs\" (a results.json of petl sweep) nor \"matrix\" "
                        "(petl ablate)\n");
        return 1;
    }
    char(*names)[128] = calloc(n, sizeof *names);
    double *xs = malloc(n * sizeof *xs);
    int rc = 1;
    size_t n_series = 0, used = 0;
    bool logx_ok = true;
    if (!names || !xs) goto done;
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(runs, i);
        json_t *xv = run_value(r, x), *yv = run_value(r, y);
        if (!json_is_number(xv) || !json_is_number(yv)) continue;
        used++;
        if (json_number_value(xv) <= 0) logx_ok = false;
        char s[128];
        value_text(series ? run_value(r, series) : NULL, s, sizeof s);
        if (!series) snprintf(s, sizeof s, "%s", y);
        size_t k = 0;
        while (k < n_series && strcmp(names[k], s))
            k++;
        if (k == n_series) snprintf(names[n_series++], sizeof names[0], "%s", s);
    }
    if (used == 0) {
        fprintf(stderr, "petl plot: no run has numbers for both '%s' and '%s'\n", x, y);
        goto done;
    }
    /* One data block per series: distinct x ascending, mean / min / max of y. */
    for (size_t k = 0; k < n_series; k++) {
        size_t nx = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *r = json_array_get(runs, i);
            json_t *xv = run_value(r, x), *yv = run_value(r, y);
            char s[128];
            value_text(series ? run_value(r, series) : NULL, s, sizeof s);
            if (!series) snprintf(s, sizeof s, "%s", y);
            if (json_is_number(xv) && json_is_number(yv) && !strcmp(s, names[k]))
                xs[nx++] = json_number_value(xv);
        }
        qsort(xs, nx, sizeof *xs, cmp_double);
        fprintf(df, "# %s\n", names[k]);
        for (size_t a = 0; a < nx; a++) {
            if (a && xs[a] == xs[a - 1]) continue;
            double sum = 0, lo = INFINITY, hi = -INFINITY;
            int cnt = 0;
            for (size_t i = 0; i < n; i++) {
                json_t *r = json_array_get(runs, i);
                json_t *xv = run_value(r, x), *yv = run_value(r, y);
                char s[128];
                value_text(series ? run_value(r, series) : NULL, s, sizeof s);
                if (!series) snprintf(s, sizeof s, "%s", y);
                if (!json_is_number(xv) || !json_is_number(yv) || strcmp(s, names[k]) ||
                    json_number_value(xv) != xs[a])
                    continue;
                double v = json_number_value(yv);
                sum += v, cnt++;
                lo = fmin(lo, v), hi = fmax(hi, v);
            }
            fprintf(df, "%.9g %.9g %.9g %.9g\n", xs[a], sum / cnt, lo, hi);
        }
        fprintf(df, "\n\n");
    }
    /* Sizes, init sds and parameter counts span decades: log x (when every x is positive). */
    static const char *const log_axes[] = {"size", "init-sd", "trainable", "trainable_pct", "lr"};
    bool logx = false;
    for (size_t i = 0; i < sizeof log_axes / sizeof *log_axes; i++)
        if (!strcmp(x, log_axes[i])) logx = logx_ok;
    terminal(sf, out, fmt);
    const char *task = json_string_value(json_object_get(root, "task"));
    char title[256];
    snprintf(title, sizeof title, "%s%s%s against %s", task ? task : "", task ? ": dev " : "", y,
             x);
    fprintf(sf, "set title ");
    gp_string(sf, title);
    fprintf(sf, "\nset xlabel ");
    gp_string(sf, !strcmp(x, "trainable_pct") ? "trained parameters (% of the model)"
                  : !strcmp(x, "trainable")   ? "trained parameters"
                  : !strcmp(x, "size")        ? "adapter size (bottleneck m)"
                                              : x);
    fprintf(sf, "\nset ylabel ");
    gp_string(sf, y);
    fprintf(sf, "\nset grid\nset key outside right top box title ");
    gp_string(sf, series ? series : "");
    fprintf(sf, "\n%s", logx ? "set logscale x\nset format x '%g'\n" : "");
    fprintf(sf, "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n");
    fprintf(sf, "plot ");
    for (size_t k = 0; k < n_series; k++) {
        if (k) fprintf(sf, ", \\\n     ");
        gp_string(sf, data);
        fprintf(sf, " index %zu using 1:2:3:4 with yerrorlines lw 2 pt 7 title ", k);
        gp_string(sf, names[k]);
    }
    fprintf(sf, "\n");
    rc = 0;
done:
    free(names);
    free(xs);
    return rc;
}

int cli_plot_run(const char *in, const char *out, const char *x, const char *y,
                 const char *series) {
    const char *fmt = cli_plot_format(out);
    if (!fmt) {
        fprintf(stderr, "petl plot: the output must end in .svg or .png, got '%s'\n", out);
        return 1;
    }
    struct stat sb; /* a FIFO or device would be read forever (or opened never): refused */
    if (stat(in, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "petl plot: %s: not a regular file\n", in);
        return 1;
    }
    json_error_t je;
    json_t *root = json_load_file(in, 0, &je);
    if (!json_is_object(root)) {
        fprintf(stderr, "petl plot: %s:%d: %s\n", in, je.line, root ? "not an object" : je.text);
        json_decref(root);
        return 1;
    }
    /* The script and its data beside the output, kept on failure for debugging. */
    size_t n = strlen(out) + 8;
    char *script = malloc(n), *data = malloc(n);
    int rc = 1;
    FILE *sf = NULL, *df = NULL;
    if (!script || !data) goto done;
    snprintf(script, n, "%s.gp", out);
    snprintf(data, n, "%s.dat", out);
    sf = fopen(script, "w");
    df = fopen(data, "w");
    if (!sf || !df) {
        fprintf(stderr, "petl plot: cannot write %s: %s\n", sf ? data : script, strerror(errno));
        goto done;
    }
    if (json_object_get(root, "matrix"))
        rc = heatmap(root, sf, df, data, out, fmt);
    else if (!x || !y) {
        fprintf(stderr, "petl plot: sweep results need --x and --y\n");
        rc = 1;
    } else
        rc = lines(root, sf, df, data, out, fmt, x, y, series);
    bool ok = fclose(sf) == 0;
    ok = fclose(df) == 0 && ok;
    sf = df = NULL;
    if (rc == 0 && !ok) rc = 1;
    if (rc == 0) {
        rc = run_gnuplot(script);
        if (rc) unlink(out); /* no empty or half-drawn image left behind */
    }
    if (rc == 0) {
        unlink(script);
        unlink(data);
    }
done:
    if (sf) fclose(sf);
    if (df) fclose(df);
    free(script);
    free(data);
    json_decref(root);
    return rc;
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: petl plot INPUT.json --out FILE.svg|FILE.png [--x KEY --y KEY [--series KEY]]\n\n"
        "Draws with gnuplot (Debian: gnuplot-nox; PETL_GNUPLOT names another binary):\n"
        "  - petl sweep's results.json: --y against --x, one line per value of --series; KEY is\n"
        "    a run field (score, trainable, trainable_pct, seconds, peak_rss_mb, ...), a grid\n"
        "    axis (size, lr, init-sd, top, tune, ...) or a dev metric (accuracy, f1, ...). Runs\n"
        "    that share x and series (seeds) show their mean with a min..max bar. Log x for\n"
        "    size, init-sd, lr and parameter counts.\n"
        "  - petl ablate's JSON: a heatmap of the matrix (--x / --y not needed).\n\n"
        "  e.g. petl plot sweep/results.json --x trainable_pct --y accuracy --series tune \\\n"
        "           --out tradeoff.svg\n");
}

/* INPUT, the one positional argument. */
static int set_input(const char *cmd, const char *opt, const char *v, void *dst) {
    const char **in = dst;
    (void)opt;
    if (*in) {
        fprintf(stderr, "petl %s: one input file, got '%s' and '%s'\n", cmd, *in, v);
        return -1;
    }
    *in = v;
    return 0;
}

int cmd_plot(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *x = NULL, *y = NULL, *series = NULL;
    const cli_opt opts[] = {
        CLI_OPT_CUSTOM(NULL, set_input, &in),
        CLI_OPT_STR("--out", &out),
        CLI_OPT_STR("--x", &x),
        CLI_OPT_STR("--y", &y),
        CLI_OPT_STR("--series", &series),
    };
    int rc = cli_parse_options("plot", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!in || !out) {
        fprintf(stderr, "petl plot: INPUT and --out are required (petl plot --help)\n");
        return 2;
    }
    if (!cli_plot_format(out)) {
        fprintf(stderr, "petl plot: --out must end in .svg or .png, got '%s'\n", out);
        return 2;
    }
    return cli_plot_run(in, out, x, y, series);
}
