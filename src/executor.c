/* The executor of petl serve: turns the rows of one gathered batch (petl_srv_rows, from the
 * request queue) into model calls. Rows of tasks that share the base's weights run in fused,
 * padded pieces through petl_task_predict_multi on one growing context; the others (and the rows
 * of a fused piece that failed) run task by task through petl_task_predict with per-task
 * contexts cached. This is model scheduling, not HTTP: it depends on the served tasks (their
 * models and references, server.h) and the task-model API (taskmodel.h), on nothing of the server.
 */
#include "server.h"

#include "internal.h"
#include "taskmodel.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Per-task contexts kept, each ~max_batch x max_len activations (1-2 MB for MiniLM at 32 x 64):
 * fewer than the tasks in traffic means a context built per batch (~2x slower mixed traffic). */
#define EXEC_CTX_CACHE 32

struct petl_srv_exec {
    int max_batch;
    int max_tokens; /* padded tokens per forward; 0: max_batch rows only */
    int32_t pad_id;
    struct {
        petl_srv_task *task; /* a reference, so the task model outlives its context */
        petl_ctx *ctx;
        uint64_t used;
    } cache[EXEC_CTX_CACHE];
    uint64_t clock;
    int32_t *ids, *types; /* [max_batch, max_len], grown */
    int *lens;            /* [max_batch] */
    size_t tok_cap;
    size_t *idx;   /* [rows] row indices grouped by task */
    bool *taken;   /* [rows] */
    float *logits; /* [max_batch, labels], grown */
    size_t idx_cap, logit_cap;
    /* The fused path: one context for every task sharing the base, sized for the largest
     * max_len, adapter size and label count seen so far (rebuilt larger when a task needs
     * more; a few MB, so it is never shrunk). */
    petl_ctx *mctx;
    const petl_model *mbase; /* the base mctx was made for */
    int m_rows, m_len, m_size, m_labels;
    const petl_task_model **mtask; /* [max_batch] task model of each fused row */
    size_t *fidx;                  /* [rows] rows taking the fused path */
    size_t fidx_cap;
};

petl_status petl_srv_exec_new(int max_batch, int32_t pad_id, petl_srv_exec **out, petl_error *err) {
    *out = NULL;
    if (max_batch < 1) return petl_fail(err, PETL_ERR_ARG, "executor: max batch %d", max_batch);
    petl_srv_exec *e = calloc(1, sizeof *e);
    if (!e) return petl_fail(err, PETL_ERR_NOMEM, "executor: out of memory");
    e->max_batch = max_batch;
    e->pad_id = pad_id;
    e->lens = calloc((size_t)max_batch, sizeof *e->lens);
    e->mtask = calloc((size_t)max_batch, sizeof *e->mtask);
    if (!e->lens || !e->mtask) {
        free(e->lens);
        free(e->mtask);
        free(e);
        return petl_fail(err, PETL_ERR_NOMEM, "executor: out of memory");
    }
    *out = e;
    return PETL_OK;
}

void petl_srv_exec_set_max_tokens(petl_srv_exec *e, int max_tokens) {
    e->max_tokens = max_tokens > 0 ? max_tokens : 0;
}

size_t petl_srv_exec_held_tokens(const petl_srv_exec *e) {
    return e->mctx ? (size_t)e->m_rows * (size_t)e->m_len : 0;
}

/* Rows of one forward at a padded length of len: max_batch, fewer when max_tokens says so. */
static int exec_rows_for(const petl_srv_exec *e, int len) {
    if (e->max_tokens <= 0 || len <= 0) return e->max_batch;
    int r = e->max_tokens / len;
    if (r < 1) r = 1;
    return r < e->max_batch ? r : e->max_batch;
}

/* Work buffers beyond what ordinary traffic needs (max_batch rows of 64 tokens, or the token
 * budget) are given back after the batch that needed them: a context for 32 x 512 tokens is
 * ~400 MB, and glibc keeps freed heap memory unless asked (malloc_trim). */
