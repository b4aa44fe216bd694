/* Sweep grids: parsing and run ids (see include/petl.h, section "sweep grids"). */
#include "sweep.h"

#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* AX_TUNE, AX_TOP, AX_ACT and AX_PLACE values are read by src/options.c's parsers: the grid
 * takes exactly what `petl train` takes. */
typedef enum { AX_INT, AX_REAL, AX_TUNE, AX_TOP, AX_ACT, AX_PLACE } axis_kind;

static const struct {
    const char *name, *alias, *option;
    axis_kind kind;
    double lo, hi; /* numeric range, as `petl train` checks it */
} known[] = {
    {"lr", NULL, "--lr", AX_REAL, 0, 10},
    {"epochs", NULL, "--epochs", AX_INT, 1, 100000},
    {"batch", NULL, "--batch", AX_INT, 1, 65536},
    {"seed", NULL, "--seed", AX_INT, 0, 2147483647.0},
    {"max-len", NULL, "--max-len", AX_INT, 3, 1048576},
    {"warmup", NULL, "--warmup", AX_REAL, 0, 1},
    {"weight-decay", "wd", "--weight-decay", AX_REAL, 0, 10},
    {"size", "adapter-size", "--adapter-size", AX_INT, 1, 65536},
    {"init-sd", NULL, "--init-sd", AX_REAL, 0, 1},
    {"act", "adapter-act", "--adapter-act", AX_ACT, 0, 0},
    {"placement", NULL, "--placement", AX_PLACE, 0, 0},
    {"tune", NULL, "--tune", AX_TUNE, 0, 0},
    {"top", NULL, "--tune", AX_TOP, 0, 0}, /* K of --tune top:K */
};
#define N_KNOWN (sizeof known / sizeof known[0])

static int find_known(const char *name) {
    for (size_t i = 0; i < N_KNOWN; i++)
        if (!strcmp(name, known[i].name) || (known[i].alias && !strcmp(name, known[i].alias)))
            return (int)i;
    return -1;
}

const char *petl_grid_axis_option(const char *name, const char **canonical) {
    int k = find_known(name);
    if (k < 0) return NULL;
    if (canonical) *canonical = known[k].name;
    return known[k].option;
}

static bool parse_number(const char *s, bool integer, double lo, double hi) {
    char *end;
    errno = 0;
    double v;
    if (integer) {
        long x = strtol(s, &end, 10);
        v = (double)x;
    } else {
        v = strtod(s, &end);
    }
    return !errno && end != s && !*end && isfinite(v) && v >= lo && v <= hi;
}

/* The `petl train` argument of value v of axis k (malloc'ed; the value itself, or top:K for the
 * top axis) into *arg, after checking v as `petl train` will. */
static petl_status axis_arg(int k, const char *axis, const char *v, char **arg, petl_error *err) {
    size_t n = strlen(v);
    const char *top = petl_tune_name(PETL_TUNE_TOP);
    *arg = malloc(strlen(top) + n + 2);
    if (!*arg) return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
    if (known[k].kind == AX_TOP)
        sprintf(*arg, "%s:%s", top, v);
    else
        memcpy(*arg, v, n + 1);
    petl_error why = {0};
    petl_tune tune;
    int top_k;
    petl_adapter_act act;
    petl_adapter_placement place;
    bool ok = true;
    switch (known[k].kind) {
    case AX_INT: ok = parse_number(v, true, known[k].lo, known[k].hi); break;
    case AX_REAL: ok = parse_number(v, false, known[k].lo, known[k].hi); break;
    case AX_TUNE:
    case AX_TOP: ok = petl_tune_parse(*arg, &tune, &top_k, &why) == PETL_OK; break;
    case AX_ACT: ok = petl_adapter_act_parse(v, &act, &why) == PETL_OK; break;
    case AX_PLACE: ok = petl_placement_parse(v, &place, &why) == PETL_OK; break;
    }
    if (ok) return PETL_OK;
    return petl_fail(err, PETL_ERR_ARG, "grid: bad value '%s' for axis '%s'%s%s", v, axis,
                     why.msg[0] ? ": " : "", why.msg);
}

static char id_char(char c) {
    return (isalnum((unsigned char)c) || c == '.' || c == '+' || c == '-') ? c : '-';
}

/* Two values of one axis that would give the same run id (e.g. "top:1" and "top-1"). */
static bool same_id(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (id_char(*a) != id_char(*b)) return false;
    return !*a && !*b;
}

