/* Tokenize once, batch by similar length with dynamic padding. See include/petl.h (section
 * "tokenized examples") and batcher.h. */
#include "batcher.h"

#include "internal.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct petl_batcher {
    const petl_tokenizer *tok; /* borrowed */
    int max_len;
    int32_t pad_id;
    petl_encoding enc; /* reused for every tokenization */
    /* Examples: tokens of example i are ids[off[i] .. off[i] + len[i]) (same for types). */
    size_t n, cap;
    size_t *off;     /* [cap] */
    int *len;        /* [cap] */
    int32_t *label;  /* [cap] */
    float *target;   /* [cap] */
    int32_t *span;   /* [cap, 2] start / end positions (pre-tokenized span examples); -1 */
    int32_t *ids;    /* [tok_cap] */
    int32_t *types;  /* [tok_cap] */
    size_t n_tok, tok_cap;
    int longest;
};

petl_status petl_batcher_new(const petl_tokenizer *tok, int max_len, petl_batcher **out,
                             petl_error *err) {
    *out = NULL;
    if (!tok || max_len < 3)
        return petl_fail(err, PETL_ERR_ARG, "batcher: max_len must be at least 3 (got %d)",
                         max_len);
    petl_batcher *b = calloc(1, sizeof *b);
    if (!b) return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory");
    b->tok = tok;
    b->max_len = max_len;
    b->pad_id = petl_tokenizer_pad_id(tok);
    *out = b;
    return PETL_OK;
}

void petl_batcher_free(petl_batcher *b) {
    if (!b) return;
    petl_encoding_free(&b->enc);
    free(b->off);
    free(b->len);
    free(b->label);
    free(b->target);
    free(b->span);
    free(b->ids);
    free(b->types);
    free(b);
}

void petl_batcher_clear(petl_batcher *b) {
    b->n = 0;
    b->n_tok = 0;
    b->longest = 0;
}

/* Grows the per-example arrays to hold one more, and the token arena to hold `more` tokens. */
static petl_status reserve(petl_batcher *b, size_t more, petl_error *err) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 1024;
        size_t *off = realloc(b->off, nc * sizeof *off);
        if (off) b->off = off;
        int *len = realloc(b->len, nc * sizeof *len);
        if (len) b->len = len;
        int32_t *label = realloc(b->label, nc * sizeof *label);
        if (label) b->label = label;
        float *target = realloc(b->target, nc * sizeof *target);
        if (target) b->target = target;
        int32_t *span = realloc(b->span, 2 * nc * sizeof *span);
        if (span) b->span = span;
        if (!off || !len || !label || !target || !span)
            return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory for %zu examples", nc);
        b->cap = nc;
    }
    if (b->n_tok + more > b->tok_cap) {
        size_t nc = b->tok_cap ? 2 * b->tok_cap : 65536;
        while (nc < b->n_tok + more) nc *= 2;
        int32_t *ids = realloc(b->ids, nc * sizeof *ids);
        if (ids) b->ids = ids;
        int32_t *types = realloc(b->types, nc * sizeof *types);
        if (types) b->types = types;
        if (!ids || !types)
            return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory for %zu tokens", nc);
        b->tok_cap = nc;
    }
    return PETL_OK;
}

petl_status petl_batcher_add(petl_batcher *b, const char *text_a, size_t len_a,
                             const char *text_b, size_t len_b, int32_t label, float target,
                             petl_error *err) {
    petl_status s =
        petl_tokenize(b->tok, text_a, len_a, text_b, len_b, b->max_len, &b->enc, err);
    if (s != PETL_OK) return s;
    size_t L = (size_t)b->enc.len;
    if ((s = reserve(b, L, err)) != PETL_OK) return s;
    memcpy(b->ids + b->n_tok, b->enc.ids, L * sizeof(int32_t));
    memcpy(b->types + b->n_tok, b->enc.type_ids, L * sizeof(int32_t));
    b->off[b->n] = b->n_tok;
    b->len[b->n] = (int)L;
    b->label[b->n] = label;
    b->target[b->n] = target;
    b->span[2 * b->n] = b->span[2 * b->n + 1] = -1;
    b->n++;
    b->n_tok += L;
    if ((int)L > b->longest) b->longest = (int)L;
    return PETL_OK;
}

petl_status petl_batcher_add_encoded(petl_batcher *b, const int32_t *ids, const int32_t *type_ids,
                                     int len, int32_t start, int32_t end, petl_error *err) {
    if (len < 1 || len > b->max_len)
        return petl_fail(err, PETL_ERR_ARG, "batcher: an example of %d tokens (max_len %d)", len,
                         b->max_len);
    if (start < -1 || start >= len || end < -1 || end >= len)
        return petl_fail(err, PETL_ERR_ARG, "batcher: span %d..%d outside %d tokens", (int)start,
                         (int)end, len);
    petl_status s = reserve(b, (size_t)len, err);
    if (s != PETL_OK) return s;
    memcpy(b->ids + b->n_tok, ids, (size_t)len * sizeof(int32_t));
    memcpy(b->types + b->n_tok, type_ids, (size_t)len * sizeof(int32_t));
    b->off[b->n] = b->n_tok;
    b->len[b->n] = len;
    b->label[b->n] = -1;
    b->target[b->n] = 0.0f;
    b->span[2 * b->n] = start;
    b->span[2 * b->n + 1] = end;
    b->n++;
    b->n_tok += (size_t)len;
    if (len > b->longest) b->longest = len;
    return PETL_OK;
}

