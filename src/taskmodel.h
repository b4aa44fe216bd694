/* The task model on a frozen base (adapters, tuned LayerNorms, head, and for full / top-K tuning
 * the tuned copies of base weights), its training step and its predictions, all through the one
 * forward of src/forward.c. Internal API of src/taskmodel.c, used by src/trainer.c (the loop),
 * src/adapter_io.c and the server's executor. The public part (petl_tune_config,
 * petl_task_model, petl_predict_ctx_new) is in include/petl.h.
 *
 * Design:
 *   - The base petl_model stays immutable and shared. A petl_task_model holds every tensor the
 *     task changes in ONE float block (params) with a twin block for gradients (same layout),
 *     plus a view (forward.h): the pointers the forward reads, into the task block for tuned
 *     tensors and into the base for frozen ones. Many task models can share one base.
 *   - Trainable tensors are exposed as a list of named petl_param (AdapterHub / HuggingFace
 *     key names), which is what the optimiser, checkpoints and the adapter file use.
 *   - Backward functions accumulate into grads (+=); the caller zeroes them
 *     (petl_task_model_zero_grad). Nothing is computed below the lowest trainable parameter
 *     and no weight-gradient GEMM is run for a frozen weight.
 */
#ifndef PETL_TASKMODEL_H
#define PETL_TASKMODEL_H

#include "forward.h"
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

/* A context (forward.h) for training tm on batches of up to max_batch x max_len: every saved
 * layer's activations and the backward buffers. petl_predict_ctx_new (include/petl.h) makes
 * one for inference only; both are freed with petl_ctx_free. */
petl_status petl_train_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                               petl_ctx **out, petl_error *err);

/* What a training step learns from, by head kind (the others are not read). */
typedef struct {
    const int32_t *labels;      /* [batch] classification (num_labels >= 2): 0 .. num_labels-1 */
    const float *targets;       /* [batch] regression (num_labels == 1): finite */
    const int32_t *start, *end; /* [batch] span head: token positions in [0, lengths[r]) (Google's
                                   run_squad.py points both at [CLS], 0, for a window without
                                   the answer) */
} petl_targets;

/* Forward + backward on one batch, for every head: *loss = mean cross-entropy (classification),
 * mean squared error (regression), or for spans the mean over rows of (CE(start) + CE(end)) / 2
 * with each cross-entropy over the row's real tokens only (padding is never a candidate: see
 * petl_span_loss_forward in heads.h for how that differs from transformers on padded batches).
 * Targets out of range fail with PETL_ERR_ARG naming the row. Gradients are ACCUMULATED into the
 * task's gradient block. Dropout is on, drawn deterministically from dropout_seed whatever the
 * thread count; dropout_seed == 0 turns it off (gradient checks). */
petl_status petl_train_step(petl_ctx *ctx, const petl_batch *b, const petl_targets *t,
                            uint64_t dropout_seed, float *loss, petl_error *err);

/* Inference (no dropout) on one batch into out (petl_predictions, include/petl.h; rows are the
 * batch rows, out->seq 0 means b->seq): logits [batch, num_labels], or for a span head start /
 * end [batch, seq] in the padded layout of the batch (petl_squad_decode's), -INFINITY at the
 * padded positions p >= lengths[r]: padding never takes one of the decoder's n-best candidate
 * slots from a real token (in Google's run_squad.py padded positions have finite logits and
 * can). */
petl_status petl_task_predict(petl_ctx *ctx, const petl_batch *b, const petl_predictions *out,
                              petl_error *err);

/* Fused multi-task inference (petl serve): one batch whose rows belong to different task models
 * on ONE shared base, one forward with a row group per task (forward.h): the frozen base's GEMMs
 * and the attention run once over the packed rows of every task; each task's adapters,
 * LayerNorms and head apply to its own rows. Results equal petl_task_predict per task up to
 * float rounding (GEMMs of other shapes).
 *
 * Only tasks that leave the base's weights untouched can share its GEMMs: --tune adapter,
 * layernorm and head (petl_task_model_shares_base). Tasks tuned with full or top:K carry their
 * own copies of base weights; the caller runs those through petl_task_predict (the server does).
 *
 * The context depends only on the base and on maximum sizes, not on a task: one context serves
 * any mix of tasks whose bottleneck is at most max_adapter_size and whose label count is at most
 * max_labels. Adapter ablation switches (petl_task_model_disable_adapters) are honoured. */
bool petl_task_model_shares_base(const petl_task_model *tm);
petl_status petl_multi_ctx_new(const petl_model *base, int max_batch, int max_len,
                               int max_adapter_size, int max_labels, petl_ctx **out,
                               petl_error *err);
/* row_task[batch]: the task of each batch row (all on the context's base, all sharing it, all
 * with a classification / regression head: else PETL_ERR_ARG and nothing is computed). Row r's
 * num_labels logits go to logits + r * ld (ld >= every row's num_labels; logits [batch, ld]).
 * Batch checks as petl_task_predict. */
petl_status petl_task_predict_multi(petl_ctx *ctx, const petl_task_model *const *row_task,
                                    const petl_batch *b, float *logits, int ld, petl_error *err);

/* Head outputs of the last petl_train_step / petl_task_predict on a task context (owned by ctx,
 * valid until the next call): logits [batch, num_labels], e.g. for training accuracy without a
 * second forward; after a span head's step or predict the packed span logits [real tokens, 2]
 * (start, end) instead. petl_ctx_lowest_computed (forward.h) tells how far the backward ran. */
const float *petl_task_ctx_logits(const petl_ctx *ctx);

#endif
