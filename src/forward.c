/* The one encoder forward and its backward, over row groups (see forward.h), forward and
 * backward of each part side by side.
 *
 * Activations are packed (kernels.h): the computed rows of each batch row sit back to back, so a
 * batch of short sentences padded to a long one costs what the short sentences cost. Padded keys
 * never enter attention. The batch rows are reordered so that each group's rows are contiguous:
 * group g owns packed tokens tstart[g] .. tstart[g + 1] - 1, and its per-group parts (adapters,
 * LayerNorms, head) run on those rows only.
 *
 * Training saves every layer's activations from the lowest trained one up and runs the backward
 * in reverse, stopping there. Dropout masks come from keyed rng streams, one per (site, layer,
 * batch row), so they do not depend on the thread count and are regenerated, not stored, in the
 * backward. Inference keeps one layer's buffers, reused layer after layer. */
#include "forward.h"

#include "internal.h"
#include "kernels.h"
#include "rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* One layer's activations, N packed rows at most. Training: one slot per saved layer. Inference:
 * one slot for every layer whose buffers alias what is dead when they are written (qkv and f
 * share one [N, max(3H, I)] buffer, h1 = h2, s1 = s2, y1 = the layer's input / output). */
typedef struct {
    float *qkv;                           /* [N, 3H]  fused projection */
    float *probs;                         /* [P]      softmax probabilities (training) */
    float *ctx;                           /* [N, H]   attention context */
    float *h1, *h2;                       /* [N, H]   projections after dropout (adapter inputs) */
    float *z1, *g1, *z2, *g2;             /* [N, m]   adapter bottlenecks before / after f */
    float *s1, *s2;                       /* [N, H]   LayerNorm inputs (residual sums) */
    float *mean1, *rstd1, *mean2, *rstd2; /* [N] */
    float *y1;                            /* [N, H]   LayerNorm 1 output */
    float *f;                             /* [N, I]   FFN hidden before its activation */
} layer_acts;

struct petl_ctx {
    const petl_model *base;
    petl_ctx_shape sh;
    int nthreads; /* OpenMP threads the attention scratch was sized for */
    bool naive;   /* the naive kernel twins (tests) */
    void *arena;  /* the one allocation: every buffer below points into it */
    petl_view base_view;
    petl_layer_view *base_layers; /* [L] */
    const petl_view *bound;       /* a task context's view */
    /* The current batch: B rows in ng groups, n packed tokens. Reordered row k is batch row
     * order[k]; k's tokens are off[k] .. off[k] + qlen[k] - 1, its keys the first klen[k]. */
    int B, ng;
    int64_t n;
    int64_t *off, *poff;     /* [max_batch]  first packed token / probability of reordered row k */
    int *qlen, *klen;        /* [max_batch] */
    int *order, *grp;        /* [max_batch]  reordered row -> batch row; batch row -> group */
    int *gstart;             /* [max_batch + 1]  first reordered row of group g */
    int64_t *tstart;         /* [max_batch + 1]  first packed token of group g */
    const petl_view **gview; /* [max_batch]  view of group g */
    const petl_view **rview; /* [max_batch]  callers' per-row views (petl_ctx_row_views) */
    /* Saved forward. */
    float *emb_sum;             /* [N, E]  word + position + type (training) */
    float *emb_mean, *emb_rstd; /* [N] */
    float *emb_ln;              /* [N, E]  the embeddings before their projection (ELECTRA) */
    /* Relative attention bias (MPNet): rel_bkt[c] is the bucket of distance c - (max_len - 1);
     * relb [heads, 2 max_len - 1] the bias of each head and distance, from the view's table. */
    int *rel_bkt;
    float *relb;
    float *drel_scr; /* [nthreads, heads, 2 max_len - 1]  its gradient, per thread (training) */
    petl_att_bias rb;
    const petl_att_bias *rbp;   /* &rb when the model has the bias, else NULL */
    float *xs;                  /* training [L + 1, N, H]: xs[0] embeddings, xs[l + 1] layer l
                                   out; inference [N, H] */
    layer_acts *acts;           /* [L + 1]: per layer, [L] the shared slot */
    float *fg;                  /* [N, I]  FFN activation output (inference: = f) */
    float *cls_rows, *pooled, *pooled_d; /* [B, H] */
    float *logits;                       /* group g's [rows, NL] from gstart[g] * max_nl */
    float *span_logits;                  /* [N, 2] */
    bool saving;                         /* the last forward saved its activations */
    bool dropout;                        /* the last forward used dropout... */
    uint64_t seed;                       /* ...with this seed */
    uint64_t *drop_keys;                 /* [B]  per-row dropout keys */
    /* Backward scratch (training). */
    float *dy, *ds, *dh, *dctx; /* [N, H] */
    float *dqkv;                /* [N, 3H] */
    float *dfg, *df;            /* [N, I] */
    float *dad;                 /* [2, N, m] */
    float *dlogits;             /* [B, NL] */
    float *dspan;               /* [N, 2] */
    float *dcls;                /* [B, H] */
    float *head_scr;            /* [2, B, H] */
    float *att_scr;             /* [nthreads, att_stride] */
    int64_t att_stride;
    int lowest_computed;
};

/* ------------------------------------------------------------------------------- views */

void petl_view_of_base(petl_view *v, petl_layer_view *layers, const petl_model *m) {
    memset(v, 0, sizeof *v);
    v->base = m;
    v->word_emb = m->word_emb;
    v->pos_emb = m->pos_emb;
    v->type_emb = m->type_emb;
    v->emb_ln_w = m->emb_ln_w;
    v->emb_ln_b = m->emb_ln_b;
    v->emb_proj_w = m->emb_proj_w;
    v->emb_proj_b = m->emb_proj_b;
    v->rel_bias = m->rel_bias;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const petl_layer_params *p = &m->layers[l];
        layers[l] = (petl_layer_view){.qkv_w = p->qkv_w,
                                      .qkv_b = p->qkv_b,
                                      .attn_out_w = p->attn_out_w,
                                      .attn_out_b = p->attn_out_b,
                                      .ln1_w = p->ln1_w,
                                      .ln1_b = p->ln1_b,
                                      .ffn_in_w = p->ffn_in_w,
                                      .ffn_in_b = p->ffn_in_b,
                                      .ffn_out_w = p->ffn_out_w,
                                      .ffn_out_b = p->ffn_out_b,
                                      .ln2_w = p->ln2_w,
                                      .ln2_b = p->ln2_b};
    }
    v->layers = layers;
    v->head = PETL_HEAD_NONE;
    v->cls.pool_w = m->pool_w;
    v->cls.pool_b = m->pool_b;
    v->lowest = m->cfg.num_layers + 1;
}

