/* The one encoder forward (and its backward) that every path runs: training, evaluation and
 * prediction of a task model, fused multi-task serving and `petl embed`. Internal to the library.
 *
 * A forward runs over "row groups": a group is a run of batch rows plus the VIEW that applies
 * to them, i.e. the tensors the forward reads for that task (adapters, tuned LayerNorms, head,
 * and for full / top:K tuning the task's copies of base weights). The weights of the GEMMs and
 * the embedding tables are read from the first group's view (every group of a multi-group
 * forward reads the base's: the caller checks), so the base's GEMMs and the attention run once
 * over all rows; adapters, LayerNorms and heads run per group, on its rows only:
 *   - training: one group whose activations are saved for the backward pass;
 *   - fused serving (petl serve): N groups, one per task in the batch;
 *   - petl embed: one group whose view is the bare base (no adapters, no head).
 * The architecture-specific parts (tensor names, embeddings) come from the base's petl_arch.
 *
 * One context type (petl_ctx) holds every buffer in one arena; it is made for a shape (rows,
 * length, largest adapter and head, training or not) and reused across batches. */
#ifndef PETL_FORWARD_H
#define PETL_FORWARD_H

#include "adapter.h"
#include "heads.h"
#include "model.h"

/* What one encoder layer reads (the task's tensor when tuned, else the base's), and where the
 * backward puts each gradient (NULL when frozen: no weight-gradient GEMM is run for it). */
typedef struct {
    const float *qkv_w, *qkv_b;           /* [3H, H], [3H] */
    const float *attn_out_w, *attn_out_b; /* [H, H], [H] */
    const float *ln1_w, *ln1_b;           /* [H] */
    const float *ffn_in_w, *ffn_in_b;     /* [I, H], [I] */
    const float *ffn_out_w, *ffn_out_b;   /* [H, I], [H] */
    const float *ln2_w, *ln2_b;           /* [H] */
    float *d_qkv_w, *d_qkv_b, *d_attn_out_w, *d_attn_out_b, *d_ln1_w, *d_ln1_b;
    float *d_ffn_in_w, *d_ffn_in_b, *d_ffn_out_w, *d_ffn_out_b, *d_ln2_w, *d_ln2_b;
    bool has_adapter[2]; /* [0]: after the attention output, [1]: after the FFN output */
    petl_adapter_weights ad[2];
    petl_adapter_grads d_ad[2];
} petl_layer_view;

/* No head: the bare base (petl embed reads the last hidden states). */
#define PETL_HEAD_NONE ((petl_head_kind)-1)

/* Everything a forward reads for one task (or for the bare base). */
typedef struct {
    const petl_model *base;
    const float *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b; /* type_emb may be NULL */
    float *d_word_emb, *d_pos_emb, *d_type_emb, *d_emb_ln_w, *d_emb_ln_b;
    const float *emb_proj_w, *emb_proj_b; /* [H, E], [H]: ELECTRA's projection, else NULL */
    float *d_emb_proj_w, *d_emb_proj_b;
    const float *rel_bias; /* [buckets, heads]: MPNet's relative position bias, else NULL */
    float *d_rel_bias;
    petl_layer_view *layers; /* [L] */
    int m;                   /* adapter bottleneck (0: none) */
    petl_adapter_act act;
    uint64_t adapters_off; /* bit l: layer l's adapters act as the identity (ablation) */
    petl_head_kind head;   /* PETL_HEAD_NONE for the bare base */
    int NL;                /* labels (classification / regression), 2 for spans */
    petl_head_weights cls; /* PETL_HEAD_CLASSIFY */
    petl_head_grads d_cls;
    const float *qa_w, *qa_b; /* PETL_HEAD_SPAN: [2, H], [2] */
    float *d_qa_w, *d_qa_b;
    float hidden_dropout, attention_dropout, head_dropout;
    /* Lowest trained tensor: -1 the embeddings, 0..L-1 a layer, L the pooler, L + 1 the head
     * only (the backward computes nothing below it; L + 1 for the bare base). */
    int lowest;
} petl_view;