petl_status petl_batcher_add_dataset(petl_batcher *b, const petl_dataset *ds, petl_error *err) {
    size_t n = petl_dataset_count(ds);
    for (size_t i = 0; i < n; i++) {
        const petl_example *e = petl_dataset_at(ds, i);
        petl_status s = petl_batcher_add(b, e->text_a, e->len_a, e->text_b, e->len_b, e->label,
                                         (float)e->target, err);
        if (s != PETL_OK) {
            /* Prefix the row's line: the tokenizer's message only knows byte offsets. */
            if (err) {
                char msg[sizeof err->msg];
                memcpy(msg, err->msg, sizeof msg);
                petl_fail(err, s, "line %zu: %.480s", e->line, msg);
            }
            return s;
        }
    }
    return PETL_OK;
}

size_t petl_batcher_count(const petl_batcher *b) { return b->n; }
int petl_batcher_max_len(const petl_batcher *b) { return b->max_len; }
int petl_batcher_length(const petl_batcher *b, size_t i) { return b->len[i]; }
int32_t petl_batcher_label(const petl_batcher *b, size_t i) { return b->label[i]; }
float petl_batcher_target(const petl_batcher *b, size_t i) { return b->target[i]; }
int32_t petl_batcher_span_start(const petl_batcher *b, size_t i) { return b->span[2 * i]; }
int32_t petl_batcher_span_end(const petl_batcher *b, size_t i) { return b->span[2 * i + 1]; }
int64_t petl_batcher_total_tokens(const petl_batcher *b) { return (int64_t)b->n_tok; }

/* ------------------------------------------------------------------------------------ plans */

size_t petl_batcher_epoch_batches(size_t n, int batch) {
    return batch > 0 ? (n + (size_t)batch - 1) / (size_t)batch : 0;
}

void petl_batch_plan_free(petl_batch_plan *plan) {
    if (!plan) return;
    free(plan->start);
    free(plan->order);
    memset(plan, 0, sizeof *plan);
}

/* Stable sort of idx[n] by length, longest first: a merge sort (qsort is not stable, and
 * stability is what makes the plan a function of the input alone). tmp[n] is scratch. */
static void sort_by_len(const int *len, int64_t *idx, int64_t *tmp, size_t n) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = len[idx[j]] > len[idx[i]] ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

static petl_status plan_alloc(size_t n, size_t n_batches, petl_batch_plan *plan,
                              petl_error *err) {
    memset(plan, 0, sizeof *plan);
    plan->start = malloc((n_batches + 1) * sizeof *plan->start);
    plan->order = malloc((n ? n : 1) * sizeof *plan->order);
    if (!plan->start || !plan->order) {
        petl_batch_plan_free(plan);
        return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory for a plan of %zu", n);
    }
    plan->n_batches = n_batches;
    return PETL_OK;
}

petl_status petl_batcher_plan_train(const petl_batcher *b, int batch, uint64_t seed,
                                    int64_t epoch, petl_batch_plan *plan, petl_error *err) {
    if (batch < 1) return petl_fail(err, PETL_ERR_ARG, "batcher: batch size must be >= 1");
    const size_t n = b->n, B = (size_t)batch, nb = petl_batcher_epoch_batches(n, batch);
    petl_status s = plan_alloc(n, nb, plan, err);
    if (s != PETL_OK) return s;
    int64_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    int64_t *bperm = malloc((nb ? nb : 1) * sizeof *bperm);
    if (!tmp || !bperm) {
        free(tmp);
        free(bperm);
        petl_batch_plan_free(plan);
        return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory for a plan of %zu", n);
    }
    petl_rng r = petl_rng_stream(seed, PETL_RNG_SHUFFLE, (uint64_t)epoch, 0);
    for (size_t i = 0; i < n; i++) tmp[i] = (int64_t)i;
    petl_rng_shuffle(&r, tmp, n);
    /* Length-sort each chunk in place (tmp is the shuffled order; order is the merge scratch,
     * then receives the final order below). */
    const size_t chunk = PETL_BATCHER_CHUNK * B;
    for (size_t lo = 0; lo < n; lo += chunk) {
        size_t m = n - lo < chunk ? n - lo : chunk;
        sort_by_len(b->len, tmp + lo, plan->order + lo, m);
    }
    /* Batches of the sorted chunks: every chunk but the last is a multiple of B, so batch k
     * is rows [k B, min((k + 1) B, n)) of tmp. Shuffle their order. */
    for (size_t k = 0; k < nb; k++) bperm[k] = (int64_t)k;
    petl_rng_shuffle(&r, bperm, nb);
    size_t pos = 0;
    for (size_t k = 0; k < nb; k++) {
        size_t lo = (size_t)bperm[k] * B, hi = lo + B < n ? lo + B : n;
        plan->start[k] = pos;
        memcpy(plan->order + pos, tmp + lo, (hi - lo) * sizeof *tmp);
        pos += hi - lo;
    }
    plan->start[nb] = pos;
    free(tmp);
    free(bperm);
    return PETL_OK;
}

