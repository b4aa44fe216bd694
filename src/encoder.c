/* The BERT encoder forward pass: embeddings, N post-LN transformer layers, pooler, and the
 * [CLS] / mean outputs, on a padded batch.
 *
 * Only the rows that matter are computed. Internally activations are "packed" (kernels.h): the
 * computed rows of each batch row sit back to back, so a batch of short sentences padded to a
 * long one costs what the short sentences cost. The computed rows are the real tokens, or all
 * seq positions when the caller asks for last_hidden (which includes the padding rows, as in
 * transformers: padding queries attend to the real keys). Either way padded keys never enter
 * attention, so a sentence gives the same numbers alone as in any padded batch.
 *
 * All activations live in one arena of the petl_ctx, sized in petl_ctx_new for
 * max_batch x max_len; petl_encode allocates nothing. */
#include "internal.h"
#include "kernels.h"
#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct petl_ctx {
    const petl_model *m;
    int max_batch, max_len;
    int nthreads; /* OpenMP threads the attention scratch was sized for */
    bool naive;   /* run the naive kernel twins (tests) */
    void *arena;  /* the one allocation; everything below points into it */
    /* Activations, N = max_batch * max_len packed rows at most. */
    float *x;        /* [N, H]  the residual stream, updated layer by layer */
    float *work;     /* [N, max(3H, I)]  fused Q|K|V, later the FFN hidden layer */
    float *attn;     /* [N, H]  attention context (heads concatenated) */
    float *proj;     /* [N, H]  output of the attention / FFN output projection */
    float *scratch;  /* [nthreads, max_len, max_len]  attention scores per thread */
    float *cls_rows; /* [max_batch, H] */
    int64_t *off;    /* [max_batch]  first packed row of each batch row */
    int *qlen;       /* [max_batch]  computed rows of each batch row */
    int *klen;       /* [max_batch]  real tokens of each batch row */
};

/* Internal switch for the tests: run the naive twins end to end. */
void petl_ctx_use_naive(petl_ctx *ctx, bool on);
void petl_ctx_use_naive(petl_ctx *ctx, bool on) {
    ctx->naive = on;
}

/* ------------------------------------------------------------------------------- context */

/* Carves n bytes, rounded up to 64 (cache line / AVX-512 alignment), from *at. */
static void *carve(char **at, size_t n) {
    void *p = *at;
    *at += (n + 63) / 64 * 64;
    return p;
}

petl_status petl_ctx_new(const petl_model *m, int max_batch, int max_len, petl_ctx **out,
                         petl_error *err) {
    *out = NULL;
    if (!m) return petl_fail(err, PETL_ERR_ARG, "model is NULL");
    const petl_config *c = &m->cfg;
    if (max_batch < 1 || max_len < 1)
        return petl_fail(err, PETL_ERR_ARG, "max_batch %d and max_len %d must be at least 1",
                         max_batch, max_len);
    petl_status ms = petl_model_check_max_len(m, max_len, err);
    if (ms != PETL_OK) return ms;
    const size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t W = 3 * H > I ? 3 * H : I;
    const size_t N = (size_t)max_batch * (size_t)max_len;
    int nthreads = omp_get_max_threads();
    if (nthreads < 1) nthreads = 1;
    /* Element counts stay far below SIZE_MAX (config sizes <= 2^24, batch and len < 2^31),
     * except through the products below: check them as doubles before adding up. */
    double floats = (double)N * (double)(3 * H + W) + (double)nthreads * max_len * max_len +
                    (double)max_batch * H;
    if (floats * sizeof(float) > (double)SIZE_MAX / 2)
        return petl_fail(err, PETL_ERR_NOMEM, "a context for %d x %d tokens is too large",
                         max_batch, max_len);
    size_t sizes[] = {
        N * H * sizeof(float),
        N * W * sizeof(float),
        N * H * sizeof(float),
        N * H * sizeof(float),
        (size_t)nthreads * max_len * max_len * sizeof(float),
        (size_t)max_batch * H * sizeof(float),
        (size_t)max_batch * sizeof(int64_t),
        (size_t)max_batch * sizeof(int),
        (size_t)max_batch * sizeof(int),
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + 63) / 64 * 64;

    petl_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    ctx->arena = aligned_alloc(64, total);
    if (!ctx->arena) {
        free(ctx);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a %zu-byte context", total);
    }
    char *at = ctx->arena;
    ctx->x = carve(&at, sizes[0]);
    ctx->work = carve(&at, sizes[1]);
    ctx->attn = carve(&at, sizes[2]);
    ctx->proj = carve(&at, sizes[3]);
    ctx->scratch = carve(&at, sizes[4]);
    ctx->cls_rows = carve(&at, sizes[5]);
    ctx->off = carve(&at, sizes[6]);
    ctx->qlen = carve(&at, sizes[7]);
    ctx->klen = carve(&at, sizes[8]);
    ctx->m = m;
    ctx->max_batch = max_batch;
    ctx->max_len = max_len;
    ctx->nthreads = nthreads;
    *out = ctx;
    return PETL_OK;
}

