/* The task model (adapters, tuned LayerNorms, head, tuned copies of base weights) and its
 * training forward / backward on a frozen, shared base (see train.h).
 *
 * Layout (karpathy/llm.c): every tuned tensor lives in ONE float block, its gradient in a twin
 * block at the same offsets; a per-layer "view" holds the pointer each forward reads (task block
 * when tuned, base when frozen) and the gradient pointer (NULL when frozen, which is how the
 * backward knows to skip a weight-gradient GEMM).
 *
 * The training forward works on packed rows (kernels.h): only real tokens are computed, every
 * row of every layer is saved in the context's one arena, and the backward runs in reverse,
 * stopping at the lowest trained parameter. Dropout masks come from keyed rng streams, one per
 * (site, layer, batch row), so they do not depend on the thread count. */
#include "adapter.h"
#include "heads.h"
#include "internal.h"
#include "kernels.h"
#include "model.h"
#include "rng.h"
#include "train.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIALIZER_RANGE 0.02f /* BertConfig.initializer_range: the head's normal init sd */

/* ------------------------------------------------------------------------- task model */

typedef struct {
    /* What the forward reads: the task block when tuned, else the base. */
    const float *qkv_w, *qkv_b;           /* [3H, H], [3H] */
    const float *attn_out_w, *attn_out_b; /* [H, H], [H] */
    const float *ln1_w, *ln1_b;           /* [H] */
    const float *ffn_in_w, *ffn_in_b;     /* [I, H], [I] */
    const float *ffn_out_w, *ffn_out_b;   /* [H, I], [H] */
    const float *ln2_w, *ln2_b;           /* [H] */
    /* Their gradients; NULL when frozen. */
    float *d_qkv_w, *d_qkv_b, *d_attn_out_w, *d_attn_out_b, *d_ln1_w, *d_ln1_b;
    float *d_ffn_in_w, *d_ffn_in_b, *d_ffn_out_w, *d_ffn_out_b, *d_ln2_w, *d_ln2_b;
    bool has_adapter[2]; /* [0]: after the attention output, [1]: after the FFN output */
    petl_adapter_weights ad[2];
    petl_adapter_grads d_ad[2];
} tm_layer;

struct petl_task_model {
    const petl_model *base;
    petl_tune_config tc;
    int H, I, L, NL, m;
    float *params, *grads; /* [n_floats] each */
    int64_t n_floats;
    petl_param *list; /* [n_params], names malloc'ed */
    size_t n_params;
    int64_t adapter_floats, head_floats; /* parts not in the base (for the total count) */
    tm_layer *layers;                    /* [L] */
    const float *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b;
    float *d_word_emb, *d_pos_emb, *d_type_emb, *d_emb_ln_w, *d_emb_ln_b;
    petl_head_weights head; /* PETL_HEAD_CLASSIFY */
    petl_head_grads d_head;
    const float *qa_w, *qa_b; /* PETL_HEAD_SPAN: [2, H], [2] */
    float *d_qa_w, *d_qa_b;
    /* Lowest trained parameter: -1 the embeddings (tables or LayerNorm), 0..L-1 a layer,
     * L the pooler, L + 1 the classifier only. The backward computes nothing below it. */
    int lowest;
    uint64_t adapters_off; /* bit l: layer l's adapters act as the identity (ablation) */
};

void petl_tune_config_default(petl_tune_config *tc, const petl_config *cfg) {
    memset(tc, 0, sizeof *tc);
    tc->tune = PETL_TUNE_ADAPTER;
    tc->top_k = 1;
    tc->adapter_size = 64;
    tc->adapter_act = PETL_ADAPTER_GELU;
    tc->adapter_init_sd = 1e-3f;
    tc->placement = PETL_PLACE_BOTH;
    tc->adapter_layers = ~(uint64_t)0;
    tc->num_labels = 2;
    tc->hidden_dropout = cfg ? cfg->hidden_dropout : 0.1f;
    tc->attention_dropout = cfg ? cfg->attention_dropout : 0.1f;
    tc->head_dropout = 0.1f;
}

/* Builds the parameter list in two passes over the same code: pass 0 counts, pass 1 assigns
 * offsets, names, initial values and the view. */
typedef struct {
    petl_task_model *tm;
    bool assign;
    int64_t at; /* next free float in the block */
    size_t n;   /* next param index */
    petl_rng init;
    petl_status rc;
} builder;

/* Adds one tensor; returns its data pointer (NULL in the counting pass) and sets *grad.
 * src: initial values to copy (NULL: zeros). */
static float *add_param(builder *bd, const char *name, int rank, int64_t d0, int64_t d1, bool decay,
                        const float *src, float **grad) {
    const int64_t numel = rank == 1 ? d0 : d0 * d1;
    const int64_t at = bd->at;
    bd->at += numel;
    size_t i = bd->n++;
    *grad = NULL;
    if (!bd->assign || bd->rc != PETL_OK) return NULL;
    petl_task_model *tm = bd->tm;
    petl_param *p = &tm->list[i];
    char *nm = malloc(strlen(name) + 1);
    if (!nm) {
        bd->rc = PETL_ERR_NOMEM;
        return NULL;
    }
    strcpy(nm, name);
    p->name = nm;
    p->data = tm->params + at;
    p->grad = tm->grads + at;
    p->rank = rank;
    p->shape[0] = d0;
    p->shape[1] = rank == 2 ? d1 : 0;
    p->numel = numel;
    p->decay = decay;
    if (src) memcpy(p->data, src, (size_t)numel * sizeof(float));
    *grad = p->grad;
    return p->data;
}

/* A tuned base tensor: the view points at the task copy, else at the base. */
static void tensor(builder *bd, const char *name, int rank, int64_t d0, int64_t d1, bool decay,
                   bool tuned, const float *base_ptr, const float **view, float **grad) {
    if (!tuned) {
        if (bd->assign) *view = base_ptr, *grad = NULL;
        return;
    }
    float *g;
    float *d = add_param(bd, name, rank, d0, d1, decay, base_ptr, &g);
    if (bd->assign) *view = d, *grad = g;
}

static bool layer_has_adapters(const petl_tune_config *tc, int l) {
    return tc->tune == PETL_TUNE_ADAPTER && (l >= 64 || (tc->adapter_layers >> l & 1));
}

