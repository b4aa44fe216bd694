/* The task model (adapters, tuned LayerNorms, head, tuned copies of base weights) on a frozen,
 * shared base (see taskmodel.h), and its training step and predictions through the one forward
 * of src/forward.c.
 *
 * Layout (karpathy/llm.c): every tuned tensor lives in ONE float block, its gradient in a twin
 * block at the same offsets; the task's view (forward.h) holds the pointer each forward reads
 * (task block when tuned, base when frozen) and the gradient pointer (NULL when frozen, which is
 * how the backward knows to skip a weight-gradient GEMM). Tensor names come from the base's
 * architecture description (arch.h) plus AdapterHub's adapter and head names. */
#include "taskmodel.h"
#include "forward.h"
#include "internal.h"
#include "kernels.h"
#include "model.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIALIZER_RANGE 0.02f /* BertConfig.initializer_range: the head's normal init sd */

/* ------------------------------------------------------------------------- task model */

struct petl_task_model {
    const petl_model *base;
    petl_tune_config tc;
    int H, I, L, NL, m;
    float *params, *grads; /* [n_floats] each */
    int64_t n_floats;
    petl_param *list; /* [n_params], names malloc'ed */
    size_t n_params;
    int64_t adapter_floats, head_floats; /* parts not in the base (for the total count) */
    petl_layer_view *layers;             /* [L] */
    petl_view view;                      /* what the forward reads, pointing into the above */
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

/* What a tune mode trains: every tensor (full), every LayerNorm (ln), layers from top_from up
 * (full: 0, top:K: L - K, else L). */
typedef struct {
    bool full, ln;
    int top_from;
} tune_scope;

/* The embedding tables, ELECTRA's projection and MPNet's relative position bias (full) and the
 * embedding LayerNorm (ln). */
static void build_embeddings(builder *bd, tune_scope sc) {
    petl_task_model *tm = bd->tm;
    const petl_model *b = tm->base;
    const petl_arch *a = b->arch;
    petl_view *v = &tm->view;
    const int64_t H = tm->H, V = b->cfg.vocab_size, P = b->cfg.max_position_embeddings;
    const int64_t T = b->cfg.type_vocab_size, E = b->cfg.embedding_size;
    char nm[160];
#define NAME(key) (snprintf(nm, sizeof nm, "%s%s", a->prefix, key), nm)
    tensor(bd, NAME(a->emb[PETL_E_WORD]), 2, V, E, true, sc.full, b->word_emb, &v->word_emb,
           &v->d_word_emb);
    tensor(bd, NAME(a->emb[PETL_E_POS]), 2, P, E, true, sc.full, b->pos_emb, &v->pos_emb,
           &v->d_pos_emb);
    if (b->type_emb)
        tensor(bd, NAME(a->emb[PETL_E_TYPE]), 2, T, E, true, sc.full, b->type_emb, &v->type_emb,
               &v->d_type_emb);
    tensor(bd, NAME(a->emb[PETL_E_LN_W]), 1, E, 0, false, sc.ln, b->emb_ln_w, &v->emb_ln_w,
           &v->d_emb_ln_w);
    tensor(bd, NAME(a->emb[PETL_E_LN_B]), 1, E, 0, false, sc.ln, b->emb_ln_b, &v->emb_ln_b,
           &v->d_emb_ln_b);
    if (b->emb_proj_w) {
        tensor(bd, NAME(a->emb_project_w), 2, H, E, true, sc.full, b->emb_proj_w, &v->emb_proj_w,
               &v->d_emb_proj_w);
        tensor(bd, NAME(a->emb_project_b), 1, H, 0, false, sc.full, b->emb_proj_b, &v->emb_proj_b,
               &v->d_emb_proj_b);
    }
    if (b->rel_bias)
        tensor(bd, NAME(a->rel_bias), 2, b->cfg.rel_buckets, b->cfg.num_heads, true, sc.full,
               b->rel_bias, &v->rel_bias, &v->d_rel_bias);
#undef NAME
}

/* Layer l's base tensors (tuned copies or the base's), in petl_layer_tensor order: query, key
 * and value added back to back, so that the task copy is one fused [3H, H] matrix as the base's
 * (and the forward's single QKV GEMM) wants. lp: the layer's key prefix. */
static void build_layer(builder *bd, int l, const char *lp, tune_scope sc) {
    petl_task_model *tm = bd->tm;
    const petl_layer_params *p = &tm->base->layers[l];
    const petl_arch *a = tm->base->arch;
    petl_layer_view *y = &tm->layers[l];
    const int64_t H = tm->H, I = tm->I, HH = H * H;
    const bool all = l >= sc.top_from, lnl = sc.ln || all;
    float *dummy;
    const float *unused;
    const struct {
        int rank;
        int64_t d0, d1;
        bool ln; /* a LayerNorm tensor: tuned with lnl, else with all */
        const float *base;
        const float **view;
        float **grad;
    } t[PETL_L_COUNT] = {
        {2, H, H, false, p->qkv_w, &y->qkv_w, &y->d_qkv_w},
        {2, H, H, false, p->qkv_w + HH, &unused, &dummy},
        {2, H, H, false, p->qkv_w + 2 * HH, &unused, &dummy},
        {1, H, 0, false, p->qkv_b, &y->qkv_b, &y->d_qkv_b},
        {1, H, 0, false, p->qkv_b + H, &unused, &dummy},
        {1, H, 0, false, p->qkv_b + 2 * H, &unused, &dummy},
        {2, H, H, false, p->attn_out_w, &y->attn_out_w, &y->d_attn_out_w},
        {1, H, 0, false, p->attn_out_b, &y->attn_out_b, &y->d_attn_out_b},
        {1, H, 0, true, p->ln1_w, &y->ln1_w, &y->d_ln1_w},
        {1, H, 0, true, p->ln1_b, &y->ln1_b, &y->d_ln1_b},
        {2, I, H, false, p->ffn_in_w, &y->ffn_in_w, &y->d_ffn_in_w},
        {1, I, 0, false, p->ffn_in_b, &y->ffn_in_b, &y->d_ffn_in_b},
        {2, H, I, false, p->ffn_out_w, &y->ffn_out_w, &y->d_ffn_out_w},
        {1, H, 0, false, p->ffn_out_b, &y->ffn_out_b, &y->d_ffn_out_b},
        {1, H, 0, true, p->ln2_w, &y->ln2_w, &y->d_ln2_w},
        {1, H, 0, true, p->ln2_b, &y->ln2_b, &y->d_ln2_b},
    };
    char nm[160];
    for (int i = 0; i < PETL_L_COUNT; i++) {
        snprintf(nm, sizeof nm, "%s%s", lp, a->layer_keys[i]);
        /* weights decay, biases and LayerNorms do not */
        tensor(bd, nm, t[i].rank, t[i].d0, t[i].d1, t[i].rank == 2, t[i].ln ? lnl : all, t[i].base,
               t[i].view, t[i].grad);
    }
}

/* Layer l's adapters (AdapterHub names under the adapter "petl"), near identity: truncated
 * normal weights (sd from the config), zero biases; one keyed rng stream per module, so adding
 * layers does not shift the others' values. */
static void build_adapters(builder *bd, int l, const char *lp) {
    petl_task_model *tm = bd->tm;
    const petl_tune_config *tc = &tm->tc;
    petl_layer_view *y = &tm->layers[l];
    const int64_t H = tm->H, m = tm->m;
    const bool ad = layer_has_adapters(tc, l);
    char nm[160];
    for (int site = 0; site < 2; site++) {
        const bool on = ad && (site == 1 || tc->placement == PETL_PLACE_BOTH);
        if (bd->assign) y->has_adapter[site] = on;
        if (!on) continue;
        const int64_t before = bd->at;
        petl_adapter_grads *g = &y->d_ad[site];
        char pre[128];
        snprintf(pre, sizeof pre, "%s%s.adapters.petl", lp, tm->base->arch->adapter_site[site]);
        snprintf(nm, sizeof nm, "%s.adapter_down.0.weight", pre);
        float *dw = add_param(bd, nm, 2, m, H, true, NULL, &g->down_w);
        snprintf(nm, sizeof nm, "%s.adapter_down.0.bias", pre);
        float *db = add_param(bd, nm, 1, m, 0, false, NULL, &g->down_b);
        snprintf(nm, sizeof nm, "%s.adapter_up.weight", pre);
        float *uw = add_param(bd, nm, 2, H, m, true, NULL, &g->up_w);
        snprintf(nm, sizeof nm, "%s.adapter_up.bias", pre);
        float *ub = add_param(bd, nm, 1, H, 0, false, NULL, &g->up_b);
        tm->adapter_floats += bd->assign ? bd->at - before : 0;
        if (!bd->assign || bd->rc != PETL_OK) continue;
        y->ad[site] = (petl_adapter_weights){dw, db, uw, ub};
        petl_rng r = petl_rng_stream(bd->init.s[0], PETL_RNG_INIT, (uint64_t)l, (uint64_t)site);
        petl_rng_fill_trunc_normal(&r, dw, (size_t)(m * H), 0.0f, tc->adapter_init_sd);
        petl_rng_fill_trunc_normal(&r, uw, (size_t)(H * m), 0.0f, tc->adapter_init_sd);
    }
}

/* The head, BERT's init (normal(0, initializer_range), bias 0): a span head (qa_outputs on
 * every token, no pooler: BertForQuestionAnswering), or the pooler (tuned with pool) and the
 * classifier. */
static void build_head(builder *bd, bool pool) {
    petl_task_model *tm = bd->tm;
    const petl_model *b = tm->base;
    petl_view *v = &tm->view;
    const int64_t H = tm->H, NL = tm->NL;
    const int64_t before = bd->at;
    petl_rng r = petl_rng_stream(bd->init.s[0], PETL_RNG_INIT, (uint64_t)tm->L + 1000, 0);
    if (tm->tc.head == PETL_HEAD_SPAN) {
        float *qw = add_param(bd, "qa_outputs.weight", 2, 2, H, true, NULL, &v->d_qa_w);
        float *qb = add_param(bd, "qa_outputs.bias", 1, 2, 0, false, NULL, &v->d_qa_b);
        tm->head_floats = bd->at - before;
        if (!bd->assign || bd->rc != PETL_OK) return;
        v->qa_w = qw;
        v->qa_b = qb;
        petl_rng_fill_normal(&r, qw, (size_t)(2 * H), 0.0f, INITIALIZER_RANGE);
        return;
    }
    if (b->has_pooler) {
        char nm[160];
        snprintf(nm, sizeof nm, "%s%s", b->arch->prefix, b->arch->pooler_w);
        tensor(bd, nm, 2, H, H, true, pool, b->pool_w, &v->cls.pool_w, &v->d_cls.pool_w);
        snprintf(nm, sizeof nm, "%s%s", b->arch->prefix, b->arch->pooler_b);
        tensor(bd, nm, 1, H, 0, false, pool, b->pool_b, &v->cls.pool_b, &v->d_cls.pool_b);
    } else if (tm->tc.head_dense) { /* a dense layer of the head's own: BERT's init */
        float *dw = add_param(bd, "head.dense.weight", 2, H, H, true, NULL, &v->d_cls.pool_w);
        float *db = add_param(bd, "head.dense.bias", 1, H, 0, false, NULL, &v->d_cls.pool_b);
        if (bd->assign && bd->rc == PETL_OK) {
            v->cls.pool_w = dw, v->cls.pool_b = db;
            petl_rng_fill_normal(&r, dw, (size_t)(H * H), 0.0f, INITIALIZER_RANGE);
        }
    }
    const int64_t cls_at = b->has_pooler ? bd->at : before; /* (a dense of its own counts) */
    float *cw = add_param(bd, "classifier.weight", 2, NL, H, true, NULL, &v->d_cls.cls_w);
    float *cb = add_param(bd, "classifier.bias", 1, NL, 0, false, NULL, &v->d_cls.cls_b);
    tm->head_floats = bd->at - cls_at;
    if (!bd->assign || bd->rc != PETL_OK) return;
    v->cls.cls_w = cw;
    v->cls.cls_b = cb;
    petl_rng_fill_normal(&r, cw, (size_t)(NL * H), 0.0f, INITIALIZER_RANGE);
}

static void build(builder *bd) {
    petl_task_model *tm = bd->tm;
    const petl_tune_config *tc = &tm->tc;
    const int L = tm->L;
    const bool full = tc->tune == PETL_TUNE_FULL;
    const tune_scope sc = {
        .full = full,
        .ln = full || (tc->tune == PETL_TUNE_ADAPTER && !tc->freeze_layernorms) ||
              tc->tune == PETL_TUNE_LAYERNORM,
        .top_from =
            tc->tune == PETL_TUNE_TOP ? (L - tc->top_k > 0 ? L - tc->top_k : 0) : (full ? 0 : L)};
    build_embeddings(bd, sc);
    for (int l = 0; l < L; l++) {
        char lp[96]; /* the layer's key prefix, "bert.encoder.layer.3." */
        const int n = snprintf(lp, sizeof lp, "%s", tm->base->arch->prefix);
        snprintf(lp + n, sizeof lp - (size_t)n, tm->base->arch->layer, l);
        build_layer(bd, l, lp, sc);
        build_adapters(bd, l, lp);
    }
    const bool pool =
        tc->head != PETL_HEAD_SPAN &&
        (tc->head_dense || (tm->base->has_pooler && (full || tc->tune == PETL_TUNE_TOP)));
    build_head(bd, pool);
    /* The lowest trained parameter. */
    if (sc.full || sc.ln) {
        tm->view.lowest = -1;
    } else if (tc->tune == PETL_TUNE_TOP && sc.top_from < L) {
        tm->view.lowest = sc.top_from;
    } else {
        tm->view.lowest = pool ? L : L + 1;
        for (int l = L - 1; l >= 0;
             l--) /* adapters with frozen LayerNorms: the lowest carrying them */
            if (layer_has_adapters(tc, l)) tm->view.lowest = l;
    }
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
    tm->view = (petl_view){.base = base,
                           .layers = tm->layers,
                           .m = tm->m,
                           .act = tc->adapter_act,
                           .head = tm->tc.head,
                           .NL = tm->NL,
                           .hidden_dropout = tc->hidden_dropout,
                           .attention_dropout = tc->attention_dropout,
                           .head_dropout = tc->head_dropout};
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

void petl_task_model_disable_adapters(petl_task_model *tm, uint64_t layer_mask) {
    tm->view.adapters_off = layer_mask;
}

uint64_t petl_task_model_disabled_adapters(const petl_task_model *tm) {
    return tm->view.adapters_off;
}

bool petl_task_model_shares_base(const petl_task_model *tm) {
    return petl_view_shares_base(&tm->view);
}

/* ----------------------------------------------------------------------------- contexts */

/* A context for tm alone: training (every saved layer from the lowest trained one up, backward
 * buffers) or prediction (one layer's buffers). */
static petl_status task_ctx_new(const petl_task_model *tm, int max_batch, int max_len, bool train,
                                petl_ctx **out, petl_error *err) {
    *out = NULL;
    if (!tm) return petl_fail(err, PETL_ERR_ARG, "task model is NULL");
    const int L = tm->L, lowest = tm->view.lowest;
    petl_ctx_shape sh = {
        .max_batch = max_batch,
        .max_len = max_len,
        .max_m = tm->m,
        .max_nl = tm->tc.head == PETL_HEAD_SPAN ? 0 : tm->NL,
        .span = tm->tc.head == PETL_HEAD_SPAN,
        .train = train,
        .first_saved = lowest < 0   ? 0
                       : lowest < L ? lowest
                                    : L,
    };
    petl_status rc = petl_ctx_make(tm->base, &sh, out, err);
    if (rc == PETL_OK) petl_ctx_bind(*out, &tm->view);
    return rc;
}

petl_status petl_train_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                               petl_ctx **out, petl_error *err) {
    return task_ctx_new(tm, max_batch, max_len, true, out, err);
}

petl_status petl_predict_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                                 petl_ctx **out, petl_error *err) {
    return task_ctx_new(tm, max_batch, max_len, false, out, err);
}

