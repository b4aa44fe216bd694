/* petl serve's metrics: counters and histograms (HTTP responses by route, predict requests by
 * task, batches, refused and timed-out connections) behind one mutex, rendered in the
 * Prometheus text format. Depends on nothing of the server but the label vocabulary
 * (petl_srv_conn_event, PETL_SRV_NAME_MAX); its own growing string buffer renders the text. */
#include "server.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_LAT (sizeof lat_bounds / sizeof lat_bounds[0])
static const double size_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
#define N_SIZE (sizeof size_bounds / sizeof size_bounds[0])
#define N_BUCKETS_MAX 16

typedef struct {
    const double *bounds;
    size_t nb;
    uint64_t counts[N_BUCKETS_MAX + 1]; /* per bucket (not cumulative); last: +Inf */
    double sum;
    uint64_t count;
} hist;

static void hist_init(hist *h, const double *bounds, size_t nb) {
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nb = nb;
}

static void hist_observe(hist *h, double v) {
    size_t i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

#define MAX_CODES 12 /* distinct status codes kept per series; more fold into the last */

typedef struct {
    int code[MAX_CODES];
    uint64_t count[MAX_CODES];
    size_t n;
} code_counts;

static void codes_add(code_counts *c, int code) {
    for (size_t i = 0; i < c->n; i++)
        if (c->code[i] == code) {
            c->count[i]++;
            return;
        }
    if (c->n < MAX_CODES) {
        c->code[c->n] = code;
        c->count[c->n++] = 1;
    } else {
        c->count[MAX_CODES - 1]++;
    }
}

typedef struct {
    char name[PETL_SRV_NAME_MAX + 1];
    uint64_t inputs;
    code_counts codes;
    hist queue, latency;
} task_metrics;

#define MAX_TASK_SERIES 4096 /* beyond: folded into task="_other", bounding the memory */
static const char *const routes[] = {"/v1/predict", "/v1/tasks", "/v1/tasks/NAME",
                                     "/healthz",    "/metrics",  "other"};
#define N_ROUTES (sizeof routes / sizeof routes[0])

struct petl_srv_metrics {
    pthread_mutex_t mu;
    code_counts http[N_ROUTES];
    task_metrics *tasks; /* [n], in first-seen order */
    size_t n, cap;
    hist batch_rows, batch_tasks, batch_seconds;
    uint64_t conn[PETL_SRV_CONN_KINDS];
};

petl_status petl_srv_metrics_new(petl_srv_metrics **out, petl_error *err) {
    petl_srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return petl_fail(err, PETL_ERR_NOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    hist_init(&m->batch_rows, size_bounds, N_SIZE);
    hist_init(&m->batch_tasks, size_bounds, N_SIZE);
    hist_init(&m->batch_seconds, lat_bounds, N_LAT);
    *out = m;
    return PETL_OK;
}

void petl_srv_metrics_free(petl_srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->tasks);
    free(m);
}

void petl_srv_metrics_http(petl_srv_metrics *m, const char *route, int status) {
    size_t i = 0;
    while (i < N_ROUTES - 1 && strcmp(routes[i], route))
        i++;
    pthread_mutex_lock(&m->mu);
    codes_add(&m->http[i], status);
    pthread_mutex_unlock(&m->mu);
}

/* The series of task name, created on first use. Caller holds mu. NULL only without memory. */
static task_metrics *task_series(petl_srv_metrics *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->tasks[i].name, name)) return &m->tasks[i];
    if (m->n >= MAX_TASK_SERIES) name = "_other";
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->tasks[i].name, name)) return &m->tasks[i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        task_metrics *nt = realloc(m->tasks, cap * sizeof *nt);
        if (!nt) return NULL;
        m->tasks = nt;
        m->cap = cap;
    }
    task_metrics *t = &m->tasks[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    hist_init(&t->queue, lat_bounds, N_LAT);
    hist_init(&t->latency, lat_bounds, N_LAT);
    return t;
}

void petl_srv_metrics_predict(petl_srv_metrics *m, const char *task, size_t inputs, int status,
                              double queue_s, double latency_s) {
    pthread_mutex_lock(&m->mu);
    task_metrics *t = task_series(m, task);
    if (t) {
        t->inputs += inputs;
        codes_add(&t->codes, status);
        if (queue_s >= 0) hist_observe(&t->queue, queue_s);
        hist_observe(&t->latency, latency_s);
    }
    pthread_mutex_unlock(&m->mu);
}

void petl_srv_metrics_conn(petl_srv_metrics *m, petl_srv_conn_event ev) {
    if ((unsigned)ev >= PETL_SRV_CONN_KINDS) return;
    pthread_mutex_lock(&m->mu);
    m->conn[ev]++;
    pthread_mutex_unlock(&m->mu);
}

void petl_srv_metrics_batch(petl_srv_metrics *m, size_t rows, size_t tasks, double run_s) {
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->batch_rows, (double)rows);
    hist_observe(&m->batch_tasks, (double)tasks);
    hist_observe(&m->batch_seconds, run_s);
    pthread_mutex_unlock(&m->mu);
}