static void build(builder *bd) {
    petl_task_model *tm = bd->tm;
    const petl_model *b = tm->base;
    const petl_tune_config *tc = &tm->tc;
    const int H = tm->H, I = tm->I, L = tm->L, m = tm->m;
    const bool full = tc->tune == PETL_TUNE_FULL;
    const bool ln = full || tc->tune == PETL_TUNE_ADAPTER || tc->tune == PETL_TUNE_LAYERNORM;
    const int top_from =
        tc->tune == PETL_TUNE_TOP ? (L - tc->top_k > 0 ? L - tc->top_k : 0) : (full ? 0 : L);
    const int64_t V = b->cfg.vocab_size, P = b->cfg.max_position_embeddings;
    const int64_t T = b->cfg.type_vocab_size;
    char nm[160];

    tensor(bd, "bert.embeddings.word_embeddings.weight", 2, V, H, true, full, b->word_emb,
           &tm->word_emb, &tm->d_word_emb);
    tensor(bd, "bert.embeddings.position_embeddings.weight", 2, P, H, true, full, b->pos_emb,
           &tm->pos_emb, &tm->d_pos_emb);
    tensor(bd, "bert.embeddings.token_type_embeddings.weight", 2, T, H, true, full, b->type_emb,
           &tm->type_emb, &tm->d_type_emb);
    tensor(bd, "bert.embeddings.LayerNorm.weight", 1, H, 0, false, ln, b->emb_ln_w, &tm->emb_ln_w,
           &tm->d_emb_ln_w);
    tensor(bd, "bert.embeddings.LayerNorm.bias", 1, H, 0, false, ln, b->emb_ln_b, &tm->emb_ln_b,
           &tm->d_emb_ln_b);

    for (int l = 0; l < L; l++) {
        const petl_layer_params *p = &b->layers[l];
        tm_layer *y = &tm->layers[l];
        const bool all = l >= top_from, lnl = ln || all;
        const int64_t HH = (int64_t)H * H;
#define NAME(fmt) (snprintf(nm, sizeof nm, "bert.encoder.layer.%d." fmt, l), nm)
        /* query, key and value added back to back, so that the task copy is one fused
         * [3H, H] matrix as the base's (and the forward's single QKV GEMM) wants. */
        float *dummy;
        const float *unused;
        tensor(bd, NAME("attention.self.query.weight"), 2, H, H, true, all, p->qkv_w, &y->qkv_w,
               &y->d_qkv_w);
        tensor(bd, NAME("attention.self.key.weight"), 2, H, H, true, all, p->qkv_w + HH, &unused,
               &dummy);
        tensor(bd, NAME("attention.self.value.weight"), 2, H, H, true, all, p->qkv_w + 2 * HH,
               &unused, &dummy);
        tensor(bd, NAME("attention.self.query.bias"), 1, H, 0, false, all, p->qkv_b, &y->qkv_b,
               &y->d_qkv_b);
        tensor(bd, NAME("attention.self.key.bias"), 1, H, 0, false, all, p->qkv_b + H, &unused,
               &dummy);
        tensor(bd, NAME("attention.self.value.bias"), 1, H, 0, false, all, p->qkv_b + 2 * H,
               &unused, &dummy);
        tensor(bd, NAME("attention.output.dense.weight"), 2, H, H, true, all, p->attn_out_w,
               &y->attn_out_w, &y->d_attn_out_w);
        tensor(bd, NAME("attention.output.dense.bias"), 1, H, 0, false, all, p->attn_out_b,
               &y->attn_out_b, &y->d_attn_out_b);
        tensor(bd, NAME("attention.output.LayerNorm.weight"), 1, H, 0, false, lnl, p->ln1_w,
               &y->ln1_w, &y->d_ln1_w);
        tensor(bd, NAME("attention.output.LayerNorm.bias"), 1, H, 0, false, lnl, p->ln1_b,
               &y->ln1_b, &y->d_ln1_b);
        tensor(bd, NAME("intermediate.dense.weight"), 2, I, H, true, all, p->ffn_in_w, &y->ffn_in_w,
               &y->d_ffn_in_w);
        tensor(bd, NAME("intermediate.dense.bias"), 1, I, 0, false, all, p->ffn_in_b, &y->ffn_in_b,
               &y->d_ffn_in_b);
        tensor(bd, NAME("output.dense.weight"), 2, H, I, true, all, p->ffn_out_w, &y->ffn_out_w,
               &y->d_ffn_out_w);
        tensor(bd, NAME("output.dense.bias"), 1, H, 0, false, all, p->ffn_out_b, &y->ffn_out_b,
               &y->d_ffn_out_b);
        tensor(bd, NAME("output.LayerNorm.weight"), 1, H, 0, false, lnl, p->ln2_w, &y->ln2_w,
               &y->d_ln2_w);
        tensor(bd, NAME("output.LayerNorm.bias"), 1, H, 0, false, lnl, p->ln2_b, &y->ln2_b,
               &y->d_ln2_b);
#undef NAME
        const bool ad = layer_has_adapters(tc, l);
        for (int site = 0; site < 2; site++) {
            const bool on = ad && (site == 1 || tc->placement == PETL_PLACE_BOTH);
            if (bd->assign) y->has_adapter[site] = on;
            if (!on) continue;
            const char *where = site == 0 ? "attention.output" : "output";
            const int64_t before = bd->at;
            petl_adapter_weights *w = &y->ad[site];
            petl_adapter_grads *g = &y->d_ad[site];
            char base_nm[96];
            snprintf(base_nm, sizeof base_nm, "bert.encoder.layer.%d.%s.adapters.petl", l, where);
            snprintf(nm, sizeof nm, "%s.adapter_down.0.weight", base_nm);
            float *dw = add_param(bd, nm, 2, m, H, true, NULL, &g->down_w);
            snprintf(nm, sizeof nm, "%s.adapter_down.0.bias", base_nm);
            float *db = add_param(bd, nm, 1, m, 0, false, NULL, &g->down_b);
            snprintf(nm, sizeof nm, "%s.adapter_up.weight", base_nm);
            float *uw = add_param(bd, nm, 2, H, m, true, NULL, &g->up_w);
            snprintf(nm, sizeof nm, "%s.adapter_up.bias", base_nm);
            float *ub = add_param(bd, nm, 1, H, 0, false, NULL, &g->up_b);
            tm->adapter_floats += bd->assign ? bd->at - before : 0;
            if (!bd->assign || bd->rc != PETL_OK) continue;
            *w = (petl_adapter_weights){dw, db, uw, ub};
            /* Near identity: truncated normal weights (sd from the config), zero biases. One
             * keyed stream per module, so adding layers does not shift the others' values. */
            petl_rng r = petl_rng_stream(bd->init.s[0], PETL_RNG_INIT, (uint64_t)l, (uint64_t)site);
            petl_rng_fill_trunc_normal(&r, dw, (size_t)m * H, 0.0f, tc->adapter_init_sd);
            petl_rng_fill_trunc_normal(&r, uw, (size_t)H * m, 0.0f, tc->adapter_init_sd);
        }
    }

    const bool span = tc->head == PETL_HEAD_SPAN;
    if (span) {
        /* BertForQuestionAnswering: no pooler; qa_outputs on every token, BERT's init. */
        const int64_t before = bd->at;
        float *qw = add_param(bd, "qa_outputs.weight", 2, 2, H, true, NULL, &tm->d_qa_w);
        float *qb = add_param(bd, "qa_outputs.bias", 1, 2, 0, false, NULL, &tm->d_qa_b);
        tm->head_floats = bd->at - before;
        if (bd->assign && bd->rc == PETL_OK) {
            tm->qa_w = qw;
            tm->qa_b = qb;
            petl_rng r = petl_rng_stream(bd->init.s[0], PETL_RNG_INIT, (uint64_t)L + 1000, 0);
            petl_rng_fill_normal(&r, qw, (size_t)2 * H, 0.0f, INITIALIZER_RANGE);
        }
    }
    const bool pool = !span && b->has_pooler && (full || tc->tune == PETL_TUNE_TOP);
    if (b->has_pooler && !span) {
        tensor(bd, "bert.pooler.dense.weight", 2, H, H, true, pool, b->pool_w, &tm->head.pool_w,
               &tm->d_head.pool_w);
        tensor(bd, "bert.pooler.dense.bias", 1, H, 0, false, pool, b->pool_b, &tm->head.pool_b,
               &tm->d_head.pool_b);
    }
    const int64_t before = bd->at;
    float *cw = NULL, *cb = NULL;
    if (!span) {
        cw = add_param(bd, "classifier.weight", 2, tm->NL, H, true, NULL, &tm->d_head.cls_w);
        cb = add_param(bd, "classifier.bias", 1, tm->NL, 0, false, NULL, &tm->d_head.cls_b);
        tm->head_floats = bd->at - before;
    }
    if (!span && bd->assign && bd->rc == PETL_OK) {
        tm->head.cls_w = cw;
        tm->head.cls_b = cb;
        petl_rng r = petl_rng_stream(bd->init.s[0], PETL_RNG_INIT, (uint64_t)L + 1000, 0);
        petl_rng_fill_normal(&r, cw, (size_t)tm->NL * H, 0.0f, INITIALIZER_RANGE);
    }

    /* The lowest trained parameter. */
    if (full || ln)
        tm->lowest = -1;
    else if (tc->tune == PETL_TUNE_TOP && top_from < L)
        tm->lowest = top_from;
    else
        tm->lowest = pool ? L : L + 1;
}

petl_status petl_task_model_new(const petl_model *base, const petl_tune_config *tc, uint64_t seed,
                                petl_task_model **out, petl_error *err) {
    *out = NULL;
    if (!base || !tc) return petl_fail(err, PETL_ERR_ARG, "base model or tune config is NULL");
    const petl_config *c = &base->cfg;
    if (tc->head != PETL_HEAD_CLASSIFY && tc->head != PETL_HEAD_SPAN)
        return petl_fail(err, PETL_ERR_ARG, "unknown head kind %d", (int)tc->head);
    if (tc->head == PETL_HEAD_CLASSIFY && (tc->num_labels < 1 || tc->num_labels > 1000000))
        return petl_fail(err, PETL_ERR_ARG, "num_labels %d must be 1 (regression) or more",
                         tc->num_labels);
    if (tc->tune == PETL_TUNE_ADAPTER && (tc->adapter_size < 1 || tc->adapter_size > 1 << 20))
        return petl_fail(err, PETL_ERR_ARG, "adapter size %d must be at least 1", tc->adapter_size);
    if (tc->tune == PETL_TUNE_TOP && (tc->top_k < 0 || tc->top_k > c->num_layers))
        return petl_fail(err, PETL_ERR_ARG, "top:%d: K must be in 0..%d (the model's layers)",
                         tc->top_k, c->num_layers);
    if (!(tc->hidden_dropout >= 0.0f && tc->hidden_dropout < 1.0f) ||
        !(tc->attention_dropout >= 0.0f && tc->attention_dropout < 1.0f) ||
        !(tc->head_dropout >= 0.0f && tc->head_dropout < 1.0f))
        return petl_fail(err, PETL_ERR_ARG, "dropout probabilities must be in [0, 1)");
    if (!(tc->adapter_init_sd >= 0.0f) || !isfinite(tc->adapter_init_sd))
        return petl_fail(err, PETL_ERR_ARG, "adapter init sd must be finite and >= 0");

    petl_task_model *tm = calloc(1, sizeof *tm);
    if (!tm) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    tm->base = base;
    tm->tc = *tc;
    if (tc->head == PETL_HEAD_SPAN) tm->tc.num_labels = 2; /* start, end */
    tm->H = c->hidden_size;
    tm->I = c->intermediate_size;
    tm->L = c->num_layers;
    tm->NL = tm->tc.num_labels;
    tm->m = tc->tune == PETL_TUNE_ADAPTER ? tc->adapter_size : 0;
    tm->layers = calloc((size_t)tm->L, sizeof *tm->layers);
    if (!tm->layers) {
        free(tm);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    }
    builder bd = {tm, false, 0, 0, {{0}}, PETL_OK};
    petl_rng_seed(&bd.init, seed);
    build(&bd);
    tm->n_floats = bd.at;
    tm->n_params = bd.n;
    tm->adapter_floats = 0;
    tm->params = calloc((size_t)tm->n_floats, sizeof(float));
    tm->grads = calloc((size_t)tm->n_floats, sizeof(float));
    tm->list = calloc(tm->n_params, sizeof *tm->list);
    if (!tm->params || !tm->grads || !tm->list) {
        petl_task_model_free(tm);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %lld task parameters",
                         (long long)bd.at);
    }
    bd.assign = true;
    bd.at = 0;
    bd.n = 0;
    build(&bd);
    if (bd.rc != PETL_OK) {
        petl_task_model_free(tm);
        return petl_fail(err, bd.rc, "out of memory");
    }
    *out = tm;
    return PETL_OK;
}