static void exec_shrink(petl_srv_exec *e) {
    size_t keep = (size_t)e->max_batch * 64;
    if (e->max_tokens > 0 && (size_t)e->max_tokens > keep) keep = (size_t)e->max_tokens;
    if (!e->mctx || (e->m_len <= 128 && (size_t)e->m_rows * (size_t)e->m_len <= keep)) return;
    petl_ctx_free(e->mctx);
    e->mctx = NULL;
    e->m_rows = e->m_len = 0;
    malloc_trim(0);
}

static void exec_evict(petl_srv_exec *e, int i) {
    petl_ctx_free(e->cache[i].ctx);
    petl_srv_task_release(e->cache[i].task);
    e->cache[i].ctx = NULL;
    e->cache[i].task = NULL;
}

void petl_srv_exec_free(petl_srv_exec *e) {
    if (!e) return;
    for (int i = 0; i < EXEC_CTX_CACHE; i++)
        exec_evict(e, i);
    free(e->ids);
    free(e->types);
    free(e->lens);
    free(e->idx);
    free(e->taken);
    free(e->logits);
    petl_ctx_free(e->mctx);
    free(e->mtask);
    free(e->fidx);
    free(e);
}

/* The context of task t, from the cache or new (evicting the least recently used). */
static petl_status exec_ctx(petl_srv_exec *e, petl_srv_task *t, petl_ctx **out, petl_error *err) {
    int lru = 0;
    for (int i = 0; i < EXEC_CTX_CACHE; i++) {
        if (e->cache[i].task == t) {
            e->cache[i].used = ++e->clock;
            *out = e->cache[i].ctx;
            return PETL_OK;
        }
        if (!e->cache[i].task || (e->cache[lru].task && e->cache[i].used < e->cache[lru].used))
            lru = i;
    }
    exec_evict(e, lru);
    petl_status s = petl_predict_ctx_new(t->tm, exec_rows_for(e, t->max_len), t->max_len, out, err);
    if (s != PETL_OK) return s;
    petl_srv_task_acquire(t);
    e->cache[lru].task = t;
    e->cache[lru].ctx = *out;
    e->cache[lru].used = ++e->clock;
    return PETL_OK;
}

/* Pads rows idx[0..n) (n <= max_batch) into e->ids / types / lens [n, *seq], *seq their
 * longest, and makes room for n * nl logits. */
static petl_status exec_fill(petl_srv_exec *e, const petl_srv_rows *rows, const size_t *idx,
                             size_t n, size_t nl, int *seq_out, petl_error *err) {
    int seq = 1;
    for (size_t k = 0; k < n; k++)
        if (rows->enc[idx[k]]->len > seq) seq = rows->enc[idx[k]]->len;
    *seq_out = seq;
    size_t need = n * (size_t)seq;
    if (need > e->tok_cap) {
        int32_t *ids = realloc(e->ids, need * sizeof *ids);
        if (ids) e->ids = ids;
        int32_t *types = realloc(e->types, need * sizeof *types);
        if (types) e->types = types;
        if (!ids || !types) return petl_fail(err, PETL_ERR_NOMEM, "executor: out of memory");
        e->tok_cap = need;
    }
    if (n * nl > e->logit_cap) {
        float *l = realloc(e->logits, n * nl * sizeof *l);
        if (!l) return petl_fail(err, PETL_ERR_NOMEM, "executor: out of memory");
        e->logits = l;
        e->logit_cap = n * nl;
    }
    for (size_t k = 0; k < n; k++) {
        const petl_encoding *en = rows->enc[idx[k]];
        int32_t *ids = e->ids + k * (size_t)seq, *types = e->types + k * (size_t)seq;
        memcpy(ids, en->ids, (size_t)en->len * sizeof *ids);
        memcpy(types, en->type_ids, (size_t)en->len * sizeof *types);
        for (int p = en->len; p < seq; p++)
            ids[p] = e->pad_id, types[p] = 0;
        e->lens[k] = en->len;
    }
    return PETL_OK;
}

