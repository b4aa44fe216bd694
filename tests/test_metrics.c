/* Metrics against scikit-learn / SciPy: tests/golden/metrics_cases.txt, written by
 * scripts/reference/gen-metrics-golden.py, holds predictions, gold values and the reference's
 * accuracy / f1 / mcc or pearson / spearman / mse for each case; every value must agree within
 * 1e-9 (NaN where the reference gives NaN). Then petl_task_metrics per task. */
#include "check.h"
#include "petl.h"

#include <math.h>
#include <stdint.h>

#define TOL 1e-9

typedef struct {
    char name[64];
    char kind[8];
    size_t n;
    double *pred, *gold;
    size_t n_expect;
    char metric[3][16];
    double expect[3];
} golden_case;

/* Reads "TAG v1 ... vn" into a new array [n]. */
static double *read_values(FILE *f, const char *tag, size_t n) {
    char word[32];
    CHECK(fscanf(f, "%31s", word) == 1 && strcmp(word, tag) == 0);
    double *v = malloc((n ? n : 1) * sizeof *v);
    CHECK(v != NULL);
    for (size_t i = 0; i < n; i++)
        CHECK(fscanf(f, "%lf", &v[i]) == 1);
    return v;
}

/* Next case of the golden file; false at its end. */
static bool read_case(FILE *f, golden_case *c) {
    char word[32];
    if (fscanf(f, "%31s", word) != 1) return false;
    CHECKF(strcmp(word, "case") == 0, "expected 'case', found '%s'", word);
    CHECK(fscanf(f, "%63s %7s %zu", c->name, c->kind, &c->n) == 3);
    c->pred = read_values(f, "pred", c->n);
    c->gold = read_values(f, "gold", c->n);
    CHECK(fscanf(f, "%31s", word) == 1 && strcmp(word, "expect") == 0);
    for (c->n_expect = 0; c->n_expect < 3; c->n_expect++)
        CHECK(fscanf(f, "%15s %lf", c->metric[c->n_expect], &c->expect[c->n_expect]) == 2);
    return true;
}

static void check_value(const golden_case *c, const char *metric, double want, double got) {
    if (isnan(want)) {
        CHECKF(isnan(got), "%s %s: want nan, got %.17g", c->name, metric, got);
        return;
    }
    CHECKF(fabs(got - want) <= TOL, "%s %s: want %.17g, got %.17g (diff %.3g)", c->name, metric,
           want, got, fabs(got - want));
}

static double cls_metric(const golden_case *c, const char *metric) {
    int32_t *p = malloc((c->n ? c->n : 1) * sizeof *p), *g = malloc((c->n ? c->n : 1) * sizeof *g);
    CHECK(p && g);
    for (size_t i = 0; i < c->n; i++) {
        p[i] = (int32_t)c->pred[i];
        g[i] = (int32_t)c->gold[i];
    }
    double v = NAN;
    if (strcmp(metric, "accuracy") == 0)
        v = petl_accuracy(p, g, c->n);
    else if (strcmp(metric, "f1") == 0)
        v = petl_f1_binary(p, g, c->n);
    else if (strcmp(metric, "mcc") == 0)
        v = petl_mcc_binary(p, g, c->n);
    else
        CHECKF(0, "unknown metric %s", metric);
    free(p);
    free(g);
    return v;
}

static double reg_metric(const golden_case *c, const char *metric) {
    if (strcmp(metric, "pearson") == 0) return petl_pearson(c->pred, c->gold, c->n);
    if (strcmp(metric, "mse") == 0) return petl_mse(c->pred, c->gold, c->n);
    CHECKF(strcmp(metric, "spearman") == 0, "unknown metric %s", metric);
    petl_error err;
    double v;
    CHECK_OK(petl_spearman(c->pred, c->gold, c->n, &v, &err), &err);
    return v;
}

static void test_golden(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/metrics_cases.txt", TEST_SRC_DIR);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot open %s", path);
    char comment[512];
    CHECK(fgets(comment, sizeof comment, f) && comment[0] == '#');
    size_t n_cases = 0, n_cls = 0;
    golden_case c;
    while (read_case(f, &c)) {
        bool cls = strcmp(c.kind, "cls") == 0;
        for (size_t k = 0; k < c.n_expect; k++) {
            double got = cls ? cls_metric(&c, c.metric[k]) : reg_metric(&c, c.metric[k]);
            check_value(&c, c.metric[k], c.expect[k], got);
        }
        n_cases++;
        n_cls += cls;
        free(c.pred);
        free(c.gold);
    }
    fclose(f);
    CHECKF(n_cases >= 30 && n_cls >= 10 && n_cases - n_cls >= 10, "only %zu cases", n_cases);
}