/* The view pointers ARE the base's when not tuned, so comparing pointers is exact. */
bool petl_view_shares_base(const petl_view *v) {
    const petl_model *b = v->base;
    if (v->word_emb != b->word_emb || v->pos_emb != b->pos_emb || v->type_emb != b->type_emb ||
        v->emb_proj_w != b->emb_proj_w || v->emb_proj_b != b->emb_proj_b ||
        v->rel_bias != b->rel_bias)
        return false;
    for (int l = 0; l < b->cfg.num_layers; l++) {
        const petl_layer_view *y = &v->layers[l];
        const petl_layer_params *p = &b->layers[l];
        if (y->qkv_w != p->qkv_w || y->qkv_b != p->qkv_b || y->attn_out_w != p->attn_out_w ||
            y->attn_out_b != p->attn_out_b || y->ffn_in_w != p->ffn_in_w ||
            y->ffn_in_b != p->ffn_in_b || y->ffn_out_w != p->ffn_out_w ||
            y->ffn_out_b != p->ffn_out_b)
            return false;
    }
    return true;
}

/* Whether layer l's adapter at `site` runs: it exists and is not switched off. Forward and
 * backward both ask, so a disabled adapter is the identity in both (its gradient stays 0). */
static bool adapter_on(const petl_view *v, int l, int site) {
    return v->layers[l].has_adapter[site] && !(l < 64 && (v->adapters_off >> l & 1u));
}

/* Whether layer l of v runs in bf16: the base is packed and the layer is frozen (its weights are
 * the base's). Then its attention products and its adapters go through petl_gemm_bf16 too; a layer
 * the task tunes (full, top:K) stays fp32 throughout. */
static bool layer_in_bf16(const petl_view *v, int l) {
    return v->base->bf16 && v->layers[l].qkv_w == v->base->layers[l].qkv_w;
}

/* ------------------------------------------------------------------------------ context */

/* The next n bytes (rounded up to 64: cache lines, AVX-512) at offset *at of base; NULL while
 * only measuring (base NULL). */
static void *carve(char *base, size_t *at, size_t n) {
    void *p = base ? base + *at : NULL;
    *at += (n + 63) / 64 * 64;
    return p;
}

static void carve_train_acts(layer_acts *a, char *base, size_t *at, size_t N, size_t H, size_t I,
                             size_t m, size_t P) {
    const size_t F = sizeof(float);
    a->qkv = carve(base, at, N * 3 * H * F);
    a->probs = carve(base, at, P * F);
    a->ctx = carve(base, at, N * H * F);
    a->h1 = carve(base, at, N * H * F);
    a->h2 = carve(base, at, N * H * F);
    a->z1 = carve(base, at, N * m * F);
    a->g1 = carve(base, at, N * m * F);
    a->z2 = carve(base, at, N * m * F);
    a->g2 = carve(base, at, N * m * F);
    a->s1 = carve(base, at, N * H * F);
    a->s2 = carve(base, at, N * H * F);
    a->mean1 = carve(base, at, N * F);
    a->rstd1 = carve(base, at, N * F);
    a->mean2 = carve(base, at, N * F);
    a->rstd2 = carve(base, at, N * F);
    a->y1 = carve(base, at, N * H * F);
    a->f = carve(base, at, N * I * F);
}

/* The inference slot (see layer_acts); y1 is set to the layer's input by the forward. */
static void carve_infer_acts(layer_acts *a, char *base, size_t *at, size_t N, size_t H, size_t I,
                             size_t m) {
    const size_t F = sizeof(float), W = 3 * H > I ? 3 * H : I;
    memset(a, 0, sizeof *a);
    a->qkv = a->f = carve(base, at, N * W * F);
    a->ctx = carve(base, at, N * H * F);
    a->h1 = a->h2 = carve(base, at, N * H * F);
    a->s1 = a->s2 = m ? carve(base, at, N * H * F) : NULL;
    a->z1 = a->z2 = carve(base, at, N * m * F);
    a->g1 = a->g2 = carve(base, at, N * m * F);
    a->mean1 = a->mean2 = carve(base, at, N * F);
    a->rstd1 = a->rstd2 = carve(base, at, N * F);
}

/* Lays the arena out (base == NULL: only measures). Returns the byte count. */
static size_t layout(petl_ctx *ctx, char *base) {
    const petl_config *c = &ctx->base->cfg;
    const petl_ctx_shape *s = &ctx->sh;
    const size_t T = s->train ? 1 : 0; /* saved activations, backward buffers */
    const size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t E = (size_t)c->embedding_size, EP = E != H ? E : 0; /* EP: projected width */
    const size_t R = ctx->base->rel_bias ? 2 * (size_t)s->max_len - 1 : 0, NHd = c->num_heads;
    const size_t m = (size_t)s->max_m, L = (size_t)c->num_layers, NL = (size_t)s->max_nl;
    const size_t B = (size_t)s->max_batch, N = B * (size_t)s->max_len;
    const size_t P = T ? B * (size_t)c->num_heads * (size_t)s->max_len * s->max_len : 0;
    const size_t SP = s->span ? N * 2 : 0, F = sizeof(float);
    size_t at = 0;
#define C(field, bytes) ((void)(field = carve(base, &at, bytes)))
    C(ctx->off, B * sizeof(int64_t));
    C(ctx->poff, B * sizeof(int64_t));
    C(ctx->qlen, B * sizeof(int));
    C(ctx->klen, B * sizeof(int));
    C(ctx->order, B * sizeof(int));
    C(ctx->grp, B * sizeof(int));
    C(ctx->gstart, (B + 1) * sizeof(int));
    C(ctx->tstart, (B + 1) * sizeof(int64_t));
    C(ctx->gview, B * sizeof(*ctx->gview));
    C(ctx->rview, B * sizeof(*ctx->rview));
    C(ctx->drop_keys, B * sizeof(uint64_t));
    C(ctx->emb_sum, T * N * E * F);
    C(ctx->emb_mean, N * F);
    C(ctx->emb_rstd, N * F);
    C(ctx->emb_ln, N * EP * F);
    C(ctx->rel_bkt, R * sizeof(int));
    C(ctx->relb, NHd * R * F);
    C(ctx->drel_scr, T * (size_t)ctx->nthreads * NHd * R * F);
    C(ctx->xs, (T ? L + 1 : 1) * N * H * F);
    if (T) {
        /* One slot per layer from the lowest trained one up (the backward reads them), and one
         * shared by the frozen layers below it, which need theirs only while the layer runs. */
        const int first = s->first_saved;
        for (int l = first; l < (int)L; l++)
            carve_train_acts(&ctx->acts[l], base, &at, N, H, I, m ? m : 1, P);
        if (first > 0 || L == 0)
            carve_train_acts(&ctx->acts[L], base, &at, N, H, I, m ? m : 1, P);
        else if (base)
            ctx->acts[L] = ctx->acts[0];
        if (base)
            for (int l = 0; l < first; l++)
                ctx->acts[l] = ctx->acts[L];
        C(ctx->fg, N * I * F);
    } else {
        layer_acts a;
        carve_infer_acts(&a, base, &at, N, H, I, m);
        if (base) {
            for (size_t l = 0; l <= L; l++)
                ctx->acts[l] = a;
            ctx->fg = a.f;
        }
    }
    C(ctx->cls_rows, B * H * F);
    C(ctx->pooled, B * H * F);
    C(ctx->pooled_d, B * H * F);
    C(ctx->logits, B * NL * F);
    C(ctx->span_logits, SP * F);
    C(ctx->dspan, T * SP * F);
    C(ctx->dy, T * N * H * F);
    C(ctx->ds, T * N * (H > E ? H : E) * F); /* also d of the embedding sum */
    C(ctx->dh, T * N * H * F);
    C(ctx->dctx, T * N * H * F);
    C(ctx->dqkv, T * N * 3 * H * F);
    C(ctx->dfg, T * N * (I > EP ? I : EP) * F); /* also d of the projected embeddings */
    C(ctx->df, T * N * I * F);
    C(ctx->dad, T * 2 * N * (m ? m : 1) * F);
    C(ctx->dlogits, T * B * NL * F);
    C(ctx->dcls, T * B * H * F);
    C(ctx->head_scr, T * 2 * B * H * F);
    C(ctx->att_scr, (size_t)ctx->nthreads * (size_t)ctx->att_stride * F);
#undef C
    return at;
}

