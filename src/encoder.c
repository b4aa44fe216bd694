/* The bare encoder (`petl embed`, include/petl.h): the one forward of src/forward.c on a single
 * group whose view is the base itself, and the outputs read off its last hidden states: [CLS],
 * the base's pooler, the mean over real tokens, or every hidden state.
 *
 * Only the rows that matter are computed: the real tokens, or all seq positions when the caller
 * asks for last_hidden (which includes the padding rows, as in transformers: padding queries
 * attend to the real keys). Either way padded keys never enter attention, so a sentence gives
 * the same numbers alone as in any padded batch. petl_encode allocates nothing. */
#include "forward.h"
#include "internal.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

petl_status petl_ctx_new(const petl_model *m, int max_batch, int max_len, petl_ctx **out,
                         petl_error *err) {
    *out = NULL;
    if (!m) return petl_fail(err, PETL_ERR_ARG, "model is NULL");
    petl_ctx_shape sh = {.max_batch = max_batch, .max_len = max_len};
    return petl_ctx_make(m, &sh, out, err);
}

/* pooled[B, H] = tanh(W_pool h_[CLS] + b_pool) from cls[B, H]. */
static void pooler_forward(const petl_model *m, bool naive, float *pooled, const float *cls,
                           int B) {
    const int H = m->cfg.hidden_size;
    (naive ? petl_matmul_naive : petl_matmul_forward)(pooled, cls, m->pool_w, m->pool_b, B, H, H);
    for (int64_t i = 0; i < (int64_t)B * H; i++)
        pooled[i] = tanhf(pooled[i]);
}

/* mean[B, H]: average of the last hidden states of the real tokens of each row. */
static void mean_forward(float *mean, const float *x, const int64_t *off, const int *len, int B,
                         int H) {
    for (int r = 0; r < B; r++) {
        float *o = mean + (int64_t)r * H;
        memset(o, 0, (size_t)H * sizeof *o);
        for (int t = 0; t < len[r]; t++) {
            const float *h = x + (off[r] + t) * H;
#pragma omp simd
            for (int c = 0; c < H; c++)
                o[c] += h[c];
        }
        float inv = 1.0f / (float)len[r];
        for (int c = 0; c < H; c++)
            o[c] *= inv;
    }
}

petl_status petl_encode(petl_ctx *ctx, const petl_batch *b, float *last_hidden, float *pooled,
                        float *cls, float *mean, petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "context is NULL");
    const petl_ctx_shape *sh = petl_ctx_get_shape(ctx);
    const petl_model *m = petl_ctx_base(ctx);
    /* padding positions are computed too when last_hidden is asked for: check their ids */
    petl_status rc = petl_batch_check(m, sh->max_batch, sh->max_len, b, true, err);
    if (rc != PETL_OK) return rc;
    if (pooled && !m->has_pooler)
        return petl_fail(err, PETL_ERR_ARG, "pooled output asked of a model without a pooler");
    const int H = m->cfg.hidden_size, B = b->batch;
    petl_ctx_bind(ctx, NULL); /* the bare base */
    petl_forward(ctx, NULL, b, last_hidden != NULL, false, 0);

    /* one group: reordered rows are the batch rows */
    const int64_t *off;
    const int *qlen;
    const float *x = petl_ctx_hidden(ctx, &off, &qlen);
    const float *cls_rows = petl_ctx_cls_rows(ctx); /* [B, H] */
    if (cls) memcpy(cls, cls_rows, (size_t)B * H * sizeof(float));
    if (pooled) pooler_forward(m, petl_ctx_naive(ctx), pooled, cls_rows, B);
    if (mean) mean_forward(mean, x, off, b->lengths, B, H);
    /* With last_hidden every row is computed, so packed rows are exactly [B, seq, H]. */
    if (last_hidden) memcpy(last_hidden, x, (size_t)b->seq * B * H * sizeof(float));
    return PETL_OK;
}