/* The bare base as a view (layers [L] provided by the caller). */
void petl_view_of_base(petl_view *v, petl_layer_view *layers, const petl_model *base);
/* True when v reads every embedding table and encoder weight matrix from its base (only
 * LayerNorms, adapters and the head are its own): its rows can share the base's GEMMs. */
bool petl_view_shares_base(const petl_view *v);

/* The shape a context is made for. */
typedef struct {
    int max_batch, max_len;
    int max_m;       /* largest adapter bottleneck of any group (0: none) */
    int max_nl;      /* largest label count of any group's classification head (0: none) */
    bool span;       /* room for span logits */
    bool train;      /* saved activations and backward buffers (one group) */
    int first_saved; /* train: the lowest layer whose activations the backward reads (L: none) */
} petl_ctx_shape;

petl_status petl_ctx_make(const petl_model *base, const petl_ctx_shape *shape, petl_ctx **out,
                          petl_error *err);

/* One forward. views[r] is batch row r's view; views NULL: every row runs the bound view, else
 * the bare base. Rows of one view are grouped, in order of first appearance; several distinct
 * views must all share the base (the caller checks). qlen_all: compute every position of every
 * row (padding too), else the real tokens only. train (a training context, one view): save the
 * activations, with dropout from seed (0: none); else inference. Afterwards the head outputs
 * are in the context (petl_ctx_logits ...). The batch is checked by the caller. */
void petl_forward(petl_ctx *ctx, const petl_view *const *views, const petl_batch *b, bool qlen_all,
                  bool train, uint64_t seed);
/* The backward of the last training forward from the head's gradient (set through
 * petl_ctx_dlogits / petl_ctx_dspan), accumulating into the view's gradients. */
void petl_backward(petl_ctx *ctx, const petl_batch *b);

/* After a forward: the grouping of the batch. Group g owns reordered rows gstart[g] ..
 * gstart[g + 1] - 1; reordered row k is batch row order[k]. */
int petl_ctx_groups(const petl_ctx *ctx, const int **gstart, const int **order);
/* Last hidden states, packed: reordered row k's positions at rows off[k] .. off[k] + qlen[k] - 1
 * of the returned [n, H]. */
const float *petl_ctx_hidden(const petl_ctx *ctx, const int64_t **off, const int **qlen);
/* Head outputs of the last forward: classification logits of group g [its rows, its NL] from
 * row gstart[g] * max_nl (one group: [B, NL] in batch order); span logits packed [n, 2]
 * (start, end). */
const float *petl_ctx_logits(const petl_ctx *ctx);
const float *petl_ctx_span_logits(const petl_ctx *ctx);
/* Head gradients for petl_backward: [B, NL] and packed [n, 2], zeroed by the forward. */
float *petl_ctx_dlogits(petl_ctx *ctx);
float *petl_ctx_dspan(petl_ctx *ctx);
/* The lowest part of the model the last backward computed: -1 the embeddings, l a layer, L
 * nothing below the head. */
int petl_ctx_lowest_computed(const petl_ctx *ctx);
/* The view a single-view context runs (a task context's task; NULL: the bare base, whose view
 * every context carries: petl_ctx_base_view). */
void petl_ctx_bind(petl_ctx *ctx, const petl_view *v);
const petl_view *petl_ctx_bound(const petl_ctx *ctx);
const petl_view *petl_ctx_base_view(const petl_ctx *ctx);
const petl_ctx_shape *petl_ctx_get_shape(const petl_ctx *ctx);
const petl_model *petl_ctx_base(const petl_ctx *ctx);

/* A [max_batch] array in the context's arena for a caller's per-row views (petl_forward's
 * views), so that a fused forward allocates nothing per batch. */
const petl_view **petl_ctx_row_views(petl_ctx *ctx);
/* The [CLS] rows of the last forward's hidden states [B, H], reordered row order. */
const float *petl_ctx_cls_rows(const petl_ctx *ctx);

/* Internal switch for the tests: run the naive kernel twins (inference). */
void petl_ctx_use_naive(petl_ctx *ctx, bool on);
bool petl_ctx_naive(const petl_ctx *ctx);

#endif
