/* Training on a frozen base: the task model (adapters, tuned LayerNorms, head, and for
 * full / top-K tuning the tuned copies of base weights), its forward with saved activations
 * and its backward. Internal API, shared by src/taskmodel.c (the math) and src/trainer.c
 * (the loop), to be merged into include/petl.h once it settles.
 *
 * Design:
 *   - The base petl_model stays immutable and shared. A petl_task_model holds every tensor the
 *     task changes in ONE float block (params) with a twin block for gradients (same layout),
 *     plus a "view": for each layer the pointers the forward should use, pointing into the task
 *     block for tuned tensors and into the base for frozen ones. Many task models can share one
 *     base.
 *   - Trainable tensors are exposed as a list of named petl_param (AdapterHub / HuggingFace
 *     key names), which is what the optimiser, checkpoints and the adapter file use.
 *   - Backward functions accumulate into grads (+=); the caller zeroes them
 *     (petl_task_model_zero_grad). Nothing is computed below the lowest trainable parameter
 *     and no weight-gradient GEMM is run for a frozen weight.
 */
#ifndef PETL_TRAIN_H
#define PETL_TRAIN_H

#include "petl.h"

/* What is trained (`--tune`). */
typedef enum {
    PETL_TUNE_ADAPTER,   /* adapters + every LayerNorm + head (the paper's method; default) */
    PETL_TUNE_FULL,      /* every parameter: the full fine-tuning baseline */
    PETL_TUNE_TOP,       /* the top top_k layers (+ pooler) + head: "variable fine-tuning" */
    PETL_TUNE_LAYERNORM, /* every LayerNorm + head */
    PETL_TUNE_HEAD,      /* head only: the feature-based baseline */
} petl_tune;

typedef enum {
    PETL_PLACE_BOTH, /* after the attention output projection and after the FFN (the paper) */
    PETL_PLACE_FFN,  /* after the FFN output projection only */
} petl_adapter_placement;

typedef enum { PETL_ADAPTER_GELU, PETL_ADAPTER_RELU, PETL_ADAPTER_SWISH } petl_adapter_act;

/* The task head. */
typedef enum {
    PETL_HEAD_CLASSIFY, /* pooled [CLS] -> dropout -> classifier [num_labels, H] (default):
                           BertForSequenceClassification, tensors classifier.weight / .bias */
    PETL_HEAD_SPAN,     /* every token -> qa_outputs [2, H]: start / end logits, no pooler, no
                           head dropout (BertForQuestionAnswering, tensors qa_outputs.weight /
                           .bias); trained with petl_train_step_span */
} petl_head_kind;

typedef struct {
    petl_tune tune;
    int top_k;                        /* PETL_TUNE_TOP: number of top layers tuned */
    int adapter_size;                 /* bottleneck m, default 64 */
    petl_adapter_act adapter_act;     /* default GELU (exact erf form) */
    float adapter_init_sd;            /* truncated normal (cut at 2 sd), default 1e-3 */
    petl_adapter_placement placement; /* default PETL_PLACE_BOTH */
    uint64_t adapter_layers;          /* bit l set: layer l carries adapters; default all */
    int num_labels;                   /* >= 2: classification (cross-entropy); 1: regression;
                                         PETL_HEAD_SPAN: 2 (start, end) */
    petl_head_kind head;              /* default PETL_HEAD_CLASSIFY */
    float hidden_dropout;             /* default: the config's hidden_dropout_prob */
    float attention_dropout;          /* default: the config's attention_probs_dropout_prob */
    float head_dropout;               /* before the classifier, default 0.1 (unused by spans) */
} petl_tune_config;

/* Defaults above, for a base with config cfg (dropouts from cfg). */
void petl_tune_config_default(petl_tune_config *tc, const petl_config *cfg);

/* One trainable tensor. */
typedef struct {
    const char *name; /* e.g. "bert.encoder.layer.0.output.adapters.petl.adapter_up.weight" */
    float *data;      /* [numel] in the task's parameter block */
    float *grad;      /* [numel] in the task's gradient block */
    int rank;         /* 1 or 2 */
    int64_t shape[2];
    int64_t numel;
    bool decay; /* false for LayerNorm parameters and biases (no weight decay) */
} petl_param;

typedef struct petl_task_model petl_task_model;

/* A new task model on `base` (which must outlive it): adapters initialised near identity from
 * `seed`, LayerNorms and tuned weights copied from the base, head initialised as BERT does
 * (normal(0, initializer_range 0.02), bias 0). */
petl_status petl_task_model_new(const petl_model *base, const petl_tune_config *tc, uint64_t seed,
                                petl_task_model **out, petl_error *err);
void petl_task_model_free(petl_task_model *tm);
const petl_tune_config *petl_task_model_tune_config(const petl_task_model *tm);
const petl_model *petl_task_model_base(const petl_task_model *tm);

/* Ablation at inference (the paper's Figure 6): bit l of layer_mask set makes both adapters of
 * layer l the identity (as if their weights were zero); 0 (the default) runs every adapter.
 * Layers from 64 up cannot be switched off. Read by every forward (and backward) until changed;
 * not thread-safe against a forward running on another thread. */
void petl_task_model_disable_adapters(petl_task_model *tm, uint64_t layer_mask);
uint64_t petl_task_model_disabled_adapters(const petl_task_model *tm);

size_t petl_task_model_num_params(const petl_task_model *tm);
const petl_param *petl_task_model_param(const petl_task_model *tm, size_t i);
/* NULL when absent. */
const petl_param *petl_task_model_find(const petl_task_model *tm, const char *name);
/* Trained floats, and the whole model's (base + adapters + head) for the "% trained" line. */
int64_t petl_task_model_trainable_count(const petl_task_model *tm);
int64_t petl_task_model_total_count(const petl_task_model *tm);
void petl_task_model_zero_grad(petl_task_model *tm);

