/* The task head on top of the encoder, forward and backward side by side, and the losses:
 *   pooled = tanh(W_pool h_[CLS] + b_pool)      (BERT's pooler; the [CLS] row itself when the
 *                                                base has no pooler)
 *   logits = W_cls dropout(pooled) + b_cls       W_cls [num_labels, H]
 *   loss   = mean cross-entropy (num_labels >= 2) or mean squared error (num_labels == 1),
 * as transformers' BertForSequenceClassification. Internal to the library. */
#ifndef PETL_HEADS_H
#define PETL_HEADS_H

#include <stdint.h>

typedef struct {
    const float *pool_w; /* [H, H]  NULL: no pooler, pooled = the [CLS] row */
    const float *pool_b; /* [H] */
    const float *cls_w;  /* [NL, H] */
    const float *cls_b;  /* [NL] */
} petl_head_weights;

/* Gradients; each may be NULL (frozen). */
typedef struct {
    float *pool_w, *pool_b; /* [H, H], [H] */
    float *cls_w, *cls_b;   /* [NL, H], [NL] */
} petl_head_grads;

/* logits[B, NL] from cls_rows[B, H]; saves pooled[B, H] (tanh output) and pooled_d[B, H] (after
 * dropout with mask[B, H]; mask NULL: no dropout, pooled_d may then equal pooled). */
void head_forward(float *logits, float *pooled, float *pooled_d, const float *cls_rows,
                  const float *mask, const petl_head_weights *w, int B, int H, int NL);

/* Backward, accumulating: dcls[B, H] += (NULL: nothing below the head is trained), weight
 * gradients += where non-NULL, from dlogits[B, NL] and the forward's saved tensors. scratch
 * [2, B, H] is overwritten. */
void head_backward(float *dcls, const petl_head_grads *dw, float *scratch, const float *dlogits,
                   const float *cls_rows, const float *pooled, const float *pooled_d,
                   const float *mask, const petl_head_weights *w, int B, int H, int NL);

/* Mean cross-entropy over the batch of logits[B, NL] against labels[B] (0..NL-1); returns it
 * in double. The backward adds (softmax - onehot) / B into dlogits. */
double cross_entropy_forward(const float *logits, const int32_t *labels, int B, int NL);
void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels, int B,
                            int NL);

/* Mean squared error of pred[B] against targets[B] (torch MSELoss on logits.squeeze()); the
 * backward adds 2 (pred - target) / B into dpred. */
double mse_forward(const float *pred, const float *targets, int B);
void mse_backward(float *dpred, const float *pred, const float *targets, int B);

#endif