void petl_ctx_free(petl_ctx *ctx) {
    if (!ctx) return;
    free(ctx->arena);
    free(ctx);
}

/* ------------------------------------------------------------------------------- forward */

/* x[n, H] = word[id] + pos[p] + type[tt] for every computed row; the LayerNorm follows. */
static void embeddings_forward(float *x, const petl_model *m, const petl_batch *b,
                               const int64_t *off, const int *qlen) {
    const int H = m->cfg.hidden_size;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < b->batch; r++)
        for (int p = 0; p < qlen[r]; p++) {
            int64_t at = (int64_t)r * b->seq + p;
            const float *we = m->word_emb + (int64_t)b->ids[at] * H;
            const float *pe = m->pos_emb + (int64_t)p * H;
            const float *te = m->type_emb + (int64_t)b->type_ids[at] * H;
            float *o = x + (off[r] + p) * H;
#pragma omp simd
            for (int c = 0; c < H; c++)
                o[c] = we[c] + pe[c] + te[c];
        }
}

/* A frozen linear layer: fp32 (w), or bf16 when the model packed it (bw != NULL). */
static void matmul(const petl_ctx *ctx, float *out, const float *inp, const float *w,
                   const petl_bf16_mat *bw, const float *b, int64_t N, int IC, int OC) {
    if (bw)
        (ctx->naive ? matmul_bf16_naive : matmul_bf16)(out, inp, bw, b, N, false);
    else
        (ctx->naive ? matmul_naive : matmul_forward)(out, inp, w, b, N, IC, OC);
}

static void layernorm(const petl_ctx *ctx, float *out, const float *inp, const float *res,
                      const float *w, const float *b, int64_t N) {
    const petl_config *c = &ctx->m->cfg;
    (ctx->naive ? layernorm_naive : layernorm_forward)(out, inp, res, w, b, N, c->hidden_size,
                                                       c->layer_norm_eps);
}

/* One post-LN BERT layer on the n packed rows of ctx->x [n, H], in place:
 *   a = LayerNorm(x + W_o attention(x))      y = LayerNorm(a + W_2 act(W_1 a))
 * The adapters of the method (docs/method.md) will transform ctx->proj at the two marked
 * points: after each output projection, before its residual add + LayerNorm. */
static void layer_forward(petl_ctx *ctx, const petl_layer_params *p, const petl_layer_bf16 *bf,
                          int B, int64_t n) {
    const petl_config *c = &ctx->m->cfg;
    const int H = c->hidden_size, I = c->intermediate_size;
    float *x = ctx->x, *qkv = ctx->work, *ffn = ctx->work;

    matmul(ctx, qkv, x, p->qkv_w, bf ? &bf->qkv : NULL, p->qkv_b, n, H, 3 * H); /* [n, 3H] */
    if (ctx->naive)
        attention_naive(ctx->attn, qkv, ctx->off, ctx->qlen, ctx->klen, B, H, c->num_heads);
    else
        attention_forward(ctx->attn, ctx->scratch, (int64_t)ctx->max_len * ctx->max_len,
                          ctx->nthreads, qkv, ctx->off, ctx->qlen, ctx->klen, B, H, c->num_heads,
                          bf != NULL);
    matmul(ctx, ctx->proj, ctx->attn, p->attn_out_w, bf ? &bf->attn_out : NULL, p->attn_out_b, n, H,
           H); /* [n, H] */
    /* (adapter 1 on ctx->proj goes here) */
    layernorm(ctx, x, x, ctx->proj, p->ln1_w, p->ln1_b, n);

    matmul(ctx, ffn, x, p->ffn_in_w, bf ? &bf->ffn_in : NULL, p->ffn_in_b, n, H, I); /* [n, I] */
    (ctx->naive ? activation_naive : activation_forward)(ffn, ffn, n * I, c->hidden_act);
    matmul(ctx, ctx->proj, ffn, p->ffn_out_w, bf ? &bf->ffn_out : NULL, p->ffn_out_b, n, I,
           H); /* [n, H] */
    /* (adapter 2 on ctx->proj goes here) */
    layernorm(ctx, x, x, ctx->proj, p->ln2_w, p->ln2_b, n);
}