static void test_empty(void) {
    int32_t z = 0;
    double d = 0, v;
    petl_error err;
    CHECK(isnan(petl_accuracy(&z, &z, 0)) && isnan(petl_f1_binary(&z, &z, 0)));
    CHECK(isnan(petl_mcc_binary(&z, &z, 0)) && isnan(petl_pearson(&d, &d, 0)));
    CHECK(isnan(petl_mse(&d, &d, 0)));
    CHECK_OK(petl_spearman(&d, &d, 0, &v, &err), &err);
    CHECK(isnan(v));
    double x[3] = {1, NAN, 3}, y[3] = {1, 2, 3};
    CHECK_OK(petl_spearman(x, y, 3, &v, &err), &err);
    CHECK(isnan(v));
    CHECK(isnan(petl_pearson(x, y, 3)));
}

static petl_task task(const char *name) {
    petl_task t;
    petl_error err;
    CHECK_OK(petl_task_lookup(name, &t, &err), &err);
    return t;
}

static void test_task_metrics(void) {
    petl_metric_set m;
    petl_error err;
    double pred[6] = {1, 0, 1, 1, 0, 0}, gold[6] = {1, 0, 0, 1, 1, 0};

    petl_task t = task("mrpc");
    CHECK_OK(petl_task_metrics(&t, pred, gold, 6, &m, &err), &err);
    CHECK(m.count == 2 && m.metric[0] == PETL_METRIC_ACCURACY && m.metric[1] == PETL_METRIC_F1);
    CHECK(fabs(m.value[0] - 4.0 / 6) < 1e-15 && fabs(m.value[1] - 2.0 / 3) < 1e-15);
    CHECK(fabs(m.score - (4.0 / 6 + 2.0 / 3) / 2) < 1e-15);
    CHECK(strcmp(petl_metric_name(m.metric[1]), "f1") == 0);

    t = task("cola");
    CHECK_OK(petl_task_metrics(&t, pred, gold, 6, &m, &err), &err);
    CHECK(m.count == 1 && m.metric[0] == PETL_METRIC_MCC && fabs(m.value[0] - 1.0 / 3) < 1e-12);

    const char *acc_tasks[] = {"sst2", "qnli", "rte", "wnli", "mnli"};
    for (size_t i = 0; i < 5; i++) {
        t = task(acc_tasks[i]);
        CHECK_OK(petl_task_metrics(&t, pred, gold, 6, &m, &err), &err);
        CHECK(m.count == 1 && m.metric[0] == PETL_METRIC_ACCURACY && m.score == m.value[0]);
    }
    t = task("qqp");
    CHECK_OK(petl_task_metrics(&t, pred, gold, 6, &m, &err), &err);
    CHECK(m.count == 2 && m.metric[1] == PETL_METRIC_F1);

    double sp[4] = {1.0, 2.5, 2.5, 4.0}, sg[4] = {0.5, 1.0, 3.0, 4.5};
    t = task("stsb");
    CHECK_OK(petl_task_metrics(&t, sp, sg, 4, &m, &err), &err);
    CHECK(m.count == 2 && m.metric[0] == PETL_METRIC_PEARSON);
    CHECK(m.metric[1] == PETL_METRIC_SPEARMAN && fabs(m.value[1] - 0.9486832980505138) < 1e-12);

    t = task("csv:text=0,label=1,regression");
    CHECK_OK(petl_task_metrics(&t, sp, sg, 4, &m, &err), &err);
    CHECK(m.count == 3 && m.metric[2] == PETL_METRIC_MSE);
    CHECK(fabs(m.score - (m.value[0] + m.value[1]) / 2) < 1e-15); /* MSE is not averaged */

    /* Bad arguments: no examples, a class index that is not one. */
    t = task("mnli");
    CHECK(petl_task_metrics(&t, pred, gold, 0, &m, &err) == PETL_ERR_ARG && m.count == 0);
    double bad[2] = {0.5, 1}, two[2] = {0, 1}, three[2] = {3, 1}, neg[2] = {-1, 0};
    CHECK(petl_task_metrics(&t, bad, two, 2, &m, &err) == PETL_ERR_ARG);
    CHECK(strstr(err.msg, "preds[0]") != NULL);
    CHECK(petl_task_metrics(&t, two, three, 2, &m, &err) == PETL_ERR_ARG); /* 3 labels only */
    CHECK(strstr(err.msg, "golds[0]") != NULL);
    CHECK(petl_task_metrics(&t, neg, two, 2, &m, &err) == PETL_ERR_ARG);
    double nan2[2] = {NAN, 0};
    CHECK(petl_task_metrics(&t, nan2, two, 2, &m, &err) == PETL_ERR_ARG);
}

int main(void) {
    test_golden();
    test_empty();
    test_task_metrics();
    CHECK_DONE("test_metrics");
}