void petl_task_model_free(petl_task_model *tm) {
    if (!tm) return;
    if (tm->list)
        for (size_t i = 0; i < tm->n_params; i++)
            free((char *)tm->list[i].name);
    free(tm->list);
    free(tm->params);
    free(tm->grads);
    free(tm->layers);
    free(tm);
}

const petl_tune_config *petl_task_model_tune_config(const petl_task_model *tm) {
    return &tm->tc;
}
const petl_model *petl_task_model_base(const petl_task_model *tm) {
    return tm->base;
}
size_t petl_task_model_num_params(const petl_task_model *tm) {
    return tm->n_params;
}
const petl_param *petl_task_model_param(const petl_task_model *tm, size_t i) {
    return i < tm->n_params ? &tm->list[i] : NULL;
}
const petl_param *petl_task_model_find(const petl_task_model *tm, const char *name) {
    for (size_t i = 0; i < tm->n_params; i++)
        if (!strcmp(tm->list[i].name, name)) return &tm->list[i];
    return NULL;
}
int64_t petl_task_model_trainable_count(const petl_task_model *tm) {
    return tm->n_floats;
}
int64_t petl_task_model_total_count(const petl_task_model *tm) {
    return tm->base->num_params + tm->adapter_floats + tm->head_floats;
}
void petl_task_model_zero_grad(petl_task_model *tm) {
    memset(tm->grads, 0, (size_t)tm->n_floats * sizeof(float));
}

/* ------------------------------------------------------------------------------ context */

/* Saved activations of one layer; N packed rows at most. */
typedef struct {
    float *qkv;     /* [N, 3H]  fused projection (attention backward reads Q, K, V) */
    float *probs;   /* [P]      softmax probabilities, P = sum_b nh * len_b^2 */
    float *ctx;     /* [N, H]   attention context (input of the output projection) */
    float *h1, *h2; /* [N, H]   output projections after dropout (adapter inputs) */
    float *z1, *g1; /* [N, m]   adapter 1 bottleneck before / after the nonlinearity */
    float *z2, *g2; /* [N, m]   adapter 2 */
    float *s1, *s2; /* [N, H]   LayerNorm inputs (residual sums) */
    float *mean1, *rstd1, *mean2, *rstd2; /* [N] */
    float *y1; /* [N, H]   LayerNorm 1 output (FFN input, residual of LayerNorm 2) */
    float *f;  /* [N, I]   FFN hidden before GELU (the backward recomputes GELU) */
} layer_acts;

struct petl_train_ctx {
    const petl_task_model *tm;
    int max_batch, max_len, nthreads;
    void *arena;
    int64_t *off, *poff; /* [max_batch] first packed row / probability of each batch row */
    int *qlen;           /* [max_batch] real tokens per batch row (queries = keys) */
    int64_t n;           /* packed rows of the current batch */
    int B;
    /* Saved forward. */
    float *emb_sum;             /* [N, H]  word + position + type (embedding LayerNorm input) */
    float *emb_mean, *emb_rstd; /* [N] */
    float *xs;                  /* [L + 1, N, H]  xs[0]: embeddings out, xs[l + 1]: layer l out */
    layer_acts *acts;           /* [L + 1]: per layer, [L] the shared slot (see layout) */
    float *cls_rows;            /* [B, H] */
    float *pooled, *pooled_d;   /* [B, H] */
    float *logits;              /* [B, NL] */
    float *span_logits;         /* [N, 2]  span head: start, end per packed token */
    float *fg_scr;              /* [N, I]  GELU output, recomputed in the backward when needed */
    bool dropout;               /* the last forward used dropout */
    uint64_t seed;              /* and its seed (the masks are functions of it, never stored) */
    uint64_t *drop_keys;        /* [B]  per-row dropout keys for the head / attention kernels */
    /* Backward scratch. */
    float *dy, *ds, *dh, *dctx; /* [N, H] */
    float *dqkv;                /* [N, 3H] */
    float *dfg, *df;            /* [N, I] */
    float *dad;                 /* [2, N, m] */
    float *dlogits;             /* [B, NL] */
    float *dspan;               /* [N, 2]  span head */
    float *dcls;                /* [B, H] */
    float *head_scr;            /* [2, B, H] */
    float *att_scr;             /* [nthreads, 2 * max_len^2] */
    int lowest_computed;        /* stat: lowest layer the last backward ran (-1: embeddings) */
    bool predict_only;          /* made by petl_predict_ctx_new: no training buffers */
};

/* The next n bytes (rounded up to 64: cache lines, AVX-512) at offset *at of base; NULL while
 * only measuring (base NULL). */
static void *carve(char *base, size_t *at, size_t n) {
    void *p = base ? base + *at : NULL;
    *at += (n + 63) / 64 * 64;
    return p;
}

/* The lowest layer whose activations the backward reads (L: none). */
static int first_saved_layer(const petl_task_model *tm) {
    return tm->lowest < 0 ? 0 : tm->lowest < tm->L ? tm->lowest : tm->L;
}

static void carve_acts(layer_acts *a, char *base, size_t *at, size_t N, size_t H, size_t I,
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

/* Lays the arena out (base == NULL: only measures). Returns the byte count. */
static size_t layout(petl_train_ctx *ctx, char *base) {
    const petl_task_model *tm = ctx->tm;
    const size_t T = ctx->predict_only ? 0 : 1; /* 1: saved activations, backward buffers */
    const size_t H = (size_t)tm->H, I = (size_t)tm->I, m = (size_t)(tm->m ? tm->m : 1);
    const size_t L = (size_t)tm->L, NL = (size_t)tm->NL, B = (size_t)ctx->max_batch;
    const size_t N = B * (size_t)ctx->max_len;
    const size_t P =
        T ? B * (size_t)tm->base->cfg.num_heads * (size_t)ctx->max_len * ctx->max_len : 0;
    const size_t F = sizeof(float);
    size_t at = 0;
#define C(field, bytes) ((void)(field = carve(base, &at, bytes)))
    C(ctx->off, B * sizeof(int64_t));
    C(ctx->poff, B * sizeof(int64_t));
    C(ctx->qlen, B * sizeof(int));
    C(ctx->emb_sum, N * H * F);
    C(ctx->emb_mean, N * F);
    C(ctx->emb_rstd, N * F);
    /* Dropout masks take no memory: each element's is a hash of (key, index), applied in the
     * forward and regenerated in the backward (petl_dropout_apply), with keys from the seed. */
    C(ctx->drop_keys, B * sizeof(uint64_t));
    C(ctx->fg_scr, N * I * F);
    C(ctx->xs, (T ? L + 1 : 1) * N * H * F);
    /* Saved activations: one slot per layer from the lowest trained one up (the backward reads
     * them), and one slot shared by the frozen layers below it and by inference, which need
     * them only while the layer runs. */
    const int first = T ? first_saved_layer(tm) : (int)L;
    for (int l = first; l < (int)L; l++)
        carve_acts(&ctx->acts[l], base, &at, N, H, I, m, P);
    if (first > 0 || L == 0)
        carve_acts(&ctx->acts[L], base, &at, N, H, I, m, P);
    else if (base)
        ctx->acts[L] = ctx->acts[0];
    if (base)
        for (int l = 0; l < first; l++)
            ctx->acts[l] = ctx->acts[L];
    C(ctx->cls_rows, B * H * F);
    C(ctx->pooled, B * H * F);
    C(ctx->pooled_d, B * H * F);
    C(ctx->logits, B * NL * F);
    const size_t SP = tm->tc.head == PETL_HEAD_SPAN ? N * 2 : 0; /* span head only */
    C(ctx->span_logits, SP * F);
    C(ctx->dspan, T * SP * F);
    C(ctx->dy, T * N * H * F);
    C(ctx->ds, T * N * H * F);
    C(ctx->dh, T * N * H * F);
    C(ctx->dctx, T * N * H * F);
    C(ctx->dqkv, T * N * 3 * H * F);
    C(ctx->dfg, T * N * I * F);
    C(ctx->df, T * N * I * F);
    C(ctx->dad, T * 2 * N * m * F);
    C(ctx->dlogits, B * NL * F);
    C(ctx->dcls, B * H * F);
    C(ctx->head_scr, 2 * B * H * F);
    C(ctx->att_scr, (size_t)ctx->nthreads * 2 * ctx->max_len * ctx->max_len * F);
#undef C
    return at;
}

static petl_status ctx_new(const petl_task_model *tm, int max_batch, int max_len, bool predict_only,
                           petl_train_ctx **out, petl_error *err) {
    *out = NULL;
    if (!tm) return petl_fail(err, PETL_ERR_ARG, "task model is NULL");
    const petl_config *c = &tm->base->cfg;
    if (max_batch < 1 || max_len < 1)
        return petl_fail(err, PETL_ERR_ARG, "max_batch %d and max_len %d must be at least 1",
                         max_batch, max_len);
    petl_status ms = petl_model_check_max_len(tm->base, max_len, err);
    if (ms != PETL_OK) return ms;
    /* An upper bound of the float count, checked in double before any size_t arithmetic can
     * overflow. */
    const double N = (double)max_batch * max_len;
    const double per_layer = N * (12.0 * tm->H + 2.0 * tm->I + 4.0 * (tm->m + 1)) +
                             2.0 * max_batch * c->num_heads * (double)max_len * max_len;
    const double floats = per_layer * (tm->L + 1) + N * tm->H * 10.0 + N * tm->I * 2.0;
    if (floats * sizeof(float) > (double)SIZE_MAX / 4)
        return petl_fail(err, PETL_ERR_NOMEM, "a training context for %d x %d tokens is too large",
                         max_batch, max_len);
    petl_train_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    ctx->tm = tm;
    ctx->predict_only = predict_only;
    ctx->max_batch = max_batch;
    ctx->max_len = max_len;
    ctx->nthreads = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    ctx->acts = calloc((size_t)tm->L + 1, sizeof *ctx->acts);
    size_t total = ctx->acts ? layout(ctx, NULL) : 0;
    ctx->arena = ctx->acts ? aligned_alloc(64, total) : NULL;
    if (!ctx->arena) {
        petl_train_ctx_free(ctx);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a %zu-byte training context",
                         total);
    }
    layout(ctx, ctx->arena);
    *out = ctx;
    return PETL_OK;
}