/* Runs rows idx[0..n) (n <= max_batch, all of task t) as one padded batch. */
static petl_status exec_piece(petl_srv_exec *e, petl_srv_task *t, const petl_srv_rows *rows,
                              const size_t *idx, size_t n, petl_error *err) {
    const size_t nl = (size_t)t->num_labels;
    int seq;
    petl_status s = exec_fill(e, rows, idx, n, nl, &seq, err);
    if (s != PETL_OK) return s;
    if (seq > t->max_len)
        return petl_fail(err, PETL_ERR_ARG, "task %s: a row of %d tokens, over max_len %d", t->name,
                         seq, t->max_len);
    petl_ctx *ctx;
    s = exec_ctx(e, t, &ctx, err);
    if (s != PETL_OK) return s;
    petl_batch b = {(int)n, seq, e->ids, e->types, e->lens};
    s = petl_task_predict(ctx, &b, &(petl_predictions){.logits = e->logits}, err);
    if (s != PETL_OK) return s;
    for (size_t k = 0; k < n; k++)
        memcpy(rows->out[idx[k]], e->logits + k * nl, nl * sizeof(float));
    return PETL_OK;
}

/* Whether task t's rows can take the fused path: a model that reads every base weight from
 * the base the fused context is for (the first such task fixes it; a server has one base). */
static bool exec_fusable(petl_srv_exec *e, const petl_srv_task *t) {
    if (!t->tm || !petl_task_model_shares_base(t->tm)) return false;
    const petl_model *base = petl_task_model_base(t->tm);
    if (!e->mbase) e->mbase = base;
    return base == e->mbase;
}

/* Runs fused rows idx[0..n) (n <= max_batch, tasks sharing e->mbase) as one padded batch
 * through petl_task_predict_multi, first growing the context when a task needs more. */
static petl_status exec_fused(petl_srv_exec *e, const petl_srv_rows *rows, const size_t *idx,
                              size_t n, petl_error *err) {
    int seq_max = 1, msize = e->m_size, labels = e->m_labels;
    for (size_t k = 0; k < n; k++) {
        const petl_srv_task *t = rows->task[idx[k]];
        const petl_tune_config *tc = petl_task_model_tune_config(t->tm);
        int len = rows->enc[idx[k]]->len;
        if (len > t->max_len)
            return petl_fail(err, PETL_ERR_ARG, "task %s: a row of %d tokens, over max_len %d",
                             t->name, len, t->max_len);
        if (len > seq_max) seq_max = len;
        if (tc->tune == PETL_TUNE_ADAPTER && tc->adapter_size > msize) msize = tc->adapter_size;
        if (t->num_labels > labels) labels = t->num_labels;
        e->mtask[k] = t->tm;
    }
    /* Sized by the rows' own lengths (64 at least, so that ordinary traffic keeps one
     * context), not by the tasks' max_len: a task with max_len 512 costs 512-token buffers only
     * while it is sent long inputs, and exec_shrink frees them after that batch. */
    bool fits = e->mctx && (size_t)e->m_rows >= n && e->m_len >= seq_max && msize <= e->m_size &&
                labels <= e->m_labels;
    if (!fits) {
        int len = seq_max <= 64 ? 64 : (seq_max + 31) / 32 * 32;
        int rows_cap = exec_rows_for(e, len);
        if ((size_t)rows_cap < n) rows_cap = (int)n;
        petl_ctx_free(e->mctx);
        e->mctx = NULL;
        e->m_rows = e->m_len = 0;
        petl_status s = petl_multi_ctx_new(e->mbase, rows_cap, len, msize, labels, &e->mctx, err);
        if (s != PETL_OK) return s;
        e->m_rows = rows_cap, e->m_len = len, e->m_size = msize, e->m_labels = labels;
    }
    int seq;
    petl_status s = exec_fill(e, rows, idx, n, (size_t)e->m_labels, &seq, err);
    if (s != PETL_OK) return s;
    petl_batch b = {(int)n, seq, e->ids, e->types, e->lens};
    s = petl_task_predict_multi(e->mctx, e->mtask, &b, e->logits, e->m_labels, err);
    if (s != PETL_OK) return s;
    for (size_t k = 0; k < n; k++)
        memcpy(rows->out[idx[k]], e->logits + k * (size_t)e->m_labels,
               (size_t)rows->task[idx[k]]->num_labels * sizeof(float));
    return PETL_OK;
}

