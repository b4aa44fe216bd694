/* petl serve's request queue: a bounded FIFO of jobs (one job = the rows of one request) and
 * one worker thread that gathers the jobs arriving within a window, across requests and tasks,
 * into batches of at most max_batch rows / max_tokens padded tokens, and hands each batch to an
 * executor function (petl_srv_exec_fn; the default one is src/executor.c). A job too large for
 * one batch runs in pieces, going back to the end of the queue after each. Depends on the
 * served tasks (server.h) and the metrics (srv_metrics.c), nothing of HTTP. It also owns the
 * monotonic clock (petl_now) that its job times and the server's deadlines are read on. */
#include "server.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct petl_srv_queue {
    petl_srv_queue_opts o;
    petl_srv_exec_fn exec;
    void *user;
    petl_srv_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t more; /* a job was queued, or stopping */
    pthread_cond_t done; /* some job finished */
    petl_srv_job *head, *tail;
    size_t depth;
    bool stopping;
    pthread_t thread;
    /* worker-only scratch for the rows of a batch, grown as needed */
    petl_srv_task **r_task;
    const petl_encoding **r_enc;
    float **r_out;
    petl_error *r_err;
    size_t r_cap;
};

static bool grow_rows(petl_srv_queue *b, size_t n) {
    if (n <= b->r_cap) return true;
    size_t cap = b->r_cap ? b->r_cap : 64;
    while (cap < n)
        cap *= 2;
    petl_srv_task **t = realloc(b->r_task, cap * sizeof *t);
    if (t) b->r_task = t;
    const petl_encoding **e = realloc(b->r_enc, cap * sizeof *e);
    if (e) b->r_enc = e;
    float **o = realloc(b->r_out, cap * sizeof *o);
    if (o) b->r_out = o;
    petl_error *re = realloc(b->r_err, cap * sizeof *re);
    if (re) b->r_err = re;
    if (!t || !e || !o || !re) return false;
    b->r_cap = cap;
    return true;
}

/* Puts job j at the tail of the queue. Caller holds mu. */
static void queue_push(petl_srv_queue *b, petl_srv_job *j) {
    j->next = NULL;
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    b->depth++;
}

/* Runs rows [off, off + take) of the jobs first..(NULL) as one batch, on the worker, without
 * the lock; then finishes the jobs whose last rows ran and puts the others (pieces of a large
 * job) back at the end of the queue. */
static void run_batch(petl_srv_queue *b, petl_srv_job *first) {
    double t0 = petl_now();
    size_t n = 0, tasks = 0;
    for (petl_srv_job *j = first; j; j = j->next) {
        if (j->off == 0) j->t_start = t0;
        bool seen = false;
        for (petl_srv_job *k = first; k != j && !seen; k = k->next)
            seen = k->task == j->task;
        tasks += !seen;
        n += j->take;
    }
    petl_error err = {0};
    petl_status s = PETL_OK;
    if (!grow_rows(b, n)) {
        s = petl_fail(&err, PETL_ERR_NOMEM, "batch of %zu rows: out of memory", n);
    } else {
        size_t r = 0;
        for (petl_srv_job *j = first; j; j = j->next)
            for (size_t i = j->off; i < j->off + j->take; i++, r++) {
                b->r_task[r] = j->task;
                b->r_enc[r] = &j->enc[i];
                b->r_out[r] = j->out + i * (size_t)j->task->num_labels;
                b->r_err[r].code = PETL_OK;
                b->r_err[r].msg[0] = '\0';
            }
        petl_srv_rows rows = {n, b->r_task, b->r_enc, b->r_out, b->r_err};
        s = b->exec(b->user, &rows, &err);
    }
    double t1 = petl_now();
    if (b->metrics) petl_srv_metrics_batch(b->metrics, n, tasks, t1 - t0);
    pthread_mutex_lock(&b->mu);
    size_t r = 0;
    for (petl_srv_job *j = first, *next; j; j = next) {
        next = j->next; /* the submitter may free j as soon as done is set */
        if (s != PETL_OK) {
            j->status = s;
            j->err = err;
        }
        /* A row the executor could not compute fails its own job only. */
        for (size_t i = 0; s == PETL_OK && j->status == PETL_OK && i < j->take; i++)
            if (b->r_err[r + i].code != PETL_OK) {
                j->status = b->r_err[r + i].code;
                j->err = b->r_err[r + i];
            }
        r += j->take;
        j->off += j->take;
        j->take = 0;
        j->next = NULL;
        if (j->off < j->n && j->status == PETL_OK) {
            queue_push(b, j); /* its next piece after the jobs that arrived meanwhile */
            continue;
        }
        j->t_done = t1;
        j->done = 1;
    }
    pthread_cond_broadcast(&b->done);
    pthread_mutex_unlock(&b->mu);
}

/* Takes the head job off the queue. Caller holds mu. The tail is reset with the head, at
 * once: the worker waits (unlocking) between pops, and a submitter must never append to a
 * job that has already left the queue. */
static petl_srv_job *queue_pop(petl_srv_queue *b) {
    petl_srv_job *j = b->head;
    b->head = j->next;
    if (!b->head) b->tail = NULL;
    j->next = NULL;
    b->depth--;
    return j;
}