petl_status petl_ctx_make(const petl_model *base, const petl_ctx_shape *shape, petl_ctx **out,
                          petl_error *err) {
    *out = NULL;
    if (!base) return petl_fail(err, PETL_ERR_ARG, "model is NULL");
    const petl_config *c = &base->cfg;
    const petl_ctx_shape *s = shape;
    if (s->max_batch < 1 || s->max_len < 1 || s->max_m < 0 || s->max_nl < 0)
        return petl_fail(err, PETL_ERR_ARG,
                         "max_batch %d and max_len %d must be at least 1 (adapter size %d, "
                         "labels %d)",
                         s->max_batch, s->max_len, s->max_m, s->max_nl);
    petl_status ms = petl_model_check_max_len(base, s->max_len, err);
    if (ms != PETL_OK) return ms;
    /* An upper bound of the float count, checked in double before any size_t arithmetic can
     * overflow. */
    const double N = (double)s->max_batch * s->max_len, L = c->num_layers;
    const double per_layer =
        N * (12.0 * c->hidden_size + 2.0 * c->intermediate_size + 4.0 * (s->max_m + 1)) +
        2.0 * s->max_batch * c->num_heads * (double)s->max_len * s->max_len;
    const double floats = per_layer * (s->train ? L + 1 : 1) + N * c->hidden_size * 10.0 +
                          N * c->intermediate_size * 2.0 + (double)s->max_batch * s->max_nl +
                          64.0 * (double)s->max_len * s->max_len;
    if (floats * sizeof(float) > (double)SIZE_MAX / 4)
        return petl_fail(err, PETL_ERR_NOMEM, "a context for %d x %d tokens is too large",
                         s->max_batch, s->max_len);
    petl_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    ctx->base = base;
    ctx->sh = *s;
    ctx->nthreads = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    ctx->att_stride = (int64_t)(s->train ? 2 : 1) * s->max_len * s->max_len;
    ctx->acts = calloc((size_t)c->num_layers + 1, sizeof *ctx->acts);
    ctx->base_layers = calloc((size_t)c->num_layers, sizeof *ctx->base_layers);
    size_t total = ctx->acts && ctx->base_layers ? layout(ctx, NULL) : 0;
    ctx->arena = total ? aligned_alloc(64, total) : NULL;
    if (!ctx->arena) {
        petl_ctx_free(ctx);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a %zu-byte context", total);
    }
    layout(ctx, ctx->arena);
    if (base->rel_bias) {
        const int R = 2 * s->max_len - 1;
        for (int i = 0; i < R; i++)
            ctx->rel_bkt[i] =
                petl_rel_bucket(i - (s->max_len - 1), PETL_MPNET_BUCKETS, PETL_MPNET_MAX_DISTANCE);
        ctx->rb = (petl_att_bias){.bias = ctx->relb, .stride = R, .center = s->max_len - 1};
    }
    petl_view_of_base(&ctx->base_view, ctx->base_layers, base);
    *out = ctx;
    return PETL_OK;
}

void petl_ctx_free(petl_ctx *ctx) {
    if (!ctx) return;
    free(ctx->arena);
    free(ctx->acts);
    free(ctx->base_layers);
    free(ctx);
}

void petl_ctx_use_naive(petl_ctx *ctx, bool on) {
    ctx->naive = on;
}
bool petl_ctx_naive(const petl_ctx *ctx) {
    return ctx->naive;
}
const petl_view **petl_ctx_row_views(petl_ctx *ctx) {
    return ctx->rview;
}
const float *petl_ctx_cls_rows(const petl_ctx *ctx) {
    return ctx->cls_rows;
}
void petl_ctx_bind(petl_ctx *ctx, const petl_view *v) {
    ctx->bound = v;
}
const petl_view *petl_ctx_bound(const petl_ctx *ctx) {
    return ctx->bound;
}
const petl_view *petl_ctx_base_view(const petl_ctx *ctx) {
    return &ctx->base_view;
}
const petl_ctx_shape *petl_ctx_get_shape(const petl_ctx *ctx) {
    return &ctx->sh;
}
const petl_model *petl_ctx_base(const petl_ctx *ctx) {
    return ctx->base;
}
int petl_ctx_groups(const petl_ctx *ctx, const int **gstart, const int **order) {
    *gstart = ctx->gstart;
    *order = ctx->order;
    return ctx->ng;
}
const float *petl_ctx_hidden(const petl_ctx *ctx, const int64_t **off, const int **qlen) {
    *off = ctx->off;
    *qlen = ctx->qlen;
    const int64_t NH = (int64_t)ctx->sh.max_batch * ctx->sh.max_len * ctx->base->cfg.hidden_size;
    return ctx->saving ? ctx->xs + ctx->base->cfg.num_layers * NH : ctx->xs;
}
const float *petl_ctx_logits(const petl_ctx *ctx) {
    return ctx->logits;
}
const float *petl_ctx_span_logits(const petl_ctx *ctx) {
    return ctx->span_logits;
}
float *petl_ctx_dlogits(petl_ctx *ctx) {
    return ctx->dlogits;
}
float *petl_ctx_dspan(petl_ctx *ctx) {
    return ctx->dspan;
}
int petl_ctx_lowest_computed(const petl_ctx *ctx) {
    return ctx->lowest_computed;
}

