/* The bottleneck adapter (see adapter.h): two small projections around a nonlinearity, plus the
 * identity. Built from the kernels of kernels.c, so it inherits their threading and their
 * finite-difference tests. */
#include "adapter.h"

#include "kernels.h"

#include <string.h>

/* out[n] = f(inp[n]) for the adapter's nonlinearity (GELU is the exact erf form, as PyTorch's
 * nn.GELU() and transformers' "gelu"). */
static void adapter_act_forward(float *out, const float *inp, int64_t n, petl_adapter_act act) {
    switch (act) {
    case PETL_ADAPTER_GELU: petl_activation_forward(out, inp, n, PETL_ACT_GELU); break;
    case PETL_ADAPTER_RELU: petl_activation_forward(out, inp, n, PETL_ACT_RELU); break;
    case PETL_ADAPTER_SWISH: petl_swish_forward(out, inp, n); break;
    }
}

static void adapter_act_backward(float *dinp, const float *dout, const float *inp, int64_t n,
                                 petl_adapter_act act) {
    switch (act) {
    case PETL_ADAPTER_GELU: petl_activation_backward(dinp, dout, inp, n, PETL_ACT_GELU); break;
    case PETL_ADAPTER_RELU: petl_activation_backward(dinp, dout, inp, n, PETL_ACT_RELU); break;
    case PETL_ADAPTER_SWISH: petl_swish_backward(dinp, dout, inp, n); break;
    }
}

void petl_adapter_forward(float *out, float *z, float *g, const float *h,
                          const petl_adapter_weights *w, int64_t N, int d, int m,
                          petl_adapter_act act, bool bf16) {
    if (bf16) {
        petl_matmul_forward_bf16(z, h, w->down_w, w->down_b, N, d, m);
        adapter_act_forward(g, z, N * m, act);
        petl_matmul_forward_bf16(out, g, w->up_w, w->up_b, N, m, d);
    } else {
        petl_matmul_forward(z, h, w->down_w, w->down_b, N, d, m); /* z [N, m] */
        adapter_act_forward(g, z, N * m, act);               /* g [N, m] */
        petl_matmul_forward(out, g, w->up_w, w->up_b, N, m, d); /* out [N, d] = W_up g + b_up */
    }
    const int64_t n = N * d;
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) /* the identity path */
        out[i] += h[i];
}

void petl_adapter_backward(float *dh, const petl_adapter_grads *dw, float *scratch,
                           const float *dout, const float *h, const float *z, const float *g,
                           const petl_adapter_weights *w, int64_t N, int d, int m,
                           petl_adapter_act act, bool bf16) {
    float *dg = scratch, *dz = scratch + N * m; /* [N, m] each */
    memset(scratch, 0, (size_t)(2 * N * m) * sizeof *scratch);
    void (*backward)(float *, float *, float *, const float *, const float *, const float *,
                     int64_t, int, int) = bf16 ? petl_matmul_backward_bf16 : petl_matmul_backward;
    /* out = h + W_up g + b_up:  d g = dout W_up,  d W_up += dout^T g,  d b_up += sum dout */
    backward(dg, dw->up_w, dw->up_b, dout, g, w->up_w, N, m, d);
    /* g = f(z):  d z = f'(z) d g */
    adapter_act_backward(dz, dg, z, N * m, act);
    /* z = W_down h + b_down:  d h += dz W_down,  d W_down += dz^T h,  d b_down += sum dz */
    backward(dh, dw->down_w, dw->down_b, dz, h, w->down_w, N, d, m);
    /* the identity path:  d h += dout */
    if (dh) {
        const int64_t n = N * d;
#pragma omp parallel for simd if (n > 65536)
        for (int64_t i = 0; i < n; i++)
            dh[i] += dout[i];
    }
}