/* How many of job j's remaining rows fit a batch that holds *rows rows padded to *seq tokens
 * (max_batch rows, max_tokens padded tokens); updates *rows and *seq for them. */
static size_t rows_that_fit(const petl_srv_queue *b, const petl_srv_job *j, size_t *rows,
                            int *seq) {
    size_t k = 0, left = j->n - j->off;
    int sq = *seq;
    while (k < left && *rows + k < (size_t)b->o.max_batch) {
        int len = j->enc[j->off + k].len;
        int s2 = len > sq ? len : sq;
        if (b->o.max_tokens > 0 && (*rows + k + 1) * (size_t)s2 > (size_t)b->o.max_tokens) break;
        sq = s2;
        k++;
    }
    *rows += k;
    *seq = sq;
    return k;
}

static void *batch_worker(void *arg) {
    petl_srv_queue *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->more, &b->mu);
        if (!b->head) break; /* stopping and drained */
        /* Gather: FIFO, up to max_batch rows and max_tokens padded tokens, waiting until the
         * first job's arrival + window for more unless the batch is full. A job that does not
         * fit ends the gathering, so that no job is overtaken. A job too large for any batch
         * gives one piece (at least one row) and goes back to the end of the queue after it
         * (run_batch), so that the requests behind it run between its pieces. */
        double deadline = b->head->t_submit + b->o.window_ms * 1e-3;
        size_t rows = 0;
        int seq = 0;
        petl_srv_job *first = queue_pop(b), *last = first;
        first->take = rows_that_fit(b, first, &rows, &seq);
        if (first->take == 0) first->take = rows = 1; /* one row over max_tokens still runs */
        bool full = first->off + first->take < first->n;
        while (!full) {
            while (b->head) {
                size_t r2 = rows;
                int s2 = seq;
                size_t k = rows_that_fit(b, b->head, &r2, &s2);
                if (k < b->head->n - b->head->off) break;
                last->next = queue_pop(b);
                last = last->next;
                last->take = k;
                rows = r2, seq = s2;
            }
            if (b->head || rows >= (size_t)b->o.max_batch || b->stopping) break;
            double now = petl_now();
            if (now >= deadline) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = deadline - now;
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - floor(wait)) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&b->more, &b->mu, &ts);
        }
        last->next = NULL;
        pthread_mutex_unlock(&b->mu);
        run_batch(b, first);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

petl_status petl_srv_queue_new(const petl_srv_queue_opts *o, petl_srv_exec_fn exec, void *user,
                               petl_srv_metrics *metrics, petl_srv_queue **out, petl_error *err) {
    *out = NULL;
    if (o->max_batch < 1 || o->queue < 1 || !(o->window_ms >= 0) || o->window_ms > 10000 ||
        o->max_tokens < 0 || !exec)
        return petl_fail(err, PETL_ERR_ARG,
                         "request queue: max batch %d, queue %d, window %g ms, max tokens %d: "
                         "out of range",
                         o->max_batch, o->queue, o->window_ms, o->max_tokens);
    petl_srv_queue *b = calloc(1, sizeof *b);
    if (!b) return petl_fail(err, PETL_ERR_NOMEM, "request queue: out of memory");
    b->o = *o;
    b->exec = exec;
    b->user = user;
    b->metrics = metrics;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->more, NULL);
    pthread_cond_init(&b->done, NULL);
    int e = pthread_create(&b->thread, NULL, batch_worker, b);
    if (e) {
        pthread_cond_destroy(&b->done);
        pthread_cond_destroy(&b->more);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return petl_fail(err, PETL_ERR_NOMEM, "request queue: cannot start the worker: %s",
                         strerror(e));
    }
    *out = b;
    return PETL_OK;
}

void petl_srv_queue_free(petl_srv_queue *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_signal(&b->more);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->done);
    pthread_cond_destroy(&b->more);
    pthread_mutex_destroy(&b->mu);
    free(b->r_task);
    free(b->r_enc);
    free(b->r_out);
    free(b->r_err);
    free(b);
}

bool petl_srv_queue_run(petl_srv_queue *b, petl_srv_job *job) {
    job->next = NULL;
    job->done = 0;
    job->status = PETL_OK;
    job->err.code = PETL_OK;
    job->err.msg[0] = '\0';
    job->t_submit = petl_now();
    job->off = job->take = 0;
    if (job->n == 0) { /* nothing to run (the server never sends such a job) */
        job->t_start = job->t_done = job->t_submit;
        job->done = 1;
        return true;
    }
    pthread_mutex_lock(&b->mu);
    if (b->stopping || b->depth >= (size_t)b->o.queue) {
        pthread_mutex_unlock(&b->mu);
        return false;
    }
    queue_push(b, job);
    pthread_cond_signal(&b->more);
    while (!job->done)
        pthread_cond_wait(&b->done, &b->mu);
    pthread_mutex_unlock(&b->mu);
    return true;
}

size_t petl_srv_queue_depth(petl_srv_queue *b) {
    pthread_mutex_lock(&b->mu);
    size_t d = b->depth;
    pthread_mutex_unlock(&b->mu);
    return d;
}