petl_status petl_train_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                               petl_train_ctx **out, petl_error *err) {
    return ctx_new(tm, max_batch, max_len, false, out, err);
}

petl_status petl_predict_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                                 petl_train_ctx **out, petl_error *err) {
    return ctx_new(tm, max_batch, max_len, true, out, err);
}

void petl_train_ctx_free(petl_train_ctx *ctx) {
    if (!ctx) return;
    free(ctx->arena);
    free(ctx->acts);
    free(ctx);
}

int petl_train_ctx_lowest_computed(const petl_train_ctx *ctx) {
    return ctx->lowest_computed;
}

const float *petl_train_ctx_logits(const petl_train_ctx *ctx) {
    return ctx->tm->tc.head == PETL_HEAD_SPAN ? ctx->span_logits : ctx->logits;
}

/* ------------------------------------------------------------------------------ forward */

/* b fits a context of max_batch rows of max_len tokens on a base of config c, every id in
 * range (shared by the single- and multi-task contexts). */
static petl_status check_batch_fits(const petl_config *c, int max_batch, int max_len,
                                    const petl_batch *b, petl_error *err) {
    /* Only the real tokens are computed here: padding ids are never read. */
    return petl_batch_check(c, max_batch, max_len, b, false, err);
}

static petl_status check_batch(const petl_train_ctx *ctx, const petl_batch *b, petl_error *err) {
    return check_batch_fits(&ctx->tm->base->cfg, ctx->max_batch, ctx->max_len, b, err);
}

/* Hidden dropout of a packed [n, H] tensor in place, batch row r's block with key (seed,
 * purpose, site, r): the forward on the activations, and the backward, since the mask is
 * regenerated exactly, the same call on their gradient. Thread-count independent. */
static void hidden_dropout(const petl_train_ctx *ctx, float *x, uint64_t purpose, uint64_t site) {
    const int H = ctx->tm->H;
    const float p = ctx->tm->tc.hidden_dropout;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < ctx->B; r++) {
        float *row = x + ctx->off[r] * H;
        petl_dropout_apply(row, row, (size_t)ctx->qlen[r] * H, p,
                           petl_dropout_key(ctx->seed, purpose, site, (uint64_t)r), 0);
    }
}

/* ctx->drop_keys[B] = the keys (seed, purpose, a, r) of the batch rows, for the kernels that
 * apply dropout themselves (attention probabilities, the head). */
static const uint64_t *row_keys(petl_train_ctx *ctx, uint64_t purpose, uint64_t a) {
    for (int r = 0; r < ctx->B; r++)
        ctx->drop_keys[r] = petl_dropout_key(ctx->seed, purpose, a, (uint64_t)r);
    return ctx->drop_keys;
}

/* x[n, H] = word[id] + pos[p] + type[tt] for the real tokens. */
static void embeddings_forward(const petl_train_ctx *ctx, float *x, const petl_batch *b) {
    const petl_task_model *tm = ctx->tm;
    const int H = tm->H;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < b->batch; r++)
        for (int p = 0; p < ctx->qlen[r]; p++) {
            int64_t at = (int64_t)r * b->seq + p;
            const float *we = tm->word_emb + (int64_t)b->ids[at] * H;
            const float *pe = tm->pos_emb + (int64_t)p * H;
            const float *te = tm->type_emb + (int64_t)b->type_ids[at] * H;
            float *o = x + (ctx->off[r] + p) * H;
            for (int c = 0; c < H; c++)
                o[c] = we[c] + pe[c] + te[c];
        }
}

/* Element-wise out[n] += a[n]. */
static void add_inplace(float *out, const float *a, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        out[i] += a[i];
}

void petl_task_model_disable_adapters(petl_task_model *tm, uint64_t layer_mask) {
    tm->adapters_off = layer_mask;
}

uint64_t petl_task_model_disabled_adapters(const petl_task_model *tm) {
    return tm->adapters_off;
}

/* Whether layer l's adapter at `site` runs: it exists and is not switched off. Forward and
 * backward both ask, so a disabled adapter is the identity in both (its gradient stays 0). */
static bool adapter_on(const petl_task_model *tm, int l, int site) {
    return tm->layers[l].has_adapter[site] && !(l < 64 && (tm->adapters_off >> l & 1u));
}

/* Frozen linear layers in the base's precision: with bf16 packs (petl_model_set_precision)
 * the products of a weight the task reads from its base run in bf16; a tuned copy (w is not
 * the base's weight: full, top:K) stays fp32. */
static const petl_layer_bf16 *layer_bf16(const petl_task_model *tm, int l) {
    return tm->base->bf16 ? &tm->base->bf16[l] : NULL;
}

/* Whether layer l runs in bf16: the base is packed and the layer is frozen (its weights are
 * the base's). Then its attention products and its adapters go through gemm_bf16 too; a layer
 * the task tunes (full, top:K) stays fp32 throughout. */
static bool layer_in_bf16(const petl_task_model *tm, int l) {
    return tm->base->bf16 && tm->layers[l].qkv_w == tm->base->layers[l].qkv_w;
}

static void linear_forward(float *out, const float *inp, const float *w, const float *base_w,
                           const petl_bf16_mat *bw, const float *b, int64_t n, int IC, int OC) {
    if (bw && w == base_w)
        matmul_bf16(out, inp, bw, b, n, false);
    else
        matmul_forward(out, inp, w, b, n, IC, OC);
}

/* matmul_backward with the input gradient from the transposed bf16 pack when there is one. */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *base_w, const petl_bf16_mat *bwt,
                            int64_t n, int IC, int OC) {
    if (dinp && bwt && bwt->data && w == base_w) {
        matmul_bf16(dinp, dout, bwt, NULL, n, true);
        dinp = NULL;
    }
    matmul_backward(dinp, dw, db, dout, inp, w, n, IC, OC);
}

/* One post-LN layer with adapters (docs/method.md):
 *   h1 = dropout(W_o attention(x))    a = LayerNorm_1(x + A_1(h1))
 *   h2 = dropout(W_2 gelu(W_1 a))     y = LayerNorm_2(a + A_2(h2))
 * saving into `a`. y may alias x (inference reuses one slot for every layer). */