/* ------------------------------------------------------------------------------ layout */

/* Groups the batch rows by view (order of first appearance, stable inside a group) and lays the
 * packed tokens out in that order: all positions of a row when qlen_all, else its real tokens. */
static void plan_rows(petl_ctx *ctx, const petl_view *const *views, const petl_batch *b,
                      bool qlen_all) {
    const int B = b->batch, nh = ctx->base->cfg.num_heads;
    const petl_view *one = ctx->bound ? ctx->bound : &ctx->base_view;
    int ng = 0;
    for (int r = 0; r < B; r++) {
        const petl_view *v = views ? views[r] : one;
        int g = 0;
        while (g < ng && ctx->gview[g] != v)
            g++;
        if (g == ng) ctx->gview[ng++] = v;
        ctx->grp[r] = g;
    }
    /* counting sort by group, stable: rows keep their batch order inside a group */
    for (int g = 0; g <= ng; g++)
        ctx->gstart[g] = 0;
    for (int r = 0; r < B; r++)
        ctx->gstart[ctx->grp[r] + 1]++;
    for (int g = 0; g < ng; g++)
        ctx->gstart[g + 1] += ctx->gstart[g];
    for (int g = 0; g < ng; g++)
        ctx->tstart[g] = ctx->gstart[g]; /* next free slot of group g, reset below */
    for (int r = 0; r < B; r++)
        ctx->order[ctx->tstart[ctx->grp[r]]++] = r;
    int64_t n = 0, np = 0;
    for (int k = 0; k < B; k++) {
        const int len = b->lengths[ctx->order[k]];
        ctx->off[k] = n;
        ctx->poff[k] = np;
        ctx->klen[k] = len;
        ctx->qlen[k] = qlen_all ? b->seq : len;
        n += ctx->qlen[k];
        np += (int64_t)nh * ctx->qlen[k] * len;
    }
    for (int g = 0; g <= ng; g++)
        ctx->tstart[g] = ctx->gstart[g] < B ? ctx->off[ctx->gstart[g]] : n;
    ctx->B = B;
    ctx->ng = ng;
    ctx->n = n;
}

/* Per-group parts run one group after another, each kernel parallel over its rows; with many
 * small groups (many tasks, a row or two each) the groups run in parallel instead, kernels
 * single-threaded: one fork / join per site instead of one per kernel per task, whose cost (and
 * that of a BLAS call on one row) would otherwise dominate. The two loops are not one `parallel
 * for ... if (...)`: an inactive region around the kernels makes their own parallel regions
 * nested, and libgomp then starts fresh threads for each (measured: 2.4x slower single-task). */
#define FOR_EACH_GROUP(ctx, g, body)                                                               \
    do {                                                                                           \
        if ((ctx)->ng >= 2 * (ctx)->nthreads) {                                                    \
            _Pragma("omp parallel for schedule(dynamic)") for (int g = 0; g < (ctx)->ng; g++)      \
                body;                                                                              \
        } else {                                                                                   \
            for (int g = 0; g < (ctx)->ng; g++)                                                    \
                body;                                                                              \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------------- dropout, kernels */

/* Hidden dropout of a packed [n, H] tensor in place, batch row r's block with key (seed,
 * purpose, site, r): the forward on the activations, and the backward, since the mask is
 * regenerated exactly, the same call on their gradient. Thread-count independent. */
static void hidden_dropout(const petl_ctx *ctx, const petl_view *v, float *x, uint64_t purpose,
                           uint64_t site) {
    /* the embeddings' dropout runs before their projection, at their width */
    const int H = purpose == PETL_RNG_DROPOUT_EMBED ? ctx->base->cfg.embedding_size
                                                    : ctx->base->cfg.hidden_size;
    const float p = v->hidden_dropout;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < ctx->B; k++) {
        float *row = x + ctx->off[k] * H;
        petl_dropout_apply(row, row, (size_t)ctx->qlen[k] * H, p,
                           petl_dropout_key(ctx->seed, purpose, site, (uint64_t)ctx->order[k]), 0);
    }
}

/* ctx->drop_keys[B] = the keys (seed, purpose, a, r) of the batch rows, for the kernels that
 * apply dropout themselves (attention probabilities, the head). */
static const uint64_t *row_keys(petl_ctx *ctx, uint64_t purpose, uint64_t a) {
    for (int k = 0; k < ctx->B; k++)
        ctx->drop_keys[k] = petl_dropout_key(ctx->seed, purpose, a, (uint64_t)ctx->order[k]);
    return ctx->drop_keys;
}

/* A linear layer: bf16 when the base packed it and w is the base's weight (a tuned copy of a
 * base weight, full / top:K, stays fp32); the naive twins on request. */
static void linear_forward(const petl_ctx *ctx, float *out, const float *inp, const float *w,
                           const float *base_w, const petl_bf16_mat *bw, const float *b, int64_t n,
                           int IC, int OC) {
    if (bw && w == base_w)
        (ctx->naive ? petl_matmul_bf16_naive : petl_matmul_bf16)(out, inp, bw, b, n, false);
    else
        (ctx->naive ? petl_matmul_naive : petl_matmul_forward)(out, inp, w, b, n, IC, OC);
}

/* petl_matmul_backward with the input gradient from the transposed bf16 pack when there is one. */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *base_w, const petl_bf16_mat *bwt,
                            int64_t n, int IC, int OC) {
    if (dinp && bwt && bwt->data && w == base_w) {
        petl_matmul_bf16(dinp, dout, bwt, NULL, n, true);
        dinp = NULL;
    }
    petl_matmul_backward(dinp, dw, db, dout, inp, w, n, IC, OC);
}

