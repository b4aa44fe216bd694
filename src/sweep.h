/* Sweep grids, internal half: what src/sweep.c keeps to itself. The grid (petl_grid, its syntax,
 * parsing and run ids) is public: include/petl.h, section "sweep grids". */
#ifndef PETL_SWEEP_H
#define PETL_SWEEP_H

#include "petl.h"

/* Looks up an axis name (or alias): its canonical name and train option, NULL when unknown. */
const char *petl_grid_axis_option(const char *name, const char **canonical);

#endif
