/* The task head and the losses (see heads.h). Batches here are small (B rows of H), so the
 * loops are plain; the projections go through the kernels. */
#include "heads.h"

#include "kernels.h"
#include "rng.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

void petl_head_forward(float *logits, float *pooled, float *pooled_d, const float *cls_rows,
                       float p, const uint64_t *keys, const petl_head_weights *w, int B, int H,
                       int NL) {
    const int64_t n = (int64_t)B * H;
    if (w->pool_w) {
        petl_matmul_forward(pooled, cls_rows, w->pool_w, w->pool_b, B, H, H); /* [B, H] */
        petl_tanh_forward(pooled, pooled, n);
    } else {
        memcpy(pooled, cls_rows, (size_t)n * sizeof *pooled);
    }
    if (keys && p > 0.0f)
        for (int b = 0; b < B; b++)
            petl_dropout_apply(pooled_d + (int64_t)b * H, pooled + (int64_t)b * H, (size_t)H, p,
                               keys[b], 0);
    else if (pooled_d != pooled)
        memcpy(pooled_d, pooled, (size_t)n * sizeof *pooled_d);
    petl_matmul_forward(logits, pooled_d, w->cls_w, w->cls_b, B, H, NL); /* [B, NL] */
}

void petl_head_backward(float *dcls, const petl_head_grads *dw, float *scratch,
                        const float *dlogits, const float *cls_rows, const float *pooled,
                        const float *pooled_d, float p, const uint64_t *keys,
                        const petl_head_weights *w, int B, int H, int NL) {
    const int64_t n = (int64_t)B * H;
    const bool need_below = dcls || (w->pool_w && (dw->pool_w || dw->pool_b));
    float *dpd = need_below ? scratch : NULL; /* [B, H] */
    float *dz = scratch + n;                  /* [B, H] */
    if (dpd) memset(scratch, 0, (size_t)(2 * n) * sizeof *scratch);
    /* logits = pooled_d W_cls^T + b_cls:  d W_cls += dlogits^T pooled_d,  d pooled_d = dl W */
    petl_matmul_backward(dpd, dw->cls_w, dw->cls_b, dlogits, pooled_d, w->cls_w, B, H, NL);
    if (!dpd) return;
    /* pooled_d = pooled * mask:  d pooled = d pooled_d * mask (in place, the mask regenerated) */
    if (keys && p > 0.0f)
        for (int b = 0; b < B; b++)
            petl_dropout_apply(dpd + (int64_t)b * H, dpd + (int64_t)b * H, (size_t)H, p, keys[b],
                               0);
    if (!w->pool_w) {
        /* no pooler: pooled is the [CLS] row */
        for (int64_t i = 0; i < n; i++)
            dcls[i] += dpd[i];
        return;
    }
    /* pooled = tanh(z):  d z = (1 - pooled^2) d pooled */
    petl_tanh_backward(dz, dpd, pooled, n);
    /* z = cls W_pool^T + b_pool:  d cls += dz W_pool,  d W_pool += dz^T cls (when trained) */
    petl_matmul_backward(dcls, dw->pool_w, dw->pool_b, dz, cls_rows, w->pool_w, B, H, H);
}

double petl_cross_entropy_forward(const float *logits, const int32_t *labels, int B, int NL) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *l = logits + (int64_t)b * NL;
        double mx = l[0], sum = 0.0;
        for (int j = 1; j < NL; j++)
            mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < NL; j++)
            sum += exp((double)l[j] - mx);
        /* -log softmax[label] = logsumexp - logit[label] */
        total += mx + log(sum) - l[labels[b]];
    }
    return total / B;
}

void petl_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels, int B,
                                 int NL) {
    for (int b = 0; b < B; b++) {
        const float *l = logits + (int64_t)b * NL;
        float *d = dlogits + (int64_t)b * NL;
        double mx = l[0], sum = 0.0;
        for (int j = 1; j < NL; j++)
            mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < NL; j++)
            sum += exp((double)l[j] - mx);
        /* d loss / d logit_j = (softmax_j - [j == label]) / B (the mean over the batch) */
        for (int j = 0; j < NL; j++)
            d[j] += (float)((exp((double)l[j] - mx) / sum - (j == labels[b])) / B);
    }
}

double petl_mse_forward(const float *pred, const float *targets, int B) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double e = (double)pred[b] - targets[b];
        total += e * e;
    }
    return total / B;
}

void petl_mse_backward(float *dpred, const float *pred, const float *targets, int B) {
    /* d/dp mean (p - t)^2 = 2 (p - t) / B */
    for (int b = 0; b < B; b++)
        dpred[b] += (float)(2.0 * ((double)pred[b] - targets[b]) / B);
}

void petl_span_head_forward(float *logits, const float *x, const float *w, const float *b,
                            int64_t n, int H) {
    petl_matmul_forward(logits, x, w, b, n, H, 2); /* [n, 2] */
}

void petl_span_head_backward(float *dx, float *dw, float *db, const float *dlogits, const float *x,
                             const float *w, int64_t n, int H) {
    /* logits = x W_qa^T + b_qa:  d x += dlogits W_qa,  d W_qa += dlogits^T x,  d b_qa += sum */
    petl_matmul_backward(dx, dw, db, dlogits, x, w, n, H, 2);
}

/* -log softmax(v[0..len) with stride 2)[target] in double, and the softmax's max / sum for the
 * backward. */
static double strided_ce(const float *v, int len, int target, double *mx_out, double *sum_out) {
    double mx = v[0], sum = 0.0;
    for (int p = 1; p < len; p++)
        mx = v[2 * p] > mx ? v[2 * p] : mx;
    for (int p = 0; p < len; p++)
        sum += exp((double)v[2 * p] - mx);
    *mx_out = mx;
    *sum_out = sum;
    return mx + log(sum) - v[2 * target];
}

double petl_span_loss_forward(const float *logits, const int64_t *off, const int *len,
                              const int32_t *start, const int32_t *end, int B) {
    double total = 0.0, mx, sum;
    for (int r = 0; r < B; r++) {
        const float *l = logits + 2 * off[r]; /* row r: start logits at l[2p], end at l[2p + 1] */
        total += strided_ce(l, len[r], start[r], &mx, &sum);
        total += strided_ce(l + 1, len[r], end[r], &mx, &sum);
    }
    return total / (2.0 * B);
}

void petl_span_loss_backward(float *dlogits, const float *logits, const int64_t *off,
                             const int *len, const int32_t *start, const int32_t *end, int B) {
    for (int r = 0; r < B; r++)
        for (int k = 0; k < 2; k++) { /* k = 0: start, 1: end */
            const float *l = logits + 2 * off[r] + k;
            float *d = dlogits + 2 * off[r] + k;
            const int target = k == 0 ? start[r] : end[r];
            double mx, sum;
            strided_ce(l, len[r], target, &mx, &sum);
            /* d loss / d logit_p = (softmax_p - [p == target]) / (2 B): the mean over the batch
             * of the mean of the two cross-entropies */
            for (int p = 0; p < len[r]; p++)
                d[2 * p] += (float)((exp((double)l[2 * p] - mx) / sum - (p == target)) / (2.0 * B));
        }
}