/* Element-wise out[n] += a[n]. */
static void add_inplace(float *out, const float *a, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        out[i] += a[i];
}

/* --------------------------------------------------------------------------- embeddings */

/* e[n, E] = word[id] + pos[p + offset] + type[tt] (no type table: no term) for every computed
 * row, from the first group's tables (shared by every group of a multi-group forward). */
static void embeddings_sum(const petl_ctx *ctx, float *e, const petl_batch *b) {
    const petl_view *v = ctx->gview[0];
    const petl_model *m = ctx->base;
    const int E = m->cfg.embedding_size;
    const bool types = m->arch->token_types;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < ctx->B; k++) {
        const int r = ctx->order[k];
        for (int p = 0; p < ctx->qlen[k]; p++) {
            const int64_t at = (int64_t)r * b->seq + p;
            const float *we = v->word_emb + (int64_t)b->ids[at] * E;
            const float *pe = v->pos_emb + (int64_t)(p + m->pos_offset) * E;
            float *o = e + (ctx->off[k] + p) * E;
            if (!v->type_emb) {
#pragma omp simd
                for (int c = 0; c < E; c++)
                    o[c] = we[c] + pe[c];
                continue;
            }
            const float *te = v->type_emb + (int64_t)(types ? b->type_ids[at] : 0) * E;
#pragma omp simd
            for (int c = 0; c < E; c++)
                o[c] = we[c] + pe[c] + te[c];
        }
    }
}

/* Group g's embedding LayerNorm (width E) into out: training from emb_sum (statistics saved),
 * else in place. */
static void embeddings_ln_group(petl_ctx *ctx, int g, float *out) {
    const petl_view *v = ctx->gview[g];
    const petl_config *c = &ctx->base->cfg;
    const int E = c->embedding_size;
    const int64_t t0 = ctx->tstart[g], n = ctx->tstart[g + 1] - t0;
    if (ctx->saving)
        petl_layernorm_forward_train(out + t0 * E, ctx->emb_mean + t0, ctx->emb_rstd + t0,
                                     ctx->emb_sum + t0 * E, v->emb_ln_w, v->emb_ln_b, n, E,
                                     c->layer_norm_eps);
    else
        (ctx->naive ? petl_layernorm_naive : petl_layernorm_forward)(
            out + t0 * E, out + t0 * E, NULL, v->emb_ln_w, v->emb_ln_b, n, E, c->layer_norm_eps);
}

/*   x0 = dropout(LN(e))                   (every family but ELECTRA with E != H)
 *   x0 = W_p dropout(LN(e)) + b_p          (ELECTRA: LN(e) in emb_ln [n, E]) */
static void embeddings_forward(petl_ctx *ctx, const petl_batch *b, float *x0) {
    const petl_view *v = ctx->gview[0];
    const petl_config *c = &ctx->base->cfg;
    float *ln = v->emb_proj_w ? ctx->emb_ln : x0;
    embeddings_sum(ctx, ctx->saving ? ctx->emb_sum : ln, b);
    FOR_EACH_GROUP(ctx, g, embeddings_ln_group(ctx, g, ln));
    if (ctx->dropout && v->hidden_dropout > 0.0f)
        hidden_dropout(ctx, v, ln, PETL_RNG_DROPOUT_EMBED, 0);
    if (v->emb_proj_w)
        linear_forward(ctx, x0, ln, v->emb_proj_w, NULL, NULL, v->emb_proj_b, ctx->n,
                       c->embedding_size, c->hidden_size); /* [n, H] */
}

/* Embeddings backward (one group) from dx0 = d loss / d xs[0] (overwritten). */
static void embeddings_backward(petl_ctx *ctx, const petl_batch *b, float *dx0) {
    const petl_view *v = ctx->gview[0];
    const petl_model *m = ctx->base;
    const int E = m->cfg.embedding_size;
    const bool types = m->arch->token_types;
    const int64_t nE = ctx->n * E;
    float *dln = dx0;
    if (v->emb_proj_w) {
        /* x0 = W_p ln + b_p:  d W_p += dx0^T ln,  d ln = dx0 W_p  (into dfg: [N, I] is free and
         * at least [N, E], as the context's layout makes it) */
        dln = ctx->dfg;
        memset(dln, 0, (size_t)nE * sizeof(float));
        petl_matmul_backward(dln, v->d_emb_proj_w, v->d_emb_proj_b, dx0, ctx->emb_ln, v->emb_proj_w,
                             ctx->n, E, m->cfg.hidden_size);
    }
    /* ln = dropout(LN(e)):  d LN(e) = d ln * mask */
    if (ctx->dropout && v->hidden_dropout > 0.0f)
        hidden_dropout(ctx, v, dln, PETL_RNG_DROPOUT_EMBED, 0);
    const bool tables = v->d_word_emb != NULL;
    float *de = tables ? ctx->ds : NULL;
    if (de) memset(de, 0, (size_t)nE * sizeof(float));
    petl_layernorm_backward(de, v->d_emb_ln_w, v->d_emb_ln_b, dln, ctx->emb_sum, v->emb_ln_w,
                            ctx->emb_mean, ctx->emb_rstd, ctx->n, E);
    if (!tables) return;
    /* e = word[id] + pos[p] + type[tt]: scatter-add, serially (repeated ids must add up in a
     * fixed order). */
    for (int k = 0; k < ctx->B; k++) {
        const int r = ctx->order[k];
        for (int p = 0; p < ctx->qlen[k]; p++) {
            const int64_t at = (int64_t)r * b->seq + p;
            const float *d = de + (ctx->off[k] + p) * E;
            float *gw = v->d_word_emb + (int64_t)b->ids[at] * E;
            float *gp = v->d_pos_emb + (int64_t)(p + m->pos_offset) * E;
            float *gt =
                v->d_type_emb ? v->d_type_emb + (int64_t)(types ? b->type_ids[at] : 0) * E : NULL;
            for (int c = 0; c < E; c++) {
                gw[c] += d[c];
                gp[c] += d[c];
            }
            if (gt)
                for (int c = 0; c < E; c++)
                    gt[c] += d[c];
        }
    }
}

/* MPNet's relative position bias for the forward: relb[h, c] = table[bucket(c - center), h] from
 * the first group's table (the base's or a full-tuned copy). */
static const petl_att_bias *rel_bias_forward(petl_ctx *ctx) {
    const petl_view *v = ctx->gview[0];
    if (!v->rel_bias) return NULL;
    const int nh = ctx->base->cfg.num_heads, R = ctx->rb.stride;
    for (int h = 0; h < nh; h++)
        for (int c = 0; c < R; c++)
            ctx->relb[h * R + c] = v->rel_bias[ctx->rel_bkt[c] * nh + h];
    ctx->rb.dbias = NULL;
    return &ctx->rb;
}