void petl_grid_free(petl_grid *g) {
    if (!g) return;
    for (size_t a = 0; a < g->n_axes; a++) {
        petl_grid_axis *ax = &g->axes[a];
        for (size_t i = 0; i < ax->n; i++) {
            free(ax->values[i]);
            free(ax->args[i]);
        }
        free(ax->values);
        free(ax->args);
        free(ax->name);
    }
    free(g->axes);
    free(g);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Parses one "NAME=V1,V2" token [s, s + n) into a new axis at the end of g->axes. */
static petl_status parse_axis(petl_grid *g, const char *s, size_t n, petl_error *err) {
    const char *eq = memchr(s, '=', n);
    if (!eq || eq == s)
        return petl_fail(err, PETL_ERR_ARG, "grid: '%.*s' is not NAME=V1,V2,...", (int)n, s);
    char name[64];
    size_t nl = (size_t)(eq - s);
    if (nl >= sizeof name)
        return petl_fail(err, PETL_ERR_ARG, "grid: axis name '%.*s' is too long", (int)nl, s);
    memcpy(name, s, nl);
    name[nl] = '\0';
    int k = find_known(name);
    if (k < 0)
        return petl_fail(err, PETL_ERR_ARG,
                         "grid: unknown axis '%s' (lr, epochs, batch, seed, max-len, warmup, "
                         "weight-decay, size, init-sd, act, placement, tune, top)",
                         name);
    for (size_t a = 0; a < g->n_axes; a++) {
        const char *other = g->axes[a].name;
        if (!strcmp(other, known[k].name))
            return petl_fail(err, PETL_ERR_ARG, "grid: axis '%s' appears twice", known[k].name);
        if ((!strcmp(other, "tune") && !strcmp(known[k].name, "top")) ||
            (!strcmp(other, "top") && !strcmp(known[k].name, "tune")))
            return petl_fail(err, PETL_ERR_ARG,
                             "grid: 'top' and 'tune' both set --tune: use "
                             "tune=top:1,top:2,... with the other values");
    }
    petl_grid_axis *axes = realloc(g->axes, (g->n_axes + 1) * sizeof *axes);
    if (!axes) return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
    g->axes = axes;
    petl_grid_axis *ax = &axes[g->n_axes++];
    memset(ax, 0, sizeof *ax);
    ax->option = known[k].option;
    if (!(ax->name = dup_n(known[k].name, strlen(known[k].name))))
        return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
    const char *p = eq + 1, *end = s + n;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *ve = c ? c : end;
        size_t vl = (size_t)(ve - p);
        if (vl == 0)
            return petl_fail(err, PETL_ERR_ARG, "grid: axis '%s' has an empty value", ax->name);
        char **nv = realloc(ax->values, (ax->n + 1) * sizeof *nv);
        if (nv) ax->values = nv;
        char **na = nv ? realloc(ax->args, (ax->n + 1) * sizeof *na) : NULL;
        if (na) ax->args = na;
        if (!nv || !na) return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
        ax->values[ax->n] = dup_n(p, vl);
        ax->args[ax->n] = NULL;
        ax->n++;
        char *v = ax->values[ax->n - 1];
        if (!v) return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
        petl_status st = axis_arg(k, ax->name, v, &ax->args[ax->n - 1], err);
        if (st != PETL_OK) return st;
        for (size_t i = 0; i + 1 < ax->n; i++)
            if (same_id(ax->values[i], v))
                return petl_fail(err, PETL_ERR_ARG,
                                 "grid: axis '%s' lists '%s' and '%s', "
                                 "which name the same run",
                                 ax->name, ax->values[i], v);
        if (!c) break;
        p = c + 1;
    }
    if (g->n_runs > PETL_GRID_MAX_RUNS / ax->n)
        return petl_fail(err, PETL_ERR_ARG, "grid: more than %d runs", PETL_GRID_MAX_RUNS);
    g->n_runs *= ax->n;
    return PETL_OK;
}

petl_status petl_grid_parse(const char *spec, petl_grid **out, petl_error *err) {
    *out = NULL;
    if (!spec) return petl_fail(err, PETL_ERR_ARG, "grid: no spec");
    petl_grid *g = calloc(1, sizeof *g);
    if (!g) return petl_fail(err, PETL_ERR_NOMEM, "grid: out of memory");
    g->n_runs = 1;
    const char *p = spec;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p) break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        petl_status rc = parse_axis(g, s, (size_t)(p - s), err);
        if (rc != PETL_OK) {
            petl_grid_free(g);
            return rc;
        }
    }
    if (g->n_axes == 0) {
        petl_grid_free(g);
        return petl_fail(err, PETL_ERR_ARG, "grid: no axes (e.g. \"lr=3e-4,3e-3 size=8,64\")");
    }
    *out = g;
    return PETL_OK;
}

size_t petl_grid_value_index(const petl_grid *g, size_t run, size_t axis) {
    /* The last axis varies fastest: divide by the sizes of the axes after it. */
    for (size_t a = g->n_axes; a-- > axis + 1;)
        run /= g->axes[a].n;
    return run % g->axes[axis].n;
}

size_t petl_grid_run_id(const petl_grid *g, size_t run, char *buf, size_t cap) {
    size_t len = 0;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (len + 1 < cap) buf[len] = (ch);                                                        \
        len++;                                                                                     \
    } while (0)
    for (size_t a = 0; a < g->n_axes; a++) {
        if (a) PUT('_');
        for (const char *c = g->axes[a].name; *c; c++)
            PUT(*c);
        for (const char *c = g->axes[a].values[petl_grid_value_index(g, run, a)]; *c; c++)
            PUT(id_char(*c));
    }
#undef PUT
    if (cap) buf[len < cap ? len : cap - 1] = '\0';
    return len;
}
