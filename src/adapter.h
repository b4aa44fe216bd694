/* The bottleneck adapter of Houlsby et al. (../shared/docs/method.md), forward and backward:
 *   A(h) = h + W_up f(W_down h + b_down) + b_up      W_down [m, d], W_up [d, m]
 * Internal to the library (src/forward.c runs it inside each encoder layer; tests check it by
 * finite differences). */
#ifndef PETL_ADAPTER_H
#define PETL_ADAPTER_H

#include "petl.h"

#include <stdint.h>

typedef struct {
    const float *down_w; /* [m, d] */
    const float *down_b; /* [m] */
    const float *up_w;   /* [d, m] */
    const float *up_b;   /* [d] */
} petl_adapter_weights;

/* Gradients of the four tensors; each may be NULL (not trained). */
typedef struct {
    float *down_w; /* [m, d] */
    float *down_b; /* [m] */
    float *up_w;   /* [d, m] */
    float *up_b;   /* [d] */
} petl_adapter_grads;

/* out[N, d] = A(h[N, d]); saves z[N, m] = W_down h + b_down and g[N, m] = f(z) for the
 * backward. out must not alias h (the residual needs h after the up projection). bf16: the
 * products (forward and backward) through petl_gemm_bf16, as --precision bf16 runs the base;
 * weights, gradients and everything element-wise stay fp32. */
void petl_adapter_forward(float *out, float *z, float *g, const float *h,
                          const petl_adapter_weights *w, int64_t N, int d, int m,
                          petl_adapter_act act, bool bf16);

/* Backward, accumulating: dh[N, d] += (may be NULL), the weight gradients += (fields may be
 * NULL), from dout[N, d] and the forward's h, z, g. scratch[2, N, m] is overwritten. */
void petl_adapter_backward(float *dh, const petl_adapter_grads *dw, float *scratch,
                           const float *dout, const float *h, const float *z, const float *g,
                           const petl_adapter_weights *w, int64_t N, int d, int m,
                           petl_adapter_act act, bool bf16);

#endif