/* Backward: the per-thread gradients of relb summed into the table's, bucket by bucket. */
static void rel_bias_backward(petl_ctx *ctx) {
    const petl_view *v = ctx->gview[0];
    const int nh = ctx->base->cfg.num_heads, R = ctx->rb.stride;
    for (int t = 0; t < ctx->nthreads; t++)
        for (int h = 0; h < nh; h++)
            for (int c = 0; c < R; c++)
                v->d_rel_bias[ctx->rel_bkt[c] * nh + h] +=
                    ctx->drel_scr[((int64_t)t * nh + h) * R + c];
}

/* ------------------------------------------------------------------------------ layers */

/* Group g's adapter at `site` of layer l, residual and LayerNorm on its own rows:
 *   out = LayerNorm(res + A(h))        (no adapter, or switched off: LayerNorm(res + h))
 * s, z, g, mean, rstd: where the sum, the bottleneck and the statistics go (saved in
 * training). Inference without an adapter runs the fused residual LayerNorm instead (the same
 * arithmetic). out may alias res. */
static void adapter_ln_group(petl_ctx *ctx, int g, int l, int site, const layer_acts *a, float *out,
                             const float *res) {
    const petl_view *v = ctx->gview[g];
    const petl_layer_view *p = &v->layers[l];
    const petl_config *c = &ctx->base->cfg;
    const int H = c->hidden_size;
    const int64_t t0 = ctx->tstart[g], n = ctx->tstart[g + 1] - t0, mx = ctx->sh.max_m;
    const float *h = (site ? a->h2 : a->h1) + t0 * H;
    const float *w = site ? p->ln2_w : p->ln1_w, *b = site ? p->ln2_b : p->ln1_b;
    const bool ad = adapter_on(v, l, site);
    if (!ad && !ctx->saving) {
        (ctx->naive ? petl_layernorm_naive : petl_layernorm_forward)(out + t0 * H, res + t0 * H, h,
                                                                     w, b, n, H, c->layer_norm_eps);
        return;
    }
    float *s = (site ? a->s2 : a->s1) + t0 * H;
    if (ad)
        petl_adapter_forward(s, (site ? a->z2 : a->z1) + t0 * mx, (site ? a->g2 : a->g1) + t0 * mx,
                             h, &p->ad[site], n, H, v->m, v->act, layer_in_bf16(v, l));
    else
        memcpy(s, h, (size_t)(n * H) * sizeof(float));
    add_inplace(s, res + t0 * H, n * H);
    petl_layernorm_forward_train(out + t0 * H, (site ? a->mean2 : a->mean1) + t0,
                                 (site ? a->rstd2 : a->rstd1) + t0, s, w, b, n, H,
                                 c->layer_norm_eps);
}

/* One post-LN layer with adapters (Houlsby et al., ../shared/docs/method.md):
 *   h1 = dropout(W_o attention(x))    y1 = LayerNorm_1(x + A_1(h1))
 *   h2 = dropout(W_2 act(W_1 y1))     y  = LayerNorm_2(y1 + A_2(h2))
 * The GEMMs and attention over every row with the first group's weights; adapters and
 * LayerNorms per group. Inference: y and y1 are x itself. */
static void layer_forward(petl_ctx *ctx, int l, layer_acts *a, const float *x, float *y) {
    const petl_view *v = ctx->gview[0];
    const petl_layer_view *p = &v->layers[l];
    const petl_config *c = &ctx->base->cfg;
    const int H = c->hidden_size, I = c->intermediate_size, nh = c->num_heads;
    const int64_t n = ctx->n;
    const bool train = ctx->saving, lbf = layer_in_bf16(v, l);
    const petl_layer_bf16 *bf = ctx->base->bf16 ? &ctx->base->bf16[l] : NULL;
    const petl_layer_params *bw = &ctx->base->layers[l];
    if (!train) a->y1 = y; /* y aliases x: LayerNorm 1 writes back into the layer's input */

    linear_forward(ctx, a->qkv, x, p->qkv_w, bw->qkv_w, bf ? &bf->qkv : NULL, p->qkv_b, n, H,
                   3 * H); /* [n, 3H] */
    if (train) {
        const float pa = v->attention_dropout;
        const uint64_t *keys =
            ctx->dropout && pa > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_ATTN, (uint64_t)l) : NULL;
        petl_attention_forward_train(a->ctx, a->probs, ctx->att_scr, ctx->att_stride, ctx->nthreads,
                                     pa, keys, a->qkv, ctx->off, ctx->poff, ctx->qlen, ctx->klen,
                                     ctx->B, H, nh, lbf, ctx->rbp);
    } else if (ctx->naive) {
        petl_attention_naive(a->ctx, a->qkv, ctx->off, ctx->qlen, ctx->klen, ctx->B, H, nh,
                             ctx->rbp);
    } else {
        petl_attention_forward(a->ctx, ctx->att_scr, ctx->att_stride, ctx->nthreads, a->qkv,
                               ctx->off, ctx->qlen, ctx->klen, ctx->B, H, nh, lbf, ctx->rbp);
    }
    /* attention output projection, dropout, adapter 1, residual, LayerNorm 1 */
    linear_forward(ctx, a->h1, a->ctx, p->attn_out_w, bw->attn_out_w, bf ? &bf->attn_out : NULL,
                   p->attn_out_b, n, H, H); /* [n, H] */
    if (ctx->dropout && v->hidden_dropout > 0.0f && !ctx->base->arch->no_attn_out_dropout)
        hidden_dropout(ctx, v, a->h1, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2);
    FOR_EACH_GROUP(ctx, g, adapter_ln_group(ctx, g, l, 0, a, a->y1, x));
    /* feed-forward, dropout, adapter 2, residual, LayerNorm 2 */
    linear_forward(ctx, a->f, a->y1, p->ffn_in_w, bw->ffn_in_w, bf ? &bf->ffn_in : NULL,
                   p->ffn_in_b, n, H, I); /* [n, I] */
    (ctx->naive ? petl_activation_naive : petl_activation_forward)(ctx->fg, a->f, n * I,
                                                                   c->hidden_act);
    linear_forward(ctx, a->h2, ctx->fg, p->ffn_out_w, bw->ffn_out_w, bf ? &bf->ffn_out : NULL,
                   p->ffn_out_b, n, I, H); /* [n, H] */
    if (ctx->dropout && v->hidden_dropout > 0.0f)
        hidden_dropout(ctx, v, a->h2, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2 + 1);
    FOR_EACH_GROUP(ctx, g, adapter_ln_group(ctx, g, l, 1, a, y, a->y1));
}