const float *petl_task_ctx_logits(const petl_ctx *ctx) {
    return petl_ctx_get_shape(ctx)->span ? petl_ctx_span_logits(ctx) : petl_ctx_logits(ctx);
}

/* The task a context was made for, or NULL with err set. */
static const petl_view *task_view(const petl_ctx *ctx, const char *what, petl_error *err) {
    const petl_view *v = ctx ? petl_ctx_bound(ctx) : NULL;
    if (!v) petl_fail(err, PETL_ERR_ARG, "%s: not a task model's context", what);
    return v;
}

/* ------------------------------------------------------------------------- one head API */

/* The targets of b checked against the view's head: labels in 0..NL-1, finite targets, spans
 * inside each row's tokens. */
static petl_status check_targets(const petl_view *v, const petl_batch *b, const petl_targets *t,
                                 petl_error *err) {
    if (!t) return petl_fail(err, PETL_ERR_ARG, "training targets are NULL");
    if (v->head == PETL_HEAD_SPAN) {
        if (!t->start || !t->end) return petl_fail(err, PETL_ERR_ARG, "span targets are NULL");
        for (int r = 0; r < b->batch; r++)
            if (t->start[r] < 0 || t->start[r] >= b->lengths[r] || t->end[r] < 0 ||
                t->end[r] >= b->lengths[r])
                return petl_fail(err, PETL_ERR_ARG,
                                 "batch row %d: span %d..%d outside its %d tokens (a window "
                                 "without the answer points both at [CLS], 0)",
                                 r, (int)t->start[r], (int)t->end[r], b->lengths[r]);
    } else if (v->NL >= 2) {
        if (!t->labels) return petl_fail(err, PETL_ERR_ARG, "classification needs labels");
        for (int r = 0; r < b->batch; r++)
            if (t->labels[r] < 0 || t->labels[r] >= v->NL)
                return petl_fail(err, PETL_ERR_ARG, "batch row %d: label %d is outside 0..%d", r,
                                 (int)t->labels[r], v->NL - 1);
    } else {
        if (!t->targets) return petl_fail(err, PETL_ERR_ARG, "regression needs targets");
        for (int r = 0; r < b->batch; r++)
            if (!isfinite(t->targets[r]))
                return petl_fail(err, PETL_ERR_ARG, "batch row %d: target is not finite", r);
    }
    return PETL_OK;
}