static void layer_forward(petl_train_ctx *ctx, int l, const layer_acts *a, const float *x, float *y,
                          bool train, uint64_t seed) {
    const petl_task_model *tm = ctx->tm;
    const tm_layer *p = &tm->layers[l];
    const petl_config *c = &tm->base->cfg;
    const int H = tm->H, I = tm->I, m = tm->m, nh = c->num_heads;
    const int64_t n = ctx->n;
    const bool drop = train && seed != 0;
    const float eps = c->layer_norm_eps;

    const petl_layer_bf16 *bf = layer_bf16(tm, l);
    const petl_layer_params *bw = &tm->base->layers[l];
    const bool lbf = layer_in_bf16(tm, l);
    linear_forward(a->qkv, x, p->qkv_w, bw->qkv_w, bf ? &bf->qkv : NULL, p->qkv_b, n, H,
                   3 * H); /* [n, 3H] */
    if (train) {
        const float pa = tm->tc.attention_dropout;
        const uint64_t *keys =
            drop && pa > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_ATTN, (uint64_t)l) : NULL;
        attention_forward_train(
            a->ctx, a->probs, ctx->att_scr, (int64_t)2 * ctx->max_len * ctx->max_len, ctx->nthreads,
            pa, keys, a->qkv, ctx->off, ctx->poff, ctx->qlen, ctx->qlen, ctx->B, H, nh, lbf);
    } else {
        attention_forward(a->ctx, ctx->att_scr, (int64_t)2 * ctx->max_len * ctx->max_len,
                          ctx->nthreads, a->qkv, ctx->off, ctx->qlen, ctx->qlen, ctx->B, H, nh,
                          lbf);
    }
    /* attention output projection, dropout, adapter 1, residual, LayerNorm 1 */
    linear_forward(a->h1, a->ctx, p->attn_out_w, bw->attn_out_w, bf ? &bf->attn_out : NULL,
                   p->attn_out_b, n, H, H);
    if (drop && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, a->h1, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2);
    if (adapter_on(tm, l, 0))
        adapter_forward(a->s1, a->z1, a->g1, a->h1, &p->ad[0], n, H, m, tm->tc.adapter_act, lbf);
    else
        memcpy(a->s1, a->h1, (size_t)(n * H) * sizeof(float));
    add_inplace(a->s1, x, n * H);
    layernorm_forward_train(a->y1, a->mean1, a->rstd1, a->s1, p->ln1_w, p->ln1_b, n, H, eps);
    /* feed-forward, dropout, adapter 2, residual, LayerNorm 2 */
    linear_forward(a->f, a->y1, p->ffn_in_w, bw->ffn_in_w, bf ? &bf->ffn_in : NULL, p->ffn_in_b, n,
                   H, I); /* [n, I] */
    activation_forward(ctx->fg_scr, a->f, n * I, c->hidden_act);
    linear_forward(a->h2, ctx->fg_scr, p->ffn_out_w, bw->ffn_out_w, bf ? &bf->ffn_out : NULL,
                   p->ffn_out_b, n, I, H);
    if (drop && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, a->h2, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2 + 1);
    if (adapter_on(tm, l, 1))
        adapter_forward(a->s2, a->z2, a->g2, a->h2, &p->ad[1], n, H, m, tm->tc.adapter_act, lbf);
    else
        memcpy(a->s2, a->h2, (size_t)(n * H) * sizeof(float));
    add_inplace(a->s2, a->y1, n * H);
    layernorm_forward_train(y, a->mean2, a->rstd2, a->s2, p->ln2_w, p->ln2_b, n, H, eps);
}

/* The whole forward up to the logits (ctx->logits). train: save every layer's activations in
 * its own slot, with dropout when seed != 0; else one slot for all layers, no dropout. */
static void forward(petl_train_ctx *ctx, const petl_batch *b, bool train, uint64_t seed) {
    const petl_task_model *tm = ctx->tm;
    const int H = tm->H, L = tm->L, nh = tm->base->cfg.num_heads;
    const bool drop = train && seed != 0;
    ctx->B = b->batch;
    int64_t n = 0, np = 0;
    for (int r = 0; r < b->batch; r++) {
        ctx->off[r] = n;
        ctx->poff[r] = np;
        ctx->qlen[r] = b->lengths[r];
        n += b->lengths[r];
        np += (int64_t)nh * b->lengths[r] * b->lengths[r];
    }
    ctx->n = n;
    ctx->dropout = drop;
    ctx->seed = seed;
    const int64_t NH = (int64_t)ctx->max_batch * ctx->max_len * H;

    embeddings_forward(ctx, ctx->emb_sum, b);
    layernorm_forward_train(ctx->xs, ctx->emb_mean, ctx->emb_rstd, ctx->emb_sum, tm->emb_ln_w,
                            tm->emb_ln_b, n, H, tm->base->cfg.layer_norm_eps);
    if (drop && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, ctx->xs, PETL_RNG_DROPOUT_EMBED, 0);
    for (int l = 0; l < L; l++) {
        if (train)
            layer_forward(ctx, l, &ctx->acts[l], ctx->xs + l * NH, ctx->xs + (l + 1) * NH, true,
                          seed);
        else
            layer_forward(ctx, l, &ctx->acts[L], ctx->xs, ctx->xs, false, 0);
    }
    const float *top = train ? ctx->xs + L * NH : ctx->xs;
    if (tm->tc.head == PETL_HEAD_SPAN) {
        /* start / end logits of every packed token (no pooler, no head dropout) */
        span_head_forward(ctx->span_logits, top, tm->qa_w, tm->qa_b, n, H);
        return;
    }
    for (int r = 0; r < b->batch; r++)
        memcpy(ctx->cls_rows + (int64_t)r * H, top + ctx->off[r] * H, (size_t)H * sizeof(float));
    const float ph = tm->tc.head_dropout;
    const uint64_t *keys = drop && ph > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_HEAD, 0) : NULL;
    head_forward(ctx->logits, ctx->pooled, ctx->pooled_d, ctx->cls_rows, ph, keys, &tm->head,
                 b->batch, H, tm->NL);
}

/* ----------------------------------------------------------------------------- backward */

/* Backward of layer l. dy [n, H]: on entry d loss / d y (the layer's output); on exit
 * d loss / d x (its input) when need_dx. */
static void layer_backward(petl_train_ctx *ctx, int l, float *dy, bool need_dx) {
    const petl_task_model *tm = ctx->tm;
    const tm_layer *p = &tm->layers[l];
    const layer_acts *a = &ctx->acts[l];
    const petl_config *c = &tm->base->cfg;
    const int H = tm->H, I = tm->I, m = tm->m, nh = c->num_heads;
    const int64_t n = ctx->n, nH = n * H;
    const size_t bH = (size_t)nH * sizeof(float);
    const int64_t NH = (int64_t)ctx->max_batch * ctx->max_len * H;
    const float *x = ctx->xs + l * NH; /* the layer's input */
    float *ds = ctx->ds, *dh = ctx->dh;

    /* y = LN_2(s2):  d s2 */
    memset(ds, 0, bH);
    layernorm_backward(ds, p->d_ln2_w, p->d_ln2_b, dy, a->s2, p->ln2_w, a->mean2, a->rstd2, n, H);
    /* s2 = y1 + A_2(h2):  d y1 = d s2 (ds keeps it, the FFN adds to it below);  d A_2 = d s2 */
    memset(dh, 0, bH);
    if (adapter_on(tm, l, 1))
        adapter_backward(dh, &p->d_ad[1], ctx->dad, ds, a->h2, a->z2, a->g2, &p->ad[1], n, H, m,
                         tm->tc.adapter_act, layer_in_bf16(tm, l));
    else
        memcpy(dh, ds, bH);
    /* h2 = dropout(W_2 fg + b_2):  d (W_2 fg) = d h2 * mask */
    if (ctx->dropout && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, dh, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2 + 1);
    /* W_2:  d fg = dh W_2,  d W_2 += dh^T fg (when tuned: fg recomputed from f for it) */
    if (p->d_ffn_out_w) activation_forward(ctx->fg_scr, a->f, n * I, c->hidden_act);
    memset(ctx->dfg, 0, (size_t)(n * I) * sizeof(float));
    const petl_layer_bf16 *bf = layer_bf16(tm, l);
    const petl_layer_params *bw = &tm->base->layers[l];
    linear_backward(ctx->dfg, p->d_ffn_out_w, p->d_ffn_out_b, dh, ctx->fg_scr, p->ffn_out_w,
                    bw->ffn_out_w, bf ? &bf->ffn_out_t : NULL, n, I, H);
    /* fg = gelu(f):  d f = gelu'(f) d fg */
    memset(ctx->df, 0, (size_t)(n * I) * sizeof(float));
    activation_backward(ctx->df, ctx->dfg, a->f, n * I, c->hidden_act);
    /* f = W_1 y1 + b_1:  d y1 += df W_1 */
    linear_backward(ds, p->d_ffn_in_w, p->d_ffn_in_b, ctx->df, a->y1, p->ffn_in_w, bw->ffn_in_w,
                    bf ? &bf->ffn_in_t : NULL, n, H, I);
    /* y1 = LN_1(s1):  d s1 into dy (d y is spent) */
    memset(dy, 0, bH);
    layernorm_backward(dy, p->d_ln1_w, p->d_ln1_b, ds, a->s1, p->ln1_w, a->mean1, a->rstd1, n, H);
    /* s1 = x + A_1(h1):  d x = d s1 (kept in dy, attention adds below);  d A_1 = d s1 */
    memset(dh, 0, bH);
    if (adapter_on(tm, l, 0))
        adapter_backward(dh, &p->d_ad[0], ctx->dad, dy, a->h1, a->z1, a->g1, &p->ad[0], n, H, m,
                         tm->tc.adapter_act, layer_in_bf16(tm, l));
    else
        memcpy(dh, dy, bH);
    /* h1 = dropout(W_o ctx + b_o):  d (W_o ctx) = d h1 * mask */
    if (ctx->dropout && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, dh, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)l * 2);
    /* W_o:  d ctx = dh W_o */
    memset(ctx->dctx, 0, bH);
    linear_backward(ctx->dctx, p->d_attn_out_w, p->d_attn_out_b, dh, a->ctx, p->attn_out_w,
                    bw->attn_out_w, bf ? &bf->attn_out_t : NULL, n, H, H);
    /* attention:  d qkv */
    memset(ctx->dqkv, 0, 3 * bH);
    const float pa = tm->tc.attention_dropout;
    const uint64_t *keys =
        ctx->dropout && pa > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_ATTN, (uint64_t)l) : NULL;
    attention_backward(ctx->dqkv, ctx->att_scr, (int64_t)2 * ctx->max_len * ctx->max_len,
                       ctx->nthreads, ctx->dctx, a->qkv, a->probs, pa, keys, ctx->off, ctx->poff,
                       ctx->qlen, ctx->qlen, ctx->B, H, nh, layer_in_bf16(tm, l));
    /* qkv = W_qkv x + b:  d x += dqkv W_qkv (only when something below is trained) */
    linear_backward(need_dx ? dy : NULL, p->d_qkv_w, p->d_qkv_b, ctx->dqkv, x, p->qkv_w, bw->qkv_w,
                    bf ? &bf->qkv_t : NULL, n, H, 3 * H);
}