/* Backward of layer l (one group). dy [n, H]: on entry d loss / d y (the layer's output); on
 * exit d loss / d x (its input) when need_dx. */
static void layer_backward(petl_ctx *ctx, int l, float *dy, bool need_dx) {
    const petl_view *v = ctx->gview[0];
    const petl_layer_view *p = &v->layers[l];
    const layer_acts *a = &ctx->acts[l];
    const petl_config *c = &ctx->base->cfg;
    const int H = c->hidden_size, I = c->intermediate_size, m = v->m, nh = c->num_heads;
    const int64_t n = ctx->n, nH = n * H;
    const size_t bH = (size_t)nH * sizeof(float);
    const int64_t NH = (int64_t)ctx->sh.max_batch * ctx->sh.max_len * H;
    const float *x = ctx->xs + l * NH; /* the layer's input */
    float *ds = ctx->ds, *dh = ctx->dh;
    const bool lbf = layer_in_bf16(v, l);
    const petl_layer_bf16 *bf = ctx->base->bf16 ? &ctx->base->bf16[l] : NULL;
    const petl_layer_params *bw = &ctx->base->layers[l];

    /* y = LN_2(s2):  d s2 */
    memset(ds, 0, bH);
    petl_layernorm_backward(ds, p->d_ln2_w, p->d_ln2_b, dy, a->s2, p->ln2_w, a->mean2, a->rstd2, n,
                            H);
    /* s2 = y1 + A_2(h2):  d y1 = d s2 (ds keeps it, the FFN adds to it below);  d A_2 = d s2 */
    memset(dh, 0, bH);
    if (adapter_on(v, l, 1))
        petl_adapter_backward(dh, &p->d_ad[1], ctx->dad, ds, a->h2, a->z2, a->g2, &p->ad[1], n, H,
                              m, v->act, lbf);
    else
        memcpy(dh, ds, bH);
    /* h2 = dropout(W_2 fg + b_2):  d (W_2 fg) = d h2 * mask */
    if (ctx->dropout && v->hidden_dropout > 0.0f)
        hidden_dropout(ctx, v, dh, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2 + 1);
    /* W_2:  d fg = dh W_2,  d W_2 += dh^T fg (when tuned: fg recomputed from f for it) */
    if (p->d_ffn_out_w) petl_activation_forward(ctx->fg, a->f, n * I, c->hidden_act);
    memset(ctx->dfg, 0, (size_t)(n * I) * sizeof(float));
    linear_backward(ctx->dfg, p->d_ffn_out_w, p->d_ffn_out_b, dh, ctx->fg, p->ffn_out_w,
                    bw->ffn_out_w, bf ? &bf->ffn_out_t : NULL, n, I, H);
    /* fg = act(f):  d f = act'(f) d fg */
    memset(ctx->df, 0, (size_t)(n * I) * sizeof(float));
    petl_activation_backward(ctx->df, ctx->dfg, a->f, n * I, c->hidden_act);
    /* f = W_1 y1 + b_1:  d y1 += df W_1 */
    linear_backward(ds, p->d_ffn_in_w, p->d_ffn_in_b, ctx->df, a->y1, p->ffn_in_w, bw->ffn_in_w,
                    bf ? &bf->ffn_in_t : NULL, n, H, I);
    /* y1 = LN_1(s1):  d s1 into dy (d y is spent) */
    memset(dy, 0, bH);
    petl_layernorm_backward(dy, p->d_ln1_w, p->d_ln1_b, ds, a->s1, p->ln1_w, a->mean1, a->rstd1, n,
                            H);
    /* s1 = x + A_1(h1):  d x = d s1 (kept in dy, attention adds below);  d A_1 = d s1 */
    memset(dh, 0, bH);
    if (adapter_on(v, l, 0))
        petl_adapter_backward(dh, &p->d_ad[0], ctx->dad, dy, a->h1, a->z1, a->g1, &p->ad[0], n, H,
                              m, v->act, lbf);
    else
        memcpy(dh, dy, bH);
    /* h1 = dropout(W_o ctx + b_o):  d (W_o ctx) = d h1 * mask */
    if (ctx->dropout && v->hidden_dropout > 0.0f && !ctx->base->arch->no_attn_out_dropout)
        hidden_dropout(ctx, v, dh, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2);
    /* W_o:  d ctx = dh W_o */
    memset(ctx->dctx, 0, bH);
    linear_backward(ctx->dctx, p->d_attn_out_w, p->d_attn_out_b, dh, a->ctx, p->attn_out_w,
                    bw->attn_out_w, bf ? &bf->attn_out_t : NULL, n, H, H);
    /* attention:  d qkv */
    memset(ctx->dqkv, 0, 3 * bH);
    const float pa = v->attention_dropout;
    const uint64_t *keys =
        ctx->dropout && pa > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_ATTN, (uint64_t)l) : NULL;
    petl_attention_backward(ctx->dqkv, ctx->att_scr, ctx->att_stride, ctx->nthreads, ctx->dctx,
                            a->qkv, a->probs, pa, keys, ctx->off, ctx->poff, ctx->qlen, ctx->klen,
                            ctx->B, H, nh, lbf, ctx->rbp);
    /* qkv = W_qkv x + b:  d x += dqkv W_qkv (only when something below is trained) */
    linear_backward(need_dx ? dy : NULL, p->d_qkv_w, p->d_qkv_b, ctx->dqkv, x, p->qkv_w, bw->qkv_w,
                    bf ? &bf->qkv_t : NULL, n, H, 3 * H);
}

/* -------------------------------------------------------------------------------- heads */

/* Group g's head on its rows of the last hidden states top. Classification: the [CLS] rows
 * (copied to cls_rows) through pooler and classifier (pooled_done: the pooled rows are already
 * there, from one pooler GEMM over every group); span: start / end logits of every token. */