/* How many of rows idx[0..n) go into the next fused forward: at most max_batch, and at most
 * max_tokens padded tokens (at least one row). */
static size_t exec_piece_rows(const petl_srv_exec *e, const petl_srv_rows *rows, const size_t *idx,
                              size_t n) {
    size_t m = 0;
    int seq = 0;
    while (m < n && m < (size_t)e->max_batch) {
        int len = rows->enc[idx[m]]->len;
        int s2 = len > seq ? len : seq;
        if (m > 0 && e->max_tokens > 0 && (m + 1) * (size_t)s2 > (size_t)e->max_tokens) break;
        seq = s2;
        m++;
    }
    return m;
}

/* A failure pinned on rows idx[0..n): into their row_err when the queue gave one (only their
 * jobs fail), else into err for the whole batch. Returns what exec_run should return. */
static petl_status exec_rows_failed(const petl_srv_rows *rows, const size_t *idx, size_t n,
                                    const petl_error *why, petl_error *err) {
    if (!rows->row_err) {
        if (err) *err = *why;
        return why->code;
    }
    for (size_t k = 0; k < n; k++)
        rows->row_err[idx[k]] = *why;
    return PETL_OK;
}

petl_status petl_srv_exec_run(void *user, const petl_srv_rows *rows, petl_error *err) {
    petl_srv_exec *e = user;
    /* Contexts of unloaded tasks go first: they hold the task model alive. */
    for (int i = 0; i < EXEC_CTX_CACHE; i++)
        if (e->cache[i].task && __atomic_load_n(&e->cache[i].task->removed, __ATOMIC_ACQUIRE))
            exec_evict(e, i);
    if (rows->n > e->idx_cap) {
        size_t *idx = realloc(e->idx, rows->n * sizeof *idx);
        if (idx) e->idx = idx;
        bool *taken = realloc(e->taken, rows->n * sizeof *taken);
        if (taken) e->taken = taken;
        size_t *fidx = realloc(e->fidx, rows->n * sizeof *fidx);
        if (fidx) e->fidx = fidx;
        if (!idx || !taken || !fidx)
            return petl_fail(err, PETL_ERR_NOMEM, "executor: out of memory");
        e->idx_cap = rows->n;
    }
    memset(e->taken, 0, rows->n * sizeof *e->taken);
    /* 1. Every row of a task sharing the base: one fused forward per max_batch rows (the base's
     * GEMMs once for all of them). A piece that fails is left to step 2, which runs it task by
     * task, so that the failure lands on the task that caused it and not on its neighbours. */
    size_t nf = 0;
    for (size_t i = 0; i < rows->n; i++)
        if (exec_fusable(e, rows->task[i])) e->fidx[nf++] = i;
    for (size_t k = 0, m; k < nf; k += m) {
        m = exec_piece_rows(e, rows, e->fidx + k, nf - k);
        petl_error ferr = {0};
        if (exec_fused(e, rows, e->fidx + k, m, &ferr) == PETL_OK)
            for (size_t j = 0; j < m; j++)
                e->taken[e->fidx[k + j]] = true;
    }
    /* 2. The rest, task by task in order of first appearance: tasks that tuned base weights
     * (full, top:K) and the rows of failed fused pieces. */
    for (size_t i = 0; i < rows->n; i++) {
        if (e->taken[i]) continue;
        petl_srv_task *t = rows->task[i];
        size_t n = 0;
        for (size_t j = i; j < rows->n; j++)
            if (!e->taken[j] && rows->task[j] == t) {
                e->taken[j] = true;
                e->idx[n++] = j;
            }
        size_t per = (size_t)exec_rows_for(e, t->max_len); /* the rows its context holds */
        for (size_t k = 0; k < n; k += per) {
            size_t m = n - k < per ? n - k : per;
            petl_error terr = {0};
            if (exec_piece(e, t, rows, e->idx + k, m, &terr) == PETL_OK) continue;
            petl_status s = exec_rows_failed(rows, e->idx + k, m, &terr, err);
            if (s != PETL_OK) {
                exec_shrink(e);
                return s;
            }
        }
    }
    exec_shrink(e);
    return PETL_OK;
}
