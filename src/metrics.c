/* GLUE evaluation metrics in double precision, matching scikit-learn and SciPy (see the section
 * "metrics" of include/petl.h for the exact counterparts and tests/golden/metrics_cases.txt for
 * the proof). */
#include "petl.h"

#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

const char *petl_metric_name(petl_metric m) {
    switch (m) {
    case PETL_METRIC_ACCURACY: return "accuracy";
    case PETL_METRIC_F1: return "f1";
    case PETL_METRIC_MCC: return "mcc";
    case PETL_METRIC_PEARSON: return "pearson";
    case PETL_METRIC_SPEARMAN: return "spearman";
    case PETL_METRIC_MSE: return "mse";
    case PETL_METRIC_EXACT_MATCH: return "exact_match";
    case PETL_METRIC_SQUAD_F1: return "f1";
    }
    return "unknown";
}

double petl_accuracy(const int32_t *pred, const int32_t *gold, size_t n) {
    if (n == 0) return NAN;
    size_t hit = 0;
    for (size_t i = 0; i < n; i++)
        hit += pred[i] == gold[i];
    return (double)hit / (double)n;
}

/* Binary confusion counts with class 1 as the positive class. */
typedef struct {
    double tp, fp, fn, tn;
} confusion;

static confusion count_binary(const int32_t *pred, const int32_t *gold, size_t n) {
    size_t c[2][2] = {{0, 0}, {0, 0}}; /* [gold positive][pred positive] */
    for (size_t i = 0; i < n; i++)
        c[gold[i] == 1][pred[i] == 1]++;
    confusion k = {(double)c[1][1], (double)c[0][1], (double)c[1][0], (double)c[0][0]};
    return k;
}

double petl_f1_binary(const int32_t *pred, const int32_t *gold, size_t n) {
    if (n == 0) return NAN;
    confusion k = count_binary(pred, gold, n);
    double den = 2.0 * k.tp + k.fp + k.fn;
    /* sklearn's zero_division default: an undefined F1 (no positives anywhere) is 0. */
    return den > 0 ? 2.0 * k.tp / den : 0.0;
}

double petl_mcc_binary(const int32_t *pred, const int32_t *gold, size_t n) {
    if (n == 0) return NAN;
    confusion k = count_binary(pred, gold, n);
    /* sklearn's covariance form: cov(y_true, y_pred) / sqrt(var(y_true) var(y_pred)), each
     * scaled by n^2; 0 when either side is constant. */
    double s = (double)n;
    double t1 = k.tp + k.fn, t0 = k.tn + k.fp; /* true counts per class */
    double p1 = k.tp + k.fp, p0 = k.tn + k.fn; /* predicted counts per class */
    double cov_tp = (k.tp + k.tn) * s - (t1 * p1 + t0 * p0);
    double cov_pp = s * s - (p1 * p1 + p0 * p0);
    double cov_tt = s * s - (t1 * t1 + t0 * t0);
    if (cov_pp * cov_tt == 0) return 0.0;
    return cov_tp / sqrt(cov_tt * cov_pp);
}

static bool is_constant(const double *x, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (!(x[i] == x[0])) return false;
    return true;
}

double petl_pearson(const double *x, const double *y, size_t n) {
    /* Constancy is tested on the inputs, as SciPy does: the mean of equal values need not equal
     * them exactly, which would leave a tiny nonzero variance and a meaningless r. */
    if (n < 2 || is_constant(x, n) || is_constant(y, n)) return NAN;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    double r = sxy / (sqrt(sxx) * sqrt(syy));
    return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r; /* rounding can step just past +-1 */
}

double petl_mse(const double *pred, const double *gold, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = pred[i] - gold[i];
        s += d * d;
    }
    return s / (double)n;
}

typedef struct {
    double v;
    size_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *p = a, *q = b;
    if (p->v != q->v) return p->v < q->v ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i; /* stable, so the result is deterministic */
}

/* rank[i] = 1-based rank of x[i], ties given the average of their ranks (scipy rankdata
 * "average"). work[n] is scratch. x holds no NaN. */
static void rank_average(const double *x, size_t n, ranked *work, double *rank) {
    for (size_t i = 0; i < n; i++)
        work[i] = (ranked){x[i], i};
    qsort(work, n, sizeof *work, cmp_ranked);
    for (size_t lo = 0; lo < n;) {
        size_t hi = lo + 1;
        while (hi < n && work[hi].v == work[lo].v)
            hi++;
        double avg = ((double)lo + 1.0 + (double)hi) / 2.0; /* mean of ranks lo+1 .. hi */
        for (size_t k = lo; k < hi; k++)
            rank[work[k].i] = avg;
        lo = hi;
    }
}

