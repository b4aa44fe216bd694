/* A sweep grid: `petl sweep --grid "lr=3e-5,3e-4 epochs=1,3 size=8,64 seed=1,2"`, the cross
 * product of training options (axes), each run named by a stable id made from its values.
 * Internal API (used by tools/cmd_sweep.c; tests/test_sweep.c).
 *
 * Syntax: axes separated by white space, each NAME=V1,V2,...; names are `petl train` options
 * without the dashes (lr, epochs, batch, seed, max-len, warmup, weight-decay, tune, init-sd,
 * placement) plus the short forms size (--adapter-size), act (--adapter-act) and top (K of
 * --tune top:K). Values are checked here (numbers, known words) so that a typo fails before
 * hours of training rather than at run 17. Runs are numbered with the LAST axis varying
 * fastest, as nested loops written in the order of the spec. */
#ifndef PETL_SWEEP_H
#define PETL_SWEEP_H

#include "petl.h"

#include <stddef.h>

typedef struct {
    char *name;         /* canonical axis name: "lr", "size", "top", ... */
    const char *option; /* the `petl train` option it sets: "--lr", "--adapter-size", "--tune" */
    size_t n;           /* >= 1 values */
    char **values;      /* [n] as written in the spec */
    char **args;        /* [n] the option's argument: the value, or "top:K" for the top axis */
} petl_grid_axis;

typedef struct {
    size_t n_axes;
    petl_grid_axis *axes; /* [n_axes] in spec order */
    size_t n_runs;        /* product of the axes' sizes (at most PETL_GRID_MAX_RUNS) */
} petl_grid;

#define PETL_GRID_MAX_RUNS 100000
#define PETL_GRID_ID_MAX 256

/* Parses spec into *out (free with petl_grid_free). PETL_ERR_ARG naming the axis and value on
 * an unknown axis, a repeated axis, tune together with top, an empty or malformed value, two
 * values of one axis with the same id, or too many runs. */
petl_status petl_grid_parse(const char *spec, petl_grid **out, petl_error *err);
void petl_grid_free(petl_grid *g);

/* Index of axis `axis`'s value in run `run` (< n_runs). */
size_t petl_grid_value_index(const petl_grid *g, size_t run, size_t axis);

/* The run's id, e.g. "lr3e-5_epochs1_size8_seed1": the axes in spec order, name then value,
 * with every character outside [A-Za-z0-9.+-] of a value turned into '-'. Stable across
 * processes (a resumed sweep finds its runs by it) and unique within the grid. Writes at most
 * cap bytes (PETL_GRID_ID_MAX is enough unless the spec is huge); returns the length it needs
 * (>= cap: truncated). */
size_t petl_grid_run_id(const petl_grid *g, size_t run, char *buf, size_t cap);

/* Looks up an axis name (or alias): its canonical name and train option, NULL when unknown. */
const char *petl_grid_axis_option(const char *name, const char **canonical);

#endif
