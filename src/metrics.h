/* Evaluation metrics of the GLUE tasks, computed in double precision.
 *
 * public API: to be merged into include/petl.h
 *
 * Each metric matches its scikit-learn / SciPy counterpart (checked by tests/test_metrics.c
 * against tests/golden/metrics_cases.txt from scripts/reference/gen-metrics-golden.py):
 *   accuracy  sklearn.metrics.accuracy_score
 *   f1        sklearn.metrics.f1_score (binary, pos_label=1; 0 when tp + fp + fn == 0)
 *   mcc       sklearn.metrics.matthews_corrcoef on binary labels (0 when undefined)
 *   pearson   scipy.stats.pearsonr (NaN when either side is constant or n < 2)
 *   spearman  scipy.stats.spearmanr, ties ranked by their average rank (NaN as for pearson,
 *             and when any value is NaN)
 *   mse       mean squared error
 * Every metric of n == 0 examples is NaN.
 */
#ifndef PETL_METRICS_H
#define PETL_METRICS_H

#include "petl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==================================================================== metrics (src/metrics.c) */

typedef enum {
    PETL_METRIC_ACCURACY,
    PETL_METRIC_F1,  /* F1 of class 1 (binary) */
    PETL_METRIC_MCC, /* Matthews correlation (binary) */
    PETL_METRIC_PEARSON,
    PETL_METRIC_SPEARMAN,
    PETL_METRIC_MSE,
    PETL_METRIC_EXACT_MATCH, /* SQuAD v1.1 official exact match, as a fraction (0-1) */
    PETL_METRIC_SQUAD_F1,    /* SQuAD v1.1 official token F1, as a fraction (0-1); key "f1" */
} petl_metric;

#define PETL_MAX_METRICS 4 /* most metrics one task reports */

/* "accuracy", "f1", "mcc", "pearson", "spearman", "mse", "exact_match" (SQuAD; its F1 is "f1"
 * too): the keys of `petl eval`'s JSON. */
const char *petl_metric_name(petl_metric m);

/* Classification metrics of predicted vs gold class indices [n]. f1 and mcc are binary: class 1
 * is the positive class and every other value counts as negative. */
double petl_accuracy(const int32_t *pred, const int32_t *gold, size_t n);
double petl_f1_binary(const int32_t *pred, const int32_t *gold, size_t n);
double petl_mcc_binary(const int32_t *pred, const int32_t *gold, size_t n);

/* Regression metrics of x[n] vs y[n]. */
double petl_pearson(const double *x, const double *y, size_t n);
double petl_mse(const double *pred, const double *gold, size_t n);
/* Needs 2n ranks of scratch memory: PETL_ERR_NOMEM when that fails. */
petl_status petl_spearman(const double *x, const double *y, size_t n, double *out, petl_error *err);

typedef struct {
    size_t count;                         /* number of metrics filled */
    petl_metric metric[PETL_MAX_METRICS]; /* which metric each value is */
    double value[PETL_MAX_METRICS];
    /* Mean of the values except MSE: GLUE's task score (MRPC (accuracy + f1) / 2), the number
     * to pick the best epoch by. NaN when there is no such value. */
    double score;
} petl_metric_set;

struct petl_task;

/* The task's official metrics (see petl_task.metrics): CoLA mcc; SST-2, MNLI, QNLI, RTE, WNLI
 * accuracy; MRPC, QQP accuracy and f1; STS-B pearson and spearman; a generic task accuracy
 * (classification) or pearson, spearman and mse (regression). preds / golds [n] hold class
 * indices (whole numbers in [0, n_labels) when the task has a fixed label set) or regression
 * values. PETL_ERR_ARG for n == 0 or a class index that is not a whole number >= 0. */
petl_status petl_task_metrics(const struct petl_task *task, const double *preds,
                              const double *golds, size_t n, petl_metric_set *out, petl_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PETL_METRICS_H */