/* pooled[B, H] = tanh(W_pool h_[CLS] + b_pool) from cls_rows[B, H]. */
static void pooler_forward(const petl_ctx *ctx, float *pooled, const float *cls_rows, int B) {
    const petl_model *m = ctx->m;
    const int H = m->cfg.hidden_size;
    matmul(ctx, pooled, cls_rows, m->pool_w, NULL, m->pool_b, B, H, H);
    for (int64_t i = 0; i < (int64_t)B * H; i++)
        pooled[i] = tanhf(pooled[i]);
}

/* mean[B, H]: average of the last hidden states of the real tokens of each row. */
static void mean_forward(float *mean, const float *x, const int64_t *off, const int *klen, int B,
                         int H) {
    for (int r = 0; r < B; r++) {
        float *o = mean + (int64_t)r * H;
        memset(o, 0, (size_t)H * sizeof *o);
        for (int t = 0; t < klen[r]; t++) {
            const float *h = x + (off[r] + t) * H;
#pragma omp simd
            for (int c = 0; c < H; c++)
                o[c] += h[c];
        }
        float inv = 1.0f / (float)klen[r];
        for (int c = 0; c < H; c++)
            o[c] *= inv;
    }
}

static petl_status check_batch(const petl_ctx *ctx, const petl_batch *b, petl_error *err) {
    /* Padding positions too: they are computed when last_hidden is asked for. */
    return petl_batch_check(&ctx->m->cfg, ctx->max_batch, ctx->max_len, b, true, err);
}

petl_status petl_encode(petl_ctx *ctx, const petl_batch *b, float *last_hidden, float *pooled,
                        float *cls, float *mean, petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "context is NULL");
    petl_status rc = check_batch(ctx, b, err);
    if (rc != PETL_OK) return rc;
    const petl_model *m = ctx->m;
    if (pooled && !m->has_pooler)
        return petl_fail(err, PETL_ERR_ARG, "pooled output asked of a model without a pooler");
    const int H = m->cfg.hidden_size, B = b->batch;

    /* Packed layout: all seq positions when the caller wants every hidden state, else the
     * real tokens only. */
    int64_t n = 0;
    for (int r = 0; r < B; r++) {
        ctx->off[r] = n;
        ctx->klen[r] = b->lengths[r];
        ctx->qlen[r] = last_hidden ? b->seq : b->lengths[r];
        n += ctx->qlen[r];
    }

    embeddings_forward(ctx->x, m, b, ctx->off, ctx->qlen);
    layernorm(ctx, ctx->x, ctx->x, NULL, m->emb_ln_w, m->emb_ln_b, n);
    for (int l = 0; l < m->cfg.num_layers; l++)
        layer_forward(ctx, &m->layers[l], m->bf16 ? &m->bf16[l] : NULL, B, n);

    for (int r = 0; r < B; r++)
        memcpy(ctx->cls_rows + (int64_t)r * H, ctx->x + ctx->off[r] * H, (size_t)H * sizeof(float));
    if (cls) memcpy(cls, ctx->cls_rows, (size_t)B * H * sizeof(float));
    if (pooled) pooler_forward(ctx, pooled, ctx->cls_rows, B);
    if (mean) mean_forward(mean, ctx->x, ctx->off, ctx->klen, B, H);
    /* With last_hidden every row is computed, so packed rows are exactly [B, seq, H]. */
    if (last_hidden) memcpy(last_hidden, ctx->x, (size_t)n * H * sizeof(float));
    return PETL_OK;
}