/* A growing string; on allocation failure it stays failed and the render returns NULL. */
typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) PETL_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->len + (size_t)w < b->cap) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->len + (size_t)w)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* One histogram's _bucket / _sum / _count lines; labels is "" or `task="x",`. */
static void render_hist(strbuf *b, const char *name, const char *labels, const hist *h) {
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nb; i++) {
        cum += h->counts[i];
        if (i < h->nb)
            sb_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->bounds[i],
                      (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    const char *l = labels;
    size_t ll = strlen(l);
    /* The same labels without the trailing comma, for _sum and _count. */
    if (ll)
        sb_printf(b, "%s_sum{%.*s} %.9g\n%s_count{%.*s} %llu\n", name, (int)(ll - 1), l, h->sum,
                  name, (int)(ll - 1), l, (unsigned long long)h->count);
    else
        sb_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                  (unsigned long long)h->count);
}

char *petl_srv_metrics_render(petl_srv_metrics *m, size_t queue_depth, size_t tasks_loaded) {
    strbuf b = {0};
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP petl_http_requests_total HTTP responses by route and status code.\n"
                  "# TYPE petl_http_requests_total counter\n");
    for (size_t r = 0; r < N_ROUTES; r++)
        for (size_t i = 0; i < m->http[r].n; i++)
            sb_printf(&b, "petl_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n", routes[r],
                      m->http[r].code[i], (unsigned long long)m->http[r].count[i]);
    sb_printf(&b, "# HELP petl_predict_requests_total Predict requests by task and status code.\n"
                  "# TYPE petl_predict_requests_total counter\n");
    for (size_t t = 0; t < m->n; t++)
        for (size_t i = 0; i < m->tasks[t].codes.n; i++)
            sb_printf(&b, "petl_predict_requests_total{task=\"%s\",code=\"%d\"} %llu\n",
                      m->tasks[t].name, m->tasks[t].codes.code[i],
                      (unsigned long long)m->tasks[t].codes.count[i]);
    sb_printf(&b, "# HELP petl_predict_inputs_total Inputs (rows) received by task.\n"
                  "# TYPE petl_predict_inputs_total counter\n");
    for (size_t t = 0; t < m->n; t++)
        sb_printf(&b, "petl_predict_inputs_total{task=\"%s\"} %llu\n", m->tasks[t].name,
                  (unsigned long long)m->tasks[t].inputs);
    sb_printf(&b, "# HELP petl_queue_seconds Time a predict request waited for its batch.\n"
                  "# TYPE petl_queue_seconds histogram\n");
    char labels[PETL_SRV_NAME_MAX + 16];
    for (size_t t = 0; t < m->n; t++) {
        snprintf(labels, sizeof labels, "task=\"%s\",", m->tasks[t].name);
        render_hist(&b, "petl_queue_seconds", labels, &m->tasks[t].queue);
    }
    sb_printf(&b, "# HELP petl_request_seconds Predict latency from the full body to the "
                  "response.\n# TYPE petl_request_seconds histogram\n");
    for (size_t t = 0; t < m->n; t++) {
        snprintf(labels, sizeof labels, "task=\"%s\",", m->tasks[t].name);
        render_hist(&b, "petl_request_seconds", labels, &m->tasks[t].latency);
    }
    sb_printf(&b, "# HELP petl_batch_rows Rows per batch run by the worker.\n"
                  "# TYPE petl_batch_rows histogram\n");
    render_hist(&b, "petl_batch_rows", "", &m->batch_rows);
    sb_printf(&b, "# HELP petl_batch_tasks Distinct tasks per batch.\n"
                  "# TYPE petl_batch_tasks histogram\n");
    render_hist(&b, "petl_batch_tasks", "", &m->batch_tasks);
    sb_printf(&b, "# HELP petl_batch_seconds Time to run one batch.\n"
                  "# TYPE petl_batch_seconds histogram\n");
    render_hist(&b, "petl_batch_seconds", "", &m->batch_seconds);
    sb_printf(&b,
              "# HELP petl_connections_refused_total Connections over a limit, answered 503 and "
              "closed.\n# TYPE petl_connections_refused_total counter\n"
              "petl_connections_refused_total{limit=\"per_address\"} %llu\n"
              "petl_connections_refused_total{limit=\"total\"} %llu\n"
              "# HELP petl_connections_timed_out_total Connections closed because a request's "
              "headers and body did not arrive within the deadline.\n"
              "# TYPE petl_connections_timed_out_total counter\n"
              "petl_connections_timed_out_total %llu\n",
              (unsigned long long)m->conn[PETL_SRV_CONN_OVER_ADDRESS],
              (unsigned long long)m->conn[PETL_SRV_CONN_OVER_TOTAL],
              (unsigned long long)m->conn[PETL_SRV_CONN_DEADLINE]);
    pthread_mutex_unlock(&m->mu);
    sb_printf(&b,
              "# HELP petl_queue_depth Requests waiting for the batch worker.\n"
              "# TYPE petl_queue_depth gauge\npetl_queue_depth %zu\n"
              "# HELP petl_tasks_loaded Tasks (adapters) loaded.\n"
              "# TYPE petl_tasks_loaded gauge\npetl_tasks_loaded %zu\n",
              queue_depth, tasks_loaded);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