petl_status petl_batcher_plan_eval(const petl_batcher *b, int batch, petl_batch_plan *plan,
                                   petl_error *err) {
    if (batch < 1) return petl_fail(err, PETL_ERR_ARG, "batcher: batch size must be >= 1");
    const size_t n = b->n, nb = petl_batcher_epoch_batches(n, batch);
    petl_status s = plan_alloc(n, nb, plan, err);
    if (s != PETL_OK) return s;
    int64_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) {
        petl_batch_plan_free(plan);
        return petl_fail(err, PETL_ERR_NOMEM, "batcher: out of memory for a plan of %zu", n);
    }
    for (size_t i = 0; i < n; i++) plan->order[i] = (int64_t)i;
    sort_by_len(b->len, plan->order, tmp, n);
    free(tmp);
    for (size_t k = 0; k <= nb; k++) {
        size_t p = k * (size_t)batch;
        plan->start[k] = p < n ? p : n;
    }
    return PETL_OK;
}

/* ------------------------------------------------------------------------------------ fill */

petl_status petl_batch_buf_init(petl_batch_buf *buf, int max_batch, int max_len, petl_error *err) {
    memset(buf, 0, sizeof *buf);
    if (max_batch < 1 || max_len < 1)
        return petl_fail(err, PETL_ERR_ARG, "batch buffer: sizes must be positive");
    size_t cells = (size_t)max_batch * (size_t)max_len;
    buf->ids = malloc(cells * sizeof *buf->ids);
    buf->type_ids = malloc(cells * sizeof *buf->type_ids);
    buf->lengths = malloc((size_t)max_batch * sizeof *buf->lengths);
    buf->labels = malloc((size_t)max_batch * sizeof *buf->labels);
    buf->targets = malloc((size_t)max_batch * sizeof *buf->targets);
    buf->starts = malloc((size_t)max_batch * sizeof *buf->starts);
    buf->ends = malloc((size_t)max_batch * sizeof *buf->ends);
    if (!buf->ids || !buf->type_ids || !buf->lengths || !buf->labels || !buf->targets ||
        !buf->starts || !buf->ends) {
        petl_batch_buf_free(buf);
        return petl_fail(err, PETL_ERR_NOMEM, "batch buffer: out of memory");
    }
    buf->max_batch = max_batch;
    buf->max_len = max_len;
    return PETL_OK;
}

void petl_batch_buf_free(petl_batch_buf *buf) {
    if (!buf) return;
    free(buf->ids);
    free(buf->type_ids);
    free(buf->lengths);
    free(buf->labels);
    free(buf->targets);
    free(buf->starts);
    free(buf->ends);
    memset(buf, 0, sizeof *buf);
}

petl_status petl_batcher_fill(const petl_batcher *b, const int64_t *idx, size_t n, bool pad_to_max,
                              petl_batch_buf *buf, petl_error *err) {
    if (n == 0 || n > (size_t)buf->max_batch)
        return petl_fail(err, PETL_ERR_ARG, "batcher: %zu rows for a buffer of %d", n,
                         buf->max_batch);
    int seq = 0;
    for (size_t r = 0; r < n; r++) {
        if (idx[r] < 0 || (size_t)idx[r] >= b->n)
            return petl_fail(err, PETL_ERR_ARG, "batcher: example %lld out of range",
                             (long long)idx[r]);
        if (b->len[idx[r]] > seq) seq = b->len[idx[r]];
    }
    if (pad_to_max && b->max_len > seq) seq = b->max_len;
    if (seq > buf->max_len)
        return petl_fail(err, PETL_ERR_ARG, "batcher: rows of %d tokens for a buffer of %d", seq,
                         buf->max_len);
    buf->tokens = 0;
    for (size_t r = 0; r < n; r++) {
        size_t i = (size_t)idx[r], L = (size_t)b->len[i];
        int32_t *ids = buf->ids + r * (size_t)seq, *types = buf->type_ids + r * (size_t)seq;
        memcpy(ids, b->ids + b->off[i], L * sizeof *ids);
        memcpy(types, b->types + b->off[i], L * sizeof *types);
        for (size_t p = L; p < (size_t)seq; p++) ids[p] = b->pad_id, types[p] = 0;
        buf->lengths[r] = (int)L;
        buf->labels[r] = b->label[i];
        buf->targets[r] = b->target[i];
        buf->starts[r] = b->span[2 * i];
        buf->ends[r] = b->span[2 * i + 1];
        buf->tokens += (int64_t)L;
    }
    buf->batch = (petl_batch){(int)n, seq, buf->ids, buf->type_ids, buf->lengths};
    return PETL_OK;
}