/* Embeddings backward from dx0 = d loss / d xs[0] (overwritten). */
static void embeddings_backward(petl_train_ctx *ctx, const petl_batch *b, float *dx0) {
    petl_task_model *tm = (petl_task_model *)ctx->tm;
    const int H = tm->H;
    const int64_t nH = ctx->n * H;
    /* xs[0] = dropout(LN(e)):  d LN(e) = d xs[0] * mask */
    if (ctx->dropout && tm->tc.hidden_dropout > 0.0f)
        hidden_dropout(ctx, dx0, PETL_RNG_DROPOUT_EMBED, 0);
    const bool tables = tm->d_word_emb != NULL;
    float *de = tables ? ctx->ds : NULL;
    if (de) memset(de, 0, (size_t)nH * sizeof(float));
    layernorm_backward(de, tm->d_emb_ln_w, tm->d_emb_ln_b, dx0, ctx->emb_sum, tm->emb_ln_w,
                       ctx->emb_mean, ctx->emb_rstd, ctx->n, H);
    if (!tables) return;
    /* e = word[id] + pos[p] + type[tt]: scatter-add, serially (repeated ids must add up in a
     * fixed order). */
    for (int r = 0; r < b->batch; r++)
        for (int p = 0; p < ctx->qlen[r]; p++) {
            int64_t at = (int64_t)r * b->seq + p;
            const float *d = de + (ctx->off[r] + p) * H;
            float *gw = tm->d_word_emb + (int64_t)b->ids[at] * H;
            float *gp = tm->d_pos_emb + (int64_t)p * H;
            float *gt = tm->d_type_emb + (int64_t)b->type_ids[at] * H;
            for (int c = 0; c < H; c++) {
                gw[c] += d[c];
                gp[c] += d[c];
                gt[c] += d[c];
            }
        }
}

static void backward(petl_train_ctx *ctx, const petl_batch *b) {
    const petl_task_model *tm = ctx->tm;
    const int H = tm->H, L = tm->L, B = b->batch;
    const int lowest = tm->lowest;
    const bool below_head = lowest < L; /* an encoder layer or the embeddings are trained */
    float *dy = ctx->dy;
    ctx->lowest_computed = L;
    if (tm->tc.head == PETL_HEAD_SPAN) {
        /* d xs[L] = dspan W_qa on every token (when anything below is trained) */
        const int64_t NH = (int64_t)ctx->max_batch * ctx->max_len * H;
        if (below_head) memset(dy, 0, (size_t)(ctx->n * H) * sizeof(float));
        span_head_backward(below_head ? dy : NULL, tm->d_qa_w, tm->d_qa_b, ctx->dspan,
                           ctx->xs + L * NH, tm->qa_w, ctx->n, H);
        if (!below_head) return;
    } else {
        float *dcls = below_head ? ctx->dcls : NULL;
        if (dcls) memset(dcls, 0, (size_t)B * H * sizeof(float));
        const float ph = tm->tc.head_dropout;
        const uint64_t *keys =
            ctx->dropout && ph > 0.0f ? row_keys(ctx, PETL_RNG_DROPOUT_HEAD, 0) : NULL;
        head_backward(dcls, &tm->d_head, ctx->head_scr, ctx->dlogits, ctx->cls_rows, ctx->pooled,
                      ctx->pooled_d, ph, keys, &tm->head, B, H, tm->NL);
        if (!below_head) return;
        /* d xs[L]: only the [CLS] rows receive gradient */
        memset(dy, 0, (size_t)(ctx->n * H) * sizeof(float));
        for (int r = 0; r < B; r++)
            memcpy(dy + ctx->off[r] * H, dcls + (int64_t)r * H, (size_t)H * sizeof(float));
    }
    const int stop = lowest < 0 ? 0 : lowest;
    for (int l = L - 1; l >= stop; l--) {
        layer_backward(ctx, l, dy, l > stop || lowest < 0);
        ctx->lowest_computed = l;
    }
    if (lowest < 0) {
        embeddings_backward(ctx, b, dy);
        ctx->lowest_computed = -1;
    }
}

/* ------------------------------------------------------------------------- entry points */

petl_status petl_train_step(petl_train_ctx *ctx, const petl_batch *b, const int32_t *labels,
                            const float *targets, uint64_t dropout_seed, float *loss,
                            petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "training context is NULL");
    if (ctx->predict_only)
        return petl_fail(err, PETL_ERR_ARG,
                         "petl_train_step on a context made by petl_predict_ctx_new");
    if (ctx->tm->tc.head == PETL_HEAD_SPAN)
        return petl_fail(err, PETL_ERR_ARG,
                         "petl_train_step on a span head: use "
                         "petl_train_step_span");
    petl_status rc = check_batch(ctx, b, err);
    if (rc != PETL_OK) return rc;
    const petl_task_model *tm = ctx->tm;
    const int NL = tm->NL, B = b->batch;
    if (NL >= 2) {
        if (!labels) return petl_fail(err, PETL_ERR_ARG, "classification needs labels");
        for (int r = 0; r < B; r++)
            if (labels[r] < 0 || labels[r] >= NL)
                return petl_fail(err, PETL_ERR_ARG, "batch row %d: label %d is outside 0..%d", r,
                                 (int)labels[r], NL - 1);
    } else {
        if (!targets) return petl_fail(err, PETL_ERR_ARG, "regression needs targets");
        for (int r = 0; r < B; r++)
            if (!isfinite(targets[r]))
                return petl_fail(err, PETL_ERR_ARG, "batch row %d: target is not finite", r);
    }
    forward(ctx, b, true, dropout_seed);
    memset(ctx->dlogits, 0, (size_t)B * NL * sizeof(float));
    double l;
    if (NL >= 2) {
        l = cross_entropy_forward(ctx->logits, labels, B, NL);
        cross_entropy_backward(ctx->dlogits, ctx->logits, labels, B, NL);
    } else {
        l = mse_forward(ctx->logits, targets, B);
        mse_backward(ctx->dlogits, ctx->logits, targets, B);
    }
    if (loss) *loss = (float)l;
    backward(ctx, b);
    return PETL_OK;
}

petl_status petl_task_predict(petl_train_ctx *ctx, const petl_batch *b, float *logits,
                              petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "training context is NULL");
    if (ctx->tm->tc.head == PETL_HEAD_SPAN)
        return petl_fail(err, PETL_ERR_ARG,
                         "petl_task_predict on a span head: use "
                         "petl_task_predict_span");
    petl_status rc = check_batch(ctx, b, err);
    if (rc != PETL_OK) return rc;
    forward(ctx, b, false, 0);
    if (logits) memcpy(logits, ctx->logits, (size_t)b->batch * ctx->tm->NL * sizeof(float));
    return PETL_OK;
}

petl_status petl_train_step_span(petl_train_ctx *ctx, const petl_batch *b, const int32_t *start_pos,
                                 const int32_t *end_pos, uint64_t dropout_seed, float *loss,
                                 petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "training context is NULL");
    if (ctx->predict_only)
        return petl_fail(err, PETL_ERR_ARG,
                         "petl_train_step_span on a context made by petl_predict_ctx_new");
    if (ctx->tm->tc.head != PETL_HEAD_SPAN)
        return petl_fail(err, PETL_ERR_ARG, "petl_train_step_span on a classification head");
    petl_status rc = check_batch(ctx, b, err);
    if (rc != PETL_OK) return rc;
    if (!start_pos || !end_pos) return petl_fail(err, PETL_ERR_ARG, "span targets are NULL");
    for (int r = 0; r < b->batch; r++)
        if (start_pos[r] < 0 || start_pos[r] >= b->lengths[r] || end_pos[r] < 0 ||
            end_pos[r] >= b->lengths[r])
            return petl_fail(err, PETL_ERR_ARG,
                             "batch row %d: span %d..%d outside its %d tokens (a window without "
                             "the answer points both at [CLS], 0)",
                             r, (int)start_pos[r], (int)end_pos[r], b->lengths[r]);
    forward(ctx, b, true, dropout_seed);
    memset(ctx->dspan, 0, (size_t)ctx->n * 2 * sizeof(float));
    double l =
        span_loss_forward(ctx->span_logits, ctx->off, ctx->qlen, start_pos, end_pos, b->batch);
    span_loss_backward(ctx->dspan, ctx->span_logits, ctx->off, ctx->qlen, start_pos, end_pos,
                       b->batch);
    if (loss) *loss = (float)l;
    backward(ctx, b);
    return PETL_OK;
}