/* Work buffers for training / inference of one task model (one arena; saved activations for
 * the backward pass). */
typedef struct petl_train_ctx petl_train_ctx;
petl_status petl_train_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                               petl_train_ctx **out, petl_error *err);
/* The same for inference only (petl_task_predict): one layer's activations instead of every
 * layer's, no backward buffers (petl_train_step on it fails with PETL_ERR_ARG). */
petl_status petl_predict_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                                 petl_train_ctx **out, petl_error *err);
void petl_train_ctx_free(petl_train_ctx *ctx);

/* Forward + backward on one batch: *loss = mean cross-entropy (num_labels >= 2, labels[b]) or
 * mean squared error (num_labels == 1, targets[b]). Gradients are ACCUMULATED into the task's
 * gradient block. Dropout is on, drawn deterministically from (dropout_seed) whatever the
 * thread count; dropout_seed == 0 turns dropout off (gradient checks). */
petl_status petl_train_step(petl_train_ctx *ctx, const petl_batch *b, const int32_t *labels,
                            const float *targets, uint64_t dropout_seed, float *loss,
                            petl_error *err);

/* Inference (no dropout): logits [batch, num_labels] (regression: [batch, 1]). */
petl_status petl_task_predict(petl_train_ctx *ctx, const petl_batch *b, float *logits,
                              petl_error *err);

/* The span head (PETL_HEAD_SPAN models only; the two calls above refuse them, and these refuse
 * classification models, with PETL_ERR_ARG).
 *
 * Forward + backward on one batch of question / context windows: *loss = mean over the rows of
 * (CE(start) + CE(end)) / 2, each cross-entropy over the row's real tokens (b->lengths[r]):
 * padding is never a candidate position (see span_loss_forward in heads.h for how that differs
 * from transformers on padded batches). start_pos[r], end_pos[r] in [0, lengths[r]) (Google's
 * run_squad.py points both at [CLS], position 0, for a window without the answer), else
 * PETL_ERR_ARG naming the row. Gradients accumulate; dropout as petl_train_step. */
petl_status petl_train_step_span(petl_train_ctx *ctx, const petl_batch *b, const int32_t *start_pos,
                                 const int32_t *end_pos, uint64_t dropout_seed, float *loss,
                                 petl_error *err);
/* Inference (no dropout): start_logits and end_logits [batch, b->seq] in the padded layout of
 * the batch (petl_squad_decode's), -INFINITY at the padded positions p >= lengths[r]: padding
 * never takes one of the decoder's n-best candidate slots from a real token (in Google's
 * run_squad.py padded positions have finite logits and can). */
petl_status petl_task_predict_span(petl_train_ctx *ctx, const petl_batch *b, float *start_logits,
                                   float *end_logits, petl_error *err);

/* Fused multi-task inference (petl serve): one batch whose rows belong to different task models
 * on ONE shared base. The frozen base's GEMMs (QKV, attention output, FFN in / out) and the
 * attention run once over the packed rows of every task; each task's adapters, LayerNorms
 * (adapter and layernorm modes tune them, so they are per task) and head apply to its own rows,
 * which the forward packs contiguously (rows grouped by task, in order of first appearance).
 * Results equal petl_task_predict per task up to float rounding (GEMMs of other shapes).
 *
 * Only tasks that leave the base's weights untouched can share its GEMMs: --tune adapter,
 * layernorm and head (petl_task_model_shares_base). Tasks tuned with full or top:K carry their
 * own copies of base weights; the caller runs those through petl_task_predict (the server does).
 *
 * The context depends only on the base and on maximum sizes, not on a task: one context serves
 * any mix of tasks whose bottleneck is at most max_adapter_size and whose label count is at most
 * max_labels. Adapter ablation switches (petl_task_model_disable_adapters) are honoured. */
typedef struct petl_multi_ctx petl_multi_ctx;
/* True when tm's forward reads every embedding table and encoder weight matrix from its base
 * (only LayerNorms, adapters and the head are its own). */
bool petl_task_model_shares_base(const petl_task_model *tm);
petl_status petl_multi_ctx_new(const petl_model *base, int max_batch, int max_len,
                               int max_adapter_size, int max_labels, petl_multi_ctx **out,
                               petl_error *err);
void petl_multi_ctx_free(petl_multi_ctx *ctx); /* NULL: no-op */
/* row_task[batch]: the task of each batch row (all on the context's base, all sharing it, all
 * with a classification / regression head: else PETL_ERR_ARG and nothing is computed). Row r's
 * num_labels logits go to logits + r * ld (ld >= every row's num_labels; logits [batch, ld]). Batch
 * checks as petl_task_predict. */
petl_status petl_task_predict_multi(petl_multi_ctx *ctx, const petl_task_model *const *row_task,
                                    const petl_batch *b, float *logits, int ld, petl_error *err);

/* Logits [batch, num_labels] of the last petl_train_step / petl_task_predict (owned by ctx,
 * valid until the next call): e.g. for training accuracy without a second forward. After a span
 * step or predict: the packed span logits [real tokens, 2] (start, end) instead. */
const float *petl_train_ctx_logits(const petl_train_ctx *ctx);
/* The lowest part of the model the last petl_train_step's backward computed: -1 the
 * embeddings, l in 0..L-1 encoder layer l, L nothing below the head (the test that "nothing is
 * computed below the lowest trained parameter" reads it). */
int petl_train_ctx_lowest_computed(const petl_train_ctx *ctx);

#endif
