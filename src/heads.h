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
 * dropout with probability p, row b by petl_dropout_apply with key keys[b] from element 0;
 * keys NULL or p <= 0: no dropout, pooled_d may then equal pooled). */
void petl_head_forward(float *logits, float *pooled, float *pooled_d, const float *cls_rows,
                       float p, const uint64_t *keys, const petl_head_weights *w, int B, int H,
                       int NL);

/* Backward, accumulating: dcls[B, H] += (NULL: nothing below the head is trained), weight
 * gradients += where non-NULL, from dlogits[B, NL], the forward's saved tensors and its dropout
 * (p, keys: the same arguments). scratch [2, B, H] is overwritten. */
void petl_head_backward(float *dcls, const petl_head_grads *dw, float *scratch,
                        const float *dlogits, const float *cls_rows, const float *pooled,
                        const float *pooled_d, float p, const uint64_t *keys,
                        const petl_head_weights *w, int B, int H, int NL);

/* Mean cross-entropy over the batch of logits[B, NL] against labels[B] (0..NL-1); returns it
 * in double. The backward adds (softmax - onehot) / B into dlogits. */
double petl_cross_entropy_forward(const float *logits, const int32_t *labels, int B, int NL);
void petl_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels, int B,
                                 int NL);

/* Mean squared error of pred[B] against targets[B] (torch MSELoss on logits.squeeze()); the
 * backward adds 2 (pred - target) / B into dpred. */
double petl_mse_forward(const float *pred, const float *targets, int B);
void petl_mse_backward(float *dpred, const float *pred, const float *targets, int B);

/* The span head of extractive question answering (transformers' BertForQuestionAnswering
 * `qa_outputs`, Google's run_squad.py output weights): on every token of the packed last hidden
 * states x[n, H],
 *   logits[n, 2] = x W_qa^T + b_qa          W_qa [2, H]; column 0 start, column 1 end
 * no dropout before it (neither reference has any). */
void petl_span_head_forward(float *logits, const float *x, const float *w, const float *b,
                            int64_t n, int H);
/* Backward, accumulating: dx[n, H] += dlogits W_qa (NULL: nothing below the head is trained),
 * dw[2, H] += dlogits^T x, db[2] += column sums (each NULL when frozen). */
void petl_span_head_backward(float *dx, float *dw, float *db, const float *dlogits, const float *x,
                             const float *w, int64_t n, int H);

/* The span loss over packed logits[n, 2] (row r's tokens are off[r] .. off[r] + len[r] - 1):
 *   loss = mean over the B rows of (CE(start logits of the row, start[r]) +
 *                                   CE(end logits of the row, end[r])) / 2
 * with each cross-entropy over the row's REAL tokens only: padding is not a candidate position
 * (as if its logits were -inf). transformers computes logits at padded positions too and puts
 * them in the softmax, so its loss depends on how far a batch is padded; here it does not
 * (identical to transformers on unpadded rows, and to transformers with the padded logits
 * masked to -inf). start[r], end[r] in [0, len[r]) (the caller checks). Returns the loss in
 * double; the backward adds (softmax - onehot) / (2 B) into dlogits. */
double petl_span_loss_forward(const float *logits, const int64_t *off, const int *len,
                              const int32_t *start, const int32_t *end, int B);
void petl_span_loss_backward(float *dlogits, const float *logits, const int64_t *off,
                             const int *len, const int32_t *start, const int32_t *end, int B);

#endif