/* The loss of the last forward and its gradient into the context's head gradient. */
static double head_loss(petl_ctx *ctx, const petl_view *v, const petl_batch *b,
                        const petl_targets *t) {
    const int B = b->batch;
    if (v->head == PETL_HEAD_SPAN) {
        const int64_t *off;
        const int *len;
        petl_ctx_hidden(ctx, &off, &len);
        const float *sl = petl_ctx_span_logits(ctx);
        petl_span_loss_backward(petl_ctx_dspan(ctx), sl, off, len, t->start, t->end, B);
        return petl_span_loss_forward(sl, off, len, t->start, t->end, B);
    }
    const float *lg = petl_ctx_logits(ctx);
    if (v->NL >= 2) {
        petl_cross_entropy_backward(petl_ctx_dlogits(ctx), lg, t->labels, B, v->NL);
        return petl_cross_entropy_forward(lg, t->labels, B, v->NL);
    }
    petl_mse_backward(petl_ctx_dlogits(ctx), lg, t->targets, B);
    return petl_mse_forward(lg, t->targets, B);
}

petl_status petl_train_step(petl_ctx *ctx, const petl_batch *b, const petl_targets *t,
                            uint64_t dropout_seed, float *loss, petl_error *err) {
    const petl_view *v = task_view(ctx, "petl_train_step", err);
    if (!v) return PETL_ERR_ARG;
    const petl_ctx_shape *sh = petl_ctx_get_shape(ctx);
    if (!sh->train)
        return petl_fail(err, PETL_ERR_ARG,
                         "petl_train_step on a context made by petl_predict_ctx_new");
    /* Only the real tokens are computed here: padding ids are never read. */
    petl_status rc = petl_batch_check(v->base, sh->max_batch, sh->max_len, b, false, err);
    if (rc == PETL_OK) rc = check_targets(v, b, t, err);
    if (rc != PETL_OK) return rc;
    petl_forward(ctx, NULL, b, false, true, dropout_seed);
    const double l = head_loss(ctx, v, b, t);
    if (loss) *loss = (float)l;
    petl_backward(ctx, b);
    return PETL_OK;
}