petl_status petl_spearman(const double *x, const double *y, size_t n, double *out,
                          petl_error *err) {
    *out = NAN;
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]) || isnan(y[i])) return PETL_OK; /* NaN breaks the sort's ordering */
    if (n < 2) return PETL_OK;
    double *rank = malloc(2 * n * sizeof *rank);
    ranked *work = malloc(n * sizeof *work);
    if (!rank || !work) {
        free(rank);
        free(work);
        return petl_fail(err, PETL_ERR_NOMEM, "spearman: out of memory for %zu values", n);
    }
    rank_average(x, n, work, rank);
    rank_average(y, n, work, rank + n);
    *out = petl_pearson(rank, rank + n, n);
    free(rank);
    free(work);
    return PETL_OK;
}

/* Class indices given as doubles -> int32, checking each is a whole number in [0, limit). */
static petl_status to_classes(const double *v, size_t n, int64_t limit, const char *what,
                              int32_t *out, petl_error *err) {
    for (size_t i = 0; i < n; i++) {
        double d = v[i];
        if (!(d >= 0 && d < (double)limit) || d != floor(d))
            return petl_fail(err, PETL_ERR_ARG,
                             "metrics: %s[%zu] = %g is not a class index "
                             "in [0, %lld)",
                             what, i, d, (long long)limit);
        out[i] = (int32_t)d;
    }
    return PETL_OK;
}

static petl_status class_metrics(const petl_task *task, const double *preds, const double *golds,
                                 size_t n, petl_metric_set *out, petl_error *err) {
    int64_t limit = task->n_labels > 0 ? (int64_t)task->n_labels : INT32_MAX;
    int32_t *p = malloc(2 * n * sizeof *p);
    if (!p) return petl_fail(err, PETL_ERR_NOMEM, "metrics: out of memory for %zu values", n);
    int32_t *g = p + n;
    petl_status st = to_classes(preds, n, limit, "preds", p, err);
    if (st == PETL_OK) st = to_classes(golds, n, limit, "golds", g, err);
    for (size_t k = 0; st == PETL_OK && k < out->count; k++) {
        switch (out->metric[k]) {
        case PETL_METRIC_ACCURACY: out->value[k] = petl_accuracy(p, g, n); break;
        case PETL_METRIC_F1: out->value[k] = petl_f1_binary(p, g, n); break;
        case PETL_METRIC_MCC: out->value[k] = petl_mcc_binary(p, g, n); break;
        default:
            st = petl_fail(err, PETL_ERR_ARG, "metrics: %s is not a classification metric",
                           petl_metric_name(out->metric[k]));
        }
    }
    free(p);
    return st;
}

static petl_status regression_metrics(const double *preds, const double *golds, size_t n,
                                      petl_metric_set *out, petl_error *err) {
    for (size_t k = 0; k < out->count; k++) {
        petl_status st = PETL_OK;
        switch (out->metric[k]) {
        case PETL_METRIC_PEARSON: out->value[k] = petl_pearson(preds, golds, n); break;
        case PETL_METRIC_SPEARMAN: st = petl_spearman(preds, golds, n, &out->value[k], err); break;
        case PETL_METRIC_MSE: out->value[k] = petl_mse(preds, golds, n); break;
        default:
            st = petl_fail(err, PETL_ERR_ARG, "metrics: %s is not a regression metric",
                           petl_metric_name(out->metric[k]));
        }
        if (st != PETL_OK) return st;
    }
    return PETL_OK;
}

petl_status petl_task_metrics(const struct petl_task *task, const double *preds,
                              const double *golds, size_t n, petl_metric_set *out,
                              petl_error *err) {
    out->count = 0;
    out->score = NAN;
    if (n == 0) return petl_fail(err, PETL_ERR_ARG, "metrics: no examples to score");
    if (task->n_metrics == 0 || task->n_metrics > PETL_MAX_METRICS)
        return petl_fail(err, PETL_ERR_ARG, "metrics: task %s has %zu metrics", task->name,
                         task->n_metrics);
    out->count = task->n_metrics;
    for (size_t k = 0; k < out->count; k++)
        out->metric[k] = task->metrics[k];
    petl_status st = task->regression ? regression_metrics(preds, golds, n, out, err)
                                      : class_metrics(task, preds, golds, n, out, err);
    if (st != PETL_OK) {
        out->count = 0;
        return st;
    }
    /* The score averages the higher-is-better metrics; MSE is reported but not averaged. */
    double s = 0;
    size_t m = 0;
    for (size_t k = 0; k < out->count; k++) {
        if (out->metric[k] == PETL_METRIC_MSE) continue;
        s += out->value[k];
        m++;
    }
    out->score = m > 0 ? s / (double)m : NAN;
    return PETL_OK;
}