petl_status petl_task_predict_span(petl_train_ctx *ctx, const petl_batch *b, float *start_logits,
                                   float *end_logits, petl_error *err) {
    if (!ctx) return petl_fail(err, PETL_ERR_ARG, "training context is NULL");
    if (ctx->tm->tc.head != PETL_HEAD_SPAN)
        return petl_fail(err, PETL_ERR_ARG, "petl_task_predict_span on a classification head");
    petl_status rc = check_batch(ctx, b, err);
    if (rc != PETL_OK) return rc;
    forward(ctx, b, false, 0);
    /* packed [n, 2] -> padded [batch, seq] each, -inf where there is no token */
    for (int r = 0; r < b->batch; r++) {
        const float *l = ctx->span_logits + 2 * ctx->off[r];
        const int64_t row = (int64_t)r * b->seq;
        for (int p = 0; p < b->seq; p++) {
            const bool real = p < b->lengths[r];
            if (start_logits) start_logits[row + p] = real ? l[2 * p] : -INFINITY;
            if (end_logits) end_logits[row + p] = real ? l[2 * p + 1] : -INFINITY;
        }
    }
    return PETL_OK;
}

/* -------------------------------------------------------------- fused multi-task inference */

/* The frozen tensors a forward reads from the base: the view pointers ARE the base's (the
 * builder points them there when not tuned), so comparing pointers is exact. */
bool petl_task_model_shares_base(const petl_task_model *tm) {
    const petl_model *b = tm->base;
    if (tm->word_emb != b->word_emb || tm->pos_emb != b->pos_emb || tm->type_emb != b->type_emb)
        return false;
    for (int l = 0; l < tm->L; l++) {
        const tm_layer *y = &tm->layers[l];
        const petl_layer_params *p = &b->layers[l];
        if (y->qkv_w != p->qkv_w || y->qkv_b != p->qkv_b || y->attn_out_w != p->attn_out_w ||
            y->attn_out_b != p->attn_out_b || y->ffn_in_w != p->ffn_in_w ||
            y->ffn_in_b != p->ffn_in_b || y->ffn_out_w != p->ffn_out_w ||
            y->ffn_out_b != p->ffn_out_b)
            return false;
    }
    return true;
}

/* Inference buffers only (one layer live at a time), N = max_batch * max_len packed rows. Row
 * k of the packed layout is batch row order[k]; rows of one task are contiguous: group g owns
 * reordered rows gstart[g] .. gstart[g + 1] - 1, i.e. packed tokens tstart[g] .. tstart[g + 1]. */
struct petl_multi_ctx {
    const petl_model *base;
    int max_batch, max_len, max_m, max_nl, nthreads;
    void *arena;
    int64_t *off;                   /* [max_batch]      first packed token of reordered row k */
    int *qlen;                      /* [max_batch]      tokens of reordered row k */
    int *order;                     /* [max_batch]      reordered row k -> batch row */
    int *grp;                       /* [max_batch]      batch row -> group */
    int *gstart;                    /* [max_batch + 1]  first reordered row of group g */
    int64_t *tstart;                /* [max_batch + 1]  first packed token of group g */
    const petl_task_model **gtask;  /* [max_batch]      task of group g */
    float *x;                       /* [N, H]  embeddings sum, then each layer's input / output */
    float *qkv;                     /* [N, 3H] */
    float *att;                     /* [N, H]  attention context */
    float *h;                       /* [N, H]  projection output (adapter input) */
    float *s;                       /* [N, H]  residual sum (LayerNorm input) */
    float *y1;                      /* [N, H]  LayerNorm 1 output */
    float *f;                       /* [N, I]  FFN hidden, activated in place */
    float *z, *g;                   /* [N, m]  adapter bottleneck */
    float *mean, *rstd;             /* [N]     LayerNorm statistics (unused, but written) */
    float *cls, *pooled, *pooled_d; /* [B, H] */
    float *logits;                  /* [B, NL] group g's from row gstart[g] */
    float *att_scr;                 /* [nthreads, 2 max_len^2] */
};

static size_t multi_layout(petl_multi_ctx *ctx, char *base) {
    const petl_config *c = &ctx->base->cfg;
    const size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t B = (size_t)ctx->max_batch, N = B * (size_t)ctx->max_len;
    const size_t m = (size_t)ctx->max_m, NL = (size_t)ctx->max_nl, F = sizeof(float);
    size_t at = 0;
#define C(field, bytes) ((void)(field = carve(base, &at, bytes)))
    C(ctx->off, B * sizeof(int64_t));
    C(ctx->qlen, B * sizeof(int));
    C(ctx->order, B * sizeof(int));
    C(ctx->grp, B * sizeof(int));
    C(ctx->gstart, (B + 1) * sizeof(int));
    C(ctx->tstart, (B + 1) * sizeof(int64_t));
    C(ctx->gtask, B * sizeof(*ctx->gtask));
    C(ctx->x, N * H * F);
    C(ctx->qkv, N * 3 * H * F);
    C(ctx->att, N * H * F);
    C(ctx->h, N * H * F);
    C(ctx->s, N * H * F);
    C(ctx->y1, N * H * F);
    C(ctx->f, N * I * F);
    C(ctx->z, N * m * F);
    C(ctx->g, N * m * F);
    C(ctx->mean, N * F);
    C(ctx->rstd, N * F);
    C(ctx->cls, B * H * F);
    C(ctx->pooled, B * H * F);
    C(ctx->pooled_d, B * H * F);
    C(ctx->logits, B * NL * F);
    C(ctx->att_scr, (size_t)ctx->nthreads * 2 * ctx->max_len * ctx->max_len * F);
#undef C
    return at;
}

petl_status petl_multi_ctx_new(const petl_model *base, int max_batch, int max_len,
                               int max_adapter_size, int max_labels, petl_multi_ctx **out,
                               petl_error *err) {
    *out = NULL;
    if (!base) return petl_fail(err, PETL_ERR_ARG, "base model is NULL");
    const petl_config *c = &base->cfg;
    if (max_batch < 1 || max_len < 1 || max_adapter_size < 0 || max_labels < 1)
        return petl_fail(err, PETL_ERR_ARG,
                         "max_batch %d, max_len %d, max_adapter_size %d, max_labels %d: out of "
                         "range",
                         max_batch, max_len, max_adapter_size, max_labels);
    petl_status ms = petl_model_check_max_len(base, max_len, err);
    if (ms != PETL_OK) return ms;
    /* An upper bound of the float count, in double before any size_t arithmetic can overflow. */
    const double N = (double)max_batch * max_len;
    const double floats =
        N * (9.0 * c->hidden_size + c->intermediate_size + 2.0 * max_adapter_size + 2.0) +
        (double)max_batch * (3.0 * c->hidden_size + max_labels) + 64.0 * (double)max_len * max_len;
    if (floats * sizeof(float) > (double)SIZE_MAX / 4)
        return petl_fail(err, PETL_ERR_NOMEM,
                         "a multi-task context for %d x %d tokens is too large", max_batch,
                         max_len);
    petl_multi_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    ctx->base = base;
    ctx->max_batch = max_batch;
    ctx->max_len = max_len;
    ctx->max_m = max_adapter_size > 0 ? max_adapter_size : 1;
    ctx->max_nl = max_labels;
    ctx->nthreads = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    size_t total = multi_layout(ctx, NULL);
    ctx->arena = aligned_alloc(64, total);
    if (!ctx->arena) {
        free(ctx);
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for a %zu-byte multi-task context",
                         total);
    }
    multi_layout(ctx, ctx->arena);
    *out = ctx;
    return PETL_OK;
}

void petl_multi_ctx_free(petl_multi_ctx *ctx) {
    if (!ctx) return;
    free(ctx->arena);
    free(ctx);
}

/* Every group writes only its own rows of each buffer (z, g at t0 * max_m, statistics at t0),
 * so groups may run in parallel. With many small groups (many tasks, a row or two each) that is
 * what pays: one fork / join per site instead of one per kernel per task, whose cost (and that
 * of a BLAS call on one row) would otherwise dominate; the kernels then run single-threaded
 * (no nested parallelism). With few groups, each kernel parallelises over its rows instead. */
static bool multi_group_parallel(const petl_multi_ctx *ctx, int ngroups) {
    return ngroups >= 2 * ctx->nthreads;
}

/* Group g's adapter at `site` of layer l, residual and LayerNorm on its own rows:
 *   out = LayerNorm_task(res + A_task(h))          (identity adapter where the task has none) */
static void multi_adapter_ln_group(petl_multi_ctx *ctx, int g, int l, int site, float *out,
                                   const float *res) {
    const int H = ctx->base->cfg.hidden_size;
    const float eps = ctx->base->cfg.layer_norm_eps;
    const petl_task_model *tm = ctx->gtask[g];
    const tm_layer *p = &tm->layers[l];
    const int64_t t0 = ctx->tstart[g], n = ctx->tstart[g + 1] - t0;
    const float *h = ctx->h + t0 * H;
    float *s = ctx->s + t0 * H;
    if (adapter_on(tm, l, site))
        adapter_forward(s, ctx->z + t0 * ctx->max_m, ctx->g + t0 * ctx->max_m, h, &p->ad[site], n,
                        H, tm->m, tm->tc.adapter_act, ctx->base->bf16 != NULL);
    else
        memcpy(s, h, (size_t)(n * H) * sizeof(float));
    add_inplace(s, res + t0 * H, n * H);
    layernorm_forward_train(out + t0 * H, ctx->mean + t0, ctx->rstd + t0, s,
                            site == 0 ? p->ln1_w : p->ln2_w, site == 0 ? p->ln1_b : p->ln2_b, n, H,
                            eps);
}

/* Every group's adapter, residual and LayerNorm. The two loops are not one `parallel for ...
 * if (...)`: an inactive region around the kernels makes their own parallel regions nested,
 * and libgomp then starts fresh threads for each (measured: 2.4x slower single-task). */