petl_status petl_task_predict(petl_ctx *ctx, const petl_batch *b, const petl_predictions *out,
                              petl_error *err) {
    const petl_view *v = task_view(ctx, "petl_task_predict", err);
    if (!v) return PETL_ERR_ARG;
    const petl_ctx_shape *sh = petl_ctx_get_shape(ctx);
    petl_status rc = petl_batch_check(v->base, sh->max_batch, sh->max_len, b, false, err);
    if (rc != PETL_OK) return rc;
    if (out && v->head == PETL_HEAD_SPAN && out->logits)
        return petl_fail(err, PETL_ERR_ARG, "a span head predicts start / end logits, not logits");
    if (out && v->head != PETL_HEAD_SPAN && (out->start || out->end))
        return petl_fail(err, PETL_ERR_ARG,
                         "a classification / regression head predicts logits, not spans");
    const int seq = out && out->seq > 0 ? out->seq : b->seq;
    if (v->head == PETL_HEAD_SPAN && seq < b->seq)
        return petl_fail(err, PETL_ERR_ARG, "span logits rows of %d for a batch of %d positions",
                         seq, b->seq);
    petl_forward(ctx, NULL, b, false, false, 0); /* inference: no dropout, nothing saved */
    if (!out) return PETL_OK;
    if (v->head != PETL_HEAD_SPAN) {
        if (out->logits)
            memcpy(out->logits, petl_ctx_logits(ctx), (size_t)b->batch * v->NL * sizeof(float));
        return PETL_OK;
    }
    /* packed [n, 2] -> padded [batch, seq] each, -inf where there is no token */
    const int64_t *off;
    const int *len;
    petl_ctx_hidden(ctx, &off, &len);
    const float *sl = petl_ctx_span_logits(ctx);
    for (int r = 0; r < b->batch; r++) {
        const float *l = sl + 2 * off[r];
        const int64_t row = (int64_t)r * seq;
        for (int p = 0; p < seq; p++) {
            const bool real = p < len[r];
            if (out->start) out->start[row + p] = real ? l[2 * p] : -INFINITY;
            if (out->end) out->end[row + p] = real ? l[2 * p + 1] : -INFINITY;
        }
    }
    return PETL_OK;
}