static void head_group(petl_ctx *ctx, int g, const float *top, bool pooled_done) {
    const petl_view *v = ctx->gview[g];
    const int H = ctx->base->cfg.hidden_size;
    const int k0 = ctx->gstart[g], cnt = ctx->gstart[g + 1] - k0;
    if (v->head == PETL_HEAD_SPAN) {
        const int64_t t0 = ctx->tstart[g];
        petl_span_head_forward(ctx->span_logits + 2 * t0, top + t0 * H, v->qa_w, v->qa_b,
                               ctx->tstart[g + 1] - t0, H);
        return;
    }
    if (v->head != PETL_HEAD_CLASSIFY) return;
    const int64_t kH = (int64_t)k0 * H;
    float *lg = ctx->logits + (int64_t)k0 * ctx->sh.max_nl;
    if (pooled_done) {
        petl_matmul_forward(lg, ctx->pooled + kH, v->cls.cls_w, v->cls.cls_b, cnt, H, v->NL);
        return;
    }
    const float ph = v->head_dropout;
    const uint64_t *keys =
        ctx->dropout && ph > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_HEAD, 0) : NULL;
    petl_head_forward(lg, ctx->pooled + kH, ctx->pooled_d + kH, ctx->cls_rows + kH, ph, keys,
                      &v->cls, cnt, H, v->NL);
}

static void heads_forward(petl_ctx *ctx, const float *top) {
    const int H = ctx->base->cfg.hidden_size;
    const petl_model *base = ctx->base;
    for (int k = 0; k < ctx->B; k++)
        memcpy(ctx->cls_rows + (int64_t)k * H, top + ctx->off[k] * H, (size_t)H * sizeof(float));
    /* Several classification groups that all read the base's pooler (only full / top:K tune it):
     * one pooler GEMM over all rows instead of one per task (100 tasks in a batch of 32 rows:
     * ~28 single-row GEMMs). */
    bool shared_pool = ctx->ng > 1 && base->pool_w != NULL;
    for (int g = 0; g < ctx->ng && shared_pool; g++)
        shared_pool = ctx->gview[g]->head == PETL_HEAD_CLASSIFY &&
                      ctx->gview[g]->cls.pool_w == base->pool_w &&
                      ctx->gview[g]->cls.pool_b == base->pool_b;
    if (shared_pool) {
        petl_matmul_forward(ctx->pooled, ctx->cls_rows, base->pool_w, base->pool_b, ctx->B, H, H);
        petl_tanh_forward(ctx->pooled, ctx->pooled, (int64_t)ctx->B * H);
    }
    FOR_EACH_GROUP(ctx, g, head_group(ctx, g, top, shared_pool));
}

/* The head's backward (one group): d top into dy when anything below the head is trained. */
static void head_backward_all(petl_ctx *ctx, float *dy, bool below_head) {
    const petl_view *v = ctx->gview[0];
    const int H = ctx->base->cfg.hidden_size, L = ctx->base->cfg.num_layers, B = ctx->B;
    const int64_t NH = (int64_t)ctx->sh.max_batch * ctx->sh.max_len * H;
    if (v->head == PETL_HEAD_SPAN) {
        /* d top = dspan W_qa on every token */
        if (below_head) memset(dy, 0, (size_t)(ctx->n * H) * sizeof(float));
        petl_span_head_backward(below_head ? dy : NULL, v->d_qa_w, v->d_qa_b, ctx->dspan,
                                ctx->xs + L * NH, v->qa_w, ctx->n, H);
        return;
    }
    float *dcls = below_head ? ctx->dcls : NULL;
    if (dcls) memset(dcls, 0, (size_t)B * H * sizeof(float));
    const float ph = v->head_dropout;
    const uint64_t *keys =
        ctx->dropout && ph > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_HEAD, 0) : NULL;
    petl_head_backward(dcls, &v->d_cls, ctx->head_scr, ctx->dlogits, ctx->cls_rows, ctx->pooled,
                       ctx->pooled_d, ph, keys, &v->cls, B, H, v->NL);
    if (!below_head) return;
    /* d top: only the [CLS] rows receive gradient */
    memset(dy, 0, (size_t)(ctx->n * H) * sizeof(float));
    for (int k = 0; k < B; k++)
        memcpy(dy + ctx->off[k] * H, dcls + (int64_t)k * H, (size_t)H * sizeof(float));
}

/* ---------------------------------------------------------------------------- the pass */

void petl_forward(petl_ctx *ctx, const petl_view *const *views, const petl_batch *b, bool qlen_all,
                  bool train, uint64_t seed) {
    const int L = ctx->base->cfg.num_layers;
    plan_rows(ctx, views, b, qlen_all);
    ctx->saving = train && ctx->sh.train;
    ctx->dropout = ctx->saving && seed != 0;
    ctx->seed = seed;
    const int64_t NH = (int64_t)ctx->sh.max_batch * ctx->sh.max_len * ctx->base->cfg.hidden_size;
    ctx->rbp = rel_bias_forward(ctx);
    embeddings_forward(ctx, b, ctx->xs);
    for (int l = 0; l < L; l++) {
        if (ctx->saving)
            layer_forward(ctx, l, &ctx->acts[l], ctx->xs + l * NH, ctx->xs + (l + 1) * NH);
        else
            layer_forward(ctx, l, &ctx->acts[L], ctx->xs, ctx->xs);
    }
    heads_forward(ctx, ctx->saving ? ctx->xs + L * NH : ctx->xs);
    if (ctx->saving) {
        memset(ctx->dlogits, 0, (size_t)ctx->B * ctx->sh.max_nl * sizeof(float));
        if (ctx->sh.span) memset(ctx->dspan, 0, (size_t)ctx->n * 2 * sizeof(float));
    }
}

void petl_backward(petl_ctx *ctx, const petl_batch *b) {
    const petl_view *v = ctx->gview[0];
    const int L = ctx->base->cfg.num_layers, lowest = v->lowest;
    const bool below_head = lowest < L; /* an encoder layer or the embeddings are trained */
    float *dy = ctx->dy;
    ctx->lowest_computed = L;
    head_backward_all(ctx, dy, below_head);
    if (!below_head) return;
    const int stop = lowest < 0 ? 0 : lowest;
    const bool rel = v->d_rel_bias && ctx->rbp;
    if (rel) {
        memset(ctx->drel_scr, 0,
               (size_t)ctx->nthreads * ctx->base->cfg.num_heads * ctx->rb.stride * sizeof(float));
        ctx->rb.dbias = ctx->drel_scr;
    }
    for (int l = L - 1; l >= stop; l--) {
        layer_backward(ctx, l, dy, l > stop || lowest < 0);
        ctx->lowest_computed = l;
    }
    if (rel) {
        rel_bias_backward(ctx);
        ctx->rb.dbias = NULL;
    }
    if (lowest < 0) {
        embeddings_backward(ctx, b, dy);
        ctx->lowest_computed = -1;
    }
}
