/* Training on a frozen base: the task model (adapters, tuned LayerNorms, head, and for
 * full / top-K tuning the tuned copies of base weights), its forward with saved activations
 * and its backward. Internal API, shared by src/taskmodel.c (the math), src/trainer.c (the loop),
 * src/adapter_io.c and src/server.c. The public part (petl_tune_config, petl_task_model,
 * petl_predict_ctx_new) is in include/petl.h.
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

/* The safetensors metadata key that marks a petl checkpoint (src/trainer.c writes it,
 * src/outputs.c recognises it). */
#define PETL_CKPT_KEY "petl_checkpoint"

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

const petl_model *petl_task_model_base(const petl_task_model *tm);

size_t petl_task_model_num_params(const petl_task_model *tm);
const petl_param *petl_task_model_param(const petl_task_model *tm, size_t i);
/* NULL when absent. */
const petl_param *petl_task_model_find(const petl_task_model *tm, const char *name);
void petl_task_model_zero_grad(petl_task_model *tm);

/* Work buffers for training / inference of one task model (one arena; saved activations for
 * the backward pass); free with petl_train_ctx_free. petl_predict_ctx_new (include/petl.h) makes
 * one for inference only: one layer's activations instead of every layer's, no backward buffers
 * (petl_train_step on it fails with PETL_ERR_ARG). */
petl_status petl_train_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                               petl_train_ctx **out, petl_error *err);

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