/* -------------------------------------------------------------- fused multi-task inference */

petl_status petl_multi_ctx_new(const petl_model *base, int max_batch, int max_len,
                               int max_adapter_size, int max_labels, petl_ctx **out,
                               petl_error *err) {
    *out = NULL;
    if (!base) return petl_fail(err, PETL_ERR_ARG, "base model is NULL");
    if (max_adapter_size < 0 || max_labels < 1)
        return petl_fail(err, PETL_ERR_ARG, "max_adapter_size %d, max_labels %d: out of range",
                         max_adapter_size, max_labels);
    petl_ctx_shape sh = {.max_batch = max_batch,
                         .max_len = max_len,
                         .max_m = max_adapter_size,
                         .max_nl = max_labels};
    return petl_ctx_make(base, &sh, out, err);
}

/* Checks row r's task for a fused forward on ctx. */
static petl_status check_fusable(const petl_ctx *ctx, const petl_task_model *tm, int r, int ld,
                                 petl_error *err) {
    const petl_ctx_shape *sh = petl_ctx_get_shape(ctx);
    if (!tm) return petl_fail(err, PETL_ERR_ARG, "batch row %d: task model is NULL", r);
    if (tm->base != petl_ctx_base(ctx))
        return petl_fail(err, PETL_ERR_ARG,
                         "batch row %d: the task model is on another base than the context's", r);
    if (!petl_task_model_shares_base(tm))
        return petl_fail(err, PETL_ERR_ARG,
                         "batch row %d: the task tunes base weights (full / top-K), its rows "
                         "cannot share the base's GEMMs",
                         r);
    if (tm->tc.head != PETL_HEAD_CLASSIFY)
        return petl_fail(err, PETL_ERR_ARG,
                         "batch row %d: a span (question answering) head has no fused multi-task "
                         "predict: use petl_task_predict",
                         r);
    if (tm->NL > sh->max_nl || tm->NL > ld)
        return petl_fail(err, PETL_ERR_ARG,
                         "batch row %d: %d labels, over the context's %d or ld %d", r, tm->NL,
                         sh->max_nl, ld);
    if (tm->tc.tune == PETL_TUNE_ADAPTER && tm->m > sh->max_m)
        return petl_fail(err, PETL_ERR_ARG, "batch row %d: adapter size %d, over the context's %d",
                         r, tm->m, sh->max_m);
    return PETL_OK;
}