static void multi_adapter_ln(petl_multi_ctx *ctx, int ngroups, int l, int site, float *out,
                             const float *res) {
    if (multi_group_parallel(ctx, ngroups)) {
#pragma omp parallel for schedule(dynamic)
        for (int g = 0; g < ngroups; g++)
            multi_adapter_ln_group(ctx, g, l, site, out, res);
    } else {
        for (int g = 0; g < ngroups; g++)
            multi_adapter_ln_group(ctx, g, l, site, out, res);
    }
}

/* Group g's embedding LayerNorm: x = LayerNorm_task(s) on its rows. */
static void multi_emb_ln_group(petl_multi_ctx *ctx, int g) {
    const int H = ctx->base->cfg.hidden_size;
    const int64_t t0 = ctx->tstart[g];
    layernorm_forward_train(ctx->x + t0 * H, ctx->mean + t0, ctx->rstd + t0, ctx->s + t0 * H,
                            ctx->gtask[g]->emb_ln_w, ctx->gtask[g]->emb_ln_b,
                            ctx->tstart[g + 1] - t0, H, ctx->base->cfg.layer_norm_eps);
}

/* Group g's head on its [CLS] rows (ctx->cls), logits to each row's place in logits[B, ld]. */
/* Group g's head on its [CLS] rows; with pooled_done the rows' pooled vectors are already in
 * ctx->pooled (the base's pooler, run once for the whole batch) and only the classifier runs. */
static void multi_head_group(petl_multi_ctx *ctx, int g, float *logits, int ld, bool pooled_done) {
    const int H = ctx->base->cfg.hidden_size;
    const petl_task_model *tm = ctx->gtask[g];
    const int k0 = ctx->gstart[g], cnt = ctx->gstart[g + 1] - k0;
    const int64_t kH = (int64_t)k0 * H;
    float *lg = ctx->logits + (int64_t)k0 * ctx->max_nl;
    if (pooled_done)
        matmul_forward(lg, ctx->pooled + kH, tm->head.cls_w, tm->head.cls_b, cnt, H, tm->NL);
    else
        head_forward(lg, ctx->pooled + kH, ctx->pooled_d + kH, ctx->cls + kH, 0.0f, NULL, &tm->head,
                     cnt, H, tm->NL);
    for (int k = 0; k < cnt; k++)
        memcpy(logits + (int64_t)ctx->order[k0 + k] * ld, lg + (int64_t)k * tm->NL,
               (size_t)tm->NL * sizeof(float));
}

/* Checks the row tasks and groups the batch rows by task (order of first appearance) into
 * *ngroups groups. */
static petl_status multi_group(petl_multi_ctx *ctx, const petl_task_model *const *row_task, int B,
                               int ld, int *ngroups, petl_error *err) {
    int ng = 0;
    for (int r = 0; r < B; r++) {
        const petl_task_model *tm = row_task[r];
        int g = 0;
        while (g < ng && ctx->gtask[g] != tm)
            g++;
        if (g == ng) {
            if (!tm) return petl_fail(err, PETL_ERR_ARG, "batch row %d: task model is NULL", r);
            if (tm->base != ctx->base)
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: the task model is on another base than the "
                                 "context's",
                                 r);
            if (!petl_task_model_shares_base(tm))
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: the task tunes base weights (full / top-K), its "
                                 "rows cannot share the base's GEMMs",
                                 r);
            if (tm->tc.head != PETL_HEAD_CLASSIFY)
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: a span (question answering) head has no "
                                 "fused multi-task predict: use petl_task_predict_span",
                                 r);
            if (tm->NL > ctx->max_nl || tm->NL > ld)
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: %d labels, over the context's %d or ld %d", r,
                                 tm->NL, ctx->max_nl, ld);
            if (tm->tc.tune == PETL_TUNE_ADAPTER && tm->m > ctx->max_m)
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: adapter size %d, over the context's %d", r, tm->m,
                                 ctx->max_m);
            ctx->gtask[ng++] = tm;
        }
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
    *ngroups = ng;
    return PETL_OK;
}

petl_status petl_task_predict_multi(petl_multi_ctx *ctx, const petl_task_model *const *row_task,
                                    const petl_batch *b, float *logits, int ld, petl_error *err) {
    if (!ctx || !row_task || !logits)
        return petl_fail(err, PETL_ERR_ARG, "context, row tasks or logits is NULL");
    const petl_config *c = &ctx->base->cfg;
    petl_status rc = check_batch_fits(c, ctx->max_batch, ctx->max_len, b, err);
    if (rc != PETL_OK) return rc;
    const int B = b->batch;
    int ng = 0;
    rc = multi_group(ctx, row_task, B, ld, &ng, err);
    if (rc != PETL_OK) return rc;
    const int H = c->hidden_size, I = c->intermediate_size, nh = c->num_heads;
    const petl_model *base = ctx->base;

    /* packed layout in reordered row order */
    int64_t n = 0;
    for (int k = 0; k < B; k++) {
        ctx->off[k] = n;
        ctx->qlen[k] = b->lengths[ctx->order[k]];
        n += ctx->qlen[k];
    }
    for (int g = 0; g <= ng; g++)
        ctx->tstart[g] = ctx->gstart[g] < B ? ctx->off[ctx->gstart[g]] : n;

        /* embeddings: base tables for every row, the embedding LayerNorm per task */
#pragma omp parallel for schedule(static)
    for (int k = 0; k < B; k++) {
        const int r = ctx->order[k];
        for (int p = 0; p < ctx->qlen[k]; p++) {
            const int64_t at = (int64_t)r * b->seq + p;
            const float *we = base->word_emb + (int64_t)b->ids[at] * H;
            const float *pe = base->pos_emb + (int64_t)p * H;
            const float *te = base->type_emb + (int64_t)b->type_ids[at] * H;
            float *o = ctx->s + (ctx->off[k] + p) * H;
            for (int i = 0; i < H; i++)
                o[i] = we[i] + pe[i] + te[i];
        }
    }
    const bool par = multi_group_parallel(ctx, ng); /* two loops each: see multi_adapter_ln */
    if (par) {
#pragma omp parallel for schedule(dynamic)
        for (int g = 0; g < ng; g++)
            multi_emb_ln_group(ctx, g);
    } else {
        for (int g = 0; g < ng; g++)
            multi_emb_ln_group(ctx, g);
    }

    for (int l = 0; l < c->num_layers; l++) {
        const petl_layer_params *p = &base->layers[l];
        const petl_layer_bf16 *bf = base->bf16 ? &base->bf16[l] : NULL;
        /* shared: QKV, attention, output projection over every row of every task */
        linear_forward(ctx->qkv, ctx->x, p->qkv_w, p->qkv_w, bf ? &bf->qkv : NULL, p->qkv_b, n, H,
                       3 * H);
        attention_forward(ctx->att, ctx->att_scr, (int64_t)2 * ctx->max_len * ctx->max_len,
                          ctx->nthreads, ctx->qkv, ctx->off, ctx->qlen, ctx->qlen, B, H, nh,
                          bf != NULL);
        linear_forward(ctx->h, ctx->att, p->attn_out_w, p->attn_out_w, bf ? &bf->attn_out : NULL,
                       p->attn_out_b, n, H, H);
        /* per task: adapter 1, residual, LayerNorm 1 */
        multi_adapter_ln(ctx, ng, l, 0, ctx->y1, ctx->x);
        /* shared: the FFN */
        linear_forward(ctx->f, ctx->y1, p->ffn_in_w, p->ffn_in_w, bf ? &bf->ffn_in : NULL,
                       p->ffn_in_b, n, H, I);
        activation_forward(ctx->f, ctx->f, n * I, c->hidden_act);
        linear_forward(ctx->h, ctx->f, p->ffn_out_w, p->ffn_out_w, bf ? &bf->ffn_out : NULL,
                       p->ffn_out_b, n, I, H);
        /* per task: adapter 2, residual, LayerNorm 2 (into x: the next layer's input) */
        multi_adapter_ln(ctx, ng, l, 1, ctx->x, ctx->y1);
    }

    /* per task: the head on its [CLS] rows. The pooler is the base's in every task that can be
     * fused (only full / top:K tune it), so it runs once over all rows: one GEMM instead of one
     * per task (100 tasks in a batch of 32 rows: ~28 single-row GEMMs). */
    for (int k = 0; k < B; k++)
        memcpy(ctx->cls + (int64_t)k * H, ctx->x + ctx->off[k] * H, (size_t)H * sizeof(float));
    bool shared_pool = base->pool_w != NULL;
    for (int g = 0; g < ng && shared_pool; g++)
        shared_pool = ctx->gtask[g]->head.pool_w == base->pool_w &&
                      ctx->gtask[g]->head.pool_b == base->pool_b;
    if (shared_pool) {
        matmul_forward(ctx->pooled, ctx->cls, base->pool_w, base->pool_b, B, H, H);
        tanh_forward(ctx->pooled, ctx->pooled, (int64_t)B * H);
    }
    if (par) {
#pragma omp parallel for schedule(dynamic)
        for (int g = 0; g < ng; g++)
            multi_head_group(ctx, g, logits, ld, shared_pool);
    } else {
        for (int g = 0; g < ng; g++)
            multi_head_group(ctx, g, logits, ld, shared_pool);
    }
    return PETL_OK;
}