petl_status petl_task_predict_multi(petl_ctx *ctx, const petl_task_model *const *row_task,
                                    const petl_batch *b, float *logits, int ld, petl_error *err) {
    if (!ctx || !row_task || !logits)
        return petl_fail(err, PETL_ERR_ARG, "context, row tasks or logits is NULL");
    const petl_ctx_shape *sh = petl_ctx_get_shape(ctx);
    if (sh->train || petl_ctx_bound(ctx))
        return petl_fail(err, PETL_ERR_ARG, "not a multi-task context (petl_multi_ctx_new)");
    petl_status rc =
        petl_batch_check(petl_ctx_base(ctx), sh->max_batch, sh->max_len, b, false, err);
    if (rc != PETL_OK) return rc;
    /* every row is checked (a few pointer comparisons each): no per-batch allocation and no
     * search for the rows of a task seen before */
    const petl_view **views = petl_ctx_row_views(ctx);
    for (int r = 0; r < b->batch && rc == PETL_OK; r++) {
        rc = check_fusable(ctx, row_task[r], r, ld, err);
        if (rc == PETL_OK) views[r] = &row_task[r]->view;
    }
    if (rc == PETL_OK) {
        petl_forward(ctx, views, b, false, false, 0);
        /* group g's logits [rows, NL_g] from row gstart[g] * max_nl, in reordered row order */
        const int *gstart, *order;
        const int ng = petl_ctx_groups(ctx, &gstart, &order);
        const float *lg = petl_ctx_logits(ctx);
        for (int g = 0; g < ng; g++) {
            const int NL = row_task[order[gstart[g]]]->NL;
            const float *gl = lg + (int64_t)gstart[g] * sh->max_nl;
            for (int k = gstart[g]; k < gstart[g + 1]; k++)
                memcpy(logits + (int64_t)order[k] * ld, gl + (int64_t)(k - gstart[g]) * NL,
                       (size_t)NL * sizeof(float));
        }
    }
    return rc;
}
